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
from colorkit.kernel.interfaces import Generator, Loss, keep_init
from colorkit.kernel.files import read_jsonl
from colorkit.engine.checkpoints import load_checkpoint

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    args = ["run", "--epochs", "2", *TINY]
    whole = tmp_path / "whole"
    run_cli([*args, "--out", str(whole)])
    stopped = tmp_path / "stopped"
    proc = run_killed("SIGINT", 3, [*args, "--out", str(stopped), "-q"])  # -q: no progress lines
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted at step 4" in lines[0] and "--resume" in lines[0], proc.stderr
    assert last(stopped)["step"] == 4
    run_cli(["run", "--resume", str(stopped), "-q"])
    assert_same_training(whole, stopped)


@pytest.mark.slow
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
    from colorkit.engine import checkpoints

    path = tmp_path / "checkpoints" / "last.pt"
    checkpoints.save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def disk_full(obj, fh):
        fh.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(OSError):
        checkpoints.save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_plateau_divides_the_learning_rate_by_ten(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "3", "--lr", "1e-12", "--set", "train.patience=0", *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    lrs = [r["lr"] for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "epoch"]
    assert lrs[0] == pytest.approx(1e-12) and lrs[2] == pytest.approx(1e-14, rel=1e-3)


@pytest.mark.slow
def test_bf16_autocast_runs_on_cpu_and_fp16_is_refused(tmp_path):
    result = invoke(["run", "--epochs", "1", "--precision", "bf16", *TINY, "--out", str(tmp_path / "bf16")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())["train"]["precision"] == "bf16"
    result = invoke(["run", "--epochs", "1", "--precision", "fp16", "--device", "cpu", *TINY,
                     "--out", str(tmp_path / "fp16")])
    assert result.exit_code == 2 and "fp16 needs a GPU" in result.output


@pytest.mark.slow
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


@pytest.mark.slow
def test_sync_bn_on_cpu_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "colorkit", "run", "--nproc", "2", "--device", "cpu", *TINY,
                           "--set", "train.sync_bn=true", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it on the CPU"]


def test_every_training_setting_is_documented():
    from colorkit.kernel.experiment import TrainOptions
    from colorkit.kernel.options import option_fields

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
@pytest.mark.slow
def test_he_init_keeps_what_a_third_party_generator_initialised(tmp_path, init):
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry
    from colorkit.engine.training import Trainer

    reg = build_registry(autoload=False, extra_plugins=[_InitPlugin()])
    built = {}
    for name in ("floor_start", "self_init"):
        exp = experiment_from_sources(reg, cli={"gen": name, "disc": "none", "loss": "l2", "dataset": "samples"},
                                      sets=["dataset.size=32", f"train.init={init}", "train.device=cpu"])
        torch.manual_seed(0)
        built[name] = Trainer.from_experiment(reg, exp, tmp_path / f"{name}-{init}", progress=False).components.gen
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


# -- levers of the time-to-quality suite ----------------------------------------------------------


def test_unet_zero_out_starts_at_the_no_colour_floor_and_survives_he_init(tmp_path):
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry
    from colorkit.engine.training import Trainer

    reg = build_registry(autoload=False)
    exp = experiment_from_sources(reg, cli={"gen": "unet", "disc": "none", "loss": "l1", "dataset": "samples"},
                                  sets=["gen.base=8", "gen.depth=3", "gen.zero_out=true", "dataset.size=32",
                                        "train.device=cpu"])
    gen = Trainer.from_experiment(reg, exp, tmp_path / "run", progress=False).components.gen
    assert torch.equal(gen.eval()(torch.randn(3, 1, 32, 32)), torch.zeros(3, 2, 32, 32))
    assert gen.encoders[0][0].weight.abs().sum() > 0  # the other layers were initialised as usual


@pytest.mark.parametrize("output", ["ab", "lab"])
def test_unet_ab_gain_scales_a_b_outside_training_only(output):
    from colorkit.plugins.unet import UNetOptions
    from colorkit.plugins.unet_model import UNet

    torch.manual_seed(0)
    plain = UNet(UNetOptions(base=4, depth=2, output=output))
    vivid = UNet(UNetOptions(base=4, depth=2, output=output, ab_gain=1.5))
    vivid.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(plain.train()(x), vivid.train()(x))  # training steps never see the gain
    base, scaled = plain.eval()(x), vivid.eval()(x)
    n = base.shape[1]
    assert torch.equal(scaled[:, : n - 2], base[:, : n - 2])  # L* (lab output) untouched
    assert torch.allclose(scaled[:, n - 2:], (base[:, n - 2:] * 1.5).clamp(-1, 1))
    assert scaled.abs().max() <= 1
    with pytest.raises(ValueError, match="ab_gain"):
        UNetOptions(ab_gain=0)


@pytest.mark.parametrize("output", ["ab", "lab"])
def test_unet_fold_runs_the_network_on_pixel_blocks(output):
    """gen.fold=2: the units see 2x2 pixel blocks as channels (half the side); the output has the
    image's full size, each pixel from its own output channel, and zero_out still starts at zero."""
    from colorkit.plugins.unet import UNetOptions
    from colorkit.plugins.unet_model import UNet
    from colorkit.kernel.interfaces import Generator

    torch.manual_seed(0)
    net = UNet(UNetOptions(base=4, depth=2, output=output, fold=2)).eval()
    n = 3 if output == "lab" else 2
    assert net.encoders[0][0].in_channels == 4 and net.head.out_channels == 4 * n
    assert net.size_multiple == 8
    x = torch.randn(2, 1, 16, 24)
    out = net(x)
    assert out.shape == (2, n, 16, 24)
    # the four pixels of one 2x2 block come from four different output channels: they differ
    assert len({round(float(v), 6) for v in out[0, -1, :2, :2].detach().flatten()}) == 4
    # the first unit works at half the side
    assert net.encoders[0][0](torch.nn.functional.pixel_unshuffle(x, 2)).shape[-2:] == (8, 12)
    with pytest.raises(ValueError, match="multiple of 8"):
        net(torch.randn(1, 1, 12, 12))
    zero = UNet(UNetOptions(base=4, depth=2, output="ab", fold=2, zero_out=True)).eval()
    assert torch.equal(zero(x), torch.zeros(2, 2, 16, 24))
    assert isinstance(net, Generator)


def test_spectral_norm_discriminator_gets_he_init_and_unit_spectral_norm():
    from colorkit.plugins.conv_disc import ConvDiscOptions
    from colorkit.plugins.conv_disc_model import ConvDiscriminator
    from colorkit.engine.components import he_init

    torch.manual_seed(0)
    disc = ConvDiscriminator(ConvDiscOptions(base=8, depth=2, spectral_norm=True))
    conv = disc.net[0]
    before = conv.parametrizations.weight.original.detach().clone()
    he_init(disc)
    original = conv.parametrizations.weight.original
    assert not torch.equal(before, original)  # He init reached the weight spectral norm is computed from
    expected = (2 / (1 + 0.2**2) / (4 * 9)) ** 0.5
    assert abs(float(original.detach().std()) - expected) < 0.25 * expected
    disc.train()
    for _ in range(30):  # power iterations run in training mode
        disc(torch.randn(2, 1, 8, 8), torch.randn(2, 3, 8, 8))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(float(sigma) - 1.0) < 0.05


@pytest.mark.slow
def test_ema_is_the_model_that_validation_eval_and_colorize_use(tmp_path):
    from colorkit.engine.evaluation import evaluate
    from colorkit.engine.inference import load_model

    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "2", "--disc", "none", "--loss", "l2", "--set", "train.ema=0.9",
                     *NO_DISC, "--out", str(run)])
    assert result.exit_code == 0, result.output
    state = last(run)
    live, avg = state["gen"], state["gen_ema"]
    assert set(live) == set(avg)
    weights = [k for k in live if k.endswith("weight")]
    assert any(not torch.equal(live[k], avg[k]) for k in weights)  # the average lags the live weights
    for k in live:  # batch-norm statistics are the live model's
        if "running_" in k:
            assert torch.equal(live[k], avg[k])
    model = load_model(run / "checkpoints" / "last.pt")
    for k, v in model.gen.state_dict().items():
        assert torch.equal(v, avg[k])
    # the last validation scored the average: eval on the checkpoint gives the same numbers
    val = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "val"][-1]
    ev, _, _ = evaluate([run / "checkpoints" / "last.pt"], split="val", metrics="mae,psnr", device="cpu")
    assert ev.rows[1].values["mae"] == pytest.approx(val["val_mae"], abs=1e-6)


