"""Recompute the batch-norm statistics a half-precision model file lost (issue 32's shipped model).

Model files written before 2026-12-08 cast every tensor to half precision; a batch-norm running
variance above 65,504 became infinite there, which silences its channels (x / sqrt(inf) = 0). This
script resets the statistics of every batch-norm layer holding a non-finite value and recomputes
them as the population mean and variance over ``--images`` seeded crops of the training split the
model was trained on (weights untouched, every other layer in eval mode), then writes the model
file again (``write_model_file``: tensors half precision cannot hold stay float32).

    python benchmarks/repair_bn_stats.py plugins/weights/colorkit-photos.pt --out /work/bench-out/repair/colorkit-photos.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "photos9k.tar"))
    args = ap.parse_args()
    from colorkit.engine.checkpoints import load_checkpoint, save_checkpoint, write_model_file
    from colorkit.engine.images import sample_indices
    from colorkit.engine.inference import load_model, predict_lab
    from colorkit.kernel import color
    from colorkit.kernel.registry import build_registry

    registry = build_registry()
    model = load_model(args.model, registry, device="cpu")
    gen = model.gen.eval()
    broken = [
        (n, m) for n, m in gen.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not bool(m.running_var.isfinite().all())]
    print("recomputing", [n for n, _ in broken])
    for _, m in broken:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: the population statistics
        m.train()
    exp = model.experiment
    options = dict(exp["dataset"].get("options") or {})
    options["root"] = args.data_root
    dataset = registry.get("dataset", exp["dataset"]["name"]).build(options)
    data = dataset.split(dataset.train_split, train=False)
    idx = sample_indices(len(data), args.images, seed=0)
    with torch.no_grad():
        for start in range(0, len(idx), args.batch_size):
            batch = torch.stack([data[i] for i in idx[start:start + args.batch_size]]).float() / 255.0
            predict_lab(gen, color.rgb_to_lab(batch)[:, :1])
    for _, m in broken:
        m.eval()
    state = load_checkpoint(args.model)
    state["gen"] = {k: v.clone() for k, v in gen.state_dict().items()}
    state.pop("path", None)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "full.pt"
        save_checkpoint(source, state)
        write_model_file(source, args.out, half=True)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
