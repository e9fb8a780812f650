#!/usr/bin/env bash
# The photo recipe on a lent GPU (issue 32, point 6), written and tried on the CPU first
# (GPU_SMOKE=1 shrinks every budget so the whole script runs in a few minutes there). Under 8
# minutes on the device: the preset colorkit-photos (colour classification, U-Net base 32, depth 4)
# trained at SIZE px (default 128) for TRAIN_MINUTES of wall-clock training, then the inference
# choices benchmarks/photo_model.py makes (prior correction x temperature) scored on photos9k val,
# the chosen one on test. Tried on the CPU with GPU_SMOKE=1 and a 76-photo copy of photos9k.
#
# Needs: colorkit installed (piq may be missing on the device: carry its wheel, see
# ../.library/device/README.md); photos9k.tar at $PHOTOS (default .gpudata/photos9k.tar, a
# git-ignored copy of ../shared/data/photos9k.tar: the photos never go into the repository).
# Writes the small outputs (logs, the val scan, the test scores) and the run's model file into
# $RESULTS and packs them as $OUT/gpu-photos.tar.gz (the device tool brings back few files). Ship
# the GPU model only if it beats the CPU one on val:
#   python benchmarks/photo_model.py RUN ...   (names the device in the card's cost line)
set -uo pipefail
cd "$(dirname "$0")/../.."
FINAL=${OUT:-gpu-out}
RESULTS=${RESULTS:-/tmp/colorkit-gpu-photos}
PHOTOS=${PHOTOS:-.gpudata/photos9k.tar}
WORK=${WORK:-/tmp/colorkit-gpu-photos-work}
SIZE=${SIZE:-128}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
BATCH=${BATCH:-64}
TEMPERATURES=${TEMPERATURES:-0.4,0.55}
PRIORS=${PRIORS:-0.35,0.45,0.55}
mkdir -p "$RESULTS" "$WORK" "$FINAL"
export PYTHONUNBUFFERED=1 COLORKIT_CACHE=$WORK/cache COLORKIT_BENCH_CACHE=$WORK/evals
if [ "${GPU_SMOKE:-0}" = 1 ]; then  # CPU try-out: a few steps at a small size
  SIZE=32 TRAIN_MINUTES=0.05 BATCH=8 TEMPERATURES=0.38,1 PRIORS=0,0.5
fi
{ nvidia-smi -L || true; python3 -c 'import torch, colorkit; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "colorkit", colorkit.__version__)'; } 2>&1 | tee "$RESULTS/device.txt"
t0=$(date +%s)
# Training: the preset at SIZE px with a wall-clock budget instead of its CPU-minutes; a hard stop
# (SIGINT saves last.pt first) bounds it.
hard=$(python3 -c "print(int(60 * $TRAIN_MINUTES + 90))")
timeout -s INT -k 30 "$hard" colorkit run --preset colorkit-photos --data-root "$PHOTOS" \
  --set dataset.size="$SIZE" --batch-size "$BATCH" --set train.device=auto --set train.workers=auto \
  --set train.max_cpu_minutes=null --set train.max_minutes="$TRAIN_MINUTES" \
  --out "$WORK/run" -q > "$RESULTS/train.log" 2>&1
echo "trained after $(( $(date +%s) - t0 )) s" | tee -a "$RESULTS/device.txt"
cp "$WORK/run/metrics.jsonl" "$WORK/run/config.yaml" "$WORK/run/environment.json" "$RESULTS/" 2>/dev/null
# Choices on val (decode temperature x chroma upsampling at the training size), then test.
# One process per prior correction (the device has 16 cores; each evaluation uses one), then the
# choice over all of them from the shared evaluation cache.
for prior in ${PRIORS//,/ }; do
  python3 benchmarks/photos.py --photos "$PHOTOS" scan "$WORK/run/checkpoints/last.pt" --split val \
    --set gen.prior_correction="$prior" --set gen.temperature="$TEMPERATURES" --chroma bilinear --sizes "$SIZE" \
    > "$RESULTS/scan-$prior.log" 2>&1 &
done
wait
python3 benchmarks/photos.py --photos "$PHOTOS" scan "$WORK/run/checkpoints/last.pt" --split val \
  --set gen.prior_correction="$PRIORS" --set gen.temperature="$TEMPERATURES" --chroma bilinear --sizes "$SIZE" \
  --dest "$RESULTS" 2>&1 | tail -12
python3 - "$RESULTS/scan-val.json" "$PHOTOS" "$WORK/run/checkpoints/last.pt" > "$RESULTS/test.json" <<'PY'
import json, sys
sys.path.insert(0, "benchmarks")
import photos
chosen = json.load(open(sys.argv[1]))["chosen"]
folder = photos.photo_folder(__import__("pathlib").Path(sys.argv[2]))
print(json.dumps(photos.score(sys.argv[3], folder, "test", chosen["variant"], chosen["chroma"],
                              size=chosen["working_size"]), indent=1))
PY
echo "all done after $(( $(date +%s) - t0 )) s" | tee -a "$RESULTS/device.txt"
# the model file (half precision, about 4 MB): what photo_model.py or --model takes; last.pt with its
# Adam state would pass the device tool's 16 MB a file
colorkit export "$WORK/run" --format model --out "$RESULTS/gpu-photos.pt" 2>&1 | tail -2
tar czf "$FINAL/gpu-photos.tar.gz" -C "$RESULTS" .
ls -la "$FINAL"
