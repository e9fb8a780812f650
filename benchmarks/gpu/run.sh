#!/usr/bin/env bash
# One prepared run on a lent GPU machine, written and tried on the CPU first (GPU_SMOKE=1 shrinks
# every budget so the whole script runs in minutes there). On an H200 (2026-12-04) phase 1 took
# 202 s; phase 2 overran its first version (per-epoch validation and 450 MB checkpoints on top of
# max_minutes), which this version bounds: about 7 minutes in all. Phase 1 has since gained the two
# fold-2 rows (six runs, three at a time instead of two: about the same wall time, not yet tried
# on a GPU).
#
#   1. the time-to-quality suite's GPU variant (benchmarks/gpu/time-to-quality-gpu.yaml);
#   2. the paper's CIFAR-10 Table 1 rows (presets table1-cifar10-unet and -gan: batch 128, lr
#      5e-4, plateau schedule), as many epochs as fit in TABLE1_MINUTES of training each,
#      evaluated on the whole CIFAR-10 test split;
#   3. a longer run of the fast recipe (FAST_MINUTES), a candidate for the shipped default model.
#
# Needs: colorkit installed; the CIFAR-10 JPEG mirror at $DATA (default
# .gpudata/cifar10-jpeg.tar.gz, a git-ignored copy of ../shared/data/cifar10-jpeg.tar.gz).
# Writes everything small (logs, eval JSONs, the report, the candidate's checkpoint) into
# $RESULTS and packs it as $OUT/gpu-results.tar.gz (the device tool brings back few files).
set -uo pipefail
cd "$(dirname "$0")/../.."
FINAL=${OUT:-gpu-out}
OUT=${RESULTS:-/tmp/colorkit-gpu-results}
DATA=${DATA:-.gpudata/cifar10-jpeg.tar.gz}
WORK=${WORK:-/tmp/colorkit-gpu}
SUITE=benchmarks/gpu/time-to-quality-gpu.yaml
TABLE1_MINUTES=${TABLE1_MINUTES:-1.5}
FAST_MINUTES=${FAST_MINUTES:-1.5}
mkdir -p "$OUT" "$WORK" "$FINAL"
if [ "${GPU_SMOKE:-0}" = 1 ]; then  # CPU try-out: tiny budgets, few images
  sed -e 's/max_cpu_minutes: 1$/max_cpu_minutes: 0.04/' -e 's/keep_cpu_minutes: \[.*\]/keep_cpu_minutes: [0.02, 0.04]/' \
      -e 's/limit: 2000/limit: 100/' -e "s#../../.gpudata/cifar10-jpeg.tar.gz#$(realpath "$DATA")#" \
      "$SUITE" > "$WORK/suite.yaml"
  SUITE=$WORK/suite.yaml TABLE1_MINUTES=0.05 FAST_MINUTES=0.05 EVAL_LIMIT="--limit 200"
fi
EVAL_LIMIT=${EVAL_LIMIT:-}
export PYTHONUNBUFFERED=1
{ nvidia-smi -L || true; python3 -c 'import torch, colorkit; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "colorkit", colorkit.__version__)'; } 2>&1 | tee "$OUT/device.txt"
t0=$(date +%s)
# Decode the archive once into the cache, before the parallel runs read it.
python3 - "$DATA" <<'PY' 2>&1 | tee "$OUT/decode.log"
import sys, time
from colorkit.registry import build_registry
t = time.perf_counter()
ds = build_registry().get("dataset", "cifar10").build({"root": sys.argv[1]})
print({s: len(ds.split(s, train=False)) for s in ds.splits}, f"{time.perf_counter() - t:.1f} s")
PY

# 1. time to quality, GPU variant
colorkit bench "$SUITE" --out "$WORK/ttq" --no-figures 2>&1 | tee "$OUT/ttq-bench.log" | tail -3
python3 benchmarks/time_to_quality.py --suite "$SUITE" --out "$WORK/ttq" --dest "$OUT/ttq" --grid-mark 0.5 2>&1 | tail -2
echo "phase 1 done after $(( $(date +%s) - t0 )) s"

# 2 + 3 side by side: the Table 1 rows and the fast candidate
metrics=mae,accuracy,psnr,ssim,colorfulness_gap,auc
# max_minutes counts training steps only: validation and the paper nets' 450 MB checkpoints at
# every epoch end come on top, so each run also gets a hard stop (SIGINT saves last.pt first).
# No per-epoch validation here (val_every: never): the runs are evaluated on test below.
hard=$(python3 -c "print(int(60 * max($TABLE1_MINUTES, $FAST_MINUTES) + 60))")
for row in unet gan; do
  timeout -s INT -k 30 $hard colorkit run --preset table1-cifar10-$row --data-root "$DATA" --metrics $metrics \
    --set train.max_minutes=$TABLE1_MINUTES --set train.val_every=1000000 --out "$WORK/table1-$row" -q \
    > "$OUT/table1-$row.log" 2>&1 &
done
timeout -s INT -k 30 $hard colorkit run --preset fast-cifar10 --data-root "$DATA" --metrics $metrics \
  --set train.max_cpu_minutes=null --set train.max_minutes=$FAST_MINUTES --set train.val_every=1000000 \
  --out "$WORK/fast-long" -q > "$OUT/fast-long.log" 2>&1 &
wait
for run in table1-unet table1-gan fast-long; do
  colorkit eval "$WORK/$run/checkpoints/last.pt" --data-root "$DATA" --metrics $metrics --batch-size 500 $EVAL_LIMIT \
    --json "$OUT/eval-$run.json" -q 2>&1 | tail -4
  cp "$WORK/$run/metrics.jsonl" "$OUT/metrics-$run.jsonl"
done
cp "$WORK/fast-long/checkpoints/last.pt" "$OUT/fast-long-last.pt" 2>/dev/null
echo "all done after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/device.txt"
tar czf "$FINAL/gpu-results.tar.gz" -C "$OUT" .
ls -la "$FINAL"
