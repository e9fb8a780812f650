"""Choose ``gen.ab_gain`` on val: evaluate one checkpoint at several gains against the floor.

Each gain is a model file of the checkpoint with ``gen.ab_gain`` set in its experiment (the weights
untouched, full precision; as a suite's ``from`` row derives them), evaluated by ``colorkit eval``'s code on the same images. Prints a markdown table and
writes it as JSON with ``--json``.

    python benchmarks/ab_gain_scan.py RUN/checkpoints/cpu-10min.pt --gains 1,1.2,1.4,1.6,1.8,2,2.2 \\
        --data-root ../shared/data/cifar10-jpeg.tar.gz --split val --first 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

METRICS = "mae,accuracy,psnr,colorfulness_gap"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--gains", default="1,1.2,1.4,1.6,1.8,2,2.2")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--split", default="val", help="val: choose here; report on test")
    parser.add_argument("--first", type=int, default=2000, help="score the split's first N images (as eval --first)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="dataset.KEY=VALUE",
                        help="a dataset option of the scored images, e.g. dataset.keep_gray=true to score val "
                             "as the time-to-quality suite scores test (repeatable)")
    args = parser.parse_args()

    from colorkit.engine.checkpoints import load_checkpoint, write_model_file
    from colorkit.engine.evaluation import evaluate
    from colorkit.kernel.files import atomic_path

    experiment = load_checkpoint(args.checkpoint)["experiment"]
    names = METRICS.split(",")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for gain in [float(g) for g in args.gains.split(",")]:
            experiment["gen"]["options"]["ab_gain"] = gain
            path = write_model_file(args.checkpoint, Path(tmp) / f"gain-{gain:g}.pt", half=False, experiment=experiment)
            ev, _, _ = evaluate([path], split=args.split, first=args.first, metrics=METRICS, device="cpu",
                                data_root=args.data_root, batch_size=250, sets=args.sets)
            floor, model = ev.rows[0], ev.rows[-1]
            if not rows:
                rows.append({"gain": "no colour", **{m: floor.values[m] for m in names}})
            rows.append({"gain": gain, **{m: model.values[m] for m in names}})
    print(f"{args.checkpoint}, {args.split} split, first {args.first} images{''.join(', ' + x for x in args.sets)}\n")
    print("| gain | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['gain']} | " + " | ".join(f"{r[m]:.2f}" for m in names) + " |")
    if args.json:
        with atomic_path(args.json) as p:
            p.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": args.split, "first": args.first, "sets": args.sets,
                                     "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
