"""Dataset ``imagefolder``: any folder of photos (searched recursively), or a tar archive of one.

Splits ``train``, ``val`` (model selection: in-training validation, the plateau schedule, the
best checkpoint) and ``test`` (what ``colorkit eval`` and ``bench`` report):

* split folders: when ``root`` has ``train/``, its other split folders are used as they are:
  ``val/`` (or ``valid/``, ``validation/``) and ``test/``. A split without a folder is carved
  from ``train/`` as below (e.g. only ``train/`` and ``test/``: ``val`` comes from ``train/``);
* otherwise every image under ``root`` (or under ``train/``) is assigned by a seeded hash of its
  relative path: to ``val`` with probability ``val_fraction``, to ``test`` with probability
  ``test_fraction``, else to ``train``. The assignment is the same on every machine and run, and
  adding photos never moves an existing photo to another split. Each split gets at least one
  image when there are three or more.

Images are files with an image suffix (``.jpg``, ``.png``, ``.webp`` ...; any case); hidden
files and folders (``.DS_Store``, ``._photo.jpg`` from macOS, ``.cache/``) are ignored. A tar
archive (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``) is extracted safely once
into the cache folder (``cache`` option) and read from there; a single top folder inside it is
entered.

Every image is resized so its shorter side is ``size`` and cropped to a square: centred for
evaluation, at a random position for training (``random_crop``), plus random horizontal flips
(``flip``). JPEGs are decoded at a reduced scale when that is enough (PIL ``draft``).

Decoded once: with the cache on (``cache``), each split is decoded the first time it is asked
for, at the working size, into the cache folder, and later runs map it from there (a fraction
of a second per thousand photos): training splits keep each whole photo with its shorter side
at ``size`` (the same draft decoding and bilinear resampling as reading the files), so random
crops and flips still differ at every read; evaluation splits keep the centre crops, the very
pixels that reading the files gives. The cache is keyed by the list of files with their sizes
and modification times, and by the options that choose or change them (``size``, ``keep_gray``,
``min_side``, ``limit``, ``seed`` ...): a changed, added or removed photo decodes the split again
(and the stale copy is deleted). Splits larger than
``cache_gb`` (estimated), and every split when the cache is off, are decoded as they are read
(:class:`colorkit.plugins._images.LazySplit`), as are the few images ``colorkit eval --limit``
asks for before the split is cached.

Bad images: at load time every zero-byte file is known from the listing, and when a split has at
most ``precheck`` images every file's header is opened too (about 0.1 ms each), which finds
non-images, grayscale-mode files, tiny and oversized images before training; the result is
printed once and kept in ``dataset.reports[split]``. What only decoding can find (truncated data,
RGB files that are grayscale) is replaced by the next good image, counted in a status byte
shared with loader workers, and reported in one line by ``split.end_epoch()`` or at exit (a
cached split knows every image's status from the start).
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt
from colorkit.plugins._image_options import MIN_SIDE, ImageDataOptions


@dataclass(frozen=True)
class ImageFolderOptions(ImageDataOptions):
    size: int = opt(256, "working size in pixels: shorter side resized to it, then a square crop")
    val_fraction: float = opt(0.1, "share of the images held out as val (model selection) where there is no val/ folder")
    test_fraction: float = opt(0.1, "share of the images held out as test (reported results) where there is no test/ folder")
    random_crop: bool = opt(True, "random square crops for training (evaluation: centre crops)")
    min_side: int = opt(MIN_SIDE, "skip images whose shorter side is below this many pixels")
    precheck: int = opt(20000, "check every file's header at load time when a split has at most this many images (0: never)")
    cache_gb: float = opt(8.0, "decode each split once at the working size into the cache folder when that takes at most "
                               "this many GB (estimated as 3 x size x size bytes a photo, x1.5 for training's whole "
                               "photos); larger splits are decoded as they are read; 0: always as read")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.val_fraction < 1.0 or not 0.0 < self.test_fraction < 1.0:
            raise ValueError("dataset.val_fraction and dataset.test_fraction must be between 0 and 1")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(f"dataset.val_fraction + dataset.test_fraction = {self.val_fraction + self.test_fraction:g} "
                             "leaves nothing to train on; keep their sum below 1")
        if self.min_side < 1:
            raise ValueError("dataset.min_side must be at least 1")
        if self.precheck < 0:
            raise ValueError("dataset.precheck must be >= 0")
        if not self.cache_gb >= 0:
            raise ValueError("dataset.cache_gb must be >= 0")


@colorkit.hookimpl
def register_datasets(register):
    register("imagefolder", "colorkit.plugins.imagefolder_data:ImageFolder", options=ImageFolderOptions,
             description="any folder (recursive) or tar archive of photos, seeded train/val/test split or split folders, at --set dataset.size")
