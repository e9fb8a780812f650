"""Every user mistake through the real ``colorkit`` command (a subprocess): one ``error: ...``
line naming the file or option, exit 2, no traceback; an unexpected failure: one line, exit 1,
the traceback only with ``COLORKIT_DEBUG=1`` (issue 15, point 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "COLORKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1"}


def colorkit(args, env=None, code=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colorkit", *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout, cwd=os.environ.get("TMPDIR", "/tmp"))


def one_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def valid_config() -> str:
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    return experiment_from_sources(build_registry(autoload=False), sets=["dataset.size=32"]).to_yaml()


BAD_FILES = {
    "folder": None,
    "corrupt": b"gen: {name: unet\ntrain: [1, 2\n",
    "binary": bytes(range(256)) * 8,
    "truncated": b"gen:\n  name: unet\n  base: [8,\n",
    "too-large": b"description: '" + b"x" * (2 << 20) + b"'\n",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.slow
def test_a_bad_config_file_is_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.yaml"
    if BAD_FILES[kind] is None:
        path.mkdir()
    else:
        path.write_bytes(BAD_FILES[kind])
    line = one_line(colorkit(["run", "--config", path, "--out", tmp_path / "run"]))
    assert str(path) in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["corrupt", "binary", "truncated"])
@pytest.mark.slow
def test_resume_of_a_run_with_a_bad_config_yaml_is_one_line(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_bytes(BAD_FILES[kind])
    line = one_line(colorkit(["run", "--resume", run, "-q"]))
    assert str(run / "config.yaml") in line


@pytest.mark.slow
def test_a_symlink_loop_in_a_colorize_folder_is_one_line(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "loop.png").symlink_to(folder / "loop.png")
    line = one_line(colorkit(["colorize", folder, "--out", tmp_path / "out", "-q"]))
    assert "loop.png" in line and "symbolic link loop" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--json", "--grid"])
@pytest.mark.slow
def test_an_unwritable_eval_output_is_refused_before_evaluating(tmp_path, option):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for target in (tmp_path, a_file / "out.png"):
        line = one_line(colorkit(["eval", tmp_path / "no-such-run", option, target]))
        assert f"{option} {target}" in line


@pytest.mark.slow
def test_fork_with_an_unchanged_config_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(valid_config())
    line = one_line(colorkit(["run", "--resume", run, "--fork", "--out", tmp_path / "fork", "-q"]))
    assert "--fork" in line and "nothing to fork" in line
    assert not (tmp_path / "fork").exists()


BOOM = """
import sys
from colorkit.engine import runs
def boom(*args, **kwargs):
    raise RuntimeError("CUDA out of memory.\\nTried to allocate 2 GiB")
runs.train = boom
from colorkit.front.cli import main
sys.argv = ["colorkit", "run", "--set", "dataset.size=32", "--out", sys.argv[1], "-q"]
main()
"""


@pytest.mark.slow
def test_an_unexpected_failure_is_one_line_and_its_traceback_needs_debug(tmp_path):
    run = [sys.executable, "-c", BOOM, str(tmp_path / "run")]
    proc = subprocess.run(run, capture_output=True, text=True, env=ENV, timeout=120)
    line = one_line(proc, code=1)
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB" in line and "COLORKIT_DEBUG=1" in line
    proc = subprocess.run(run, capture_output=True, text=True, env={**ENV, "COLORKIT_DEBUG": "1"}, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "CUDA out of memory" in proc.stderr


@pytest.mark.slow
def test_nproc_validates_the_experiment_its_flags_make_before_launching(tmp_path):
    # The flags (--gen, --dataset, --set ...) are part of what --nproc checks: one line, no launch.
    line = one_line(colorkit(["run", "--nproc", "2", "--gen", "no-such-gen", "--device", "cpu",
                              "--out", tmp_path / "run"]))
    assert "no-such-gen" in line
    line = one_line(colorkit(["run", "--nproc", "2", "--dataset", "samples", "--set", "dataset.val_fraction=0.2",
                              "--device", "cpu", "--out", tmp_path / "run"]))
    assert "val_fraction" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_usage_errors_and_control_characters_through_the_real_command(tmp_path):
    line = one_line(colorkit(["colorize", "x.png", "--format", "gif"]))
    assert "'--format'" in line and "colorkit colorize --help" in line
    forged = tmp_path / "a\nerror: all is well.yaml"
    line = one_line(colorkit(["run", "--config", forged, "--out", tmp_path / "out"]))
    assert "a\\nerror: all is well.yaml" in line
