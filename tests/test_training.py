"""Training: exact resume after SIGKILL, Ctrl-C, NaN guard, atomic checkpoints, schedules, DDP."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import colorkit
from colorkit.interfaces import Generator, Loss, keep_init
from colorkit.runio import load_checkpoint, read_jsonl

from cli_helpers import invoke

HERE = Path(__file__).parent
TINY = ["--set", "gen.base=8", "--set", "disc.base=8", "--set", "dataset.size=32",
        "--set", "dataset.crops_per_epoch=48", "--set", "dataset.eval_crops=8", "--batch-size", "8",
        "--metrics", "mae,psnr", "--set", "train.log_every=1", "-q"]


NO_DISC = [a for i, a in enumerate(TINY) if a != "disc.base=8" and not (a == "--set" and TINY[i + 1] == "disc.base=8")]


# Exact-resume comparisons run every part in a fresh process with the same thread count: float
# reductions (and so the last bits of the weights) depend on how many threads split them.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "COLORKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}


def run_killed(sig: str, step: int, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HERE / "killer.py"), sig, str(step), *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "colorkit", *args], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def last(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def final_state(run: Path) -> tuple[dict, list]:
    state = last(run)
    log = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] in ("step", "epoch", "val")]
    return state, log


def strip_time(records):
    return [{k: v for k, v in r.items() if k not in ("seconds",)} for r in records]


def assert_same_training(a: Path, b: Path):
    sa, la = final_state(a)
    sb, lb = final_state(b)
    assert sa["step"] == sb["step"]
    for key in ("gen", "disc"):
        for name, tensor in sa[key].items():
            assert torch.equal(tensor, sb[key][name]), f"{key}.{name} differs after resume"
    assert strip_time(la) == strip_time(lb)


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    args = ["run", "--epochs", "3", "--set", "train.ckpt_every=4", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    killed = tmp_path / "killed"
    proc = run_killed("SIGKILL", 10, [*args, "--out", str(killed)])  # mid-epoch 2, after the step-8 checkpoint
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert last(killed)["step"] == 8
    run_cli(["run", "--resume", str(killed), "-q"])
    assert_same_training(whole, killed)
    events = [r["event"] for r in read_jsonl(killed / "metrics.jsonl")]
    assert events.count("resume") == 1 and events[-1] == "end"


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    args = ["run", "--epochs", "2", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    stopped = tmp_path / "stopped"
    proc = run_killed("SIGINT", 3, [*args, "--out", str(stopped)])
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted at step 4" in lines[0] and "--resume" in lines[0], proc.stderr
    assert last(stopped)["step"] == 4
    run_cli(["run", "--resume", str(stopped), "-q"])
    assert_same_training(whole, stopped)


def test_resume_with_a_different_config_is_refused_unless_forked(tmp_path):
    run = tmp_path / "run"
    assert invoke(["run", "--epochs", "1", *TINY, "--out", str(run)]).exit_code == 0
    before = (run / "config.yaml").read_text()
    result = invoke(["run", "--resume", str(run), "--epochs", "2", "-q"])
    assert result.exit_code == 2 and "train.epochs (1 -> 2)" in result.output and "--fork" in result.output
    assert (run / "config.yaml").read_text() == before
    fork = tmp_path / "fork"
    result = invoke(["run", "--resume", str(run), "--epochs", "2", "--fork", "--out", str(fork), "-q"])
    assert result.exit_code == 0, result.output
    assert (run / "config.yaml").read_text() == before
    assert yaml.safe_load((fork / "config.yaml").read_text())["train"]["epochs"] == 2
    assert last(fork)["epoch"] == 3  # continued from epoch 2 to the end of epoch 2
    assert json.loads((fork / "environment.json").read_text())["forked_from"].endswith("last.pt")


class NanAfter(Loss):
    """L2 that turns NaN on its third call."""

    def __init__(self, options):
        self.calls = 0

    def generator_loss(self, batch, disc):
        self.calls += 1
        l2 = ((batch.pred - batch.target) ** 2).mean()
        if self.calls >= 3:
            l2 = l2 * float("nan")
        return {"total": l2, "l2": l2}


class NanPlugin:
    @colorkit.hookimpl
    def register_losses(self, register):
        register("nan_after", NanAfter)


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "nan"
    result = invoke(["run", "--loss", "nan_after", "--disc", "none", "--epochs", "1", "--set", "train.ckpt_every=1",
                     *NO_DISC, "--out", str(run)], plugins=[NanPlugin()])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: step 3: loss part 'g_total' is nan"), result.output
    state = last(run)
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["gen"].values() if t.is_floating_point())


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from colorkit import runio

    path = tmp_path / "checkpoints" / "last.pt"
    runio.save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def disk_full(obj, fh):
        fh.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runio.torch, "save", disk_full)
    with pytest.raises(OSError):
        runio.save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_validation_best_checkpoint_and_schedules(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "3", "--set", "train.lr_schedule=exponential", "--set", "train.gamma=0.5",
                     "--set", "train.lr_d=1e-4", "--set", "train.g_steps=2", "--set", "train.best_metric=psnr",
                     *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    vals = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "val"]
    assert len(vals) == 3 and {"val_mae", "val_psnr", "val_l1"} <= set(vals[0])
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["best_value"] == max(v["val_psnr"] for v in vals)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["opt_g"]["param_groups"][0]["lr"] == pytest.approx(5e-4 * 0.5**3)
    assert last["opt_d"]["param_groups"][0]["initial_lr"] == pytest.approx(1e-4)
    steps = last["step"]
    first_g = next(iter(last["opt_g"]["state"].values()))
    first_d = next(iter(last["opt_d"]["state"].values()))
    assert first_g["step"].item() == 2 * steps and first_d["step"].item() == steps


def test_plateau_divides_the_learning_rate_by_ten(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "3", "--lr", "1e-12", "--set", "train.patience=0", *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    lrs = [r["lr"] for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "epoch"]
    assert lrs[0] == pytest.approx(1e-12) and lrs[2] == pytest.approx(1e-14, rel=1e-3)


def test_bf16_autocast_runs_on_cpu_and_fp16_is_refused(tmp_path):
    result = invoke(["run", "--epochs", "1", "--precision", "bf16", *TINY, "--out", str(tmp_path / "bf16")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())["train"]["precision"] == "bf16"
    result = invoke(["run", "--epochs", "1", "--precision", "fp16", "--device", "cpu", *TINY,
                     "--out", str(tmp_path / "fp16")])
    assert result.exit_code == 2 and "fp16 needs a GPU" in result.output


def test_ddp_with_two_cpu_processes_keeps_ranks_identical(tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "colorkit", "run", "--nproc", "2", "--epochs", "2", *TINY,
                           "--out", str(run)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"config.yaml", "environment.json", "metrics.jsonl", "samples.png", "checkpoints"} <= {p.name for p in run.iterdir()}
    end = read_jsonl(run / "metrics.jsonl")[-1]
    assert end["event"] == "end" and end["world_size"] == 2 and end["ranks_in_sync"] is True
    assert len(end["param_checksums"]) == 2
    # Each rank sees half of every epoch: 48 crops / 2 ranks / batch 8 = 3 steps per epoch.
    assert end["step"] == 6 and end["images"] == 96
    assert json.loads((run / "environment.json").read_text())["world_size"] == 2


def test_sync_bn_on_cpu_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "colorkit", "run", "--nproc", "2", "--device", "cpu", *TINY,
                           "--set", "train.sync_bn=true", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it on the CPU"]


def test_every_training_setting_is_documented():
    from colorkit.experiment import TrainOptions
    from colorkit.options import option_fields

    doc = (HERE.parent / "docs" / "training.md").read_text()
    missing = [name for name in option_fields(TrainOptions) if f"| `{name}` |" not in doc]
    assert not missing, f"docs/training.md lacks {missing}"


def test_time_budget_stops_after_the_first_step_that_reaches_it(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "5", "--set", "train.max_cpu_minutes=0.00001", *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    end = read_jsonl(run / "metrics.jsonl")[-1]
    assert end["step"] == 1 and end["cpu_seconds"] > 0.0006
    assert last(run)["step"] == 1


# -- train.init=he and a plugin's own initialisation ----------------------------------------------


class _FloorGenerator(Generator):
    """A third-party generator whose output conv starts at zero (step 0 predicts the floor)."""

    output_space = "ab"

    def __init__(self, options) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 4, 3, padding=1)
        self.out = keep_init(nn.Conv2d(4, 2, 3, padding=1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, l):  # noqa: E741
        return torch.tanh(self.out(torch.relu(self.body(l))))


class _SelfInitGenerator(_FloorGenerator):
    """A generator that initialises every layer itself."""

    initialises_itself = True

    def __init__(self, options) -> None:
        super().__init__(options)
        nn.init.constant_(self.body.weight, 0.125)


class _InitPlugin:
    @colorkit.hookimpl
    def register_generators(self, register):
        register("floor_start", _FloorGenerator, description="zero output conv (test)")
        register("self_init", _SelfInitGenerator, description="initialises itself (test)")


@pytest.mark.parametrize("init", ["he", "default"])
def test_he_init_keeps_what_a_third_party_generator_initialised(tmp_path, init):
    from colorkit.experiment import experiment_from_sources
    from colorkit.registry import build_registry
    from colorkit.training import Trainer

    reg = build_registry(autoload=False, extra_plugins=[_InitPlugin()])
    built = {}
    for name in ("floor_start", "self_init"):
        exp = experiment_from_sources(reg, cli={"gen": name, "disc": "none", "loss": "l2", "dataset": "samples"},
                                      sets=["dataset.size=32", f"train.init={init}", "train.device=cpu"])
        torch.manual_seed(0)
        built[name] = Trainer(reg, exp, tmp_path / f"{name}-{init}", progress=False).c.gen
    floor, own = built["floor_start"], built["self_init"]
    # the marked output layer is still zero: the first prediction is the "no colour" floor
    assert not floor.out.weight.any() and not floor.out.bias.any()
    assert torch.equal(floor(torch.randn(2, 1, 32, 32)), torch.zeros(2, 2, 32, 32))
    # the unmarked layer did get He init (std sqrt(2 / (1 + 0.2^2) / fan_in)) and a zero bias
    if init == "he":
        assert not floor.body.bias.any()
        expected = (2 / (1 + 0.2**2) / 9) ** 0.5
        assert abs(float(floor.body.weight.detach().std()) - expected) < 0.5 * expected
    # a generator that initialises itself is left entirely alone
    assert torch.equal(own.body.weight, torch.full_like(own.body.weight, 0.125)) and not own.out.weight.any()