def test_ema_update_follows_its_formula():
    from colorkit.engine.training import update_ema

    live = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    avg = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    avg.load_state_dict(live.state_dict())
    before = avg[0].weight.detach().clone()
    with torch.no_grad():
        live[0].weight.add_(1.0)
        live[1].running_mean.fill_(3.0)
    update_ema(avg, live, step=90, ema=0.999)
    decay = min(0.999, 91 / 100)  # the ramp: (1 + step) / (10 + step)
    assert torch.allclose(avg[0].weight, decay * before + (1 - decay) * live[0].weight)
    assert torch.equal(avg[1].running_mean, live[1].running_mean)


@pytest.mark.slow
def test_cosine_schedule_and_warmup_follow_the_budget(tmp_path):
    import math

    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "50", "--set", "train.max_steps=10", "--set", "train.lr_schedule=cosine",
                     "--set", "train.warmup=2", "--lr", "1e-3", *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    steps = {r["step"]: r["lr"] for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "step"}
    assert sorted(steps) == list(range(1, 11))
    # the lr logged after step s was set before it, at progress (s - 1) / 10; warm-up over 2 steps
    for s, lr in steps.items():
        expected = 1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 10)) * (s / 2 if s <= 2 else 1)
        assert lr == pytest.approx(expected, rel=1e-6), s
    d_lr = last(run)["opt_d"]["param_groups"][0]["lr"]
    assert d_lr == pytest.approx(steps[10])  # the discriminator follows the same schedule


