"""The metric plugins against independent numpy / scikit-image computations on real photos, and
against values worked out by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from colorkit.kernel.errors import UsageError
from colorkit.kernel.experiment import experiment_defaults
from colorkit.kernel.registry import build_registry
from colorkit.kernel.testing import check_metric

ALL = ("mae", "rmse", "accuracy", "psnr", "ssim", "colorfulness", "colorfulness_gap", "auc", "auc_rebal",
       "hist_intersection")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return build_registry(autoload=False)


def metric(registry, name, **options):
    return registry.get("metric", name).build(options)


def value(registry, name, pred, target, **options):
    m = metric(registry, name, **options)
    m.update(torch.as_tensor(pred), torch.as_tensor(target))
    return m.compute()


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """H x W x 3 float arrays to B x 3 x H x W float64."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def photos():
    """Real photo crops (under 384 px, so SSIM does no downsampling) and plausible colourings:
    a hue-rotated, desaturated and blurred version of each, as float64 RGB in [0, 1]."""
    targets = [skdata.astronaut()[100:260, 150:350], skdata.coffee()[100:260, 200:400], skdata.chelsea()[50:210, 100:300]]
    targets = [t.astype(np.float64) / 255.0 for t in targets]
    preds = []
    for i, t in enumerate(targets):
        hsv = skcolor.rgb2hsv(t)
        hsv[..., 0] = (hsv[..., 0] + 0.08 * (i + 1)) % 1.0
        hsv[..., 1] *= 0.6
        p = skcolor.hsv2rgb(hsv)
        p = np.round(p * 255.0) / 255.0  # an 8-bit image, as evaluation produces
        preds.append(np.clip(p, 0.0, 1.0))
    return to_tensor(preds), to_tensor(targets), preds, targets


# -- registration and the contract ---------------------------------------------------------------


def test_every_metric_is_registered_with_unit_direction_and_docstring(registry):
    assert set(ALL) <= set(registry.names("metric"))
    for name in ALL:
        comp = registry.get("metric", name)
        m = comp.build({})
        assert isinstance(m.unit, str) and isinstance(m.higher_is_better, bool)
        doc = type(m).__doc__ or ""
        assert "better" in doc.lower(), f"{name}: the docstring must give the direction"
    defaults = experiment_defaults(registry)
    for name in defaults["metrics"]:
        registry.get("metric", name)
    assert defaults["metrics"] == ["mae", "accuracy", "psnr"]


@pytest.mark.parametrize("name", ALL)
def test_metric_contract(registry, name):
    check_metric(lambda: metric(registry, name))


@pytest.mark.parametrize("name", ALL)
def test_accumulation_is_exact_over_uneven_batches_and_sizes(registry, name, photos):
    pred, target, _, _ = photos
    whole = metric(registry, name)
    whole.update(pred, target)
    parts = metric(registry, name)
    parts.update(pred[:1], target[:1])
    parts.update(pred[1:], target[1:])
    assert math.isclose(whole.compute(), parts.compute(), rel_tol=1e-12, abs_tol=1e-12)
    # float32 input (as the evaluation loop passes) gives the same value
    again = metric(registry, name)
    again.update(pred.float(), target.float())
    assert math.isclose(again.compute(), whole.compute(), rel_tol=1e-3, abs_tol=1e-3)
    assert math.isnan(metric(registry, name).compute())


# -- real photos against independent computations -------------------------------------------------


def test_mae_and_rmse_match_numpy(registry, photos):
    pred, target, preds, targets = photos
    p, t = np.stack(preds) * 255.0, np.stack(targets) * 255.0
    assert value(registry, "mae", pred, target) == pytest.approx(np.abs(p - t).mean(), rel=1e-10)
    assert value(registry, "rmse", pred, target) == pytest.approx(np.sqrt(((p - t) ** 2).mean()), rel=1e-10)


