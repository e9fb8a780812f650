"""``colorkit eval`` and ``colorkit colorize`` end to end on a checkpoint trained for a few steps,
the any-size inference underneath them, and safe checkpoint loading."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from colorkit.kernel.errors import UsageError
from colorkit.kernel.experiment import experiment_from_sources
from colorkit.kernel.registry import build_registry
from cli_helpers import invoke, one_line_error


pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def model(run_dir):
    from colorkit.engine.inference import load_model

    return load_model(run_dir, build_registry(autoload=False))


def lightness(rgb: np.ndarray) -> np.ndarray:
    return skcolor.rgb2lab(rgb[..., :3])[..., 0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- loading ------------------------------------------------------------------------------------


def test_checkpoint_alone_rebuilds_the_generator(run_dir, model):
    assert model.working_size == 32  # the training size
    assert model.gen.size_multiple == 32 and not model.gen.training
    assert model.plugins["generator"]["package"] == "colorkit"
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    for k, v in model.gen.state_dict().items():
        assert torch.equal(v, state["gen"][k])


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    torch.save({"format": "colorkit-checkpoint", "version": 1, "payload": Evil()}, bad)
    from colorkit.engine.inference import load_model

    with pytest.raises(UsageError, match="not a readable colorkit checkpoint"):
        load_model(bad, build_registry(autoload=False))
    line = one_line_error(invoke(["colorize", bad, tmp_path, "--out", tmp_path / "out", "-q"]))
    assert "evil.pt" in line
    line = one_line_error(invoke(["eval", bad, "-q"]))
    assert "evil.pt" in line
    assert not marker.exists()
    # The refusal names what the file holds and never passes on PyTorch's advice to load unsafely.
    assert "io.open" in line and "weights_only" not in line and "trust" in line


def test_an_animated_gif_is_reported_in_one_line(run_dir, tmp_path):
    frames = [Image.fromarray(np.full((24, 24, 3), v, np.uint8)) for v in (40, 120, 200)]
    gif = tmp_path / "in" / "anim.gif"
    gif.parent.mkdir()
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50, loop=0)
    result = invoke(["colorize", run_dir, gif.parent, "--out", tmp_path / "out", "-q"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "anim.gif" in line]
    assert len(notes) == 1 and "has 3 frames; only the first was colorized" in notes[0], result.output
    assert (tmp_path / "out" / "anim.png").is_file()


def test_missing_generator_plugin_names_the_package_and_version(run_dir, tmp_path):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["experiment"]["gen"]["name"] = "fancy_unet"
    state["plugins"]["generator"] = {"name": "fancy_unet", "package": "colorkit-fancy", "version": "1.2.3"}
    path = tmp_path / "fancy.pt"
    torch.save(state, path)
    line = one_line_error(invoke(["colorize", path, tmp_path, "--out", tmp_path / "out", "-q"]))
    assert "fancy_unet" in line and "colorkit-fancy" in line and "1.2.3" in line and "pip install" in line


def test_bad_targets_are_one_line_errors(run_dir, tmp_path):
    assert "no such checkpoint" in one_line_error(invoke(["eval", tmp_path / "nope", "-q"]))
    assert "no checkpoints" in one_line_error(invoke(["colorize", tmp_path, "--model", tmp_path, "--out", tmp_path / "o"]))
    line = one_line_error(invoke(["eval", run_dir, "--metrics", "mae,acuracy", "-q"]))
    assert "did you mean 'accuracy'" in line
    assert "no split" in one_line_error(invoke(["eval", run_dir, "--split", "validation", "-q"]))
    assert "reads no files" in one_line_error(invoke(["eval", run_dir, "--data-root", tmp_path, "-q"]))


# -- inference ----------------------------------------------------------------------------------


def test_working_shape_keeps_aspect_and_multiples():
    from colorkit.engine.inference import working_shape

    assert working_shape(512, 512, 64, 32) == (64, 64)
    assert working_shape(1536, 2048, 256, 32) == (224, 288)  # 4:3 kept, area about 256^2
    assert working_shape(300, 1000, 64, 32) == (32, 128)
    assert working_shape(10, 10, 64, 32) == (64, 64)  # small inputs are enlarged
    assert working_shape(5, 4000, 32, 32) == (32, 896)  # never below one multiple; aspect kept on the long side
    h, w = working_shape(333, 777, 100, 1)
    assert abs(h * w - 100**2) < 300 and abs(w / h - 777 / 333) < 0.05


def test_fit_gamut_keeps_lightness_and_leaves_in_gamut_colours_alone():
    from colorkit.kernel.color import lab_to_rgb, rgb_to_lab
    from colorkit.kernel.color import fit_gamut

    g = torch.Generator().manual_seed(0)
    lab = torch.cat([torch.rand(1, 1, 32, 32, generator=g) * 100, (torch.rand(1, 2, 32, 32, generator=g) * 2 - 1) * 127], 1).double()
    fitted = fit_gamut(lab)
    back = rgb_to_lab(lab_to_rgb(fitted))
    assert (back[:, 0] - lab[:, 0]).abs().max() < 0.1  # clipping RGB instead changes L* by tens
    assert (back - fitted).abs().max() < 0.5  # what is shown is what was fitted
    chroma = lambda x: x[:, 1:].pow(2).sum(1).sqrt()  # noqa: E731
    assert (chroma(fitted) <= chroma(lab) + 1e-9).all()
    photo_rgb = torch.from_numpy(skdata.coffee()[:64, :64]).permute(2, 0, 1)[None].double() / 255
    photo = rgb_to_lab(photo_rgb)
    assert torch.allclose(fit_gamut(photo), photo, atol=1e-9)
    from colorkit.kernel.color import lab_to_rgb_fitted, lightness

    assert torch.allclose(lab_to_rgb_fitted(lab), lab_to_rgb(fitted), atol=1e-9)
    assert torch.allclose(lab_to_rgb_fitted(photo), photo_rgb, atol=1e-9)
    assert torch.allclose(lightness(photo_rgb), photo[:, :1], atol=1e-9)


def test_colorize_array_any_size_keeps_l_for_ab_and_lab_generators(model):
    from colorkit.engine.inference import colorize_array
    from colorkit.plugins.unet import UNetOptions
    from colorkit.plugins.unet_model import UNet

    lab_gen = UNet(UNetOptions(base=4, depth=3, output="lab")).eval()  # its own L* is discarded
    photo = skdata.astronaut()[:150, :437]
    for m in (model, lab_gen):
        for image in (photo, skdata.camera()[:97, :61], photo.astype(np.float32) / 255.0):
            out = colorize_array(m, image)
            assert out.shape == (*image.shape[:2], 3) and out.dtype == np.uint8
            src = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
            src = src if src.dtype != np.uint8 else src.astype(np.float64) / 255.0
            assert np.abs(lightness(out) - lightness(src)).max() <= 1.0


def test_python_api_returns_a_pil_image(run_dir, tmp_path):
    from colorkit.engine.colorizer import colorize

    path = tmp_path / "cat.jpg"
    Image.fromarray(skdata.chelsea()).save(path)
    out = colorize(run_dir, path, device="cpu")
    assert isinstance(out, Image.Image) and out.size == (451, 300) and out.mode == "RGB"
    again = colorize(run_dir, np.asarray(Image.open(path)))
    assert np.array_equal(np.asarray(out), np.asarray(again))
    rgba = colorize(run_dir, Image.open(path).convert("LA"))
    assert rgba.mode == "RGBA" and rgba.size == (451, 300)


# -- eval ---------------------------------------------------------------------------------------


def test_eval_prints_a_table_with_the_no_colour_row_and_writes_json_and_grid(run_dir, tmp_path):
    out_json, grid = tmp_path / "r.json", tmp_path / "grid.png"
    result = invoke(["eval", run_dir, "--metrics", "mae,accuracy,psnr,ssim,auc", "--limit", "6", "--batch-size", "4",
                     "--json", out_json, "--grid", grid, "--grid-rows", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "no colour" in result.output and "samples / test: 6 images" in result.output
    for name in ("mae", "accuracy", "psnr", "ssim", "auc"):
        assert name in result.output
    report = json.loads(out_json.read_text())
    assert report["images"] == 6 and report["split"] == "test" and report["dataset"]["name"] == "samples"
    assert [r["label"] for r in report["rows"]][0] == "no colour" and len(report["rows"]) == 2
    assert report["metrics"]["mae"]["higher_is_better"] is False and report["metrics"]["psnr"]["unit"] == "dB"
    assert "0..255" in report["metrics"]["mae"]["definition"]
    for row in report["rows"]:
        assert all(math.isfinite(v) for v in row["values"].values())
    assert report["rows"][1]["step"] == 2
    # three 96 px cells across (grayscale | original | prediction), a header of 12 px lines above
    # three rows: the experiment's names and the checkpoint, wrapped
    img = np.asarray(Image.open(grid))
    assert img.shape[1] == 3 * 98 + 2 and (img.shape[0] - (3 * 98 + 2) - 4) % 12 == 0
    assert img.shape[0] - (3 * 98 + 2) >= 4 + 3 * 12


def test_eval_no_colour_row_matches_an_independent_computation(run_dir, tmp_path):
    from colorkit.plugins.samples import SamplesOptions
    from colorkit.plugins.samples_data import Samples

    out_json = tmp_path / "r.json"
    result = invoke(["eval", run_dir, "--metrics", "mae,psnr", "--first", "5", "--json", out_json, "-q"])
    assert result.exit_code == 0, result.output
    ref = json.loads(out_json.read_text())["rows"][0]["values"]
    data = Samples(SamplesOptions(size=32, eval_crops=8)).split("test")
    maes, psnrs = [], []
    for i in range(5):
        rgb = data[i].permute(1, 2, 0).numpy().astype(np.float64) / 255.0
        lab = skcolor.rgb2lab(rgb)
        lab[..., 1:] = 0
        grey = np.round(np.clip(skcolor.lab2rgb(lab), 0, 1) * 255) / 255
        maes.append(np.abs(grey - rgb).mean() * 255)
        psnrs.append(10 * np.log10(1 / (((grey - rgb) ** 2).mean() + 1e-8)))
    assert ref["mae"] == pytest.approx(np.mean(maes), abs=0.02)
    assert ref["psnr"] == pytest.approx(np.mean(psnrs), abs=0.02)


def test_eval_several_checkpoints_side_by_side(run_dir, tmp_path):
    grid = tmp_path / "g.png"
    result = invoke(["eval", run_dir, run_dir / "checkpoints" / "last.pt", "--limit", "4", "--grid", grid,
                     "--grid-rows", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.count("step 2)") == 2 and "no colour" in result.output
    assert "mae" in result.output and "psnr" not in result.output  # the metrics the run was trained with
    assert np.asarray(Image.open(grid)).shape[1] == 4 * 98 + 2


def test_evaluate_generator_for_validation_restores_the_mode(model, run_dir):
    from colorkit.engine.scoring import evaluate_generator
    from colorkit.plugins.samples import SamplesOptions
    from colorkit.plugins.samples_data import Samples

    data = Samples(SamplesOptions(size=32, eval_crops=8)).split("test")
    gen = model.gen
    gen.train()
    try:
        values = evaluate_generator(gen, data, ["mae", "psnr"], build_registry(autoload=False), "cpu",
                                    batch_size=3, limit=7)
        assert gen.training
    finally:
        gen.eval()
    assert set(values) == {"mae", "psnr"} and all(math.isfinite(v) for v in values.values())
    again = evaluate_generator(gen, data, ["mae", "psnr"], build_registry(autoload=False), "cpu", batch_size=7, limit=7)
    assert values == pytest.approx(again, rel=1e-9)  # batching does not change the numbers


# -- colorize -----------------------------------------------------------------------------------


@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "photos"
    (root / "family" / "1950s").mkdir(parents=True)
    Image.fromarray(skdata.camera()[:200, :300]).save(root / "family" / "grey.png")  # mode L
    rgba = np.dstack([skdata.coffee()[:120, :170], np.linspace(0, 255, 170, dtype=np.uint8)[None].repeat(120, 0)])
    Image.fromarray(rgba, "RGBA").save(root / "family" / "1950s" / "alpha.png")
    Image.fromarray(skdata.astronaut()).resize((1000, 300)).save(root / "wide.jpg", quality=90)
    (root / "family" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (root / "notes.txt").write_text("not an image, ignored")
    return root


def inputs_of(root: Path) -> dict[Path, str]:
    return {p: digest(p) for p in root.rglob("*") if p.is_file()}


def test_colorize_folder_end_to_end(run_dir, photo_folder, tmp_path):
    before = inputs_of(photo_folder)
    out = tmp_path / "out"
    result = invoke(["colorize", run_dir, photo_folder, "--out", out])
    assert result.exit_code == 1, result.output  # one unreadable file
    bad = [line for line in result.output.splitlines() if "broken.jpg" in line]
    assert len(bad) == 1 and bad[0].startswith("warning: ")
    assert "colorized 3 image(s)" in result.output and "1 failed" in result.output
    assert "Traceback" not in result.output
    pairs = {
        photo_folder / "family" / "grey.png": out / "family" / "grey.png",
        photo_folder / "family" / "1950s" / "alpha.png": out / "family" / "1950s" / "alpha.png",
        photo_folder / "wide.jpg": out / "wide.png",
    }
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(pairs.values())
    for src, dst in pairs.items():
        a, b = Image.open(src), Image.open(dst)
        assert a.size == b.size, src
        sa, sb = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
        assert np.abs(lightness(sa) - lightness(sb)).max() <= 1.0, src
        assert skcolor.rgb2lab(sb)[..., 1:].std() > 0.5  # it has colour now
    assert Image.open(out / "wide.png").size == (1000, 300)
    alpha_out = Image.open(out / "family" / "1950s" / "alpha.png")
    assert alpha_out.mode == "RGBA"
    alpha_in = Image.open(photo_folder / "family" / "1950s" / "alpha.png")
    assert np.array_equal(np.asarray(alpha_out)[..., 3], np.asarray(alpha_in)[..., 3])
    assert inputs_of(photo_folder) == before  # no input touched


@pytest.mark.slow
def test_colorize_never_overwrites_inputs_and_respects_existing_outputs(run_dir, photo_folder, tmp_path):
    before = inputs_of(photo_folder)
    # Output folder = input folder: grey.png and alpha.png would overwrite themselves
    result = invoke(["colorize", run_dir, photo_folder, "--out", photo_folder, "-q"])
    assert result.exit_code == 1, result.output
    assert result.output.count("would overwrite an input") == 2
    assert {p: h for p, h in inputs_of(photo_folder).items() if p in before} == before
    assert (photo_folder / "wide.png").is_file()  # a new name beside its input is fine
    # the new file is not an input next time, and without --overwrite it is left alone
    stamp = digest(photo_folder / "wide.png")
    result = invoke(["colorize", run_dir, photo_folder / "wide.jpg", "--out", photo_folder, "--size", "64", "-q"])
    assert result.exit_code == 0 and "--overwrite" in result.output
    assert digest(photo_folder / "wide.png") == stamp
    result = invoke(["colorize", run_dir, photo_folder / "wide.jpg", "--out", photo_folder, "--size", "64",
                     "--overwrite", "-q"])
    assert result.exit_code == 0, result.output
    assert digest(photo_folder / "wide.png") != stamp  # another working size, another colouring
    assert {p: h for p, h in inputs_of(photo_folder).items() if p in before} == before


def test_colorize_jpeg_output_and_an_output_folder_inside_the_input(run_dir, photo_folder):
    out = photo_folder / "colour"
    result = invoke(["colorize", run_dir, photo_folder, "--out", out, "--format", "jpeg", "-q"])
    assert result.exit_code == 1, result.output
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert made == ["family/1950s/alpha.jpg", "family/grey.jpg", "wide.jpg"]
    assert Image.open(out / "wide.jpg").format == "JPEG" and Image.open(out / "wide.jpg").size == (1000, 300)
    # a second run does not pick up its own outputs as inputs
    result = invoke(["colorize", run_dir, photo_folder, "--out", out, "--format", "jpeg", "-q"])
    assert "3 output(s) exist already" in result.output
    assert not (out / "colour").exists()


@pytest.mark.slow
def test_colorize_exit_codes_follow_one_rule(run_dir, photo_folder, tmp_path):
    """0: every photo written; 1: some photos could not be read (a `warning:` line each, the others
    written); 2: a user mistake (`error:`, one line), and nothing is written."""
    good = photo_folder / "wide.jpg"
    result = invoke(["colorize", run_dir, good, tmp_path / "missing.jpg", "--out", tmp_path / "o", "-q"])
    assert result.exit_code == 2 and not (tmp_path / "o").exists()
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'missing.jpg'}: no such file or folder; check the path (nothing was colorized)"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    result = invoke(["colorize", run_dir, tmp_path / "empty", "--out", tmp_path / "o", "-q"])
    assert result.exit_code == 2 and result.output.startswith(f"error: no photos in {tmp_path / 'empty'}")
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    result = invoke(["colorize", run_dir, photo_folder / "family" / "broken.jpg", good, "--out", tmp_path / "o", "-q"])
    assert result.exit_code == 1 and result.output.startswith(f"warning: {photo_folder / 'family' / 'broken.jpg'}: cannot read")
    assert (tmp_path / "o" / "wide.png").is_file()
    result = invoke(["colorize", run_dir, good, "--out", tmp_path / "o2", "-q"])
    assert result.exit_code == 0 and (tmp_path / "o2" / "wide.png").is_file()
    result = invoke(["colorize", run_dir, tmp_path, "--out", tmp_path / "o", "--format", "gif"])
    assert result.exit_code == 2


@pytest.mark.slow
def test_python_api_doc_examples_run(run_dir, tmp_path, monkeypatch):
    """Every ``python`` block of docs/python-api.md runs, in order, in one namespace."""
    import re

    import colorkit
    from colorkit.engine.colorizer import colorize

    monkeypatch.setattr(colorkit, "colorize", getattr(colorkit, "colorize", colorize), raising=False)
    doc = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
    blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) >= 4
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "my-run").symlink_to(run_dir)
    Image.fromarray(skdata.camera()[:120, :160]).save(tmp_path / "old-photo.jpg")
    (tmp_path / "photos" / "a").mkdir(parents=True)
    Image.fromarray(skdata.coffee()[:90, :100]).save(tmp_path / "photos" / "a" / "cup.png")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "old-photo-colour.png").is_file()
    assert (tmp_path / "colourised" / "a" / "cup.png").is_file()


def test_eval_limit_scores_a_seeded_sample_spread_over_a_split_sorted_by_class(run_dir, tmp_path):
    from colorkit.engine.images import sample_indices as spread_indices  # the one seeded spread sample

    labels = np.repeat(np.arange(10), 1000)  # CIFAR-10's test split: sorted by class
    picks = spread_indices(len(labels), 2000)
    assert len(set(picks)) == 2000 and all(0 <= i < 10000 for i in picks)
    assert np.bincount(labels[picks], minlength=10).tolist() == [200] * 10  # every class its share
    assert spread_indices(10000, 2000) == picks and spread_indices(10000, 2000, seed=1) != picks
    assert spread_indices(5, 9) == [0, 1, 2, 3, 4]
    odd = spread_indices(7, 3)  # runs [0, 2), [2, 4), [4, 7)
    assert 0 <= odd[0] < 2 <= odd[1] < 4 <= odd[2] < 7
    # the command says what it scored, and --first is the old first-N
    out = tmp_path / "r.json"
    assert invoke(["eval", run_dir, "--metrics", "mae", "--limit", "3", "--json", out, "-q"]).exit_code == 0
    saved = json.loads(out.read_text())
    assert saved["images"] == 3 and saved["limit"] == 3 and saved["sample"] == "spread over the split, seed 0"
    line = one_line_error(invoke(["eval", run_dir, "--limit", "3", "--first", "3", "-q"]))
    assert "--limit" in line and "--first" in line