@pytest.mark.slow
def test_gan_start_trains_the_reconstruction_term_alone_first(tmp_path):
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "50", "--set", "train.max_steps=8", "--set", "train.gan_start=0.5",
                     *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "step"]
    first, later = [r for r in steps if r["step"] <= 4], [r for r in steps if r["step"] > 4]
    assert first and later
    for r in first:  # no discriminator step, no GAN term: lam * L1 alone
        assert "d_real" not in r and "gan" not in r and r["g_total"] == pytest.approx(100 * r["l1"], rel=1e-5)
    for r in later:
        assert {"d_real", "d_fake", "gan"} <= set(r)
    disc_steps = next(iter(last(run)["opt_d"]["state"].values()))["step"].item()
    assert disc_steps == 4


@pytest.mark.slow
def test_cpu_minute_marks_keep_small_loadable_checkpoints(tmp_path, monkeypatch):
    import itertools

    from colorkit.engine import training
    from colorkit.engine.inference import load_model

    # A step-driven clock: every training step takes 0.3 "CPU-seconds", so the marks fall on known steps.
    clock = itertools.count()
    monkeypatch.setattr(training.time, "process_time", lambda: 0.3 * next(clock))
    run = tmp_path / "run"
    result = invoke(["run", "--epochs", "50", "--set", "train.max_cpu_minutes=0.03",
                     "--set", "train.keep_cpu_minutes=0.01,0.02,99", "--set", "train.ema=0.99",
                     *TINY, "--out", str(run)])
    assert result.exit_code == 0, result.output
    ckpts = run / "checkpoints"
    assert not (ckpts / "cpu-99min.pt").exists()  # never reached
    early, late = load_checkpoint(ckpts / "cpu-0.01min.pt"), load_checkpoint(ckpts / "cpu-0.02min.pt")
    # each mark is the first step past it: 0.6 s, 1.2 s, and the budget's 1.8 s (60 * 0.03 in floats)
    eps = 1e-9
    assert 0.6 - eps <= early["cpu_seconds"] < 1.2 - eps <= late["cpu_seconds"] < 1.8 - eps <= last(run)["cpu_seconds"]
    assert 1 <= early["step"] < late["step"] < last(run)["step"]
    assert "opt_g" not in early and "disc" not in early and "gen_ema" in early  # weights only
    model = load_model(ckpts / "cpu-0.02min.pt")
    assert model.step == late["step"]
    for k, v in model.gen.state_dict().items():
        assert torch.equal(v, late["gen_ema"][k])


@pytest.mark.parametrize("key,value,message", [
    ("train.ema", "1.0", "train.ema must be in [0, 1)"),
    ("train.gan_start", "1", "train.gan_start must be in [0, 1)"),
    ("train.keep_cpu_minutes", "5,0", "every mark must be a positive number"),
    ("train.warmup", "-1", "train.warmup must be >= 0"),
])
def test_bad_lever_values_are_one_line_errors(tmp_path, key, value, message):
    result = invoke(["run", "--set", f"{key}={value}", *TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# -- one device choice per run, no loss built to resolve an experiment -----------------------------


def test_a_run_chooses_its_device_once(tmp_path, monkeypatch):
    from colorkit.engine import devices, runs, training
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return devices.pick_device(*args, **kwargs)

    monkeypatch.setattr(runs, "pick_device", counted)
    monkeypatch.setattr(training, "pick_device", counted)
    reg = build_registry(autoload=False)
    exp = experiment_from_sources(reg, cli={"gen": "unet", "disc": "none", "loss": "l1", "dataset": "samples"},
                                  sets=["gen.base=8", "gen.depth=2", "dataset.size=32", "dataset.crops_per_epoch=8",
                                        "dataset.eval_crops=4", "train.batch_size=8", "train.max_steps=1"])
    result = runs.train(reg, exp, tmp_path / "run", progress=False)
    assert result.steps == 1 and calls == [("auto", 0)]


class _NoBuildLoss(Loss):
    """A loss that must not be built to know whether it needs a discriminator."""

    needs_discriminator = True
    built = 0

    def __init__(self, options):
        type(self).built += 1

    def generator_loss(self, batch, disc):
        raise NotImplementedError


class _NoBuildPlugin:
    @colorkit.hookimpl
    def register_losses(self, register):
        register("no_build", _NoBuildLoss)


def test_resolving_an_experiment_reads_needs_discriminator_from_the_loss_class():
    from colorkit.kernel.errors import UsageError
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    reg = build_registry(autoload=False, extra_plugins=[_NoBuildPlugin()])
    exp = experiment_from_sources(reg, cli={"loss": "no_build", "disc": "auto"})
    assert exp.disc is not None  # disc: auto gave the adversarial loss a discriminator
    with pytest.raises(UsageError, match="is adversarial and needs a discriminator"):
        experiment_from_sources(reg, cli={"loss": "no_build", "disc": "none"})
    assert _NoBuildLoss.built == 0
