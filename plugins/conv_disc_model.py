"""The network of the ``conv`` discriminator (its options and registration are in :mod:`colorkit.plugins.conv_disc`)."""

from __future__ import annotations

import torch
from torch import nn

from colorkit.kernel.interfaces import Discriminator
from colorkit.plugins.conv_disc import ConvDiscOptions


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
