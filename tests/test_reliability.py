"""Reliability: a run directory is resumable at every instant (issue 15), and what a killed or
failed write leaves behind is cleaned up. docs/reliability.md lists each promise and its test."""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import pytest
import torch

from test_training import ENV, TINY, assert_same_training, last, run_cli, run_killed

# Kills the process with a real SIGKILL at the Nth call of one moment of a run: a training step,
# a validation, the middle of a checkpoint write, between last.pt and its best.pt copy, the middle
# of a log line, the config write.
KILL_AT = """
import os, signal, sys
from colorkit.engine import checkpoints, runs, trainer_state, training
kind, n = sys.argv[1], int(sys.argv[2])
calls = [0]
def kill_on_nth(original, before=None):
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= n:
            if before:
                before(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapper
def half_checkpoint(obj, fh):
    fh.write(b"half a checkpoint")
    fh.flush()
def half_line(path, record):
    with open(path, "a") as fh:
        fh.write('{"event": "ste')
def config_temp(path, text):
    (path.parent / f".{path.name}.killed.tmp").write_text(text[:10])
if kind == "step":
    training.Trainer.train_batch = kill_on_nth(training.Trainer.train_batch)
elif kind == "validate":
    training.validate = kill_on_nth(training.validate)
elif kind == "save":
    checkpoints.torch.save = kill_on_nth(checkpoints.torch.save, half_checkpoint)
elif kind == "best":
    trainer_state.save_best_copy = kill_on_nth(trainer_state.save_best_copy)
elif kind == "log":
    training.append_jsonl = kill_on_nth(training.append_jsonl, half_line)
elif kind == "config":
    runs.write_new_text = kill_on_nth(runs.write_new_text, config_temp)
from colorkit.front.cli import main
sys.argv = ["colorkit", *sys.argv[3:]]
main()
"""
MOMENTS = ["step", "validate", "save", "log"]  # each happens in every process that trains (best: not always)


