"""The options every file-based dataset plugin shares (``root``, ``size``, ``limit``, ``seed``,
``flip``, ``keep_gray``, ``cache`` ...), apart from the code that reads images, so that a plugin
module holding only options and registrations imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from colorkit.kernel.options import opt

#: Images with a shorter side below this many pixels are skipped (``too small``).
MIN_SIDE = 8


@dataclass(frozen=True)
class ImageDataOptions:
    """Options every file-based dataset takes, in the same way."""

    root: str | None = opt(None, "where the data is (--data-root PATH)")
    size: int = opt(64, "working size in pixels: shorter side resized to it, then a square crop")
    limit: int | None = opt(None, "at most this many images per split (a seeded random subset)")
    seed: int = opt(0, "seed of the subset chosen by limit (and of any train/val split)")
    flip: bool = opt(True, "random horizontal flips for training (the authors' code); evaluation data is never augmented")
    keep_gray: bool = opt(False, "keep images that are already grayscale (the authors' code skips them)")
    cache: str = opt("auto", "folder for decoded arrays and extracted archives; auto: $COLORKIT_CACHE or ~/.cache/colorkit; off: none")

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("dataset.size must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("dataset.limit must be at least 1 (or none)")
