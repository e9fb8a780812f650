"""Splits decoded once into the cache, for the file-based dataset plugins (imagefolder).

:class:`PackedSplit` serves images of any shape decoded once at the working size into the cache
(:class:`PackedImages`, :func:`decode_packed`), memory-mapped from there; everything else about
reading a split (bad images, reports, the cache folders) is :mod:`colorkit.plugins._images`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorkit.kernel.errors import ColorkitError
from colorkit.kernel.progress import progress_bar
from colorkit.plugins._decode import decode_image
from colorkit.plugins._image_options import MIN_SIDE
from colorkit.plugins._images import LazySplit, PathTable, load_cache


class PackedImages:
    """Images of different shapes decoded once, in one flat ``uint8`` buffer: image ``i`` is
    ``3 x h x w`` (channels first) at ``offsets[i]`` with ``shapes[i] = (h, w)`` (``0 x 0`` where
    it could not be used), and ``codes[i]`` is its status code. Written into a cache folder by
    :func:`colorkit.plugins._images.save_cache` (``offsets``, ``shapes``, ``codes`` as ``.npy``, the pixels as the raw
    file ``pixels.u8``) and memory-mapped from there by :meth:`load`; loader worker processes
    that receive it pickled map the folder again instead of copying the pixels."""

    PIXELS = "pixels.u8"
    ARRAYS = ("offsets", "shapes", "codes")

    def __init__(self, pixels: np.ndarray, offsets: np.ndarray, shapes: np.ndarray, codes: np.ndarray,
                 folder: Path | None = None) -> None:
        self.pixels, self.offsets, self.shapes, self.codes = pixels, offsets, shapes, codes
        self.folder = folder

    @classmethod
    def load(cls, folder: Path, n: int | None = None) -> PackedImages | None:
        """The images cached in ``folder`` (memory-mapped), or ``None`` when absent, damaged or
        not of ``n`` images."""
        hit = load_cache(folder, cls.ARRAYS, mmap=True)
        if hit is None:
            return None
        arrays, meta = hit
        offsets, shapes, codes = (arrays[k] for k in cls.ARRAYS)
        if not (offsets.shape[0] == shapes.shape[0] == codes.shape[0]) or (n is not None and codes.shape[0] != n):
            return None
        path = folder / cls.PIXELS
        try:
            nbytes = path.stat().st_size
            if nbytes != meta.get("pixels_bytes"):
                return None
            pixels = np.memmap(path, dtype=np.uint8, mode="r") if nbytes else np.zeros(0, dtype=np.uint8)
        except (OSError, ValueError):
            return None
        return cls(pixels, offsets, shapes, codes, folder)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.pixels.shape[0])

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as a ``3 x h x w`` view (no copy)."""
        h, w = (int(v) for v in self.shapes[i])
        start = int(self.offsets[i])
        return self.pixels[start : start + 3 * h * w].reshape(3, h, w)

    def __getstate__(self) -> dict[str, Any]:
        if self.folder is not None:  # map the cache again rather than pickle the pixels
            return {"folder": self.folder, "n": len(self)}
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "pixels" in state:
            self.__dict__.update(state)
            return
        again = PackedImages.load(state["folder"], state["n"])
        if again is None:
            raise ColorkitError(f"the decoded cache {state['folder']} is gone or damaged; run again to rebuild it")
        self.__dict__.update(again.__dict__)


def decode_packed(what: str, paths: PathTable, sink: Any, *, size: int, crop: bool, keep_gray: bool,
                  min_side: int = MIN_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode every path at ``size`` (centre ``size x size`` crops, or with ``crop=False`` the
    whole image with its shorter side at ``size``), writing the ``3 x h x w`` pixels one image
    after the other to the binary file ``sink``; returns the ``offsets``, ``shapes`` and
    ``codes`` of :class:`PackedImages`. Progress: ``decoding WHAT``."""
    n = len(paths)
    offsets = np.zeros(n, dtype=np.int64)
    shapes = np.zeros((n, 2), dtype=np.int32)
    codes = np.zeros(n, dtype=np.uint8)
    pos = 0
    with progress_bar() as bar:
        task = bar.add_task(f"decoding {what}", total=n)
        for i in range(n):
            arr, code = decode_image(paths[i], keep_gray=keep_gray, size=size, crop=crop, min_side=min_side)
            codes[i], offsets[i] = code, pos
            if arr is not None:
                h, w = arr.shape[:2]
                shapes[i] = (h, w)
                sink.write(np.ascontiguousarray(arr.transpose(2, 0, 1)).tobytes())
                pos += 3 * h * w
            if (i + 1) % 250 == 0:
                bar.update(task, completed=i + 1)
        bar.update(task, completed=n)
    return offsets, shapes, codes


class PackedSplit(LazySplit):
    """A split decoded once at the working size (:class:`PackedImages`, memory-mapped from the
    cache): the status of every image is known from the start, and a bad one is replaced by the
    next good one, as :class:`LazySplit` does (same length, same report and ``end_epoch``).
    Whole images (``crop=False``) give training a random ``size x size`` crop (``random_crop``)
    and a random flip (``flip``), both drawn from torch's random stream; square images (centre
    crops) are served as they are, flipped for training."""

    @classmethod
    def of(cls, where: str, paths: PathTable, images: PackedImages, options: Any, train: bool) -> PackedSplit:  # type: ignore[override]
        return cls(where, paths, images, size=options.size, train=train, flip=options.flip,
                   random_crop=options.random_crop, keep_gray=options.keep_gray,
                   min_side=getattr(options, "min_side", MIN_SIDE))

    def __init__(self, where: str, paths: PathTable, images: PackedImages, *, size: int, train: bool,  # type: ignore[override]
                 flip: bool, random_crop: bool, keep_gray: bool, min_side: int = MIN_SIDE) -> None:
        if len(images) != len(paths):
            raise ValueError("one decoded image per path is needed")
        status = torch.from_numpy(np.array(images.codes, dtype=np.uint8)).share_memory_()
        super().__init__(where, paths, status, size=size, train=train, flip=flip, random_crop=random_crop,
                         keep_gray=keep_gray, min_side=min_side)
        self.images = images

    def read(self, j: int) -> torch.Tensor:
        """Image ``j`` cut from its decoded copy (flips are the caller's)."""
        img = self.images.image(j)
        _, h, w = img.shape
        s = self.size
        if self.random_crop:  # the draws of decode_image's random crop, in its order
            x0 = int(torch.randint(0, w - s + 1, ()).item()) if w > s else 0
            y0 = int(torch.randint(0, h - s + 1, ()).item()) if h > s else 0
        else:
            x0, y0 = (w - s) // 2, (h - s) // 2
        return torch.from_numpy(np.array(img[:, y0 : y0 + s, x0 : x0 + s]))  # a copy, off the read-only map
