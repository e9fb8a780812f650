"""A new user's first hour (issue 34): a fresh clone, the README followed verbatim. What they
met is held here: the README's install order, costs and the first run's place below the floor;
the progress display's last line and its bar at 80 and 120 columns; sample grids that show the
model; colorize's threads; the latency benchmark of the shipped model; bench's table on stdout;
python-api.md's claims; flags without a metavar in help; resuming a finished run; the README's
outputs ignored by git; colorize's skips counted by kind."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import TINY_RUN, invoke, lines, one_line_error
from colorkit.kernel.progress import progress_bar

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def events(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, lines((run_dir / "metrics.jsonl").read_text())) if e["event"] == kind]


# -- 1. the README ------------------------------------------------------------------------------


def test_the_readme_says_the_cpu_build_before_the_default_install_and_what_each_costs():
    text = README.read_text(encoding="utf-8")
    cpu_build = text.index("--index-url https://download.pytorch.org/whl/cpu")
    default_install = re.search(r'^pip install -e "\.\[test\]"\s+#', text, re.M)
    assert default_install and cpu_build < default_install.start()
    assert "6 GB" in text[:default_install.start()]
    assert "38 s an epoch here" not in text and "about a minute each on a 2-core CPU" in text


def test_the_readme_says_the_first_run_ends_below_the_floor_next_to_its_command():
    text = README.read_text(encoding="utf-8")
    first_run = text.index("colorkit run --gen unet --disc conv --loss ns_l1")
    after = text[first_run:text.index("\n## ", first_run)]
    assert re.search(r'below the "no colour"\s+floor\*\* on its own test crops \(PSNR 24\.63 dB against the '
                     r"floor's 26\.57", after), after[:800]


# -- 2. progress --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_last_line_of_a_run_shows_its_last_validation_and_each_validation_ends_once(every_update, tmp_path):
    out = tmp_path / "run"
    result = invoke([*TINY_RUN, "--out", out])
    assert result.exit_code == 0, result.output
    err = lines(result.stderr)
    last_val = events(out, "val")[-1]
    final = [line for line in err if ": step 4/4" in line and "done in" in line]
    assert len(final) == 1 and f"val_mae {last_val['val_mae']:.4g}" in final[0], err
    for step in (2, 4):  # one closing line per validation, not a 100% line and then the closing line
        closing = [line for line in err if f"validation at step {step}: images 8/8" in line]
        assert len(closing) == 1 and "done in" in closing[0], err


def test_a_plain_task_at_its_total_writes_one_line_and_new_text_alone_writes_none(every_update, capsys):
    with progress_bar() as bar:
        task = bar.add_task("work", total=2, unit="step")
        bar.update(task, advance=1, parts="a")
        bar.update(task, parts="b")  # new text, no progress: it shows in the next line
        bar.update(task, advance=1, parts="c")
    got = lines(capsys.readouterr().err)
    assert len(got) == 2, got
    assert "step 1/2" in got[0] and got[0].endswith(", a")
    assert "step 2/2" in got[1] and "done in" in got[1] and got[1].endswith(", c")


@pytest.mark.parametrize("width", [80, 120])
def test_the_terminal_bar_keeps_the_step_and_the_time_left_and_cuts_the_loss_parts(width, every_update):
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=width, color_system=None)
    parts = ("d_total 1.412  d_real 1.055  d_fake 0.3568  g_total 29.18  gan 1.272  l1 0.2791  | val_mae 51.49  "
             "val_accuracy 7.988  val_psnr 13.56  val_l1 0.2329")
    with progress_bar(console=console) as bar:
        task = bar.add_task("unet-conv-ns_l1-samples", total=1000, unit="step", images=0)
        bar.update(task, advance=120, parts=parts, images=1920)
        bar.backend.progress.refresh()
        frame = screen.getvalue()
    row = [line for line in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)) if "120/1000" in line][-1]
    assert len(row.rstrip()) <= width
    assert re.search(r"step\s+120/1000 \d+:\d\d:\d\d (\d+:\d\d:\d\d|-:--:--) d_total 1\.412", row), row
    assert "val_psnr" not in row and row.rstrip().endswith("…")


# -- 3. sample grids ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def val_crops():
    """The default run's val split: 32 crops of the bundled photos, rocket sky and Hubble field included."""
    from colorkit.plugins.samples import SamplesOptions
    from colorkit.plugins.samples_data import Samples

    return Samples(SamplesOptions()).split("val")


