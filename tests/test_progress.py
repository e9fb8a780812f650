"""Progress everywhere (issue 16, point 2): one display (``colorkit.kernel.progress``), a rich bar
on a terminal and plain lines with step, images/s, ETA and the latest validation anywhere else,
all on stderr; ``-q`` silences it; ``eval --first N`` decodes only the N images it scores."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import TINY_RUN, invoke, lines
from colorkit.kernel.errors import UsageError
from colorkit.kernel.progress import EVERY_ENV, MODE_ENV, PREFIX_ENV, progress_bar, progress_note, progress_scope

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the facility -----------------------------------------------------------------------------------


def test_off_a_terminal_plain_lines_carry_step_rate_eta_and_the_free_text(every_update, capsys):
    with progress_bar() as bar:
        task = bar.add_task("training", total=4, unit="step", images=0)
        for step in range(1, 4):
            bar.update(task, advance=1, parts=f"loss {step}", images=8 * step)
    out, err = capsys.readouterr()
    assert out == ""
    got = lines(err)
    assert len(got) == 4, err
    assert "training: step 1/4 (25%), " in got[0] and " images/s, ETA " in got[0] and got[0].endswith("loss 1")
    assert "step 3/4 (75%)" in got[2]
    assert "training: step 3/4 (75%)" in got[3] and "done in " in got[3] and got[3].endswith("loss 3")


def test_the_interval_holds_lines_back_but_not_the_last_one(every_update, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_ENV, "3600")
    with progress_bar() as bar:
        task = bar.add_task("decoding x", total=100)
        for _ in range(100):
            bar.update(task, advance=1)
    got = lines(capsys.readouterr().err)
    assert len(got) == 1 and "decoding x: images 100/100 (100%)" in got[0] and "done in" in got[0]


def test_quiet_and_off_show_nothing(every_update, monkeypatch, capsys):
    def use(enabled: bool = True) -> None:
        with progress_bar(enabled) as bar:
            bar.update(bar.add_task("x", total=2), advance=2)
        progress_note("a note", enabled)

    use(enabled=False)
    with progress_scope(False):
        with progress_scope(True):  # an inner scope cannot turn an outer silence back on
            use()
    monkeypatch.setenv(MODE_ENV, "off")
    use()
    assert capsys.readouterr() == ("", "")


def test_a_display_opened_inside_another_joins_it(every_update, capsys):
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with progress_bar(console=console) as outer:  # rich allows one live display: the inner one joins it
        outer.add_task("training", total=2, unit="step")
        with progress_bar(console=console) as inner:
            inner.update(inner.add_task("validation", total=3), advance=3)
        assert [t.description for t in outer.backend.progress.tasks] == ["training"]
    with progress_bar() as outer:
        outer.add_task("training", total=2, unit="step")
        with progress_bar() as inner:
            inner.update(inner.add_task("validation", total=3), advance=3)
    got = lines(capsys.readouterr().err)
    assert any("validation: images 3/3 (100%)" in line and "done in" in line for line in got), got
    assert "validation" in screen.getvalue()


def test_bad_settings_are_one_line_errors(every_update, monkeypatch):
    monkeypatch.setenv(EVERY_ENV, "often")
    with pytest.raises(UsageError, match="COLORKIT_PROGRESS_EVERY='often'"):
        progress_bar()
    monkeypatch.setenv(EVERY_ENV, "1")
    monkeypatch.setenv(MODE_ENV, "fancy")
    with pytest.raises(UsageError, match="COLORKIT_PROGRESS='fancy'"):
        progress_bar()


# -- colorkit run ----------------------------------------------------------------------------------


def test_run_prints_its_directory_first_then_steps_and_validation_on_stderr(every_update, tmp_path):
    out = tmp_path / "run"
    result = invoke([*TINY_RUN, "--out", out])
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [line for line in lines(result.stdout) if line.startswith("run written to")]
    err = lines(result.stderr)
    assert err[0].endswith(f"run directory {out}"), err
    steps = [line for line in err if ": step " in line]
    assert [s.split(": step ")[1].split(" ")[0] for s in steps[:4]] == ["1/4", "2/4", "3/4", "4/4"], err
    assert all("images/s" in s for s in steps) and "ETA" in steps[0]
    assert "val_mae" not in steps[0] and "val_mae" in steps[2]  # the latest validation, from epoch 1
    assert any(line.partition("] ")[2].startswith("validation at step 2: images 8/8") for line in err), err


def test_run_quiet_prints_nothing_on_stderr(every_update, tmp_path):
    result = invoke([*TINY_RUN, "--out", tmp_path / "run", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert lines(result.stdout)[0].startswith("run written to")


# -- eval --first: only what it scores is decoded ----------------------------------------------------


def write_jpeg_cifar(path: Path, train_per_class: int = 10, test_per_class: int = 4) -> Path:
    """A small archive in the layout of the JPEG mirror: ``train|test/<class>/NNNN.jpg``, colour noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for split, n in (("train", train_per_class), ("test", test_per_class)):
            for cls in ("cat", "dog"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
                    info = tarfile.TarInfo(f"cifar/{split}/{cls}/{i:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tf.addfile(info, buf)
    return path


@pytest.fixture
def decoded(monkeypatch):
    """Counts the JPEG files the cifar10 dataset decodes."""
    from colorkit.plugins import _cifar10_files

    count = {"n": 0}
    real = _cifar10_files.decode_image

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_cifar10_files, "decode_image", counting)
    return count


def test_eval_first_decodes_only_what_it_evaluates_and_caches_nothing(run_dir, tmp_path, decoded, every_update):
    archive = write_jpeg_cifar(tmp_path / "cifar10-jpeg.tar.gz")
    cache = tmp_path / "cache"

    def evaluate(name: str, *extra) -> dict:
        result = invoke(["eval", run_dir, "--dataset", "cifar10", "--data-root", archive, "--set", f"dataset.cache={cache}",
                         "--set", "dataset.val_size=4", "--device", "cpu", "--metrics", "mae", "--json",
                         tmp_path / f"{name}.json", *extra])
        assert result.exit_code == 0, result.output
        assert "images/s" not in result.stdout  # progress stays on stderr
        evaluate.stderr = result.stderr
        return json.loads((tmp_path / f"{name}.json").read_text())

    first = evaluate("first", "--first", "3")
    assert decoded["n"] == 3 and first["images"] == 3
    assert not cache.exists() or not any(cache.rglob("meta.json"))  # a partial decode is never cached
    assert any("decoding cifar10 test: images 3/3" in line for line in lines(evaluate.stderr)), evaluate.stderr
    decoded["n"] = 0
    whole = evaluate("whole")
    assert decoded["n"] == 28 and whole["images"] == 8  # every file, once, then cached
    assert any("decoding cifar10 train files: images 20/20" in line for line in lines(evaluate.stderr))
    decoded["n"] = 0
    again = evaluate("again", "--first", "3")
    assert decoded["n"] == 0  # from the cache, cut to 3
    assert again["rows"] == first["rows"]  # the same first 3 images, decoded alone or from the whole split
    quiet = invoke(["eval", run_dir, "--dataset", "cifar10", "--data-root", archive, "--set", "dataset.cache=off",
                    "--set", "dataset.val_size=4", "--device", "cpu", "--limit", "2", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output


def test_the_limit_option_decodes_only_the_split_asked_for(tmp_path, decoded, every_update, capsys):
    from colorkit.kernel.registry import build_registry

    archive = write_jpeg_cifar(tmp_path / "cifar10-jpeg.tar.gz")
    ds = build_registry(autoload=False).build("dataset", "cifar10", {"root": str(archive), "cache": "off",
                                                                     "val_size": 4, "limit": 2})
    assert len(ds.split("test")) == 2 and decoded["n"] == 2  # not the train and val subsets too
    assert len(ds.split("val")) == 2 and decoded["n"] == 4
    assert any("decoding cifar10 val" in line for line in lines(capsys.readouterr().err))
    head = ds.head("test", 1)
    assert decoded["n"] == 4 and len(head) == 1


def test_checking_an_image_folder_shows_progress(tmp_path, every_update, capsys):
    from colorkit.kernel.registry import build_registry
    from colorkit.plugins.imagefolder_data import ImageFolder

    ds = build_registry(autoload=False).build("dataset", "imagefolder", ImageFolder.example_options(tmp_path))
    ds.split("train")
    assert any("checking imagefolder train: images 4/4 (100%)" in line for line in lines(capsys.readouterr().err))


# -- bench ------------------------------------------------------------------------------------------


def test_bench_runs_show_progress_named_by_run(tmp_path, every_update, capsys):
    from test_bench import write_suite

    from colorkit.front.bench import run_suite
    from colorkit.kernel.registry import build_registry

    suite = write_suite(tmp_path)
    run_suite(suite, tmp_path / "out", registry=build_registry(autoload=False), log=None, figures=False,
              only=["l2"], seeds=[0], progress=True)
    out, err = capsys.readouterr()
    got = lines(err)
    assert any(line.startswith("l2-s0: run directory ") for line in got), err
    assert any("] l2-s0: step 3/3 (100%)" in line and "done in" in line for line in got), err
    assert any("samples/test: images 6/6" in line for line in got), err  # the evaluation
    assert "images/s" not in out


def test_bench_workers_print_plain_lines_prefixed_with_their_run(tmp_path, every_update, monkeypatch):
    import subprocess

    from test_bench import write_suite

    from colorkit.front.bench import run_suite

    started: list[tuple[list[str], dict]] = []

    class Done:
        returncode = 0

        def __init__(self, args, env=None):
            started.append((args, env))

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    suite = write_suite(tmp_path)
    run_suite(suite, tmp_path / "out", log=None, figures=False, jobs=2, progress=True, only=["l2"])
    assert [env[PREFIX_ENV] for _, env in started] == ["[l2-s0] ", "[l2-s1] "]
    assert all(env[MODE_ENV] == "plain" and "-q" not in args for args, env in started)
    started.clear()
    run_suite(suite, tmp_path / "out", log=None, figures=False, jobs=2, only=["l2"])
    assert started and all("-q" in args for args, _ in started)


def test_a_time_budget_sets_the_expected_steps_of_the_display():
    """A run of 500 epochs with a 10 CPU-minute budget shows the steps the budget allows (so its
    ETA is the budget's), estimated from the share spent so far, never fewer than done."""
    from dataclasses import replace

    from colorkit.engine.schedules import expected_steps
    from colorkit.engine.trainer_state import TrainState
    from colorkit.kernel.experiment import TrainOptions

    t = TrainOptions(epochs=500, max_cpu_minutes=10)
    state, per_epoch = TrainState(step=300, train_seconds=200.0, cpu_seconds=120.0), 700
    assert expected_steps(t, state, per_epoch, 350_000) == 1500  # 120 of 600 CPU-seconds spent in 300 steps
    assert expected_steps(t, replace(state, step=0), per_epoch, 350_000) == 350_000
    assert expected_steps(t, replace(state, cpu_seconds=600.0), per_epoch, 350_000) == 300
    epochs_only = replace(t, max_cpu_minutes=None)
    assert expected_steps(epochs_only, state, per_epoch, 350_000) == 350_000


def test_plain_lines_follow_a_changed_total(every_update, capsys):
    with progress_bar() as bar:
        task = bar.add_task("train", total=1000, unit="step")
        bar.update(task, advance=10, total=40)
    err = capsys.readouterr().err
    assert "step 10/40 (25%)" in err
