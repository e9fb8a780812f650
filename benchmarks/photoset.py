"""The real-photo evaluation set that every colorkit install has: colour photos shipped inside
the wheels of scikit-image and matplotlib (colorkit's own dependencies) and scikit-learn (when
installed: ``pip install scikit-learn``). Natural photos only: no synthetic images (colour
wheel, logo), no microscopy, retina or deep-sky images.

``python benchmarks/photoset.py OUT_DIR`` writes them as lossless PNG files at full size and
prints one line per photo; ``colorkit eval RUN --images OUT_DIR`` then scores a model on them as
``colorkit colorize`` writes them. The set's name lists its photos, so two machines with
different packages never mix their numbers silently.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: (name, package, loader) in a fixed order.
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")


def _skimage(name: str) -> np.ndarray:
    from skimage import data, io

    if name.startswith("motorcycle_"):  # the stereo pair ships as files, without a loader
        return io.imread(Path(data.__file__).parent / f"{name}.png")[..., :3]
    return getattr(data, name)()[..., :3]


def photos() -> list[tuple[str, str, np.ndarray]]:
    """``(name, package, H x W x 3 uint8)`` for every photo of the set that is installed here."""
    out = [(name, "scikit-image", _skimage(name)) for name in SKIMAGE]
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        out.append(("grace_hopper", "matplotlib", np.asarray(Image.open(fh).convert("RGB"))))
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        print("photoset: scikit-learn is not installed, so the photo set has 6 photos, not 8, and its own floor "
              "(pip install -e \".[bench]\" for the full set)", file=sys.stderr)
        return out
    bunch = load_sample_images()
    for path, image in zip(bunch.filenames, bunch.images):
        out.append((Path(path).stem, "scikit-learn", np.asarray(image)[..., :3]))
    return out


def set_name(names: list[str]) -> str:
    return f"wheel photos ({len(names)}: {', '.join(names)})"


def write(folder: str | Path) -> list[dict[str, object]]:
    """Write the set as PNG files into ``folder``; returns a record per photo."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for name, package, image in photos():
        path = folder / f"{name}.png"
        if not path.is_file():
            tmp = folder / f".{name}.png.tmp"
            Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(tmp, format="PNG")
            tmp.replace(path)
        records.append({"name": name, "package": package, "file": path.name,
                        "height": int(image.shape[0]), "width": int(image.shape[1])})
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write the photos into")
    args = parser.parse_args(argv)
    for r in write(args.out):
        print(f"{r['file']}  {r['width']}x{r['height']}  ({r['package']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