def test_sample_rows_show_crops_with_structure_and_colour_and_follow_the_seed(val_crops):
    from colorkit.engine.images import sample_indices, sample_rows, showing

    blind = sample_indices(len(val_crops), 8, seed=0)  # one at random per slice: mostly dark sky
    assert sum(showing(val_crops[i]) < 1 for i in blind) >= 4
    picks = sample_rows(val_crops, 8, seed=0)
    assert len(picks) == 8 and all(showing(val_crops[i]) >= 1 for i in picks)
    assert sample_rows(val_crops, 8, seed=0) == picks
    assert len({i % 7 for i in picks}) >= 3  # several photos (crop i is of photo i % 7)
    seeds = {tuple(sample_rows(val_crops, 8, seed=s)) for s in range(4)}
    assert len(seeds) > 1


def test_sample_rows_fall_back_to_the_best_candidate_when_none_shows_enough():
    from colorkit.engine.images import sample_rows, showing

    flat = [torch.full((3, 16, 16), v, dtype=torch.uint8) for v in range(0, 160, 10)]  # 2 slices of 8 candidates
    flat[7] = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8))
    picks = sample_rows(flat, 2, seed=0)
    assert len(picks) == 2 and showing(flat[7]) >= 1
    assert picks[0] == 7  # the one image with structure and colour, in the first slice (0-7)


def test_the_samples_grid_shows_the_chosen_rows(val_crops):
    from colorkit.engine.images import comparison_grid, sample_rows

    grid = comparison_grid([], val_crops, rows=4, seed=3)
    size, k, pad = 64, 2, 2  # 64 px crops are enlarged x2 (at least 96 px a cell)
    for r, i in enumerate(sample_rows(val_crops, 4, seed=3)):
        y, x = pad + r * (size * k + pad), pad + (size * k + pad)  # the "original" column
        cell = grid[y:y + size * k:k, x:x + size * k:k]
        assert np.array_equal(cell, val_crops[i].permute(1, 2, 0).numpy())


# -- 4. colorize --threads ------------------------------------------------------------------------


def test_default_threads_leave_busy_cores_alone_and_respect_omp_num_threads():
    from colorkit.engine.threads import MAX_DEFAULT_THREADS, default_threads

    assert default_threads(2, 2.9) == 1  # two training jobs on a 2-core machine
    assert default_threads(2, 0.2) == 2
    assert default_threads(4, 1.2) == 3
    assert default_threads(64, 0.0) == MAX_DEFAULT_THREADS
    assert default_threads(2, 3.0, "3") == 3 and default_threads(2, 0.0, "2,1") == 2
    assert default_threads(2, 0.0, "many") == 2


