"""The network of the ``unet`` generator (its options and registration are in :mod:`colorkit.plugins.unet`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorkit.kernel import abbins
from colorkit.kernel.interfaces import Generator, keep_init
from colorkit.plugins.unet import UNetOptions


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True) if kind == "leaky_relu" else nn.ReLU(inplace=True)


def _double_conv(cin: int, cout: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        _act(act),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        _act(act),
    )


class _Up(nn.Module):
    """Upsample x2, then a 2x2 conv (asymmetric 'same' padding) that halves the channels."""

    def __init__(self, cin: int, mode: str, pad: str = "replicate") -> None:
        super().__init__()
        self.mode, self.pad = mode, ("constant" if pad == "zeros" else pad)
        self.conv = nn.Conv2d(cin, cin // 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode=self.mode)
        return self.conv(F.pad(x, (0, 1, 0, 1), mode=self.pad))


class UNet(Generator):
    """The paper's U-Net (5 encoding / 5 decoding units, 2x2 max pool, skip concatenation)."""

    def __init__(self, options: UNetOptions) -> None:
        super().__init__()
        self.options = options
        self.bins = options.output == "bins"
        self.output_space = "ab" if self.bins else options.output
        self.training_output = "ab_bins" if self.bins else "colour"
        self.size_multiple = 2**options.depth * options.fold
        widths = [options.base * 2**i for i in range(options.depth)]
        self.encoders = nn.ModuleList()
        cin = options.fold**2
        for w in widths:
            self.encoders.append(_double_conv(cin, w, options.encoder_act))
            cin = w
        self.pool = nn.MaxPool2d(2, 2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        # Decoding unit i (deepest first) takes `cin` channels, halves them, concatenates the
        # mirrored encoder activation (widths[i]) and returns half of what it took.
        for w in reversed(widths):
            self.ups.append(_Up(cin, options.upsample, options.pad))
            self.decoders.append(_double_conv(cin // 2 + w, cin // 2, "relu"))
            cin = cin // 2
        channels = {"lab": 3, "ab": 2, "bins": abbins.count()}[options.output]
        self.head = nn.Conv2d(cin, channels * options.fold**2, 1)
        if options.zero_out:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            if self.bins:  # the broadest distribution over the cells with mean a*b* = 0
                with torch.no_grad():
                    self.head.bias.copy_(abbins.grey_logits().repeat_interleave(options.fold**2))
            keep_init(self.head)
        self.out_act = nn.Tanh() if options.out_act == "tanh" else nn.Identity()
        if self.bins:  # log of the rebalancing weights bins_ce trained with (gen.prior_correction)
            self.register_buffer("cell_log_weight", torch.zeros(channels))

    def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        self.check_input_size(l.shape[-2], l.shape[-1])
        skips = []
        fold = self.options.fold
        x = F.pixel_unshuffle(l, fold) if fold > 1 else l
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat((up(x), skip), dim=1))
        stride = self.options.bins_stride if self.bins else 1
        x = self.head(F.avg_pool2d(x, stride) if stride > 1 else x)
        x = F.pixel_shuffle(x, fold) if fold > 1 else x
        if self.bins:
            if self.training:
                return x  # the logits bins_ce trains on
            x = x - self.options.prior_correction * self.cell_log_weight.repeat_interleave(fold**2).view(1, -1, 1, 1)
            out = self._upsample(abbins.annealed_mean(x, self.options.temperature))
        else:
            out = self.out_act(x)
        gain = self.options.ab_gain
        if gain == 1.0 or self.training:
            return out
        out = torch.cat((out[:, :-2], out[:, -2:] * gain), dim=1)  # a*, b*: the last two channels
        return out.clamp(-1, 1) if self.options.out_act == "tanh" or self.bins else out

    def adopt_class_weights(self, weights: torch.Tensor) -> None:
        if self.bins:
            self.cell_log_weight.copy_(weights.to(self.cell_log_weight).log())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # files written before the buffer existed: no correction is known
        if self.bins and prefix + "cell_log_weight" not in state_dict:
            state_dict[prefix + "cell_log_weight"] = torch.zeros_like(self.cell_log_weight)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """With output=bins: the mean a*b* of the predicted distribution (T = 1, differentiable)."""
        return self._upsample(abbins.annealed_mean(out)) if self.bins else out

    def _upsample(self, ab: torch.Tensor) -> torch.Tensor:
        stride = self.options.bins_stride
        return F.interpolate(ab, scale_factor=float(stride), mode="bilinear", align_corners=False) if stride > 1 else ab