def run_killed_at(kind: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AT, kind, str(n), *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


@pytest.mark.slow
def test_a_kill_between_last_and_best_resumes_and_makes_best(tmp_path):
    args = ["run", "--epochs", "2", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    killed = tmp_path / "killed"
    proc = run_killed_at("best", 1, [*args, "--out", str(killed)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpts = killed / "checkpoints"
    assert last(killed)["step"] == 6 and not (ckpts / "best.pt").exists()  # last.pt is written first
    stale = [ckpts / ".last.pt.abcd1234.tmp", killed / ".config.yaml.abcd1234.tmp"]
    for tmp in stale:
        tmp.write_bytes(b"half a checkpoint")
    run_cli(["run", "--resume", str(killed), "-q"])
    assert_same_training(whole, killed)
    assert not any(tmp.exists() for tmp in stale)
    best, whole_best = (torch.load(r / "checkpoints" / "best.pt", weights_only=True) for r in (killed, whole))
    assert best["best_value"] == whole_best["best_value"]
    assert all(torch.equal(t, whole_best["gen"][k]) for k, t in best["gen"].items())


@pytest.mark.parametrize("keep_state", [False, True])
@pytest.mark.slow
def test_best_is_written_only_as_a_copy_of_a_finished_last(tmp_path, monkeypatch, keep_state):
    """``best.pt`` is made from a ``last.pt`` already written: its generator part (default) or,
    with ``train.keep_best_state``, a hard link or copy of the file."""
    from colorkit.engine import trainer_state
    from cli_helpers import invoke

    written = []
    save, copy = trainer_state.save_checkpoint, trainer_state.atomic_copy
    monkeypatch.setattr(trainer_state, "save_checkpoint", lambda p, s: (written.append((p.name, s["step"])), save(p, s)))
    monkeypatch.setattr(trainer_state, "atomic_copy",
                        lambda src, dst: (written.append((dst.name, torch.load(src, weights_only=True)["step"])),
                                          copy(src, dst)))
    result = invoke(["run", "--epochs", "3", "--set", "train.val_every=2", "--set", f"train.keep_best_state={keep_state}",
                     *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    bests = [i for i, (name, _) in enumerate(written) if name == "best.pt"]
    assert bests and all(written[i - 1] == ("last.pt", written[i][1]) for i in bests), written
    assert ("opt_g" in torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)) == keep_state


@pytest.mark.slow
def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path):
    args = ["run", "--epochs", "2", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    killed = tmp_path / "killed"
    proc = run_killed("SIGKILL", 2, [*args, "--out", str(killed)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (killed / "config.yaml").is_file() and not (killed / "checkpoints" / "last.pt").exists()
    proc = run_cli(["run", "--resume", str(killed), "-q"])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"--resume {killed}: no checkpoint yet; training starts again from step 0 in this directory"]
    assert_same_training(whole, killed)


@pytest.mark.slow
def test_resume_refuses_a_config_that_is_not_the_checkpoint_experiment(tmp_path):
    from cli_helpers import invoke, one_line_error

    run = tmp_path / "run"
    assert invoke(["run", "--epochs", "1", *TINY, "--out", str(run)]).exit_code == 0
    config = run / "config.yaml"
    text = config.read_text()
    cut = text[:text.index("\ndataset:")] + "\n"  # cut short, still valid YAML: dataset and train fall back
    config.write_text(cut)
    line = one_line_error(invoke(["run", "--resume", str(run), "-q"]))
    assert f"{config}: does not match the experiment in" in line and "first difference: dataset." in line, line
    assert config.read_text() == cut and last(run)["step"] == 6  # nothing touched


def test_the_config_is_written_whole_and_never_overwritten(tmp_path):
    from colorkit.kernel.errors import ColorkitError
    from colorkit.kernel.files import write_new_text
    import pytest

    path = tmp_path / "config.yaml"
    write_new_text(path, "a: 1\n")
    with pytest.raises(ColorkitError, match="never overwritten"):
        write_new_text(path, "a: 2\n")
    assert path.read_text() == "a: 1\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# A full disk, injected without root: the Nth checkpoint's torch.save, or the Nth write to
# metrics.jsonl, fails with ENOSPC (torch wraps the file's OSError in a RuntimeError, as here).
DISK_FULL = """
import errno, sys
import torch
from colorkit.engine import checkpoints
from colorkit.kernel import files
what, n = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
def full():
    raise OSError(errno.ENOSPC, "No space left on device")
real_save, real_open = torch.save, open
def save(obj, fh):
    calls["n"] += 1
    if calls["n"] < n:
        return real_save(obj, fh)
    fh.write(b"half a checkpoint")
    try:
        full()
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 46 vs 0")
class HalfWriter:
    def __init__(self, fh):
        self.fh = fh
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.fh.close()
    def write(self, data):
        self.fh.write(data[:7])
        self.fh.flush()
        full()
def log_open(path, mode="r", *args, **kwargs):
    fh = real_open(path, mode, *args, **kwargs)
    if "a" in mode and str(path).endswith("metrics.jsonl"):
        calls["n"] += 1
        if calls["n"] >= n:
            return HalfWriter(fh)
    return fh
if what == "checkpoint":
    checkpoints.torch.save = save
else:
    files.open = log_open
from colorkit.front.cli import main
sys.argv = ["colorkit", *sys.argv[3:]]
main()
"""


def run_disk_full(what: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DISK_FULL, what, str(n), *args], capture_output=True, text=True,
                          env=ENV, timeout=300)


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_keeps_the_last_one_and_says_so(tmp_path):
    from colorkit.kernel.files import read_jsonl

    args = ["run", "--epochs", "2", "--set", "train.ckpt_every=2", "--metrics", "mae", *TINY]
    run = tmp_path / "run"
    proc = run_disk_full("checkpoint", 2, [*args, "--out", str(run)])  # the step-4 save fails
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    ckpt = run / "checkpoints" / "last.pt"
    assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}: not written, the disk is full ("), lines
    assert "MB free; the write stopped after" in lines[0] and "the previous last.pt (" in lines[0], lines
    assert lines[0].endswith(f"free some space and try again; then colorkit run --resume {run} continues the run")
    assert last(run)["step"] == 2 and [p.name for p in ckpt.parent.iterdir()] == ["last.pt"]
    read_jsonl(run / "metrics.jsonl")
    proc = run_disk_full("checkpoint", 1, ["run", "--resume", str(run), "-q"])  # --resume on a full disk
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "the disk is full" in lines[0], proc.stderr
    assert last(run)["step"] == 2 and [p.name for p in ckpt.parent.iterdir()] == ["last.pt"]
    run_cli(["run", "--resume", str(run), "-q"])  # space freed: the run continues
    assert last(run)["step"] == 12


@pytest.mark.slow
def test_disk_full_during_a_log_write_leaves_whole_lines_and_a_loadable_checkpoint(tmp_path):
    from colorkit.kernel.files import read_jsonl

    args = ["run", "--epochs", "2", "--set", "train.ckpt_every=2", *TINY]
    run = tmp_path / "run"
    proc = run_disk_full("log", 5, [*args, "--out", str(run)])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {run / 'metrics.jsonl'}: not written, the disk is full")
    assert len(read_jsonl(run / "metrics.jsonl")) == 4  # the half-written fifth line was cut off
    assert last(run)["step"] >= 2
    run_cli(["run", "--resume", str(run), "-q"])
    assert last(run)["step"] == 12


@pytest.mark.slow
def test_two_runs_with_the_same_out_train_one_and_refuse_the_other(tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "colorkit", "run", "--epochs", "1", *TINY, "--out", str(run)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    lines = [line for line in refused.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {run}: ") and "Traceback" not in refused, refused
    assert last(run)["step"] == 6


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_then_resumes_end_bit_identical(tmp_path):
    """One run killed 20 times (each resume killed again), at seeded random moments: steps,
    validations, checkpoint and log writes, the config write, the first epoch; it finishes with
    the weights and logs of an uninterrupted run."""
    rng = random.Random(15)
    args = ["run", "--epochs", "6", "--set", "train.ckpt_every=4", "--set", "train.val_every=5", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    killed = tmp_path / "killed"
    kills, done = 0, []
    for i in range(20):
        kind = "config" if i == 0 else rng.choice(MOMENTS)  # only a new run writes its config
        started = (killed / "config.yaml").is_file()
        command = ["run", "--resume", str(killed), "-q"] if started else [*args, "--out", str(killed)]
        proc = run_killed_at(kind, rng.randint(1, 2), command)
        assert proc.returncode in (0, -signal.SIGKILL), (kind, proc.stderr[-2000:])
        kills += proc.returncode == -signal.SIGKILL
        done.append((kind, proc.returncode))
    assert kills >= 18, done
    run_cli(["run", "--resume", str(killed), "-q"] if (killed / "config.yaml").is_file() else [*args, "--out", str(killed)])
    assert_same_training(whole, killed)
    assert not list(killed.rglob(".*.tmp"))


def test_the_reliability_page_names_only_tests_that_exist():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    named = set(re.findall(r"`tests/(test_\w+\.py)::(test_\w+)`", (root / "docs" / "reliability.md").read_text()))
    assert len(named) >= 20
    missing = [f"{f}::{t}" for f, t in sorted(named) if f"\ndef {t}(" not in (root / "tests" / f).read_text()]
    assert not missing
