"""Dataset ``cifar10``: CIFAR-10 (Krizhevsky 2009) as researchers have it on disk.

Layouts found under ``root`` (``--data-root``), in this order; ``root`` may also be the archive
file itself:

1. ``cifar-10-batches-py/`` (or ``root`` is that folder): the official python version,
   extracted: pickled batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch``, each a dict
   with ``b"data"`` (uint8 ``N x 3072``, channel-planar R, G, B rows of 32 px) and ``b"labels"``;
2. ``cifar-10-python.tar.gz``: the same, still archived (read directly, not extracted);
3. ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, as folders (possibly one folder down),
4. or as a ``.tar.gz``/``.tgz``/``.tar`` archive with that layout (possibly nested one folder
   down), e.g. ``cifar10-jpeg.tar.gz``, the JPEG mirror in ``../shared/data``.

With ``download=true`` and none of these present, ``cifar-10-python.tar.gz`` is downloaded from
the official address into ``root`` and its published MD5 checked before use
(:func:`colorkit.kernel.download.download`; an existing archive with a wrong MD5 is downloaded again).

Speed: every image is decoded once, into one ``N x 3 x 32 x 32`` uint8 array per split, which
the training split indexes a batch at a time. Decoded arrays of archives and JPEG folders are
cached (``cache`` option, default ``~/.cache/colorkit`` or ``$COLORKIT_CACHE``) under a key made
of the source's path, size and modification time (for folders: of every file), so later runs
start in a fraction of a second. With ``limit`` set and no cache yet, only a seeded random
subset of the split asked for is decoded, and ``head(split, n)`` (``eval --limit N``) decodes
only the first ``n`` images; neither is cached, so a later full read decodes and caches every
file. Decoding shows progress (:mod:`colorkit.kernel.progress`). Other sizes than 32 are resized
once, in torch.

Bad data: the pickled batches are checked for shape and type (a malformed batch is an error
naming the file), and are read with an unpickler that only accepts numpy arrays and plain
types; JPEG files go through :func:`colorkit.plugins._images.decode_image`. Grayscale images
(R = G = B everywhere: 729 of the 60,000 in the JPEG mirror) are skipped unless
``keep_gray=true``. Each split's counts are printed once when it is loaded and kept in
``dataset.reports[split]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt
from colorkit.plugins._image_options import ImageDataOptions


@dataclass(frozen=True)
class Cifar10Options(ImageDataOptions):
    size: int = opt(32, "working size in pixels (CIFAR-10 is 32x32; other sizes are resized once at load)")
    download: bool = opt(False, "download cifar-10-python.tar.gz from the official address into root, MD5-verified, when no data is there")
    val_size: int = opt(5000, "training files held out as the val split (a seeded choice, by seed; never trained on); CIFAR-10's test split stays the test split")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_size < 1:
            raise ValueError("dataset.val_size must be at least 1 (the val split is what training validates on)")


@colorkit.hookimpl
def register_datasets(register):
    register("cifar10", "colorkit.plugins.cifar10_data:Cifar10", options=Cifar10Options,
             description="CIFAR-10 32x32 from the official python archive or train/test JPEG folders (or .tar.gz); download=true fetches it")
