"""Discriminator ``patch``: PatchGAN-style, as in the authors' code and pix2pix.

Input: the grayscale condition L concatenated with a normalised L*a*b* image (4 channels).
One 4x4 convolution per entry of ``widths``: every one but the last has stride 2, the last
stride 1; each is followed by batch norm (not on the first layer), LeakyReLU 0.2 and optional
dropout. A final 4x4 stride-1 convolution gives one channel: a map of logits, one per patch
(``B x 1 x S/2^(n-1) x S/2^(n-1)`` for ``n`` widths). The sigmoid belongs to the loss.

The authors' code flattens the last map into one dense logit; a patch map of logits is the
PatchGAN variant the brief asks for and works at any image size that is a multiple of
``2^(n-1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from colorkit.kernel.interfaces import Discriminator
from colorkit_strided_unet.layers import conv4
from colorkit_strided_unet.options import PatchOptions


class PatchDiscriminator(Discriminator):
    """4x4 convolutions (stride 2, then 1) to a patch map of logits, conditioned on L."""

    def __init__(self, options: PatchOptions) -> None:
        super().__init__()
        self.options = options
        self.size_multiple = 2 ** (len(options.widths) - 1)
        layers: list[nn.Module] = []
        cin = 4
        last = len(options.widths) - 1
        for i, w in enumerate(options.widths):
            bn = options.batch_norm and i > 0
            layers += [
                *conv4(cin, w, 1 if i == last else 2, bias=not bn),
                nn.BatchNorm2d(w) if bn else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            if options.dropout > 0:
                layers.append(nn.Dropout(options.dropout))
            cin = w
        layers += list(conv4(cin, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, l: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # noqa: E741
        h, w = l.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"discriminator 'patch' with {len(self.options.widths)} widths needs sides that are "
                f"multiples of {m} (got {h}x{w}); use fewer disc.widths"
            )
        return self.net(torch.cat((l, lab), dim=1))
