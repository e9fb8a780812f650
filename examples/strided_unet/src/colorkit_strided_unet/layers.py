"""Small building blocks shared by the generator and the discriminator."""

from __future__ import annotations

from torch import nn


def conv4(cin: int, cout: int, stride: int, *, bias: bool = True) -> nn.Sequential:
    """A 4x4 convolution with TensorFlow's ``padding="same"``, as in the authors' code.

    Stride 2 halves each (even) side; stride 1 keeps it, padding one pixel before and two after,
    as TensorFlow does for an even kernel.
    """
    if stride == 2:
        return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=bias))
    if stride == 1:
        return nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(cin, cout, 4, stride=1, bias=bias))
    raise ValueError(f"stride must be 1 or 2, got {stride}")

