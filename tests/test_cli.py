"""The command line end to end, through typer's test runner."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from colorkit.kernel.files import read_jsonl
from colorkit.kernel.registry import DISABLE_ENV
from cli_helpers import invoke, one_line_error

TINY = ["--set", "gen.base=8", "--set", "dataset.size=32", "--set", "dataset.crops_per_epoch=64",
        "--set", "dataset.eval_crops=8", "--batch-size", "8", "-q"]




def test_list_shows_every_component_with_package_and_description():
    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    for name in ("unet", "conv", "ns_l1", "l2", "samples", "table1-cifar10-gan"):
        assert name in result.output
    assert "colorkit" in result.output


def test_list_json_is_machine_readable():
    result = invoke(["list", "generator", "--json"])
    data = json.loads(result.output)
    rows = {r["name"]: r for r in data["components"]}
    assert rows["unet"]["kind"] == "generator" and rows["unet"]["package"] == "colorkit"
    assert {o["name"] for o in rows["unet"]["options"]} >= {"base", "depth", "encoder_act", "output", "out_act"}
    assert all(r["kind"] == "generator" for r in data["components"])


def test_unknown_names_give_one_line_with_suggestions():
    line = one_line_error(invoke(["run", "--gen", "unnet"]))
    assert "unknown generator 'unnet'" in line and "did you mean 'unet'" in line
    line = one_line_error(invoke(["run", "--loss", "ns_l2"]))
    assert "did you mean" in line and "ns_l1" in line
    line = one_line_error(invoke(["list", "generatrs"]))
    assert "unknown kind" in line


def test_bad_options_are_named(tmp_path):
    line = one_line_error(invoke(["run", "--set", "gen.bsae=8", "--out", str(tmp_path / "r")]))
    assert "'gen.bsae'" in line and "did you mean 'gen.base'" in line
    line = one_line_error(invoke(["run", "--set", "gen.depth=many", "--out", str(tmp_path / "r")]))
    assert "gen.depth" in line
    line = one_line_error(invoke(["run", "--set", "depth=3"]))
    assert "KEY=VALUE" in line
    line = one_line_error(invoke(["run", "--set", "gen.depth=3", "--set", "dataset.size=36", "--out", str(tmp_path / "r")]))
    assert "multiple of 8" in line and "36" in line
    assert not (tmp_path / "r").exists()  # nothing is created for a run that cannot start
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_baseline_refuses_a_discriminator_and_gan_needs_one():
    line = one_line_error(invoke(["run", "--disc", "conv", "--loss", "l2"]))
    assert "--disc none" in line
    line = one_line_error(invoke(["run", "--disc", "none", "--loss", "ns_l1"]))
    assert "needs a discriminator" in line


def test_bad_config_file_is_named(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("gen: unet\ntrian: {epochs: 1}\n")
    line = one_line_error(invoke(["run", "--config", str(cfg)]))
    assert str(cfg) in line and "'trian'" in line and "did you mean 'train'" in line
    cfg.write_text("gen: [unclosed\n")
    assert str(cfg) in one_line_error(invoke(["run", "--config", str(cfg)]))
    assert "not found" in one_line_error(invoke(["run", "--config", str(tmp_path / "missing.yaml")]))


@pytest.mark.slow
def test_gan_run_writes_a_complete_run_directory_and_learns(tmp_path):
    out = tmp_path / "run"
    result = invoke(["run", "--gen", "unet", "--disc", "conv", "--loss", "ns_l1", "--epochs", "4",
                     "--lr", "2e-3", "--set", "disc.base=8", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert {"config.yaml", "environment.json", "metrics.jsonl", "samples.png", "checkpoints"} <= {
        p.name for p in out.iterdir()}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["gen"] == {"name": "unet", "options": {"base": 8, "depth": 5, "encoder_act": "leaky_relu",
                                                         "output": "ab", "out_act": "tanh", "upsample": "nearest",
                                                         "pad": "replicate", "fold": 1, "zero_out": False,
                                                         "ab_gain": 1.0, "bins_stride": 2, "temperature": 0.38,
                                                         "prior_correction": 0.0}}
    assert config["disc"]["options"]["base"] == 8 and config["loss"]["options"]["lam"] == 100.0
    assert config["train"]["lr"] == 2e-3 and config["train"]["beta1"] == 0.5
    env = json.loads((out / "environment.json").read_text())
    assert env["seed"] == 0 and env["device"] == "cpu" and env["torch"] == torch.__version__
    assert "git_commit_colorkit" in env and env["plugins"]["generator"]["package"] == "colorkit"
    log = read_jsonl(out / "metrics.jsonl")
    epochs = [r for r in log if r["event"] == "epoch"]
    assert len(epochs) == 4 and {"gan", "l1", "d_real", "d_fake", "train_l1"} <= set(epochs[0])
    assert epochs[-1]["train_l1"] < epochs[0]["train_l1"], [e["train_l1"] for e in epochs]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["experiment"]["gen"]["name"] == "unet" and state["step"] == 4 * 8
    from PIL import Image

    grid = Image.open(out / "samples.png")
    assert grid.width > grid.height / 8 * 2  # three columns
    # The saved config is never overwritten: a second run into the same folder is refused.
    again = invoke(["run", "--out", str(out), *TINY])
    assert "already holds a run" in one_line_error(again)


def test_baseline_run_with_preset_style_config(tmp_path):
    cfg = tmp_path / "baseline.yaml"
    cfg.write_text(yaml.safe_dump({"gen": {"name": "unet", "options": {"encoder_act": "relu", "output": "lab"}},
                                   "disc": "none", "loss": "l2", "train": {"epochs": 1, "lr": "1e-3"}}))
    out = tmp_path / "base"
    result = invoke(["run", "--config", str(cfg), "--set", "train.max_steps=3", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["disc"] == "none" and config["loss"]["name"] == "l2"
    assert config["gen"]["options"]["output"] == "lab" and config["train"]["lr"] == 1e-3
    steps = [r for r in read_jsonl(out / "metrics.jsonl") if r["event"] == "step"]
    assert steps and "l2" in steps[0] and "gan" not in steps[0]


@pytest.mark.slow
def test_throwaway_plugin_appears_in_list_and_trains(throwaway_plugin, tmp_path):
    listed = invoke(["list", "generator"], plugins=[throwaway_plugin])
    assert "tiny" in listed.output and "throwaway test generator" in listed.output
    out = tmp_path / "tiny"
    result = invoke(["run", "--gen", "tiny", "--set", "gen.width=3", "--loss", "l2", "--epochs", "1",
                     "--out", str(out), *TINY[2:]], plugins=[throwaway_plugin])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["gen"] == {"name": "tiny", "options": {"width": 3}}
    assert "tiny" not in invoke(["list", "generator"]).output


def test_presets_resolve_to_the_papers_settings():
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    exp = experiment_from_sources(build_registry(), preset="table1-cifar10-gan")
    assert exp.train.batch_size == 128 and exp.train.epochs == 500 and exp.loss.name == "ns_l1"
    assert exp.gen.options.output == "lab" and exp.disc is not None


def test_set_overrides_config_and_flags_override_preset(tmp_path):
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry

    reg = build_registry()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gen: {name: unet, options: {base: 16}}\ntrain: {epochs: 3}\n")
    exp = experiment_from_sources(reg, config=cfg, cli={"train": {"epochs": 7}}, sets=["gen.depth=3", "train.seed=5"])
    assert (exp.gen.options.base, exp.gen.options.depth, exp.train.epochs, exp.train.seed) == (16, 3, 7, 5)


@pytest.mark.parametrize("args, shows", [(["--help"], "Usage: colorkit"), (["run", "--help"], "Usage: colorkit run"),
                                         (["eval", "--help"], "Usage: colorkit eval"),
                                         (["bench", "--help"], "Usage: colorkit bench"),
                                         (["list"], "unet"), (["list", "dataset"], "cifar10"),
                                         (["--version"], "colorkit ")])
@pytest.mark.slow
def test_help_and_list_answer_without_importing_torch(args, shows, monkeypatch):
    """``colorkit --help``, a command's help and ``colorkit list`` need no torch: the built-in
    plugins register their components by reference (installed third-party plugins are off here:
    theirs may import it)."""
    import subprocess
    import sys

    monkeypatch.setenv(DISABLE_ENV, "1")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr))\n"
            "from colorkit.front.cli import main\n"
            f"sys.argv = ['colorkit', *{args!r}]\n"
            "main()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shows in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "no torch"


def test_list_with_options_loads_what_it_shows():
    """``--options`` shows each dataset's splits, read from its class: that imports the plugin's code."""
    result = invoke(["list", "dataset", "--options"])
    assert result.exit_code == 0, result.output
    assert "(splits)" in result.output and "validates and picks best.pt on val" in result.output


def test_version_names_colorkit_python_and_torch_from_package_metadata():
    import sys
    from importlib.metadata import version

    import colorkit

    result = invoke(["--version"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [f"colorkit {colorkit.__version__}", f"python {sys.version.split()[0]}",
                         f"torch {version('torch')}"]
