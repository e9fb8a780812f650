"""The geometry of any-size colorization, shared by the PyTorch and the ONNX Runtime backends:
the working shape a model runs at, the largest working size, and the band of rows
full-resolution work is done in. Plain Python, so the ONNX Runtime backend imports no torch.
"""

from __future__ import annotations

import math
from typing import Any

from colorkit.kernel.errors import UsageError

# Full-resolution L* and colour conversion go in bands of about this many pixels (bounded memory).
CHUNK_PIXELS = 1 << 18


def working_shape(height: int, width: int, working_size: int, multiple: int = 1) -> tuple[int, int]:
    """The shape the model runs at for an input of ``height x width``.

    The aspect ratio is kept and the area is about ``working_size**2``; each side is rounded to
    the nearest multiple of ``multiple`` (and is at least ``multiple``).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({height}x{width})")
    m = max(1, int(multiple))
    scale = working_size / math.sqrt(height * width)

    def side(n: int) -> int:
        return max(m, m * round(n * scale / m))

    return side(height), side(width)


#: The largest working size colorkit runs a model at: 2048 pixels on a side, a 4.2-megapixel
#: working image (a model's memory grows with its square: the default U-Net needs a few GB there;
#: far above any training size, where a model gains nothing more).
MAX_WORKING_SIZE = 2048


def check_working_size(value: Any, where: str, hint: str = "") -> int:
    """``value`` as a working size: a whole number of pixels from 1 to :data:`MAX_WORKING_SIZE`.
    Anything else is a one-line :class:`UsageError` that starts with ``where`` (``--size``, or a
    checkpoint and its key) and ends with ``hint``, raised before anything is allocated."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKING_SIZE:
        raise UsageError(f"{where} is {value!r:.40}; a working size is a whole number of pixels, at least 1 "
                         f"and at most {MAX_WORKING_SIZE}{hint}")
    return value
