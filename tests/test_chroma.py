"""L*-guided upsampling of the predicted chroma (``chroma="guided"``): the filter in torch and its
NumPy twin, and the option as it flows through load_model, model files, colorize, eval, export
and the ONNX Runtime backend."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from colorkit.engine import chroma, chroma_numpy
from colorkit.kernel.color import AB_SCALE
from colorkit.kernel.errors import UsageError
from colorkit.kernel.registry import build_registry
from cli_helpers import invoke, one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_case(seed: int, batch: int = 2, small=(12, 17), full=(50, 61)):
    g = torch.Generator().manual_seed(seed)
    guide_full = torch.rand(batch, 1, *full, generator=g) * 100.0
    guide_small = F.interpolate(guide_full, size=small, mode="bilinear", antialias=True, align_corners=False)
    ab = (torch.rand(batch, 2, *small, generator=g) * 2 - 1) * AB_SCALE
    return guide_small, guide_full, ab


@pytest.mark.parametrize("radius, eps", [(1, 1e-3), (2, 1e-2), (0, 1e-4)])
def test_torch_and_numpy_guided_upsampling_agree(radius, eps):
    for seed in range(3):
        guide_small, guide_full, ab = _random_case(seed)
        got = chroma.guided_upsample(guide_small, guide_full, ab, radius=radius, eps=eps)
        twin = chroma_numpy.guided_upsample(guide_small.numpy(), guide_full.numpy(), ab.numpy(), radius=radius, eps=eps)
        assert got.shape == twin.shape == (2, 2, 50, 61) and got.dtype == torch.float32 and twin.dtype == np.float32
        assert np.isfinite(twin).all()
        # in a*b* units: 1e-5 of the model's range (float32 rounding of A * L* + B only)
        assert np.abs(got.numpy() - twin).max() < 1e-3
        # never beyond the range of what it upsamples
        lo, hi = ab.amin(dim=(-2, -1), keepdim=True), ab.amax(dim=(-2, -1), keepdim=True)
        assert bool(((got >= lo) & (got <= hi)).all())


def test_the_numpy_bilinear_upsampling_is_torchs_by_bands_of_rows():
    x = torch.rand(1, 2, 12, 17)
    ref = F.interpolate(x, size=(50, 61), mode="bilinear", align_corners=False).numpy()
    assert np.abs(chroma_numpy.upsample_bilinear(x.numpy(), 50, 61) - ref).max() < 1e-6
    band = chroma_numpy.upsample_bilinear(x.numpy(), 50, 61, 10, 23)
    assert np.abs(band - ref[..., 10:23, :]).max() < 1e-6


def test_constant_chroma_stays_constant():
    guide_small, guide_full, _ = _random_case(7)
    ab = torch.empty(2, 2, 12, 17)
    ab[:, 0], ab[:, 1] = 23.5, -41.25
    got = chroma.guided_upsample(guide_small, guide_full, ab)
    twin = chroma_numpy.guided_upsample(guide_small.numpy(), guide_full.numpy(), ab.numpy())
    for out in (got.numpy(), twin):
        assert np.allclose(out[:, 0], 23.5, atol=1e-5) and np.allclose(out[:, 1], -41.25, atol=1e-5)


@pytest.mark.parametrize("edge", [32, 30, 33])
def test_a_chroma_step_along_an_l_edge_stays_sharp_where_bilinear_bleeds(edge):
    """A photo whose colour changes exactly where its lightness does, seen at a quarter of its
    size (as a model that predicted perfectly at its working size would see and colour it)."""
    full = torch.full((1, 1, 64, 64), 30.0)
    full[..., edge:] = 70.0
    truth = torch.empty(1, 2, 64, 64)
    truth[:, 0], truth[:, 1] = -40.0, 20.0
    truth[:, 0, :, edge:], truth[:, 1, :, edge:] = 40.0, -10.0
    small = F.interpolate(full, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    ab_small = F.interpolate(truth, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    bilinear = F.interpolate(ab_small, size=(64, 64), mode="bilinear", align_corners=False)
    guided = chroma.guided_upsample(small, full, ab_small)

    def bleed(x: torch.Tensor) -> int:  # columns more than 2 a*b* units off the true colour
        return int(((x - truth).abs() > 2.0).any(dim=1)[0, 0].sum())

    assert (guided - truth).abs().mean() < 0.25 * (bilinear - truth).abs().mean()
    assert bleed(guided) <= 2 < 8 <= bleed(bilinear)


# -- the option, end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def guided_file(run_dir, tmp_path_factory):
    """A model file of the test run that records ``chroma_upsample: guided`` and working size 24."""
    from colorkit.engine.checkpoints import write_model_file

    out = tmp_path_factory.mktemp("chroma") / "guided.pt"
    return write_model_file(run_dir, out, half=False, working_size=24, chroma="guided")


def test_model_files_record_it_load_model_reads_it_and_an_argument_overrides_it(run_dir, guided_file, tmp_path):
    from colorkit.engine.checkpoints import write_model_file
    from colorkit.engine.inference import load_model

    registry = build_registry(autoload=False)
    assert load_model(run_dir, registry).chroma == "bilinear"  # a checkpoint records none
    assert load_model(guided_file, registry).chroma == "guided"
    assert load_model(guided_file, registry, chroma="bilinear").chroma == "bilinear"
    again = write_model_file(guided_file, tmp_path / "again.pt", half=False)  # a model file of a model file
    state = torch.load(again, weights_only=True)
    assert state["chroma_upsample"] == "guided" and state["working_size"] == 24
    assert invoke(["export", run_dir, "--format", "model", "--chroma", "guided", "--out", tmp_path / "m.pt"]).exit_code == 0
    assert load_model(tmp_path / "m.pt", registry).chroma == "guided"
    with pytest.raises(UsageError, match="--chroma 'sharp': use bilinear or guided"):
        load_model(run_dir, registry, chroma="sharp")
    state["chroma_upsample"] = "lanczos"  # a file from a newer colorkit
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(UsageError, match="newer.pt: records chroma_upsample 'lanczos'"):
        load_model(tmp_path / "newer.pt", registry)


def test_colorize_array_guided_keeps_l_and_bilinear_stays_the_default(run_dir, guided_file):
    from colorkit.engine.inference import colorize_array, load_model

    model = load_model(run_dir, build_registry(autoload=False))
    photo = skdata.astronaut()[:150, :437]
    plain = colorize_array(model, photo)
    assert np.array_equal(plain, colorize_array(model, photo, chroma="bilinear"))
    guided = colorize_array(model, photo, chroma="guided")
    assert guided.shape == plain.shape and not np.array_equal(guided, plain)
    assert np.abs(skcolor.rgb2lab(guided)[..., 0] - skcolor.rgb2lab(photo)[..., 0]).max() <= 1.0
    from_file = load_model(guided_file, build_registry(autoload=False), working_size=32)
    assert np.array_equal(colorize_array(from_file, photo), guided)  # the file's default is the same path


@pytest.mark.slow
def test_cli_colorize_and_eval_take_chroma_and_refuse_unknown_values(run_dir, guided_file, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.chelsea()).save(photos / "cat.png")
    outs = {}
    for how in ("bilinear", "guided"):
        result = invoke(["colorize", photos, "--model", run_dir, "--out", tmp_path / how, "--chroma", how, "-q"])
        assert result.exit_code == 0, result.output
        outs[how] = np.asarray(Image.open(tmp_path / how / "cat.png"))
    result = invoke(["colorize", photos, "--model", run_dir, "--out", tmp_path / "default", "-q"])
    assert result.exit_code == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "default" / "cat.png")), outs["bilinear"])
    assert not np.array_equal(outs["bilinear"], outs["guided"])
    for args in (["colorize", photos, "--model", run_dir, "--out", tmp_path / "x"], ["eval", run_dir, "--images", photos],
                 ["eval", run_dir], ["export", run_dir, "--out", tmp_path / "m.onnx"]):
        line = one_line_error(invoke([*args, "--chroma", "sharp", "-q"] if args[0] != "export" else [*args, "--chroma", "sharp"]))
        assert "--chroma 'sharp': use bilinear or guided" in line
    assert not (tmp_path / "x").exists() and not (tmp_path / "m.onnx").exists()
    scores = {}
    for how in ("bilinear", "guided"):
        result = invoke(["eval", run_dir, "--images", photos, "--metrics", "mae", "--chroma", how,
                         "--json", tmp_path / f"{how}.json", "-q"])
        assert result.exit_code == 0, result.output
        scores[how] = json.loads((tmp_path / f"{how}.json").read_text())
        assert scores[how]["chroma"] == how
    assert scores["bilinear"]["rows"][1]["values"] != scores["guided"]["rows"][1]["values"]
    result = invoke(["eval", run_dir, "--limit", "2", "--metrics", "mae", "--chroma", "guided", "--json",
                     tmp_path / "d.json", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d.json").read_text())["chroma"] == ["guided"]


def test_python_api_takes_chroma(run_dir, tmp_path):
    from colorkit.engine.colorizer import colorize, colorize_files

    photo = skdata.chelsea()
    plain, guided = (np.asarray(colorize(run_dir, photo, chroma=c)) for c in ("bilinear", "guided"))
    assert not np.array_equal(plain, guided)
    Image.fromarray(photo).save(tmp_path / "cat.png")
    report = colorize_files(run_dir, [tmp_path / "cat.png"], tmp_path / "out", chroma="guided", device="cpu")
    assert np.array_equal(np.asarray(Image.open(report.written[0])), guided)
    with pytest.raises(UsageError, match="--chroma 'x'"):
        colorize(run_dir, photo, chroma="x")
    with pytest.raises(UsageError, match="--chroma 'x'"):
        colorize_files(run_dir, [tmp_path / "cat.png"], tmp_path / "out2", chroma="x")


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.slow
def test_exports_record_it_and_the_onnx_backend_honours_it(run_dir, guided_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from colorkit.engine import onnx_backend
    from colorkit.engine.export import METADATA_KEYS
    from colorkit.engine.inference import colorize_array, load_model

    assert "colorkit.chroma_upsample" in METADATA_KEYS
    for target, extra, want in ((guided_file, [], "guided"), (run_dir, [], "bilinear"), (run_dir, ["--chroma", "guided"], "guided")):
        out = tmp_path / f"{want}-{len(extra)}.onnx"
        assert invoke(["export", target, "--out", out, *extra]).exit_code == 0
        assert onnx_backend.load_onnx(out).chroma == want
    ts = tmp_path / "m.ts"
    assert invoke(["export", guided_file, "--format", "torchscript", "--out", ts]).exit_code == 0
    files = {"colorkit.json": ""}
    torch.jit.load(str(ts), _extra_files=files)
    assert json.loads(files["colorkit.json"])["colorkit.chroma_upsample"] == "guided"
    photo = skdata.astronaut()[:150, :437]
    onnx_model = onnx_backend.load_onnx(tmp_path / "guided-0.onnx")
    torch_model = load_model(guided_file, build_registry(autoload=False))
    for how in ("guided", "bilinear"):
        x = colorize_array(torch_model, photo, chroma=how).astype(int)
        y = onnx_backend.colorize_array(onnx_model, photo, chroma=how).astype(int)
        d = np.abs(x - y)
        assert d.max() <= 8 and d.mean() < 0.05, (how, d.max(), d.mean())
    assert onnx_backend.load_onnx(tmp_path / "guided-0.onnx", chroma="bilinear").chroma == "bilinear"
    with pytest.raises(UsageError, match="--chroma 'x'"):
        onnx_backend.load_onnx(tmp_path / "guided-0.onnx", chroma="x")
