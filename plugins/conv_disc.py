"""Discriminator ``conv``: the convolutional classifier of Nazeri & Ng (2018), section 3.2.

Input: the grayscale condition concatenated with a colour image (L + L*a*b*, 4 channels).
``depth`` blocks of 3x3 conv, batch norm, LeakyReLU 0.2, dropout 0.2 and 2x2 max pool, channels
doubling; then a 3x3 conv to one channel. ``spectral_norm`` (off in the paper) bounds each conv's
largest singular value to 1. With ``depth = log2(size)`` the output is a single
logit (the paper's CIFAR-10 setting: 32 px, depth 5); a shallower stack gives a patch map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import colorkit
from colorkit.kernel.interfaces import Discriminator
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


class ConvDiscriminator(Discriminator):
    """Conditional conv classifier: (3x3 conv, BN, LeakyReLU 0.2, dropout 0.2, max pool) x depth."""

    def __init__(self, options: ConvDiscOptions) -> None:
        super().__init__()
        self.options = options
        self.size_multiple = 2**options.depth
        layers: list[nn.Module] = []
        cin = 4
        for i in range(options.depth):
            cout = min(options.base * 2**i, options.max_channels)
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1, bias=not options.batch_norm),
                nn.BatchNorm2d(cout) if options.batch_norm else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Dropout(options.dropout),
                nn.MaxPool2d(2, 2),
            ]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        if options.spectral_norm:
            layers = [nn.utils.parametrizations.spectral_norm(m) if isinstance(m, nn.Conv2d) else m
                      for m in layers]
        self.net = nn.Sequential(*layers)

    def forward(self, l: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # noqa: E741
        h, w = l.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"discriminator 'conv' with depth {self.options.depth} needs sides that are multiples "
                f"of {m} (got {h}x{w}); set disc.depth lower"
            )
        return self.net(torch.cat((l, lab), dim=1))


@colorkit.hookimpl
def register_discriminators(register):
    register(
        "conv",
        ConvDiscriminator,
        options=ConvDiscOptions,
        description="conv classifier of Nazeri & Ng 2018 (sec. 3.2), conditioned on L",
    )
