"""torch.compile on the CPU against eager mode, per U-Net padding: CPU-seconds per training step.

One thread; the photo recipe's U-Net (base 32, depth 4) at a working size, batch 32, one Adam step
of the loss each output needs (a*b*: L1; bins: bins_ce). In torch 2.14 the U-Net's replicate
padding cannot be compiled with its backward pass on the CPU (an inductor stride assertion), so
the compiled rows use ``gen.pad=zeros`` or ``reflect``. Each row reports the one-time compile cost
and the steady CPU-seconds per step after warm-up; ratios are measured within one run.

    python benchmarks/compile_speed.py --size 64 --steps 20 --dest benchmarks/results/photos-compile
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def step_cost(output: str, pad: str, compiled: bool, size: int, steps: int) -> dict:
    import torch

    from colorkit.kernel.interfaces import Prediction
    from colorkit.kernel.registry import build_registry

    registry = build_registry(autoload=False)  # the built-in components, by name
    torch.manual_seed(0)
    gen = registry.build("generator", "unet", {"base": 32, "depth": 4, "output": output, "pad": pad}).train()
    loss = registry.build("loss", "bins_ce" if output == "bins" else "l1")
    net = torch.compile(gen) if compiled else gen
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    l = torch.rand(32, 1, size, size) * 2 - 1  # noqa: E741
    target = (torch.rand(32, 2, size, size) - 0.5) * 0.6

    def one() -> None:
        pred = net(l)
        parts = loss.generator_loss(Prediction(l, pred, target, gen.decode(pred)), None)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()

    t0 = time.process_time()
    try:
        one()
        one()
    except Exception as exc:  # noqa: BLE001 - the row records why it could not run
        return {"output": output, "pad": pad, "compiled": compiled, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    warm = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(steps):
        one()
    per_step = (time.process_time() - t0) / steps
    return {"output": output, "pad": pad, "compiled": compiled, "warmup_cpu_s": round(warm, 2),
            "cpu_s_per_step": round(per_step, 4), "images_per_cpu_s": round(32 / per_step, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dest", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    for output in ("ab", "bins"):
        for pad, compiled in (("replicate", False), ("zeros", False), ("reflect", False),
                              ("replicate", True), ("zeros", True), ("reflect", True)):
            rows.append(step_cost(output, pad, compiled, args.size, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    lines = [f"torch.compile on the CPU, U-Net base 32 depth 4, {args.size} px, batch 32, one thread, "
             f"{args.steps} steps after 2 warm-up steps (torch {torch.__version__})", "",
             "| output | padding | mode | CPU-s / step | images / CPU-s | vs eager replicate | warm-up CPU-s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(b for b in rows if b["output"] == r["output"] and b["pad"] == "replicate" and not b["compiled"])
        mode = "compiled" if r["compiled"] else "eager"
        if "error" in r:
            lines.append(f"| {r['output']} | {r['pad']} | {mode} | fails: {r['error']} | | | |")
        else:
            ratio = base["cpu_s_per_step"] / r["cpu_s_per_step"]
            lines.append(f"| {r['output']} | {r['pad']} | {mode} | {r['cpu_s_per_step']:.3f} | {r['images_per_cpu_s']:.1f} | "
                         f"{ratio:.2f}x | {r['warmup_cpu_s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.dest:
        args.dest.mkdir(parents=True, exist_ok=True)
        (args.dest / f"compile-{args.size}.md").write_text(text)
        (args.dest / f"compile-{args.size}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
