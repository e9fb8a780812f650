"""colorkit plugin: the strided-convolution U-Net and the PatchGAN-style discriminator.

The paper (Nazeri & Ng 2018) names strided convolutions as its next step; its authors' code
(ImagingLab/Colorizing-with-GANs) already uses them: 4x4 stride-2 convolutions down, 4x4 stride-2
transposed convolutions up. This package registers them through colorkit's public hooks only:

* generator ``strided_unet`` (:class:`~colorkit_strided_unet.generator.StridedUNet`, options
  :class:`~colorkit_strided_unet.options.StridedUNetOptions`);
* discriminator ``patch`` (:class:`~colorkit_strided_unet.discriminator.PatchDiscriminator`,
  options :class:`~colorkit_strided_unet.options.PatchOptions`).

colorkit finds this module through the ``colorkit`` entry point in ``pyproject.toml`` and imports
it whenever it starts, ``colorkit list`` included. So it holds only what registering needs, the
options and the hooks, and imports no torch: each network is registered by reference
(``"module:class"``), and colorkit imports its module the first time it builds one.
"""

from __future__ import annotations

import colorkit

from colorkit_strided_unet.options import PatchOptions, StridedUNetOptions

__version__ = "0.1.0"
__all__ = ["PatchOptions", "StridedUNetOptions"]


@colorkit.hookimpl
def register_generators(register):
    register(
        "strided_unet",
        "colorkit_strided_unet.generator:StridedUNet",
        options=StridedUNetOptions,
        description="U-Net: 4x4 stride-2 convs down, transposed convs up, skips (authors' code)",
    )


@colorkit.hookimpl
def register_discriminators(register):
    register(
        "patch",
        "colorkit_strided_unet.discriminator:PatchDiscriminator",
        options=PatchOptions,
        description="PatchGAN: 4x4 stride-2 convs on (L, L*a*b*) to a map of logits",
    )
