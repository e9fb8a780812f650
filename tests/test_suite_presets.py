"""Presets of the benchmarks beside their suites: a suite's own ``presets`` and its
``presets_file`` (benchmarks/presets.yaml, moved out of registry.yaml), resolved exactly as the
same presets were from registry.yaml, and a moved preset named where it lives, in one line."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml

from cli_helpers import invoke, one_line_error
from colorkit.front.bench.plan import build_experiment
from colorkit.front.bench.suite import load_suite
from colorkit.kernel.errors import UsageError
from colorkit.kernel.experiment import experiment_defaults, merge_layers, resolve
from colorkit.kernel.registry import build_registry, read_registry_file

REPO = Path(__file__).resolve().parents[1]
PRESETS_FILE = REPO / "benchmarks" / "presets.yaml"

#: The four presets as registry.yaml held them before they moved (copied from it then).
MOVED_FROM_REGISTRY = """\
fast-cifar10-vivid:
  description: "fast-cifar10 with its predicted a*b* scaled by 1.8 at inference (gen.ab_gain, chosen on val; training unchanged): livelier colour for some per-pixel error, 15 CPU-minutes"
  gen: {name: unet, options: {base: 16, depth: 3, output: ab, zero_out: true, ab_gain: 1.8}}
  disc: none
  loss: l1
  dataset: {name: cifar10, options: {size: 32}}
  train: {epochs: 500, batch_size: 64, lr: 2.0e-3, lr_schedule: none, ema: 0.999, max_cpu_minutes: 15}
fast-cifar10-fold2:
  description: "fast-cifar10 on 2x2 pixel blocks: U-Net fold 2, base 32, depth 2, a*b* from a zero-initialised output, L1, batch 64, lr 2e-3, weight EMA 0.999, 15 CPU-minutes"
  gen: {name: unet, options: {base: 32, depth: 2, fold: 2, output: ab, zero_out: true}}
  disc: none
  loss: l1
  dataset: {name: cifar10, options: {size: 32}}
  train: {epochs: 500, batch_size: 64, lr: 2.0e-3, lr_schedule: none, ema: 0.999, max_cpu_minutes: 15}
fast-cifar10-gan:
  description: "fast CPU recipe with a GAN phase: as fast-cifar10, L1 alone for the first half of the budget (NoGAN), then a small conv discriminator (base 16, depth 3, lr 6.7e-4 = lr/3) with the non-saturating loss + 100 L1; 15 CPU-minutes"
  gen: {name: unet, options: {base: 16, depth: 3, output: ab, zero_out: true}}
  disc: {name: conv, options: {base: 16, depth: 3}}
  loss: ns_l1
  dataset: {name: cifar10, options: {size: 32}}
  train: {epochs: 500, batch_size: 64, lr: 2.0e-3, lr_d: 6.7e-4, lr_schedule: none, ema: 0.999, gan_start: 0.5, max_cpu_minutes: 15}
cifar10-wide-l1:
  description: "candidate default-model recipe (measured, not shipped): U-Net base 32, depth 4, a*b* from a zero-initialised output, L1, batch 64, lr 2e-3 with 100 warm-up steps and a cosine decay, weight EMA 0.999, 100 CPU-minutes"
  gen: {name: unet, options: {base: 32, depth: 4, output: ab, zero_out: true}}
  disc: none
  loss: l1
  dataset: {name: cifar10, options: {size: 32}}
  train: {epochs: 500, batch_size: 64, lr: 2.0e-3, lr_schedule: cosine, warmup: 100, ema: 0.999, max_cpu_minutes: 100, keep_cpu_minutes: [15, 30, 60, 100], val_every: 2000, val_limit: 1000}
