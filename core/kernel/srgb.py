"""The constants of sRGB (D65) and CIE L*a*b*, shared by the two Lab conversions: the torch one
(:mod:`colorkit.kernel.color`, training and the PyTorch backend) and the NumPy one
(:mod:`colorkit.kernel.color_numpy`, the ONNX Runtime backend, which must run without PyTorch).

The values are those of ``skimage.color`` (sRGB primaries, D65 white point for the 2 degree
observer). This module imports nothing, so either conversion can use it.
"""

from __future__ import annotations

# Linear sRGB -> XYZ (D65), as in skimage.color.colorconv.xyz_from_rgb.
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
WHITE_D65 = (0.95047, 1.0, 1.08883)

EPS = 216.0 / 24389.0  # (6/29)^3
KAPPA = 24389.0 / 27.0
