"""Time and memory to open the Places365-Standard train index (1,803,460 lines).

Writes a synthetic ``places365_train_standard.txt`` in the official line format
(``/a/airfield/00000001.jpg 0``, 365 categories with names of realistic lengths, about 5,000
images each) into a temporary folder, then measures opening the train split of colorkit's
``places365`` dataset, built through the registry (the index read into a path table, the val
images held out; no image is read): wall time, the peak of Python-tracked allocations
(tracemalloc, which numpy reports to) and the growth of the process's peak resident memory. ``--naive`` also measures the usual reading, a
Python list of (path string, label) tuples as torchvision's Places365 keeps, for comparison.
Targets (issue 3): under about 5 s and 300 MB.

    python benchmarks/places_index.py
    python benchmarks/places_index.py --lines 1803460 --naive
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from colorkit.kernel.registry import build_registry

OFFICIAL_LINES = 1_803_460


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def write_index(path: Path, lines: int, seed: int = 0) -> int:
    """The synthetic index, written in chunks (little memory); returns its size in bytes."""
    rng = np.random.default_rng(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    cats = []
    for i in range(365):
        name = "".join(rng.choice(list(letters), size=int(rng.integers(4, 20))))
        if i % 9 == 0:
            name += "/" + ("outdoor" if i % 2 else "indoor")
        cats.append(f"/{name[0]}/{name}")
    per_cat = -(-lines // 365)
    with open(path, "w", encoding="utf-8") as fh:
        written = 0
        for label, cat in enumerate(cats):
            n = min(per_cat, lines - written)
            fh.write("".join(f"{cat}/{k:08d}.jpg {label}\n" for k in range(1, n + 1)))
            written += n
    return path.stat().st_size


def measure(fn) -> tuple[object, float, float, float, float]:
    """Run ``fn`` twice: timed, with the peak-RSS growth; then under tracemalloc (which slows
    Python allocations down, so it is not timed) for the peak of tracked allocations and what
    stays allocated while its result lives (MB)."""
    gc.collect()
    rss0 = _peak_rss_mb()
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    rss = _peak_rss_mb() - rss0
    del out
    gc.collect()
    tracemalloc.start()
    out = fn()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / 1e6, rss, kept / 1e6


def places365(registry, root: Path, val_size: int):
    """colorkit's ``places365`` dataset on ``root``, built only (its splits are read when first
    asked for); no header checks: the synthetic index names no real files."""
    return registry.build("dataset", "places365", {"root": str(root), "precheck": 0, "val_size": val_size})


def naive_open(path: Path):
    with open(path, encoding="utf-8") as fh:
        return [(os.path.join(str(path.parent), "data_256", p.lstrip("/")), int(lab))
                for p, lab in (line.split() for line in fh)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=OFFICIAL_LINES)
    ap.add_argument("--naive", action="store_true", help="also measure a list of (str, int) tuples")
    args = ap.parse_args()
    print(f"places365 index benchmark: python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "places365_train_standard.txt"
        nbytes = write_index(path, args.lines)
        print(f"synthetic index: {args.lines:,} lines, {nbytes / 1e6:.1f} MB")
        (Path(tmp) / "data_256").mkdir()  # the split's image folder: empty, no image is read
        registry = build_registry(autoload=False)
        val_size = min(5000, max(1, args.lines // 10))  # the dataset's default, or a tenth of a small index
        places365(registry, path.parent, val_size)  # imports the plugin's code first, reads nothing
        split, seconds, traced, rss, kept = measure(lambda: places365(registry, path.parent, val_size).split("train"))
        ok = seconds < 5 and max(traced, rss) < 300
        print(f"colorkit: open {seconds:.2f} s, peak traced {traced:.0f} MB, peak RSS growth {rss:.0f} MB, "
              f"kept {kept:.0f} MB; target (< 5 s, < 300 MB) {'met' if ok else 'MISSED'}")
        assert len(split) == args.lines - val_size
        del split
        if args.naive:
            items, seconds, traced, rss, _ = measure(lambda: naive_open(path))
            print(f"naive list of (str, int): open {seconds:.2f} s, peak traced {traced:.0f} MB "
                  "(its RSS growth is hidden by the peak of the run above)")
            del items
    return 0


if __name__ == "__main__":
    sys.exit(main())