"""

#: The committed suites that read benchmarks/presets.yaml.
SUITES = ["time-to-quality.yaml", "time-to-quality-ablation.yaml", "gpu/time-to-quality-gpu.yaml"]


@pytest.fixture(scope="module")
def registry():
    return build_registry(autoload=False)


def _resolved(registry, config):
    return resolve(registry, merge_layers([("defaults", experiment_defaults(registry)), ("preset", config)])).to_dict()


def test_the_benchmark_presets_moved_unchanged_and_registry_yaml_names_them(registry):
    moved = yaml.safe_load(MOVED_FROM_REGISTRY)
    file = yaml.safe_load(PRESETS_FILE.read_text(encoding="utf-8"))["presets"]
    assert file == moved
    for name, config in file.items():
        assert _resolved(registry, config) == _resolved(registry, moved[name])
    assert read_registry_file()["benchmark_presets"] == {"benchmarks/presets.yaml": list(file)}
    assert not set(file) & set(registry.presets)
    # registry.yaml keeps the paper's presets, the recommended fast recipes and the shipped models' recipes
    assert set(registry.presets) == {"table1-cifar10-unet", "table1-cifar10-gan", "table1-places365-gan", "fast-cifar10",
                                     "fast-cifar10-fold2-vivid", "fast-cifar10-fold2-gan", "colorkit-cifar10",
                                     "colorkit-photos"}


@pytest.mark.parametrize("suite_file", SUITES)
def test_a_suite_resolves_through_its_presets_file_as_it_did_through_registry_yaml(registry, suite_file):
    """Every row of the committed suites: the experiment resolved with the preset read from
    benchmarks/presets.yaml equals the one resolved, as before, from registry.yaml's presets."""
    suite = load_suite(REPO / "benchmarks" / suite_file)
    assert suite.presets and {e.preset for e in suite.experiments} & set(suite.presets)
    as_before = build_registry(autoload=False)
    as_before.presets.update({name: p.config for name, p in suite.presets.items()})
    before = dataclasses.replace(suite, presets={})
    for e in suite.experiments:
        assert (build_experiment(registry, suite, e, suite.seeds[0]).to_dict()
                == build_experiment(as_before, before, e, suite.seeds[0]).to_dict()), e.name


SUITE = """\
seeds: [0]
%(presets)s
defaults:
  train: {max_steps: 5}
experiments:
  - {name: a, preset: %(name)s, set: [gen.base=8]}
evaluation: {metrics: [mae]}
"""


def _suite(folder: Path, presets: str, name: str = "mine") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "suite.yaml"
    path.write_text(SUITE % {"presets": presets, "name": name}, encoding="utf-8")
    return path


def test_a_suite_defines_presets_inline_or_in_a_file_beside_it(tmp_path, registry):
    preset = "{gen: {name: unet, options: {depth: 2}}, disc: none, loss: l1, dataset: samples, train: {max_steps: 99}}"
    inline = load_suite(_suite(tmp_path / "inline", f"presets:\n  mine: {preset}"))
    (tmp_path / "filed" / "shared").mkdir(parents=True)
    (tmp_path / "filed" / "shared" / "presets.yaml").write_text(f"presets:\n  mine: {preset}\n")
    filed = load_suite(_suite(tmp_path / "filed", "presets_file: shared/presets.yaml"))
    got = [build_experiment(registry, s, s.experiments[0], 0) for s in (inline, filed)]
    assert got[0].to_dict() == got[1].to_dict()
    # the preset layers below the suite's defaults (max_steps 5) and the row's sets (gen.base=8)
    assert (got[0].gen.options.base, got[0].gen.options.depth, got[0].loss.name, got[0].train.max_steps) == (8, 2, "l1", 5)
    assert filed.presets["mine"].source == (tmp_path / "filed" / "shared" / "presets.yaml").resolve()


@pytest.mark.parametrize("presets, name, error", [
    ("presets_file: nope.yaml", "mine", "nope.yaml: presets file not found"),
    ("presets_file: 3", "mine", "'presets_file' must be the path of a presets file"),
    ("presets: [a, b]", "mine", "'presets' must map preset names to experiment configs"),
    ("presets: {mine: l1}", "mine", "'presets.mine' must be a mapping of experiment keys"),
    ("presets: {fast-cifar10: {loss: l2}}", "fast-cifar10", "preset 'fast-cifar10' of"),
    ("presets_file: other.yaml\npresets: {mine: {loss: l2}}", "mine", "'presets.mine' is also a preset of its presets_file"),
    ("", "fast-cifar10-gan", "preset 'fast-cifar10-gan' is a benchmark preset: it lives in benchmarks/presets.yaml"),
])
def test_a_bad_suite_preset_is_one_line(tmp_path, registry, presets, name, error):
    (tmp_path / "other.yaml").write_text("presets:\n  mine: {loss: l1}\n")
    with pytest.raises(UsageError) as info:
        suite = load_suite(_suite(tmp_path, presets, name))
        build_experiment(registry, suite, suite.experiments[0], 0)
    assert error in str(info.value) and "\n" not in str(info.value)


def test_run_with_a_moved_preset_says_where_it_lives_in_one_line():
    line = one_line_error(invoke(["run", "--preset", "fast-cifar10-gan"]))
    assert line == ("error: preset 'fast-cifar10-gan' is a benchmark preset: it lives in benchmarks/presets.yaml of "
                    "the colorkit repository, beside the suites that use it; name that file as a suite's "
                    "presets_file, or copy the preset's keys into a YAML file and pass --config FILE")
    assert "did you mean 'fast-cifar10'" in one_line_error(invoke(["run", "--preset", "fast-cifar1"]))
