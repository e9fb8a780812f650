"""RGB <-> L*a*b* agrees with scikit-image on random colours and on real photos."""

import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data

from colorkit.kernel import color

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()


def _np(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def test_rgb_to_lab_matches_skimage_on_random_colours():
    rgb = np.random.default_rng(0).random((64, 64, 3))
    assert np.abs(_np(color.rgb_to_lab(_t(rgb))) - skcolor.rgb2lab(rgb)).max() < 0.1


def test_rgb_to_lab_covers_the_gamut_corners():
    corners = np.array([[[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)]], dtype=float)
    ours = _np(color.rgb_to_lab(_t(corners)))
    assert np.abs(ours - skcolor.rgb2lab(corners)).max() < 0.1
    assert ours[0, 0, 0] == pytest.approx(0.0, abs=1e-3)  # black has L = 0
    assert ours[0, -1, 0] == pytest.approx(100.0, abs=1e-2)  # white has L = 100


@pytest.mark.parametrize("name", PHOTOS)
def test_rgb_to_lab_matches_skimage_on_photos(name):
    rgb = getattr(data, name)() / 255.0
    assert np.abs(_np(color.rgb_to_lab(_t(rgb))) - skcolor.rgb2lab(rgb)).max() < 0.1


def test_lab_to_rgb_matches_skimage_on_random_lab():
    lab = np.random.default_rng(1).uniform([0, -110, -110], [100, 110, 110], (48, 48, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about out-of-gamut clipping
        ref = skcolor.lab2rgb(lab)
    assert np.abs(_np(color.lab_to_rgb(_t(lab))) - ref).max() < 1e-3


@pytest.mark.parametrize("name", PHOTOS)
def test_lab_to_rgb_matches_skimage_on_photo_lab(name):
    lab = skcolor.rgb2lab(getattr(data, name)() / 255.0)
    ref = skcolor.lab2rgb(lab)
    ours = _np(color.lab_to_rgb(_t(lab)))
    # In Lab units, the inverse agrees to within 0.1 as well.
    assert np.abs(skcolor.rgb2lab(ours) - skcolor.rgb2lab(ref)).max() < 0.1


@pytest.mark.parametrize("name", PHOTOS)
def test_round_trip_within_one_level(name):
    rgb = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None]
    back = color.model_to_rgb(color.rgb_to_model(rgb))
    assert (back - rgb.float() / 255.0).abs().max().item() < 1 / 255


def test_round_trip_random_batch_and_dtype():
    rgb = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    lab = color.rgb_to_lab(rgb)
    assert lab.dtype == torch.float64 and lab.shape == rgb.shape
    assert (color.lab_to_rgb(lab) - rgb).abs().max().item() < 1 / 255


def test_normalisation_ranges_and_inverse():
    lab = color.rgb_to_lab(torch.rand(2, 3, 8, 8))
    norm = color.normalize_lab(lab)
    assert norm[:, 0].min() >= -1 and norm[:, 0].max() <= 1
    assert norm[:, 1:].abs().max() <= 1
    assert torch.allclose(color.denormalize_lab(norm), lab, atol=1e-4)


def test_as_lab_and_gray_lab():
    l = torch.rand(2, 1, 4, 4)  # noqa: E741
    ab = torch.rand(2, 2, 4, 4)
    assert torch.equal(color.as_lab(l, ab)[:, :1], l)
    lab3 = torch.rand(2, 3, 4, 4)
    assert color.as_lab(l, lab3) is lab3
    gray = color.gray_lab(l)
    assert gray.shape == (2, 3, 4, 4) and torch.equal(gray[:, 1:], torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="2 .* or 3"):
        color.as_lab(l, torch.rand(2, 4, 4, 4))


def test_gray_image_has_no_colour():
    rgb = torch.full((1, 3, 4, 4), 0.5)
    lab = color.rgb_to_lab(rgb)
    assert lab[:, 1:].abs().max().item() < 1e-2


@pytest.mark.parametrize("source", ["random", *PHOTOS])
def test_the_numpy_conversion_of_the_onnx_backend_agrees_with_the_torch_one(source):
    from colorkit.kernel import color_numpy

    rng = np.random.default_rng(1)
    if source == "random":
        rgb = rng.random((48, 64, 3)).astype(np.float32)
    else:
        rgb = (getattr(data, source)()[..., :3] / 255.0).astype(np.float32)
    l_np = color_numpy.lightness(rgb)
    l_torch = _np(color.lightness(_t(rgb)))[..., 0]
    assert np.abs(l_np - l_torch).max() < 1e-3
    # strong, often out-of-gamut colour on that lightness: the gamut bisection is exercised too
    ab = rng.uniform(-110, 110, size=(*rgb.shape[:2], 2)).astype(np.float32)
    lab = np.concatenate([l_np[..., None], ab], axis=-1)
    out_np = color_numpy.lab_to_rgb_fitted(lab)
    out_torch = _np(color.lab_to_rgb_fitted(_t(lab)))
    assert np.abs(out_np - out_torch).max() < 1e-4


def test_the_onnx_runtime_backend_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, colorkit.engine.onnx_backend; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
