"""What a run directory holds (issue 16): a generator-only ``best.pt`` unless
``train.keep_best_state``, a ``samples.png`` drawn from the checkpoint colorize reads, and files
with the usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorkit.engine.checkpoints import load_checkpoint
from colorkit.engine.images import comparison_grid, model_header, sample_indices, wrap_label

from cli_helpers import invoke
from test_training import TINY

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: What a checkpoint holds besides its tensors (experiment, plugin versions, counters, the
#: pickle's framing): a bound, not a measurement.
CHECKPOINT_OVERHEAD = 1 << 20
#: What a run directory holds besides its checkpoints (config, manifest, log, samples.png).
RUN_FILES_OVERHEAD = 2 << 20


def tensor_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


@pytest.mark.slow
def test_a_default_shaped_run_directory_stays_small(tmp_path):
    """The default generator and discriminator, one step: ``best.pt`` is the generator's weights
    (a quarter of ``last.pt``'s weights and Adam moments), the run directory under the bound the
    parameter counts give. The README states the sizes of the default run's files."""
    from colorkit.engine.components import build_components
    from colorkit.engine.runs import train
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    registry = build_registry(autoload=False)
    exp = experiment_from_sources(registry, cli={"metrics": ["mae"], "train": {
        "epochs": 1, "max_steps": 1, "batch_size": 2, "device": "cpu", "grid_rows": 2}},
        sets=["dataset.size=32", "dataset.crops_per_epoch=2", "dataset.eval_crops=2"])
    parts = build_components(registry, exp)
    gen, disc = tensor_bytes(parts.gen), tensor_bytes(parts.disc)
    assert gen > 100e6 and disc > 10e6  # the default shapes (float32), not a shrunken model
    run = tmp_path / "run"
    train(registry, exp, run, progress=False)
    best, last = (run / "checkpoints" / n for n in ("best.pt", "last.pt"))
    # last.pt: weights + Adam's two moments for both networks; best.pt: the generator's weights
    assert last.stat().st_size <= 3 * (gen + disc) + CHECKPOINT_OVERHEAD
    assert gen <= best.stat().st_size <= gen + CHECKPOINT_OVERHEAD
    assert best.stat().st_size < 0.35 * last.stat().st_size
    total = sum(p.stat().st_size for p in run.rglob("*") if p.is_file())
    assert total <= 4 * gen + 3 * disc + 2 * CHECKPOINT_OVERHEAD + RUN_FILES_OVERHEAD
    state = load_checkpoint(best)
    assert not {"opt_g", "opt_d", "disc", "rng", "sched_g"} & set(state) and state["weights"] == "gen"
    assert state["step"] == 1 and state["experiment"] == load_checkpoint(last)["experiment"]


@pytest.mark.slow
def test_best_holds_the_averaged_weights_and_eval_export_colorize_read_it(tmp_path):
    run, photo = tmp_path / "run", tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo)
    result = invoke(["run", "--epochs", "1", "--set", "train.ema=0.9", *TINY, "--out", run])
    assert result.exit_code == 0, result.output
    best, last = (load_checkpoint(run / "checkpoints" / n) for n in ("best.pt", "last.pt"))
    assert best["step"] == last["step"] and best["weights"] == "ema" and "gen_ema" not in best
    assert all(torch.equal(t, last["gen_ema"][k]) for k, t in best["gen"].items())
    assert not all(torch.equal(t, last["gen"][k]) for k, t in best["gen"].items())
    for args in (["eval", run, "--limit", "2", "-q"], ["colorize", "--model", run, photo, "--out", tmp_path / "o", "-q"],
                 ["export", run, "--format", "model", "--out", tmp_path / "m.pt"]):
        result = invoke(args)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "photo.png").is_file()
    assert all(torch.equal(t.float(), best["gen"][k].half().float())
               for k, t in load_checkpoint(tmp_path / "m.pt")["gen"].items())


@pytest.mark.slow
def test_keep_best_state_keeps_the_full_training_state(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "1", "--set", "train.keep_best_state=true", *TINY, "--out", run])
    assert result.exit_code == 0, result.output
    best, last = (run / "checkpoints" / n for n in ("best.pt", "last.pt"))
    assert best.read_bytes() == last.read_bytes() and "opt_d" in load_checkpoint(best)
    from colorkit.kernel.experiment import TrainOptions
    from colorkit.kernel.options import describe_options

    (field,) = [f for f in describe_options(TrainOptions) if f["name"] == "keep_best_state"]
    assert field["default"] is False and "optimiser" in field["help"]


