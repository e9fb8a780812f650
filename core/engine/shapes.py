"""The geometry of any-size colorization, shared by the PyTorch and the ONNX Runtime backends:
the working shape a model runs at, and the band of rows full-resolution work is done in. Plain
Python, so the ONNX Runtime backend imports no torch.
"""

from __future__ import annotations

import math

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