def _lab(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([skcolor.rgb2lab(x) for x in images])


@pytest.mark.parametrize("threshold", [1.0, 2.0, 5.0])
def test_accuracy_matches_scikit_image_lab(registry, photos, threshold):
    pred, target, preds, targets = photos
    d = np.abs(np.round(_lab(preds)) - np.round(_lab(targets)))
    ok = (d[..., 0] <= threshold) & (d[..., 1] <= 2.2 * threshold) & (d[..., 2] <= 2.2 * threshold)
    expected = 100.0 * ok.mean()
    got = value(registry, "accuracy", pred, target, threshold=threshold)
    assert 5.0 < expected < 95.0  # a test that can tell right from wrong
    # rgb_to_lab agrees with skimage to ~1e-6: rounding can flip only a pixel sitting on .5
    assert got == pytest.approx(expected, abs=0.02)


def test_psnr_is_the_per_image_mean_as_scikit_image(registry, photos):
    pred, target, preds, targets = photos
    per_image = [peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in zip(preds, targets)]
    assert value(registry, "psnr", pred, target) == pytest.approx(np.mean(per_image), abs=1e-5)
    pooled = 10 * np.log10(1.0 / np.mean([((p - t) ** 2).mean() for p, t in zip(preds, targets)]))
    assert abs(np.mean(per_image) - pooled) > 0.01  # the choice is visible on these images


def test_ssim_is_the_per_image_mean_as_scikit_image(registry, photos):
    pred, target, preds, targets = photos
    per_image = [
        structural_similarity(t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1.0, channel_axis=-1)
        for p, t in zip(preds, targets)
    ]
    assert value(registry, "ssim", pred, target) == pytest.approx(np.mean(per_image), abs=1e-6)


def test_ssim_downsamples_large_images_like_wangs_code(registry):
    t = skdata.astronaut().astype(np.float64) / 255.0  # 512 px: average-pooled by 2 first
    p = np.clip(t + 0.05 * np.random.default_rng(0).standard_normal(t.shape), 0, 1)
    pooled = [x.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3)) for x in (t, p)]
    expected = structural_similarity(pooled[0], pooled[1], gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert value(registry, "ssim", to_tensor([p]), to_tensor([t])) == pytest.approx(expected, abs=1e-6)


def _colorfulness(x: np.ndarray, absolute: bool = False) -> float:
    r, g, b = (x * 255.0).transpose(2, 0, 1)
    rg, yb = r - g, 0.5 * (r + g) - b
    if absolute:  # DDColor's calculate_cf: np.absolute before the means and standard deviations
        rg, yb = np.abs(rg), np.abs(yb)
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


@pytest.mark.parametrize("opponent", ["signed", "absolute"])
def test_colorfulness_and_gap_match_numpy(registry, photos, opponent):
    pred, target, preds, targets = photos
    absolute = opponent == "absolute"
    cp = [_colorfulness(p, absolute) for p in preds]
    ct = [_colorfulness(t, absolute) for t in targets]
    assert value(registry, "colorfulness", pred, target, opponent=opponent) == pytest.approx(np.mean(cp), rel=1e-10)
    # DDColor's delta-CF: the difference of the two set means
    assert value(registry, "colorfulness_gap", pred, target, opponent=opponent) == pytest.approx(
        abs(np.mean(cp) - np.mean(ct)), rel=1e-10)
    assert value(registry, "colorfulness_gap", pred, target, opponent=opponent, per_image=True) == pytest.approx(
        np.mean(np.abs(np.subtract(cp, ct))), rel=1e-10)
    assert 10 < np.mean(ct) < 120  # real photos: "moderately" to "highly" colourful


def test_signed_and_absolute_colorfulness_differ_where_opponents_change_sign(registry, photos):
    """On warm photos R - G and (R + G)/2 - B hardly change sign and the forms nearly agree; on a
    photo with blue sky and orange ground (scikit-image's rocket) they do not."""
    _, target, _, _ = photos
    signed = value(registry, "colorfulness", target, target)
    absolute = value(registry, "colorfulness", target, target, opponent="absolute")
    assert signed == pytest.approx(absolute, rel=0.02)
    rocket = to_tensor([skdata.rocket().astype(np.float64) / 255.0])
    signed = value(registry, "colorfulness", rocket, rocket)
    absolute = value(registry, "colorfulness", rocket, rocket, opponent="absolute")
    assert signed == pytest.approx(_colorfulness(skdata.rocket() / 255.0), rel=1e-10)
    assert absolute == pytest.approx(_colorfulness(skdata.rocket() / 255.0, absolute=True), rel=1e-10)
    assert signed > 1.2 * absolute


def test_auc_matches_a_fine_threshold_sweep(registry, photos):
    pred, target, preds, targets = photos
    d = np.sqrt(((_lab(preds)[..., 1:] - _lab(targets)[..., 1:]) ** 2).sum(-1)).ravel()
    fine = np.linspace(0, 150, 30001)
    curve = np.searchsorted(np.sort(d), fine, side="right") / d.size
    expected = 100.0 * np.trapezoid(curve, fine) / 150.0
    got = value(registry, "auc", pred, target)
    assert got == pytest.approx(expected, abs=0.01)
    integer = np.arange(151)
    coarse = np.searchsorted(np.sort(d), integer, side="right") / d.size
    assert abs(got - 100.0 * np.trapezoid(coarse, integer) / 150.0) <= 0.34


# -- tiny arrays, worked out by hand --------------------------------------------------------------


def test_mae_rmse_by_hand(registry):
    target = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    pred = torch.zeros(1, 3, 1, 2)
    assert value(registry, "mae", pred, target) == pytest.approx((255 + 127.5) / 2)
    assert value(registry, "rmse", pred, target) == pytest.approx(math.sqrt((255**2 + 127.5**2) / 2))


def test_psnr_by_hand_averages_per_image(registry):
    target = torch.stack([torch.full((3, 4, 4), 0.1, dtype=torch.float64), torch.full((3, 4, 4), 0.01, dtype=torch.float64)])
    pred = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    # MSE 0.01 -> 20 dB and MSE 0.0001 -> 40 dB, averaged: 30 dB (piq adds 1e-8 to the MSE)
    expected = (-10 * math.log10(0.01 + 1e-8) - 10 * math.log10(1e-4 + 1e-8)) / 2
    assert value(registry, "psnr", pred, target) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(30.0, abs=1e-3)
    assert value(registry, "psnr", target, target) == pytest.approx(80.0)


def test_ssim_by_hand(registry):
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert value(registry, "ssim", x, x) == pytest.approx(1.0, abs=1e-9)
    # Flat images: no variance, so SSIM is the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert value(registry, "ssim", torch.full((1, 3, 11, 11), 0.2), torch.full((1, 3, 11, 11), 0.6)) == pytest.approx(expected)
    with pytest.raises(UsageError, match="at least 11x11"):
        value(registry, "ssim", torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


def _pixels_from_lab(values: list[tuple[float, float, float]]) -> torch.Tensor:
    rgb = skcolor.lab2rgb(np.array([values], dtype=np.float64))  # 1 x N x 3
    assert np.allclose(skcolor.rgb2lab(rgb), [values], atol=1e-6), "test colours must be in gamut"
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]  # 1 x 3 x 1 x N


def test_accuracy_by_hand(registry):
    target = _pixels_from_lab([(50, 0, 0), (50, 0, 0), (50, 0, 0), (50, 0, 0)])
    pred = _pixels_from_lab([(50, 0, 0), (52, 4, -4), (53, 0, 0), (50, 5, 0)])
    # t = 2: |dL| <= 2 and |da|, |db| <= 4.4 -> pixels 1 and 2 match; 3 (dL = 3) and 4 (da = 5) do not
    assert value(registry, "accuracy", pred, target) == pytest.approx(50.0)
    # t = 2.5: |dL| <= 2.5, |da| <= 5.5 -> pixel 4 matches too
    assert value(registry, "accuracy", pred, target, threshold=2.5) == pytest.approx(75.0)
    assert value(registry, "accuracy", pred, target, threshold=0) == pytest.approx(25.0)


def test_auc_by_hand(registry):
    target = _pixels_from_lab([(60, 30, 40), (60, 0, 0), (60, 0, 0)])
    pred = _pixels_from_lab([(60, 0, 0), (60, 0, 0), (60, 0, 0)])
    # distances 50, 0, 0 -> (1 - 50/150 + 1 + 1) / 3
    assert value(registry, "auc", pred, target) == pytest.approx(100 * (2 + 2 / 3) / 3, abs=1e-4)
    assert value(registry, "auc", target, target) == pytest.approx(100.0)


def test_colorfulness_by_hand(registry):
    # one red and one black pixel: rg = (255, 0), yb = (127.5, 0); sd = mean = (127.5, 63.75)
    red_black = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    grey = torch.full((1, 3, 1, 2), 0.5)
    m = 1.3 * math.hypot(127.5, 63.75)
    assert value(registry, "colorfulness", red_black, grey) == pytest.approx(m)
    assert value(registry, "colorfulness", grey, red_black) == pytest.approx(0.0)
    # both images are off by m, but the two set means are equal: DDColor's gap is 0, per image m
    pred = torch.cat([red_black, grey])
    target = torch.cat([grey, red_black])
    assert value(registry, "colorfulness_gap", pred, target) == pytest.approx(0.0)
    assert value(registry, "colorfulness_gap", pred, target, per_image=True) == pytest.approx(m)
    assert value(registry, "colorfulness_gap", pred, grey.expand(2, 3, 1, 2)) == pytest.approx(m / 2)
    assert value(registry, "colorfulness_gap", target, target) == pytest.approx(0.0)


def test_signed_and_absolute_opponents_by_hand(registry):
    # a red and a green pixel: rg = (255, -255), yb = (127.5, 127.5)
    red_green = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    # signed: sd(rg) = 255, sd(yb) = 0, mean(rg) = 0, mean(yb) = 127.5
    assert value(registry, "colorfulness", red_green, red_green) == pytest.approx(255 + 0.3 * 127.5)
    # absolute: |rg| = (255, 255) and |yb| = (127.5, 127.5) have no spread; the means are 255 and 127.5
    assert value(registry, "colorfulness", red_green, red_green, opponent="absolute") == pytest.approx(
        0.3 * math.hypot(255, 127.5))


# -- photo metrics over the a*b* distribution: rebalanced AuC and histogram intersection -----------


def _floor(images: list[np.ndarray]) -> torch.Tensor:
    """Each image's lightness with a* = b* = 0 (the grey 'floor' prediction), computed by skimage."""
    out = []
    for x in images:
        lab = skcolor.rgb2lab(x)
        lab[..., 1:] = 0.0
        out.append(np.clip(skcolor.lab2rgb(lab), 0.0, 1.0))
    return to_tensor(out)


def _bins(ab: np.ndarray, side: float = 10.0) -> np.ndarray:
    """Independent a*b* binning: square bins centred on multiples of ``side``, as (ka, kb) codes."""
    k = np.floor(ab / side + 0.5).astype(np.int64)
    return k[..., 0] * 1000 + k[..., 1]


def _auc_rebal(pred: list[np.ndarray], target: list[np.ndarray], lam: float, side: float = 10.0) -> float:
    ab_p, ab_t = _lab(pred)[..., 1:], _lab(target)[..., 1:]
    d = np.sqrt(((ab_p - ab_t) ** 2).sum(-1)).ravel()
    codes = _bins(ab_t, side).ravel()
    uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    p = counts / counts.sum()
    w = (1.0 / ((1.0 - lam) * p + lam / len(uniq)))[inverse]
    curve = [np.sum(w * (d <= t)) / np.sum(w) for t in range(151)]
    return 100.0 * float(np.mean(curve))


def test_perfect_prediction_scores_the_maximum(registry, photos):
    _, target, _, _ = photos
    assert value(registry, "auc_rebal", target, target) == pytest.approx(100.0, abs=1e-9)
    assert value(registry, "auc_rebal", target, target, lam=0.5) == pytest.approx(100.0, abs=1e-9)
    assert value(registry, "hist_intersection", target, target) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_auc_rebal_matches_numpy_on_real_photos(registry, photos, lam):
    pred, target, preds, targets = photos
    expected = _auc_rebal(preds, targets, lam)
    assert 30.0 < expected < 99.0  # a test that can tell right from wrong
    assert value(registry, "auc_rebal", pred, target, lam=lam) == pytest.approx(expected, abs=1e-3)


def test_auc_rebal_without_rebalancing_is_plain_auc_at_integer_thresholds(registry, photos):
    pred, target, _, _ = photos
    plain = value(registry, "auc", pred, target)
    assert abs(value(registry, "auc_rebal", pred, target, lam=1.0) - plain) <= 0.34


def test_grey_scores_lower_on_auc_rebal_than_on_plain_auc(registry, photos):
    """The point of rebalancing: grey is close to the many unsaturated pixels, far from the rare
    saturated ones, which weigh more."""
    _, target, _, targets = photos
    floor = _floor(targets)
    plain = value(registry, "auc", floor, target)
    assert value(registry, "auc_rebal", floor, target, lam=0.5) < plain - 2.0
    assert value(registry, "auc_rebal", floor, target, lam=0.0) < value(registry, "auc_rebal", floor, target)
    assert value(registry, "auc_rebal", floor, target) == pytest.approx(_auc_rebal(_floor_np(targets), targets, 0.5),
                                                                         abs=1e-3)


def _floor_np(images: list[np.ndarray]) -> list[np.ndarray]:
    return list(_floor(images).permute(0, 2, 3, 1).numpy())


def test_auc_rebal_by_hand(registry):
    # three grey pixels (bin (0, 0)) and one coloured pixel (bin (30, 20)); the prediction is grey
    target = _pixels_from_lab([(60, 0, 0), (60, 0, 0), (60, 0, 0), (60, 33, 21)])
    pred = _pixels_from_lab([(60, 0, 0), (60, 0, 0), (60, 0, 0), (60, 0, 0)])
    d = math.hypot(33, 21)  # 39.1: within t for t = 40 .. 150, i.e. 111 of the 151 thresholds
    assert math.ceil(d) == 40
    coloured = (151 - 40) / 151
    for lam in (0.0, 0.5, 1.0):
        p_grey, p_col, q = 3 / 4, 1 / 4, 2
        w_grey, w_col = 1 / ((1 - lam) * p_grey + lam / q), 1 / ((1 - lam) * p_col + lam / q)
        expected = 100 * (3 * w_grey * 1.0 + w_col * coloured) / (3 * w_grey + w_col)
        assert value(registry, "auc_rebal", pred, target, lam=lam) == pytest.approx(expected, abs=1e-9)
    # lam = 0: each bin counts once -> mean of the grey bin's 100 and the coloured bin's 73.5
    assert value(registry, "auc_rebal", pred, target, lam=0.0) == pytest.approx(100 * (1 + coloured) / 2, abs=1e-9)
    # lam = 1: every pixel counts once
    assert value(registry, "auc_rebal", pred, target, lam=1.0) == pytest.approx(100 * (3 + coloured) / 4, abs=1e-9)


def test_auc_rebal_bins_the_true_colour_with_the_bin_option(registry):
    # lam = 0 (each bin weighs the same); true a* = 12 and 18: one bin of side 40 (one weight), two of side 10 (each its own)
    target = _pixels_from_lab([(60, 12, 0), (60, 18, 0), (60, 18, 0)])
    pred = _pixels_from_lab([(60, 12, 0), (60, 18, 40.5), (60, 18, 40.5)])  # d = 0, 40.5, 40.5
    far = (151 - 41) / 151
    assert value(registry, "auc_rebal", pred, target, bin=40, lam=0.0) == pytest.approx(100 * (1 + 2 * far) / 3, abs=1e-9)
    assert value(registry, "auc_rebal", pred, target, bin=10, lam=0.0) == pytest.approx(100 * (1 + far) / 2, abs=1e-9)


def test_hist_intersection_by_hand(registry):
    # truth: 2 pixels in bin (30, 0), 2 in bin (0, 30); prediction: 1 in (30, 0), 3 in (0, -30)
    target = _pixels_from_lab([(60, 30, 0), (60, 31, 2), (60, 0, 30), (60, 3, 28)])
    pred = _pixels_from_lab([(60, 29, -1), (60, 0, -30), (60, 2, -31), (60, -3, -29)])
    # min(1/2, 1/4) + min(1/2, 0) + min(0, 3/4)
    assert value(registry, "hist_intersection", pred, target) == pytest.approx(0.25)
    # it ignores where colours are: the truth's pixels in another order score 1
    shuffled = target[..., [2, 3, 0, 1]]
    assert value(registry, "hist_intersection", shuffled, target) == pytest.approx(1.0)
    assert value(registry, "auc", shuffled, target) < 80.0


def test_hist_intersection_of_the_floor_is_the_grey_fraction_of_the_truth(registry, photos):
    _, target, _, targets = photos
    ab = _lab(targets)[..., 1:]
    grey = float(np.mean((np.abs(ab[..., 0]) < 5) & (np.abs(ab[..., 1]) < 5)))
    assert 0.02 < grey < 0.9  # a coloured set with some near-grey pixels
    assert value(registry, "hist_intersection", _floor(targets), target) == pytest.approx(grey, abs=1e-4)
    wide = float(np.mean((np.abs(ab[..., 0]) < 15) & (np.abs(ab[..., 1]) < 15)))
    assert value(registry, "hist_intersection", _floor(targets), target, bin=30) == pytest.approx(wide, abs=1e-4)


def test_hist_intersection_matches_numpy_on_real_photos(registry, photos):
    pred, target, preds, targets = photos
    cp, ct = _bins(_lab(preds)[..., 1:]).ravel(), _bins(_lab(targets)[..., 1:]).ravel()
    codes = np.union1d(cp, ct)
    hp = np.array([np.mean(cp == c) for c in codes])
    ht = np.array([np.mean(ct == c) for c in codes])
    expected = float(np.minimum(hp, ht).sum())
    assert 0.1 < expected < 0.95
    assert value(registry, "hist_intersection", pred, target) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", ["auc_rebal", "hist_intersection", "colorfulness_gap"])
@pytest.mark.slow
def test_set_metrics_split_and_merge_like_one_update(registry, name, photos):
    """p, Q and the histograms belong to the whole set: two updates, or two metric objects fed
    one half each and merged, give the value of one update over everything."""
    pred, target, _, targets = photos
    pred = torch.cat([pred, _floor(targets)])  # a mixed set: halves with different colour statistics
    target = torch.cat([target, target])
    whole = metric(registry, name)
    whole.update(pred, target)
    two = metric(registry, name)
    two.update(pred[:2], target[:2])
    two.update(pred[2:], target[2:])
    a, b = metric(registry, name), metric(registry, name)
    a.update(pred[:3], target[:3])  # the recoloured photos
    b.update(pred[3:], target[3:])  # the grey floor
    alone = a.compute()
    a.merge(b)
    assert two.compute() == pytest.approx(whole.compute(), rel=1e-12, abs=1e-12)
    assert a.compute() == pytest.approx(whole.compute(), rel=1e-12, abs=1e-12)
    assert alone != pytest.approx(whole.compute(), rel=1e-3)  # the halves alone differ: merging matters


def test_bad_shapes_and_options_are_rejected(registry):
    with pytest.raises(ValueError, match="B x 3 x H x W"):
        value(registry, "mae", torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
    from colorkit.kernel.errors import OptionError

    with pytest.raises(OptionError):
        registry.get("metric", "accuracy").build({"threshold": -1})
    with pytest.raises(OptionError, match="did you mean"):
        registry.get("metric", "accuracy").build({"treshold": 1})
    for name, bad in [("auc_rebal", {"lam": 1.5}), ("auc_rebal", {"lam": -0.1}), ("auc_rebal", {"bin": 0.5}),
                      ("hist_intersection", {"bin": 0}), ("colorfulness", {"opponent": "abs"})]:
        with pytest.raises(OptionError):
            registry.get("metric", name).build(bad)


def test_descriptions_state_the_definitions(registry):
    """What ``colorkit list metric`` prints names the exact choices."""
    d = {name: registry.get("metric", name).description for name in ALL}
    assert "signed" in d["colorfulness"] and "absolute" in d["colorfulness"]
    assert "mean over images of M(prediction) - mean over images of M(truth)" in d["colorfulness_gap"]
    assert "rewards grey" in d["auc"]
    assert "1/((1-lam) p + lam/Q)" in d["auc_rebal"] and "t = 0..150" in d["auc_rebal"]
    assert "min(h_pred, h_truth)" in d["hist_intersection"]


def test_mae_says_what_it_measures_not_that_it_is_the_papers(registry):
    """The paper does not define its MAE's scale: colorkit's must not claim to be it."""
    entry = registry.get("metric", "mae")
    described = f"{entry.description} {entry.load().__doc__}"
    assert "RGB 0..255" in entry.description and "paper's MAE" not in described
