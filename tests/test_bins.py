"""Colour classification (Zhang et al. 2016): the a*b* cells, the U-Net's bins output, the
rebalanced cross-entropy ``bins_ce``, and training with them end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data

from colorkit.engine.components import Components, check_fit
from colorkit.kernel import abbins, color
from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import read_jsonl
from colorkit.kernel.interfaces import Prediction
from colorkit.kernel.registry import build_registry
from colorkit.plugins.loss_functions import BinsCrossEntropy
from colorkit.plugins.losses import BinsOptions
from colorkit.plugins.unet import UNetOptions
from colorkit.plugins.unet_model import UNet

from cli_helpers import invoke


def photo_ab() -> torch.Tensor:
    return color.rgb_to_model(torch.from_numpy(data.astronaut()[::4, ::4].copy()).permute(2, 0, 1)[None])[:, 1:]


def test_cells_are_the_in_gamut_grid_of_side_10():
    centres = abbins.bin_centers() * color.AB_SCALE
    assert abbins.count() == len(centres) == 261
    assert torch.equal(centres, (centres / 10).round() * 10)  # multiples of 10
    assert (centres == 0).all(dim=1).any()  # grey is a cell
    # every real photo colour is within half a cell diagonal of a kept centre
    ab = photo_ab()
    nearest = abbins.bin_centers()[abbins.nearest(ab)].permute(0, 3, 1, 2)
    assert ((nearest - ab) * color.AB_SCALE).norm(dim=1).max() <= 5 * 2**0.5 + 1e-3
    # a saturated sRGB green is kept, a colour no sRGB pixel has at any lightness is not
    green = skcolor.rgb2lab(np.array([[[0.0, 1.0, 0.0]]]))[0, 0, 1:]
    grid = centres.tolist()
    assert [float(round(green[0], -1)), float(round(green[1], -1))] in grid
    assert [110.0, 110.0] not in grid and [-110.0, -110.0] not in grid


def test_soft_encoding_decodes_back_to_the_true_colour():
    ab = photo_ab()
    indices, weights = abbins.soft_encode(ab)
    assert torch.allclose(weights.sum(dim=1), torch.ones(1))
    rebuilt = (abbins.bin_centers()[indices] * weights.unsqueeze(-1)).sum(dim=1).permute(0, 3, 1, 2)
    assert (rebuilt - ab).abs().max() * color.AB_SCALE < 1e-3


def test_annealed_mean_sharpens_as_the_temperature_falls_and_grey_logits_are_the_floor():
    centres = abbins.bin_centers()
    red = int(((centres * color.AB_SCALE - torch.tensor([60.0, 40.0])).norm(dim=1)).argmin())
    logits = abbins.grey_logits().clone().view(1, -1, 1, 1)
    assert abbins.annealed_mean(logits).abs().max() < 1e-5  # T = 1: mean a*b* = 0, the floor
    logits[0, red] += 4.0
    chroma = [abbins.annealed_mean(logits, t).norm().item() for t in (1.0, 0.38, 0.05)]
    assert chroma[0] < chroma[1] < chroma[2]
    assert torch.allclose(abbins.annealed_mean(logits, 0.05).flatten(), centres[red], atol=1e-3)


def test_rebalancing_weights_rare_cells_more_with_mean_one():
    counts = torch.tensor([90.0, 9.0, 1.0, 0.0])
    w = abbins.rebalance_weights(counts, 0.5)
    p = counts / counts.sum()
    assert float((p * w).sum()) == pytest.approx(1.0)
    assert w[0] < w[1] < w[2] < w[3]
    assert torch.allclose(abbins.rebalance_weights(counts, 1.0), torch.ones(4))


def test_unet_bins_trains_on_logits_and_decodes_outside_training():
    gen = UNet(UNetOptions(base=8, depth=2, output="bins", zero_out=True))
    assert gen.output_space == "ab" and gen.training_output == "ab_bins"
    l = torch.rand(2, 1, 16, 16) * 2 - 1  # noqa: E741
    logits = gen.train()(l)
    assert logits.shape == (2, abbins.count(), 8, 8)  # bins_stride 2
    assert gen.decode(logits).shape == (2, 2, 16, 16)
    assert gen.decode(logits).abs().max() < 1e-5  # zero_out: step 0 is the floor
    gen.eval()
    out = gen(l)
    assert out.shape == (2, 2, 16, 16) and out.abs().max() <= 1


def test_bins_ce_prefers_the_true_cells_and_its_prior_follows_the_data():
    loss = BinsCrossEntropy(BinsOptions())
    target = torch.full((1, 2, 4, 4), 0.0)
    target[:, 0, :2] = 60 / color.AB_SCALE  # top half reddish, bottom half grey
    right = torch.full((1, abbins.count(), 4, 4), -5.0)
    right.scatter_(1, abbins.nearest(target).unsqueeze(1), 5.0)
    wrong = right.flip(2)
    l = torch.zeros(1, 1, 4, 4)  # noqa: E741
    cost = [loss.generator_loss(Prediction(l, p, target), None)["total"].item() for p in (right, wrong)]
    assert cost[0] < cost[1]
    # the prior: a data set that is mostly grey makes the grey cell the cheapest
    grey = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    red = torch.zeros(3, 8, 8, dtype=torch.uint8)
    red[0] = 200
    loss.prepare([grey] * 9 + [red])
    grey_cell = int(abbins.nearest(torch.zeros(1, 2, 1, 1)))
    red_cell = int(abbins.nearest(color.rgb_to_model(red[None, :, :1, :1])[:, 1:]))
    assert loss.weights[grey_cell] < 1 < loss.weights[red_cell]


def test_bins_ce_needs_a_bins_generator():
    reg = build_registry()
    dataset = reg.get("dataset", "samples").build({"size": 32})
    loss = reg.get("loss", "bins_ce").build({})
    ab_gen = reg.get("generator", "unet").build({"base": 8, "depth": 2})
    with pytest.raises(UsageError, match="loss 'bins_ce' trains on ab_bins but generator 'unet' gives colour"):
        check_fit(Components(ab_gen, None, loss, dataset, {"loss": {"name": "bins_ce"}, "generator": {"name": "unet"}}))
    bins_gen = reg.get("generator", "unet").build({"base": 8, "depth": 2, "output": "bins"})
    check_fit(Components(bins_gen, None, loss, dataset))  # fits


@pytest.mark.parametrize("loss", ["bins_ce", "l1"])
def test_a_bins_unet_trains_end_to_end(tmp_path, loss):
    """bins_ce on the logits, or a colour loss (l1) on their mean: both train and are evaluated."""
    run = tmp_path / "run"
    result = invoke(["run", "--gen", "unet", "--disc", "none", "--loss", loss, "--set", "gen.output=bins",
                     "--set", "gen.base=8", "--set", "gen.depth=2", "--set", "dataset.size=32",
                     "--set", "dataset.crops_per_epoch=32", "--set", "dataset.eval_crops=8", "--set", "loss.images=8"
                     if loss == "bins_ce" else "train.log_every=1", "--batch-size", "8", "--epochs", "2",
                     "--metrics", "mae,psnr", "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    log = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in log if r["event"] == "step"]
    assert steps and all(np.isfinite(r["g_total"]) for r in steps)
    vals = [r for r in log if r["event"] == "val"]
    assert len(vals) == 2 and all(np.isfinite(v["val_psnr"]) for v in vals)
    assert (run / "checkpoints" / "best.pt").is_file()


def test_prior_correction_undoes_the_rebalancing_the_generator_adopted():
    """Logit adjustment: with the loss's class weights adopted, gen.prior_correction=1 decodes
    logits minus log w, and files written before the weights existed still load (no correction)."""
    weights = torch.ones(abbins.count())
    red = int(abbins.nearest(torch.tensor([60.0, 40.0]).view(1, 2, 1, 1) / color.AB_SCALE))
    weights[red] = 20.0  # a rare colour, weighed up in training
    plain = UNet(UNetOptions(base=8, depth=2, output="bins", zero_out=True, temperature=1.0))
    corrected = UNet(UNetOptions(base=8, depth=2, output="bins", zero_out=True, temperature=1.0, prior_correction=1.0))
    for gen in (plain, corrected):
        gen.adopt_class_weights(weights)
        with torch.no_grad():
            gen.head.bias[red] += 3.0  # the trained logits favour the rare colour
    l = torch.zeros(1, 1, 16, 16)  # noqa: E741
    a_plain, a_corrected = plain.eval()(l)[0, :, 0, 0], corrected.eval()(l)[0, :, 0, 0]
    assert a_corrected.norm() < a_plain.norm()  # log 20 = 3.0 taken off the rare cell's logit: greyer
    assert a_corrected.norm() * color.AB_SCALE < 1.0
    state = {k: v for k, v in corrected.state_dict().items() if k != "cell_log_weight"}
    fresh = UNet(UNetOptions(base=8, depth=2, output="bins", prior_correction=1.0))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.cell_log_weight, torch.zeros(abbins.count()))


def test_training_with_bins_ce_keeps_its_class_weights_in_the_model(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--gen", "unet", "--disc", "none", "--loss", "bins_ce", "--set", "gen.output=bins",
                     "--set", "gen.base=8", "--set", "gen.depth=2", "--set", "dataset.size=32",
                     "--set", "dataset.crops_per_epoch=16", "--set", "dataset.eval_crops=4", "--set", "loss.images=4",
                     "--set", "train.ema=0.9", "--batch-size", "8", "--epochs", "1", "--metrics", "mae",
                     "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    from colorkit.engine.checkpoints import load_checkpoint

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    loss = BinsCrossEntropy(BinsOptions(images=4))
    dataset = build_registry().get("dataset", "samples").build({"size": 32, "crops_per_epoch": 16, "eval_crops": 4})
    loss.prepare(dataset.split("train"))
    for key in ("gen", "gen_ema"):
        assert torch.allclose(state[key]["cell_log_weight"], loss.class_weights.log())
