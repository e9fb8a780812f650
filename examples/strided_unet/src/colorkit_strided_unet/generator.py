"""Generator ``strided_unet``: the U-Net of the Colorizing-with-GANs authors' code.

Encoder: one 4x4 convolution per entry of ``encoder_widths``; the first has stride
``first_stride`` (1 in the authors' code, 2 in pix2pix), every other one stride 2. Each is
followed by batch norm (not on the first layer) and LeakyReLU 0.2.

Decoder: one 4x4 stride-2 transposed convolution per entry of ``decoder_widths`` (deepest
first), each followed by batch norm, ReLU and, for the first ``dropout_layers``, dropout; its
output is concatenated with the encoder activation of the same resolution (the skip
connection; with ``first_stride=2`` the last one is joined with the input L instead).

Head: a 4x4 stride-1 convolution to 2 (a*b*) or 3 (L*a*b*) channels and tanh.

With the defaults (the authors' CIFAR-10 generator: encoder 64, 128, 256, 512, 512, decoder
512, 256, 128, 64, dropout 0.5 on the first decoder layer) image sides must be multiples of 16.
One deliberate difference: the authors' code does not join the full-resolution encoder
activation to the last decoder output; this generator does, as U-Nets usually do.
"""

from __future__ import annotations

import torch
from torch import nn

from colorkit.kernel.interfaces import Generator
from colorkit_strided_unet.layers import conv4
from colorkit_strided_unet.options import StridedUNetOptions


def _encoder_unit(cin: int, cout: int, stride: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(
        *conv4(cin, cout, stride, bias=not batch_norm),
        nn.BatchNorm2d(cout) if batch_norm else nn.Identity(),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _decoder_unit(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
    )


class StridedUNet(Generator):
    """U-Net with 4x4 stride-2 convolutions down and 4x4 stride-2 transposed convolutions up."""

    def __init__(self, options: StridedUNetOptions) -> None:
        super().__init__()
        self.options = options
        self.output_space = options.output
        self.size_multiple = 2**options.downsamplings
        enc = options.encoder_widths
        self.encoder = nn.ModuleList(
            _encoder_unit(1 if i == 0 else enc[i - 1], w, options.first_stride if i == 0 else 2, batch_norm=i > 0)
            for i, w in enumerate(enc)
        )
        # The skip joined after decoder unit j: the encoder activation of the same resolution,
        # deepest first, or the input L itself at full resolution when the first conv strides.
        self._skip_channels = list(reversed(enc[:-1])) + ([1] if options.first_stride == 2 else [])
        self.decoder = nn.ModuleList()
        cin = enc[-1]
        for j, w in enumerate(options.decoder_widths):
            p = options.dropout if j < options.dropout_layers else 0.0
            self.decoder.append(_decoder_unit(cin, w, p))
            cin = w + self._skip_channels[j]
        self.head = nn.Sequential(*conv4(cin, 3 if options.output == "lab" else 2, 1), nn.Tanh())

    def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        self.check_input_size(l.shape[-2], l.shape[-1])
        activations = []
        x = l
        for unit in self.encoder:
            x = unit(x)
            activations.append(x)
        skips = list(reversed(activations[:-1])) + ([l] if self.options.first_stride == 2 else [])
        for unit, skip in zip(self.decoder, skips):
            x = torch.cat((unit(x), skip), dim=1)
        return self.head(x)
