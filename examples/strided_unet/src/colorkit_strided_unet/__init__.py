"""colorkit plugin: the strided-convolution U-Net and the PatchGAN-style discriminator.

The paper (Nazeri & Ng 2018) names strided convolutions as its next step; its authors' code
(ImagingLab/Colorizing-with-GANs) already uses them: 4x4 stride-2 convolutions down, 4x4 stride-2
transposed convolutions up. This package registers them through colorkit's public hooks only:

* generator ``strided_unet`` (:class:`StridedUNet`, options :class:`StridedUNetOptions`);
* discriminator ``patch`` (:class:`PatchDiscriminator`, options :class:`PatchOptions`).

colorkit finds this module through the ``colorkit`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

import colorkit

from colorkit_strided_unet.discriminator import PatchDiscriminator, PatchOptions
from colorkit_strided_unet.generator import StridedUNet, StridedUNetOptions

__version__ = "0.1.0"
__all__ = ["PatchDiscriminator", "PatchOptions", "StridedUNet", "StridedUNetOptions"]


@colorkit.hookimpl
def register_generators(register):
    register(
        "strided_unet",
        StridedUNet,
        options=StridedUNetOptions,
        description="U-Net: 4x4 stride-2 convs down, transposed convs up, skips (authors' code)",
    )


@colorkit.hookimpl
def register_discriminators(register):
    register(
        "patch",
        PatchDiscriminator,
        options=PatchOptions,
        description="PatchGAN: 4x4 stride-2 convs on (L, L*a*b*) to a map of logits",
    )
