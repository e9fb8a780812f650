"""One evaluation path: in-training validation, ``colorkit eval`` and ``colorkit colorize`` score
the same images the same way, on the split each role names (issue 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

from colorkit.kernel.files import read_jsonl
from cli_helpers import invoke, one_line_error

METRICS = "mae,accuracy,psnr,colorfulness_gap"
TINY = ["--set", "gen.base=8", "--set", "disc.base=8", "--set", "dataset.size=32",
        "--set", "dataset.crops_per_epoch=32", "--set", "dataset.eval_crops=12", "--batch-size", "8",
        "--metrics", METRICS, "-q"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLORKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def eval_json(args, path: Path) -> dict:
    result = invoke(["eval", *args, "--json", path, "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    """The paper's set-up in small: a U-Net predicting L*a*b*, a GAN, two epochs."""
    run = tmp_path_factory.mktemp("lab") / "run"
    result = invoke(["run", "--epochs", "2", "--set", "gen.output=lab", *TINY, "--out", run])
    assert result.exit_code == 0, result.output
    return run


def test_config_names_each_role_split_and_its_image_count(lab_run):
    config = yaml.safe_load((lab_run / "config.yaml").read_text())
    assert config["splits"]["train"] == {"split": "train", "images": 32}
    assert config["splits"]["val"] == {"split": "val", "images": 12, "validated": 12}
    assert config["splits"]["test"]["split"] == "test"


def test_last_validation_equals_eval_on_the_val_split(lab_run, tmp_path):
    vals = [r for r in read_jsonl(lab_run / "metrics.jsonl") if r["event"] == "val"]
    assert len(vals) == 2
    ev = eval_json([lab_run / "checkpoints" / "last.pt", "--split", "val", "--metrics", METRICS], tmp_path / "e.json")
    assert ev["split"] == "val" and ev["images"] == 12
    model = ev["rows"][1]
    assert model["variant"] is None and model["step"] == vals[-1]["step"]
    for name in METRICS.split(","):
        assert model["values"][name] == pytest.approx(vals[-1][f"val_{name}"], rel=1e-6, abs=1e-6), name


def test_best_checkpoint_is_chosen_on_val_and_eval_reports_on_test(lab_run, tmp_path):
    vals = [r for r in read_jsonl(lab_run / "metrics.jsonl") if r["event"] == "val"]
    best_step = min(vals, key=lambda r: r["val_mae"])["step"]  # mae is the first metric: lower is better
    ev = eval_json([lab_run], tmp_path / "test.json")  # a run directory: best.pt
    assert ev["split"] == "test" and ev["images"] == 12
    assert ev["rows"][1]["step"] == best_step
    on_val = eval_json([lab_run, "--split", "val"], tmp_path / "val.json")
    assert on_val["rows"][1]["values"]["mae"] == pytest.approx(min(r["val_mae"] for r in vals), rel=1e-6)
    # the test images are not the val images: the floor differs
    assert ev["rows"][0]["values"]["mae"] != pytest.approx(on_val["rows"][0]["values"]["mae"])


def test_an_lab_generator_is_scored_on_the_input_lightness_with_its_own_as_an_extra_row(lab_run, tmp_path):
    ev = eval_json([lab_run / "checkpoints" / "last.pt", "--metrics", METRICS], tmp_path / "e.json")
    labels = [r["label"] for r in ev["rows"]]
    assert [r["variant"] for r in ev["rows"]] == [None, None, "own L*"]
    assert labels[2] == labels[1] + " (own L*)"
    # The two rows score different images: with the input's L*, lightness is exact.
    assert ev["rows"][1]["values"] != ev["rows"][2]["values"]


