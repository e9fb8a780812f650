"""Discriminator ``conv``: the convolutional classifier of Nazeri & Ng (2018), section 3.2.

Input: the grayscale condition concatenated with a colour image (L + L*a*b*, 4 channels).
``depth`` blocks of 3x3 conv, batch norm, LeakyReLU 0.2, dropout 0.2 and 2x2 max pool, channels
doubling; then a 3x3 conv to one channel. ``spectral_norm`` (off in the paper) bounds each conv's
largest singular value to 1. With ``depth = log2(size)`` the output is a single
logit (the paper's CIFAR-10 setting: 32 px, depth 5); a shallower stack gives a patch map.
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class ConvDiscOptions:
    base: int = opt(64, "channels of the first block (doubling after each pool)")
    depth: int = opt(5, "number of conv/pool blocks; sides must be multiples of 2^depth")
    dropout: float = opt(0.2, "dropout after each block's activation")
    max_channels: int = opt(512, "channel cap for deep stacks")
    batch_norm: bool = opt(True, "batch norm after each conv (the paper: yes)")
    spectral_norm: bool = opt(False, "spectral normalisation of every conv's weight (Miyato et al. 2018; "
                                     "the paper: no)")

    def __post_init__(self) -> None:
        if self.base < 1 or self.depth < 1:
            raise ValueError("disc.base and disc.depth must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("disc.dropout must be in [0, 1)")


@colorkit.hookimpl
def register_discriminators(register):
    register(
        "conv",
        "colorkit.plugins.conv_disc_model:ConvDiscriminator",
        options=ConvDiscOptions,
        description="conv classifier of Nazeri & Ng 2018 (sec. 3.2), conditioned on L",
    )
