"""Tests of the plugin, written as any plugin author would: with colorkit.kernel.testing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import colorkit_strided_unet
from colorkit.kernel.errors import OptionError
from colorkit.kernel.testing import check_discriminator, check_generator, check_plugin
from colorkit_strided_unet.discriminator import PatchDiscriminator
from colorkit_strided_unet.generator import StridedUNet
from colorkit_strided_unet.options import PatchOptions, StridedUNetOptions

SMALL = {
    "strided_unet": {"encoder_widths": [8, 16, 32], "decoder_widths": [16, 8]},
    "patch": {"widths": [8, 16, 16]},
}


def test_the_plugin_honours_colorkits_contracts(tmp_path):
    components = check_plugin(colorkit_strided_unet, tmp_path, options=SMALL)
    assert {(c.kind, c.name) for c in components} == {("generator", "strided_unet"), ("discriminator", "patch")}


def test_the_default_networks_honour_the_contracts():
    # The defaults are the authors' CIFAR-10 networks: sides must be multiples of 16 and 8.
    gen = StridedUNet(StridedUNetOptions())
    assert gen.size_multiple == 16
    check_generator(gen, size=16)
    disc = PatchDiscriminator(PatchOptions())
    check_discriminator(disc, size=32)
    assert disc(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32)).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("first_stride", [1, 2])
@pytest.mark.parametrize("output", ["ab", "lab"])
def test_generator_variants(first_stride, output):
    enc = (8, 16, 32)
    dec = (16, 8) if first_stride == 1 else (16, 8, 8)
    gen = StridedUNet(StridedUNetOptions(encoder_widths=enc, decoder_widths=dec, first_stride=first_stride, output=output))
    assert gen.size_multiple == 2 ** len(dec)
    check_generator(gen, size=16)


def test_layers_are_the_authors_4x4_strided_convs():
    gen = StridedUNet(StridedUNetOptions(encoder_widths=(8, 16, 32), decoder_widths=(16, 8)))
    convs = [m for m in gen.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(4, 4)] * 3
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (2, 2)]
    # No batch norm on the first encoder layer, batch norm and LeakyReLU 0.2 on the others.
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gen.encoder[0].modules())
    for unit in gen.encoder[1:]:
        assert any(isinstance(m, nn.BatchNorm2d) for m in unit.modules())
    assert all(m.negative_slope == 0.2 for m in gen.encoder.modules() if isinstance(m, nn.LeakyReLU))
    ups = [m for m in gen.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.kernel_size, u.stride) for u in ups] == [((4, 4), (2, 2))] * 2
    assert sum(isinstance(m, nn.ReLU) for m in gen.decoder.modules()) == 2
    assert isinstance(gen.head[-1], nn.Tanh)


def test_skip_connections_carry_the_encoder_activations():
    gen = StridedUNet(StridedUNetOptions(encoder_widths=(8, 16, 32), decoder_widths=(16, 8)))
    # Decoder unit j takes the previous decoder output joined with the mirrored encoder activation.
    assert gen.decoder[0][0].in_channels == 32
    assert gen.decoder[1][0].in_channels == 16 + 16
    head = [m for m in gen.head.modules() if isinstance(m, nn.Conv2d)][0]
    assert head.in_channels == 8 + 8


def test_tanh_keeps_the_output_in_range():
    gen = StridedUNet(StridedUNetOptions(encoder_widths=(8, 16), decoder_widths=(8,))).eval()
    with torch.no_grad():
        out = gen(torch.rand(1, 1, 8, 8) * 2 - 1)
    assert out.abs().max() <= 1


def test_patch_discriminator_gives_a_map_of_logits_from_four_channels():
    disc = PatchDiscriminator(PatchOptions(widths=(8, 16, 32)))
    first = [m for m in disc.modules() if isinstance(m, nn.Conv2d)][0]
    assert first.in_channels == 4 and first.kernel_size == (4, 4) and first.stride == (2, 2)
    assert disc(torch.zeros(3, 1, 64, 64), torch.zeros(3, 3, 64, 64)).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="multiples of 4"):
        disc(torch.zeros(1, 1, 18, 18), torch.zeros(1, 3, 18, 18))


def test_options_are_typed_and_checked():
    from colorkit.kernel.registry import build_registry

    reg = build_registry(autoload=False, extra_plugins=[colorkit_strided_unet])
    comp = reg.get("generator", "strided_unet")
    # Values from --set arrive as strings and are converted to the declared types.
    opts = comp.make_options({"encoder_widths": "8,16,32", "decoder_widths": "16,8", "first_stride": "1"})
    assert opts.encoder_widths == (8, 16, 32) and opts.first_stride == 1
    with pytest.raises(OptionError, match="one width per stride-2 encoder conv"):
        comp.make_options({"decoder_widths": "16,8"})
    with pytest.raises(OptionError, match="gen.first_stride"):
        comp.make_options({"first_stride": "3"})
    with pytest.raises(OptionError, match="did you mean 'gen.encoder_widths'"):
        comp.make_options({"encoder_width": "8,16"})
