"""Dataset ``places365``: Places365-Standard, the official small-image (256 x 256) release.

Layout under ``root`` (``--data-root``), as the official archives extract::

    places365_train_standard.txt    lines "/a/airfield/00000001.jpg 0"  (1,803,460 lines)
    places365_val.txt               lines "Places365_val_00000001.jpg 165"  (36,500 lines)
    categories_places365.txt        lines "/a/airfield 0" (optional: category names)
    data_256/a/airfield/00000001.jpg ...      (torchvision's name data_256_standard/ also works)
    val_256/Places365_val_00000001.jpg ...

A missing part is extracted from the official archive in ``root`` when it is there
(``filelist_places365-standard.tar``, ``train_256_places365standard.tar``, ``val_256.tar``;
safely, see :func:`colorkit.kernel.download.safe_extract`), or, with ``download=true``, downloaded
from the official address first and checked against its published MD5. Only what a split needs
is fetched, when the split is first used (the train archive is 24 GB; val is 0.5 GB).

The ``cache`` option is not used: archives are extracted into ``root``, beside them, as
torchvision does (a read-only root with archives only is a one-line error saying so).

Splits: ``train`` and ``val`` come from the official training files (``val`` is a seeded choice
of ``val_size`` of them, 5,000 by default, never trained on); ``test`` is the official validation
set (36,500 images), which the paper and most colorization papers report on. ``categories`` keeps
some categories only (names as in ``categories_places365.txt``, with or without the letter
folder, or indices; ``val`` is then carved from those categories' training files), ``limit``
keeps a seeded random subset of at most that many images per split.

The 1.8-million-line train index is read with numpy, not as Python strings: the file's bytes
stay in one uint8 array, and each line is two int32 offsets and an int16 label (about 75 MB kept,
under 200 MB at the peak while parsing, under a second; ``benchmarks/places_index.py`` measures it).

Bad images: 1.8 million files are too many to open when loading, so images are decoded as they
are read (:class:`colorkit.plugins._images.LazySplit`): an unusable file (missing, empty,
unreadable, grayscale, too small or too large) is replaced by the next good image of the split,
never read again, counted in a status byte shared with loader workers, and reported in one line
at the end of the epoch (``split.end_epoch()``) or at exit. When a split has at most
``precheck`` images (e.g. after ``limit`` or ``categories``), every file's header is also
checked when loading, and what that finds is reported at once (``dataset.reports[split]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt
from colorkit.plugins._image_options import ImageDataOptions


@dataclass(frozen=True)
class Places365Options(ImageDataOptions):
    size: int = opt(256, "working size in pixels (the small-image release is 256x256)")
    download: bool = opt(False, "download the official archives a split needs into root (MD5-verified) when they are missing")
    categories: list[str] = opt([], "keep only these categories: names (airfield, a/airfield) or indices 0..364; empty: all")
    random_crop: bool = opt(True, "random square crops for training where an image is not square (evaluation: centre crops)")
    precheck: int = opt(20000, "check every file's header at load time when a split has at most this many images (0: never)")
    val_size: int = opt(5000, "training files held out as the val split (a seeded choice, by seed; never trained on); the official validation set is the test split")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_size < 1:
            raise ValueError("dataset.val_size must be at least 1 (the val split is what training validates on)")
        if self.precheck < 0:
            raise ValueError("dataset.precheck must be >= 0")


@colorkit.hookimpl
def register_datasets(register):
    register("places365", "colorkit.plugins.places365_data:Places365", options=Places365Options,
             description="Places365-Standard 256x256 from the official index files and folders or .tar archives; download=true fetches them")
