"""Generator ``unet``: the U-Net of Nazeri & Ng (2018), section 3.1 (baseline) and 3.2 (GAN).

``depth`` encoding units, each two 3x3 conv + batch norm + activation, then 2x2 max pool with
channels doubling; ``depth`` mirrored decoding units, each upsampling x2, a 2x2 conv halving the
channels, concatenation with the encoder activation of the same resolution, then two 3x3 conv +
batch norm + ReLU; a final 1x1 conv to 3 (L*a*b*) or 2 (a*b*) channels (optionally started at
zero, ``zero_out``: a*b* = 0 is the "no colour" floor, the point every result is judged against).
``fold`` > 1 runs the network on pixel blocks folded into channels (a cheaper network per image).
``ab_gain`` scales the predicted a*b* outside training (a calibration chosen on val, not learned).
``output=bins`` classifies colour instead (Zhang et al. 2016): logits over quantised a*b* cells in
training, their annealed mean (``temperature``) outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class UNetOptions:
    base: int = opt(64, "channels of the first encoding unit (doubling after each pool)")
    depth: int = opt(5, "number of encoding units (and of decoding units); sides must be multiples of 2^depth")
    encoder_act: Literal["relu", "leaky_relu"] = opt(
        "leaky_relu", "encoder activation: relu (the paper's L2 baseline) or leaky_relu 0.2 (the GAN)"
    )
    output: Literal["ab", "lab", "bins"] = opt(
        "ab", "predict a*b* and reuse the input L, all of L*a*b* (the paper), or bins: logits over the 261 "
        "in-gamut a*b* cells of side 10 (Zhang et al. 2016; train with loss bins_ce, or a colour loss on their "
        "mean), decoded to a*b* by the annealed mean at gen.temperature outside training"
    )
    out_act: Literal["tanh", "none"] = opt("tanh", "output activation (the authors' code: tanh)")
    upsample: Literal["nearest", "bilinear"] = opt("nearest", "upsampling before each decoder's 2x2 conv")
    pad: Literal["replicate", "zeros", "reflect"] = opt(
        "replicate", "the one-pixel padding (right and bottom) before each decoder's 2x2 conv: replicate (the "
        "edge pixel again; torch.compile cannot differentiate it on the CPU in torch 2.14), zeros or reflect"
    )
    fold: Literal[1, 2, 4] = opt(
        1, "fold each fold x fold block of pixels into channels before the first unit (pixel unshuffle) and "
        "unfold the output conv's channels back (pixel shuffle): the units work at 1/fold of the image's side, "
        "a cheaper network per image (fold 2 at base 32, depth 2, the widths of base 16, depth 3 less the "
        "full-size unit, made 1.4x the steps per CPU-minute on CIFAR-10); 1 is the paper's"
    )
    zero_out: bool = opt(
        False, "start the output conv at zero (kept by train.init=he): with output=ab, step 0 predicts "
        "a* = b* = 0, exactly the 'no colour' floor, and training moves away from it (output=bins: zero weights "
        "and the broadest cell distribution whose mean is grey, so step 0 predicts a* = b* = 0 at T = 1)"
    )
    ab_gain: float = opt(
        1.0, "multiply the predicted a*b* by this in eval mode (validation, eval, colorize, export; training "
        "steps never see it): an L1 or L2 regression predicts median colours, duller than the truth, and a "
        "gain above 1 trades per-pixel error for colourfulness; choose it on val"
    )

    bins_stride: Literal[1, 2, 4] = opt(
        2, "with output=bins: the cell logits are predicted at 1/stride of the image side (the last decoder's "
        "features average-pooled), their decoded a*b* upsampled bilinearly: the 261-way head, softmax and "
        "cross-entropy cost stride^2 less (Zhang et al.: 4)"
    )
    temperature: float = opt(
        0.38, "with output=bins: the annealed-mean temperature T of the decode outside training, softmax(logits/T) "
        "weighting the cells' centres (1: the mean, greyish; towards 0: the mode, vivid; Zhang et al.: 0.38); "
        "choose it on val"
    )

    prior_correction: float = opt(
        0.0, "with output=bins: subtract this times the log of the class-rebalancing weights bins_ce trained with "
        "(kept in the model) from the logits before decoding (logit adjustment): 0 decodes the rebalanced "
        "distribution (vivid, lower PSNR), 1 the data's own (the posterior mean at T = 1: greyer, higher PSNR); "
        "choose it on val with the temperature"
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior_correction <= 1.0:
            raise ValueError("gen.prior_correction must be between 0 and 1")
        if not 0.01 <= self.temperature <= 10:
            raise ValueError("gen.temperature must be between 0.01 and 10")
        if self.base < 1:
            raise ValueError("gen.base must be at least 1")
        if not 1 <= self.depth <= 8:
            raise ValueError("gen.depth must be between 1 and 8")
        if not 0 < self.ab_gain <= 4:
            raise ValueError("gen.ab_gain must be above 0 and at most 4")


@colorkit.hookimpl
def register_generators(register):
    register(
        "unet",
        "colorkit.plugins.unet_model:UNet",
        options=UNetOptions,
        description="U-Net of Nazeri & Ng 2018 (sec. 3.1): 2x2 max pool, upsample + 2x2 conv, skips",
    )