def colour_photos(root: Path) -> dict[str, np.ndarray]:
    """Real photos of three sizes, a grayscale one and a broken file."""
    photos = {
        "coffee.png": skdata.coffee()[:150, :210],
        "sub/astronaut.png": skdata.astronaut()[::4, ::4][:100, :90],
        "sub/deeper/chelsea.png": skdata.chelsea()[:64, :96],
    }
    for rel, arr in photos.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / rel)
    Image.fromarray(skdata.camera()[:40, :40]).save(root / "gray.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    return photos


def test_eval_images_scores_exactly_what_colorize_writes(lab_run, tmp_path):
    folder = tmp_path / "photos"
    photos = colour_photos(folder)
    result = invoke(["colorize", lab_run, folder, "--out", tmp_path / "out", "-q"])
    assert result.exit_code == 1, result.output  # the broken file fails; the others are written
    ev = eval_json([lab_run, "--images", folder, "--metrics", "mae,psnr"], tmp_path / "e.json")
    assert ev["images"] == 3 and sorted(ev["files"]) == sorted(photos)
    # Independently, on the files colorize wrote: MAE pooled over every pixel and channel (0-255),
    # PSNR per photo (scikit-image, data range 255) and then averaged over photos.
    abs_sum, count, psnrs = 0.0, 0, []
    for rel, truth in photos.items():
        written = np.asarray(Image.open(tmp_path / "out" / rel).convert("RGB"))
        assert written.shape == truth.shape
        diff = np.abs(written.astype(np.float64) - truth.astype(np.float64))
        abs_sum, count = abs_sum + diff.sum(), count + diff.size
        psnrs.append(peak_signal_noise_ratio(truth, written, data_range=255))
    model = ev["rows"][1]["values"]
    assert model["mae"] == pytest.approx(abs_sum / count, abs=1e-3)
    assert model["psnr"] == pytest.approx(float(np.mean(psnrs)), abs=1e-3)
    assert ev["rows"][0]["label"] == "no colour" and ev["rows"][0]["values"]["mae"] != model["mae"]


def test_eval_images_notes_what_it_left_out(lab_run, tmp_path):
    folder = tmp_path / "photos"
    colour_photos(folder)
    result = invoke(["eval", lab_run, "--images", folder, "--metrics", "mae", "-q"])
    assert result.exit_code == 0, result.output
    assert "gray.png: grayscale: no colour to compare with, left out" in result.output
    assert "broken.jpg: cannot read" in result.output


def test_bad_split_and_image_inputs_are_one_line_errors(lab_run, tmp_path):
    line = one_line_error(invoke(["eval", lab_run, "--split", "nosuch", "-q"]))
    assert "no split 'nosuch'" in line and "train, val, test" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    Image.fromarray(skdata.camera()[:40, :40]).save(empty / "gray.png")
    (empty / "notes.txt").write_text("no photo here")
    result = invoke(["eval", lab_run, "--images", empty, "-q"])
    *notes, last = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and last.startswith("error: ") and "no readable colour photo" in last
    assert [n.split(": ", 2)[-1] for n in notes] == ["grayscale: no colour to compare with, left out"]
    assert "not a folder" in one_line_error(invoke(["eval", lab_run, "--images", tmp_path / "none", "-q"]))
    assert "cannot go with it" in one_line_error(invoke(["eval", lab_run, "--images", empty, "--split", "val", "-q"]))


def test_a_val_size_larger_than_the_training_split_is_one_line(tmp_path):
    from colorkit.plugins.cifar10_data import write_python_archive

    rng = np.random.default_rng(0)
    archive = write_python_archive(tmp_path / "cifar-10-python.tar.gz", rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
                                   rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    line = one_line_error(invoke(["run", "--dataset", "cifar10", "--data-root", archive, "--set", "dataset.val_size=10",
                                  "--set", f"dataset.cache={tmp_path / 'cache'}", "--out", tmp_path / "run", "-q"]))
    assert "dataset.val_size=10" in line and "10 images" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ddp_validation_is_merged_over_ranks_and_equals_one_process(tmp_path):
    """Two CPU processes each score half of val; the merged numbers (which pick best.pt) are
    those of one process evaluating the saved checkpoint."""
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "colorkit", "run", "--nproc", "2", "--epochs", "1",
                           *TINY, "--set", "dataset.eval_crops=11", "--out", str(run)],
                          capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    val = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "val"][-1]
    ev = eval_json([run / "checkpoints" / "last.pt", "--split", "val", "--metrics", METRICS, "--device", "cpu"],
                   tmp_path / "e.json")
    assert ev["images"] == 11  # an odd count: the shards are 6 and 5 images, none dropped or repeated
    assert yaml.safe_load((run / "config.yaml").read_text())["splits"]["val"]["validated"] == 11
    for name in METRICS.split(","):
        assert ev["rows"][1]["values"][name] == pytest.approx(val[f"val_{name}"], rel=1e-6, abs=1e-6), name
