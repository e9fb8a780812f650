"""The paper's U-Net and conv discriminator, and the losses, checked against sections 3.1-3.2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from colorkit.kernel.interfaces import Prediction
from colorkit.plugins.conv_disc import ConvDiscOptions
from colorkit.plugins.conv_disc_model import ConvDiscriminator
from colorkit.plugins.loss_functions import L1, L2, MinimaxL1, NonSaturatingL1
from colorkit.plugins.losses import AdversarialL1Options, RegressionOptions
from colorkit.plugins.unet import UNetOptions
from colorkit.plugins.unet_model import UNet


def test_unet_structure_follows_section_3_1():
    net = UNet(UNetOptions(base=8, depth=5, output="lab", encoder_act="relu"))
    assert len(net.encoders) == 5 and len(net.decoders) == 5
    convs = [m for m in net.encoders[0] if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3)]
    assert [m.out_channels for m in (e[0] for e in net.encoders)] == [8, 16, 32, 64, 128]
    assert all(isinstance(m, nn.ReLU) for m in net.encoders[0] if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
    assert net.ups[0].conv.kernel_size == (2, 2)
    assert net.ups[0].conv.out_channels == net.ups[0].conv.in_channels // 2
    assert net.head.kernel_size == (1, 1) and net.head.out_channels == 3


def test_gan_generator_uses_leaky_relu_in_the_encoder_only():
    net = UNet(UNetOptions(base=4, depth=2))
    enc_acts = {type(m) for e in net.encoders for m in e if isinstance(m, (nn.ReLU, nn.LeakyReLU))}
    dec_acts = {type(m) for d in net.decoders for m in d if isinstance(m, (nn.ReLU, nn.LeakyReLU))}
    assert enc_acts == {nn.LeakyReLU} and dec_acts == {nn.ReLU}


@pytest.mark.parametrize("output,channels", [("ab", 2), ("lab", 3)])
def test_unet_takes_32px_at_depth_5(output, channels):
    net = UNet(UNetOptions(base=4, depth=5, output=output)).eval()
    out = net(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, channels, 32, 32)
    assert out.abs().max() <= 1  # tanh


def test_unet_without_output_activation_is_unbounded():
    net = UNet(UNetOptions(base=4, depth=1, out_act="none"))
    with torch.no_grad():
        net.head.bias.fill_(5.0)
    assert net.eval()(torch.zeros(1, 1, 8, 8)).min() > 1


def test_unet_says_clearly_when_a_size_is_not_allowed():
    net = UNet(UNetOptions(base=4, depth=5))
    with pytest.raises(ValueError, match="multiple of 32 .*got 48x48"):
        net(torch.zeros(1, 1, 48, 48))
    net(torch.zeros(1, 1, 64, 96))  # non-square sizes are fine


def test_conv_discriminator_follows_section_3_2():
    disc = ConvDiscriminator(ConvDiscOptions(base=8, depth=5))
    layers = list(disc.net)
    assert isinstance(layers[0], nn.Conv2d) and layers[0].in_channels == 4 and layers[0].kernel_size == (3, 3)
    assert [type(m) for m in layers[1:5]] == [nn.BatchNorm2d, nn.LeakyReLU, nn.Dropout, nn.MaxPool2d]
    assert layers[2].negative_slope == 0.2 and layers[3].p == 0.2
    assert [m.out_channels for m in layers if isinstance(m, nn.Conv2d)] == [8, 16, 32, 64, 128, 1]
    logits = disc(torch.zeros(3, 1, 32, 32), torch.zeros(3, 3, 32, 32))
    assert logits.shape == (3, 1, 1, 1)  # one logit at 32 px, depth 5


def test_ns_l1_matches_equations_7_and_8():
    loss = NonSaturatingL1(AdversarialL1Options())
    disc = ConstantDisc(2.0)
    target = torch.zeros(1, 2, 4, 4)
    pred = torch.full((1, 2, 4, 4), 0.5)
    parts = loss.generator_loss(Prediction(torch.zeros(1, 1, 4, 4), pred, target), disc)
    d = torch.sigmoid(torch.tensor(2.0))
    assert parts["gan"].item() == pytest.approx(-torch.log(d).item(), rel=1e-5)
    assert parts["l1"].item() == pytest.approx(0.5)
    assert parts["total"].item() == pytest.approx(parts["gan"].item() + 100 * 0.5, rel=1e-6)
    d_parts = loss.discriminator_loss(Prediction(torch.zeros(1, 1, 4, 4), pred, target), disc)
    # One-sided label smoothing: real target 0.9, fake target 0.
    expected_real = -(0.9 * torch.log(d) + 0.1 * torch.log(1 - d))
    assert d_parts["d_real"].item() == pytest.approx(expected_real.item(), rel=1e-5)
    assert d_parts["d_fake"].item() == pytest.approx(-torch.log(1 - d).item(), rel=1e-5)


def test_minimax_generator_term_saturates_where_ns_does_not():
    l = torch.zeros(1, 1, 4, 4)  # noqa: E741
    pred = torch.zeros(1, 2, 4, 4, requires_grad=True)
    grads = {}
    for cls in (NonSaturatingL1, MinimaxL1):
        logit = torch.tensor(-6.0, requires_grad=True)  # D is confident the fake is fake
        loss = cls(AdversarialL1Options(lam=0.0))
        parts = loss.generator_loss(Prediction(l, pred, pred.detach()), ConstantDisc(logit))
        (g,) = torch.autograd.grad(parts["gan"], logit)
        grads[cls.__name__] = abs(g.item())
    assert grads["MinimaxL1"] < 0.01 < 0.9 < grads["NonSaturatingL1"]


def test_l2_is_mean_squared_error():
    loss = L2(RegressionOptions())
    pred = torch.tensor([[[[1.0, 3.0]]]]).expand(1, 2, 1, 2)
    parts = loss.generator_loss(Prediction(torch.zeros(1, 1, 1, 2), pred, torch.zeros_like(pred)), None)
    assert parts["total"].item() == pytest.approx(5.0) and "chroma" not in parts
    assert not L2.needs_discriminator and NonSaturatingL1.needs_discriminator


def test_chroma_term_penalises_a_greyish_average_that_l1_accepts():
    # Two equally likely hues at one pixel: a* = +0.5 or -0.5 (b* = 0). L1 alone is flat between
    # them (any a* in [-0.5, 0.5] costs the same), so grey (0) is a minimum; the chroma term makes
    # grey cost 0.5 more than either hue, and adds nothing for a prediction with the right chroma.
    l = torch.zeros(2, 1, 1, 1)  # noqa: E741
    target = torch.tensor([[[[0.5]], [[0.0]]], [[[-0.5]], [[0.0]]]])
    grey, hue = torch.zeros_like(target), target[:1].expand(2, 2, 1, 1)
    plain, with_chroma = L1(RegressionOptions()), L1(RegressionOptions(chroma=1.0))
    cost = {name: {k: loss.generator_loss(Prediction(l, p, target), None)["total"].item()
                   for k, p in (("grey", grey), ("hue", hue))}
            for name, loss in (("plain", plain), ("chroma", with_chroma))}
    assert cost["plain"]["grey"] == pytest.approx(cost["plain"]["hue"])  # 0.25 == 0.25: L1 cannot tell
    assert cost["chroma"]["grey"] == pytest.approx(cost["plain"]["grey"] + 0.5, abs=1e-3)
    assert cost["chroma"]["hue"] == pytest.approx(cost["plain"]["hue"], abs=1e-3)
    # the adversarial losses add it to their reconstruction term, weighted by lam with L1
    gan = NonSaturatingL1(AdversarialL1Options(chroma=1.0)).generator_loss(Prediction(l, grey, target), None)
    assert gan["total"].item() == pytest.approx(100 * (0.25 + 0.5), abs=0.1) and "gan" not in gan
    with pytest.raises(ValueError, match="loss.chroma"):
        RegressionOptions(chroma=-1)


class ConstantDisc(nn.Module):
    def __init__(self, logit):
        super().__init__()
        self.logit = logit if isinstance(logit, torch.Tensor) else torch.tensor(float(logit))

    def forward(self, l, lab):  # noqa: E741
        return self.logit.expand(l.shape[0], 1)