@pytest.mark.slow
def test_samples_png_is_drawn_from_the_checkpoint_colorize_reads(tmp_path):
    from colorkit.engine.components import build_components
    from colorkit.engine.inference import load_model
    from colorkit.kernel.experiment import experiment_from_dict
    from colorkit.kernel.registry import build_registry

    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "2", "--set", "train.grid_rows=3", "--set", "train.seed=3", *TINY,
                     "--out", run])
    assert result.exit_code == 0, result.output
    best, last = (load_checkpoint(run / "checkpoints" / n) for n in ("best.pt", "last.pt"))
    assert best["step"] < last["step"]  # the first epoch validated best: the two differ
    registry = build_registry(autoload=False)
    model = load_model(run, registry)
    assert Path(model.path).name == "best.pt"
    exp = experiment_from_dict(registry, best["experiment"], "best.pt")
    data = build_components(registry, exp).dataset
    val = data.split(data.val_split, train=False)
    grid = comparison_grid([model.gen], val, rows=3, seed=3)
    drawn = np.asarray(Image.open(run / "samples.png"))
    assert drawn.shape[1:] == grid.shape[1:] and drawn.shape[0] > grid.shape[0]  # a header above
    assert np.array_equal(drawn[-grid.shape[0]:], grid)
    assert f"best.pt, step {best['step']}" in model_header([model])[0]


def test_grid_rows_are_a_seeded_sample_across_a_class_ordered_split():
    rows = sample_indices(80, 8, seed=0)  # ten images per class, in class order
    assert sorted({i // 10 for i in rows}) == list(range(8))
    assert rows == sample_indices(80, 8, seed=0) and rows != sample_indices(80, 8, seed=1)
    assert sample_indices(3, 8) == [0, 1, 2] and sample_indices(0, 8) == []


def test_headers_are_wrapped_never_cut():
    name = "20261205-114700-unet-conv-ns_l1-cifar10 (best, step 1234)"
    lines = wrap_label(name, lambda t: len(t) <= 10)
    assert all(len(line) <= 10 for line in lines) and "".join(lines).replace(" ", "") == name.replace(" ", "")
    assert wrap_label("unet/conv/ns_l1/samples\nbest.pt, step 6", lambda t: len(t) <= 12) == [
        "unet/conv/", "ns_l1/", "samples", "best.pt,", "step 6"]
    assert wrap_label("abcdefgh", lambda t: len(t) <= 3) == ["abc", "def", "gh"]


def test_eval_grid_headers_name_the_experiment_not_the_run_directory(run_dir):
    from colorkit.engine.inference import load_model

    model = load_model(run_dir)
    (head,) = model_header([model])
    assert head.startswith("unet/conv/ns_l1/samples\nbest.pt, step ") and run_dir.name not in head
    same = model_header([model, model])  # two columns that read the same add the run's name
    assert same[0] == same[1] and same[0].endswith(f"\n{run_dir.name}")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
@pytest.mark.slow
def test_written_files_get_the_usual_permissions(tmp_path, umask, mode):
    """Checkpoints, logs, config, manifest, samples.png, colorized images, exports and eval's
    outputs: 0666 less the umask, like any file ``open()`` creates."""
    photo = tmp_path / "in" / "photo.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo)
    before = os.umask(umask)
    try:
        run = tmp_path / "run"
        for args in (["run", "--epochs", "1", *TINY, "--out", run],
                     ["colorize", "--model", run, photo, "--out", tmp_path / "colour", "-q"],
                     ["export", run, "--format", "model", "--out", tmp_path / "exports" / "m.pt"],
                     ["export", run, "--format", "onnx", "--out", tmp_path / "exports" / "m.onnx"],
                     ["eval", run, "--limit", "2", "--json", tmp_path / "exports" / "e.json",
                      "--grid", tmp_path / "exports" / "g.png", "-q"]):
            result = invoke(args)
            assert result.exit_code == 0, result.output
    finally:
        os.umask(before)
    files = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in tmp_path.rglob("*") if p.is_file() and p.parent != photo.parent}
    for name in ("run/checkpoints/last.pt", "run/checkpoints/best.pt", "run/metrics.jsonl", "run/config.yaml",
                 "run/environment.json", "run/samples.png", "colour/photo.png", "exports/m.pt", "exports/m.onnx", "exports/e.json",
                 "exports/g.png"):
        assert name in files, sorted(files)
    assert {n: m for n, m in files.items() if m != mode} == {}, f"expected {oct(mode)}"