def test_cpu_threads_sets_torch_and_restores_it():
    from colorkit.engine.threads import cpu_threads

    before = torch.get_num_threads()
    with cpu_threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_colorize_and_eval_take_threads(run_dir, tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    seen = []
    import colorkit.engine.colorizer as colorizer

    real = colorizer.colorize_array
    monkeypatch.setattr(colorizer, "colorize_array",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    before = torch.get_num_threads()
    result = invoke(["colorize", run_dir, tmp_path / "p.png", "--out", tmp_path / "o", "--threads", "3", "-q"])
    assert result.exit_code == 0, result.output
    assert seen == [3] and torch.get_num_threads() == before
    assert "threads" in one_line_error(invoke(["colorize", tmp_path / "p.png", "--out", tmp_path / "o", "--threads", "0"]))
    for command in ("colorize", "eval"):
        help_text = invoke([command, "--help"]).output
        assert "--threads" in help_text and "OMP_NUM_THREADS" in help_text


# -- 5. the latency benchmark -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_latency_benchmark_times_the_default_model_with_a_line_per_case(tmp_path):
    from colorkit.engine.inference import load_model
    from colorkit.kernel.registry import build_registry

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "colorize_latency.py"), "--runs", "1",
                          "--photos", "512x512", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert re.search(r"^\[1/1\] 512x512 at working size default, torch, threads default: array [\d.]+ s", out.stderr,
                     re.M), out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    default = build_registry(autoload=False).defaults["model"]
    assert result["model"] == default and [r["model"] for r in result["rows"]] == [default]
    assert result["rows"][0]["working_size"] == load_model(None).working_size
    assert result["rows"][0]["threads"] == 1  # OMP_NUM_THREADS, as colorize takes it


# -- 6. bench prints its table --------------------------------------------------------------------


def test_bench_prints_the_results_table_on_stdout(tmp_path):
    out = tmp_path / "first"
    result = invoke(["bench", ROOT / "examples" / "suites" / "first-suite.yaml", "--out", out, "--results-only",
                     "--no-figures"])
    assert result.exit_code == 0, result.output
    got = lines(result.stdout)
    assert got[0].startswith("| experiment |") and any(line.startswith("| fast |") for line in got)
    assert got[-1].endswith(str(out / "results.md"))
    assert "| experiment |" not in result.stderr


# -- 7. docs/python-api.md ------------------------------------------------------------------------


def test_python_api_doc_states_the_default_models_working_size_and_how_to_show_a_table():
    from colorkit.engine.inference import load_model

    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    stated = re.search(r"the default model's is (\d+)", text)
    assert stated and int(stated.group(1)) == load_model(None).working_size
    assert re.search(r"multiples of (\d+) for the default model's", text).group(1) == str(load_model(None).gen.size_multiple)
    assert "print(result.table())" not in text.replace("rich.print(result.table())", "")


# -- 8. flags in help -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["run"], ["eval"], ["colorize"], ["bench"], ["list"], ["turing"]])
def test_help_shows_flags_without_a_value(command):
    result = invoke([*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "--help" in result.output


def test_a_flag_still_refuses_a_value():
    assert "does not take a value" in one_line_error(invoke(["colorize", "x.png", "--out", "o", "--overwrite=1"]))


# -- 9. --resume of a finished run ------------------------------------------------------------------


@pytest.mark.slow
def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert invoke([*TINY_RUN, "--out", out, "-q"]).exit_code == 0
    log, samples = (out / "metrics.jsonl").read_bytes(), (out / "samples.png").stat().st_mtime_ns
    result = invoke(["run", "--resume", out, "-q"])
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == [f"{out}: finished already (4 steps); nothing to do"]
    assert (out / "metrics.jsonl").read_bytes() == log and (out / "samples.png").stat().st_mtime_ns == samples
    # killed after its last checkpoint, before its end record: resuming finishes it
    (out / "metrics.jsonl").write_text("".join(line + "\n" for line in lines(log.decode())[:-1]))
    result = invoke(["run", "--resume", out, "-q"])
    assert result.exit_code == 0 and lines(result.stdout)[0].startswith(f"run written to {out} (4 steps"), result.output
    assert len(events(out, "end")) == 1


# -- 10. the README's outputs are ignored -----------------------------------------------------------


def test_what_the_readme_commands_write_is_ignored_by_git():
    from test_readme import DOCS, shell_commands, tracked_files

    if not tracked_files(ROOT):
        pytest.skip("not a git checkout")
    outputs = {"runs/20261126-155318-unet-conv-ns_l1-samples/config.yaml"}  # colorkit run without --out
    for page in DOCS:
        for command in shell_commands(page)[0]:
            words = command.words
            outputs |= {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--out", "--json", "--grid")}
    assert {"results.json", "colorizer.ts", "studies/first"} <= outputs
    paths = [o.rstrip("/") + ("/x.png" if o.endswith("/") else "") for o in outputs]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *paths], capture_output=True,
                             text=True, timeout=60).stdout.split()
    assert sorted(set(paths) - set(ignored)) == []


# -- 11. colorize's skips by kind -------------------------------------------------------------------


def test_colorize_reports_existing_outputs_as_their_own_kind(run_dir, tmp_path):
    from PIL import Image

    from colorkit.engine.colorizer import colorize_files

    photo = tmp_path / "in" / "p.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "p.png").write_bytes(b"mine")
    (tmp_path / "in" / "q.png").write_bytes(Image.open(photo).tobytes()[:10])  # unreadable
    problems = []
    report = colorize_files(run_dir, [photo.parent], tmp_path / "out", device="cpu",
                            on_problem=lambda path, reason: problems.append(path))
    assert report.existing == [photo] and report.skipped == [(photo, f"{tmp_path / 'out' / 'p.png'} exists "
                                                                      "(pass --overwrite to replace it)")]
    assert problems == [photo.parent / "q.png"]  # an output left alone is no problem
    assert (tmp_path / "out" / "p.png").read_bytes() == b"mine"
    result = invoke(["colorize", run_dir, photo.parent, "--out", tmp_path / "out", "-q"])
    assert "note: 1 output(s) exist already" in result.stderr and "warning: " + str(photo) not in result.stderr


@pytest.mark.slow
def test_the_fast_lane_keeps_the_majority_of_the_tests():
    """``-m "not slow"`` (the README's edit-test loop) deselects the slow tests only: most stay."""
    import subprocess
    import sys

    def collected(*args: str) -> int:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                             capture_output=True, text=True, cwd=README.parent, timeout=300).stdout
        return int(re.search(r"(\d+)(?:/\d+)? tests? collected", out).group(1))

    fast, everything = collected("-m", "not slow"), collected()
    assert everything > fast > everything / 2, (fast, everything)
