"""``colorkit bench``: a tiny suite on the ``samples`` dataset, reuse, resume, statistics, errors,
and benchmarks/RESULTS.md against the committed suite outputs."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import statistics
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from colorkit.front.bench import run_suite
from colorkit.front.bench.suite import load_suite
from colorkit.kernel.errors import UsageError
from colorkit.kernel.registry import build_registry

REPO = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
description: two tiny experiments on the samples dataset
seeds: [0, 1]
threads: 1
defaults:
  gen: {name: unet, options: {base: 8, depth: 2}}
  dataset: {name: samples, options: {size: 16, crops_per_epoch: 16, eval_crops: 8}}
  metrics: [mae]
  train: {batch_size: 4, max_steps: %(steps)d, device: cpu, val_every: 2, val_limit: 8, log_every: 1, ckpt_every: 1}
experiments:
  - name: l2
    config: {loss: l2, disc: none}
    paper: {label: "paper: made up", mae: 5.9}
  - name: gan
    config: {loss: ns_l1, disc: {name: conv, options: {base: 8, depth: 2}}}
evaluation:
  split: test
  images: 6
  metrics: [mae, accuracy, psnr]
  batch_size: 4
  device: cpu
figures: {figure1: %(fig)s, figure5: {rows: 2, experiments: [l2, gan]}, curves: %(fig)s}
"""


def write_suite(folder: Path, steps: int = 3, figures: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    path.write_text(TINY % {"steps": steps, "fig": "true" if figures else "false"}, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry():
    return build_registry(autoload=False)


@pytest.fixture
def example_registry(monkeypatch):
    """Built-ins plus the strided U-Net example (as installed, else from its source folder)."""
    try:
        import colorkit_strided_unet
    except ImportError:
        monkeypatch.syspath_prepend(str(REPO / "examples" / "strided_unet" / "src"))
        import colorkit_strided_unet
    return build_registry(autoload=False, extra_plugins=[colorkit_strided_unet])


@pytest.fixture(scope="module")
def done(tmp_path_factory, registry):
    """The tiny suite, run once (figures included)."""
    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("bench")
    suite = write_suite(folder, figures=True)
    out = folder / "out"
    rows = run_suite(suite, out, registry=registry, log=None)
    torch.set_num_threads(threads)
    return suite, out, rows


def test_suite_writes_every_file(done):
    suite, out, rows = done
    assert len(rows) == 4
    for name in ("l2", "gan"):
        for seed in (0, 1):
            run = out / "runs" / f"{name}-s{seed}"
            for f in ("config.yaml", "environment.json", "metrics.jsonl", "checkpoints/last.pt", "eval-last.json"):
                assert (run / f).is_file(), f
            ev = json.loads((run / "eval-last.json").read_text())
            assert ev["images"] == 6 and ev["rows"][0]["label"] == "no colour"
            cfg = (run / "config.yaml").read_text()
            assert f"seed: {seed}" in cfg
    for f in ("results.csv", "results.md", "results.json", "figures/figure1_generator_costs.png",
              "figures/figure5_samples.png", "figures/training_curves.png"):
        assert (out / f).is_file(), f
    md = (out / "results.md").read_text()
    assert "no colour" in md and "paper: made up" in md and "4 of 4 runs" in md
    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["experiment"], r["seed"]) for r in table] == [("l2", "0"), ("gan", "0"), ("l2", "1"), ("gan", "1")]
    for r in table:
        assert len(r["config_sha256"]) == 64 and r["torch"] == torch.__version__ and r["device"] == "cpu"
        assert int(r["steps"]) == 3 and int(r["images_seen"]) == 12
        assert r["checkpoint"].endswith("checkpoints/last.pt")
    # the seeds differ, so do the configs and the results
    assert table[0]["config_sha256"] != table[2]["config_sha256"]


def test_mean_and_std_match_the_csv(done):
    suite, out, _ = done
    with open(out / "results.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    summary = {s["experiment"]: s for s in json.loads((out / "results.json").read_text())["summary"]}
    md = (out / "results.md").read_text()
    for name in ("l2", "gan"):
        for metric, digits in (("mae", 2), ("accuracy", 1), ("psnr", 2)):
            vals = [float(r[metric]) for r in table if r["experiment"] == name]
            mean, std = statistics.fmean(vals), statistics.stdev(vals)
            assert summary[name][metric][0] == pytest.approx(mean, abs=1e-5)
            assert summary[name][metric][1] == pytest.approx(std, abs=1e-5)
            assert f"{mean:.{digits}f} ± {std:.{digits}f}" in md
    floor = json.loads((out / "runs" / "l2-s0" / "eval-last.json").read_text())["rows"][0]["values"]
    assert f"{floor['psnr']:.2f}" in md


def strict_json(text: str):
    """json.loads that rejects NaN and Infinity, as jq and browsers do."""
    def refuse(token: str):
        raise AssertionError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_one_seed_has_no_spread_and_results_json_is_standard_json(done, tmp_path):
    """A row with one finished seed has no standard deviation: null in results.json, no "±" in
    results.md; the file parses where NaN is refused."""
    import shutil

    from colorkit.front.bench.results import write_results

    suite, out, _ = done
    part = tmp_path / "out"
    for name in ("l2-s0", "gan-s0", "gan-s1"):
        shutil.copytree(out / "runs" / name, part / "runs" / name)
    write_results(load_suite(suite), part, figures=[])
    summary = {s["experiment"]: s for s in strict_json((part / "results.json").read_text())["summary"]}
    with open(out / "results.csv", newline="") as fh:
        l2_s0 = next(r for r in csv.DictReader(fh) if (r["experiment"], r["seed"]) == ("l2", "0"))
    md = (part / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| l2 "))
    for metric in ("mae", "accuracy", "psnr"):
        assert summary["l2"]["n"] == 1 and summary["l2"][metric][1] is None
        assert summary["l2"][metric][0] == pytest.approx(float(l2_s0[metric]), abs=1e-5)
        assert summary["gan"]["n"] == 2 and summary["gan"][metric][1] >= 0
    assert "±" not in row and "n/a" not in row
    strict_json((out / "results.json").read_text())


def test_rerun_reuses_runs_and_evaluations(done, registry):
    suite, out, _ = done
    files = sorted((out / "runs").glob("*/metrics.jsonl")) + sorted((out / "runs").glob("*/eval-last.json"))
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    logs: list[str] = []
    run_suite(suite, out, registry=registry, log=logs.append, figures=False)
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
    assert not [line for line in logs if " train " in line or " evaluate " in line or "resume" in line]


@pytest.mark.slow
def test_interrupted_run_continues(done, tmp_path, registry, monkeypatch):
    """A run stopped after two steps (as Ctrl-C does: checkpoint saved) resumes on the rerun
    and ends with the same weights as the uninterrupted run of the same config."""
    from colorkit.engine.training import Trainer, TrainingInterrupted

    _, ref_out, _ = done
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    original = Trainer.train_batch

    def stop_after_two(self, rgb):
        logs = original(self, rgb)
        if self.state.step + 1 >= 2:
            self._stop_requested = True
        return logs

    monkeypatch.setattr(Trainer, "train_batch", stop_after_two)
    with pytest.raises(TrainingInterrupted):
        run_suite(suite, out, registry=registry, log=None, figures=False)
    monkeypatch.setattr(Trainer, "train_batch", original)
    run = out / "runs" / "l2-s0"
    assert (run / "checkpoints" / "last.pt").is_file()
    assert not any(json.loads(x)["event"] == "end" for x in (run / "metrics.jsonl").read_text().splitlines())
    logs: list[str] = []
    run_suite(suite, out, registry=registry, log=logs.append, figures=False)
    assert any("resume l2-s0" in line for line in logs)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resume" for e in events)
    end = [e for e in events if e["event"] == "end"][-1]
    ref = [json.loads(x) for x in (ref_out / "runs" / "l2-s0" / "metrics.jsonl").read_text().splitlines()]
    ref_end = [e for e in ref if e["event"] == "end"][-1]
    assert end["step"] == 3 and end["param_checksums"] == ref_end["param_checksums"]
    with open(out / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 4


def test_partial_results_show_missing_seeds(tmp_path, registry):
    """Results written with runs missing say how many seeds each row has."""
    from colorkit.front.bench.results import write_results

    suite_path = write_suite(tmp_path)
    suite = load_suite(suite_path)
    out = tmp_path / "out"
    out.mkdir()
    write_results(suite, out, figures=[])
    md = (out / "results.md").read_text()
    assert "0 of 4 runs" in md and "not run yet" in md


@pytest.mark.parametrize(
    "text, key",
    [
        ("seeds: [0]\nexperiments: []\nevaluation: {metrics: [mae]}\n", "'experiments'"),
        ("seeds: [0, 0]\nexperiments: [{name: a}]\nevaluation: {metrics: [mae]}\n", "'seeds'"),
        ("experiments: [{name: a}]\nevaluation: {metrics: [mae]}\nseed: 3\n", "'seed' (did you mean 'seeds'?)"),
        ("experiments: [{name: a, budget: 3}]\nevaluation: {metrics: [mae]}\n", "'experiments[0].budget'"),
        ("experiments: [{name: a b}]\nevaluation: {metrics: [mae]}\n", "'experiments[0].name'"),
        ("experiments: [{name: a}, {name: a}]\nevaluation: {metrics: [mae]}\n", "'experiments[1].name'"),
        ("experiments: [{name: a}]\nevaluation: {metrics: []}\n", "'evaluation.metrics'"),
        ("experiments: [{name: a}]\nevaluation: {metrics: [mae], images: 0}\n", "'evaluation.images'"),
        ("experiments: [{name: a}]\nevaluation: {metrics: [mae]}\ncheckpoint: first\n", "'checkpoint'"),
        ("experiments: [{name: a, paper: {mae: high}}]\nevaluation: {metrics: [mae]}\n", "'experiments[0].paper.mae'"),
        ("experiments: [{name: a}]\nevaluation: {metrics: [mae]}\nfigures: {figure5: {experiments: [b]}}\n",
         "'figures.figure5.experiments'"),
        ("experiments: [a\n", "not valid YAML"),
    ],
)
def test_bad_suite_is_a_one_line_error(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_suite(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and key in msg and "\n" not in msg


def test_bad_experiment_names_the_suite_and_experiment(tmp_path, registry):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        experiments: [{name: wide, set: [gen.widht=3]}]
        evaluation: {metrics: [mae]}
        """), encoding="utf-8")
    with pytest.raises(UsageError) as info:
        run_suite(path, tmp_path / "out", registry=registry, log=None)
    assert str(info.value).startswith(f"{path}: experiment 'wide'") and "widht" in str(info.value)
    assert not (tmp_path / "out" / "runs").exists()


def test_a_missing_plugin_package_is_named_with_its_install_command(tmp_path, registry):
    path = tmp_path / "needs.yaml"
    path.write_text(textwrap.dedent("""\
        plugins: {colorkit-no-such-plugin: pip install ./examples/no_such_plugin}
        experiments: [{name: strided, config: {gen: strided_unet}}]
        evaluation: {metrics: [mae]}
        """), encoding="utf-8")
    with pytest.raises(UsageError) as info:
        run_suite(path, tmp_path / "out", registry=registry, log=None)
    msg = str(info.value)
    assert msg.startswith(f"{path}: experiment 'strided': unknown generator 'strided_unet'") and "\n" not in msg
    assert "colorkit-no-such-plugin is not installed: pip install ./examples/no_such_plugin" in msg
    # an installed package is not named as missing: the hint then says where to look
    path.write_text(path.read_text().replace("colorkit-no-such-plugin", "pluggy"), encoding="utf-8")
    with pytest.raises(UsageError) as info:
        run_suite(path, tmp_path / "out", registry=registry, log=None)
    assert "not installed" not in str(info.value) and "colorkit list" in str(info.value)
    path.write_text("plugins: [a]\nexperiments: [{name: a}]\nevaluation: {metrics: [mae]}\n", encoding="utf-8")
    with pytest.raises(UsageError, match="'plugins'"):
        load_suite(path)


@pytest.mark.slow
def test_bench_says_what_it_will_run_before_the_first_run(tmp_path, registry):
    suite = write_suite(tmp_path)
    lines: list[str] = []
    run_suite(suite, tmp_path / "out", registry=registry, log=lines.append, figures=False, only=["l2"], seeds=[0])
    assert lines[0].split("] ", 1)[1] == (
        "1 run(s) to train, each for 3 steps; then each is evaluated on 6 images of the test split")
    lines.clear()
    run_suite(suite, tmp_path / "out", registry=registry, log=lines.append, figures=False, only=["l2"], seeds=[0])
    assert lines[0].split("] ", 1)[1].startswith("every run is trained already")
    # one finished seed: its values alone, no "± 0.00" (and no ± at all in that row)
    row = next(line for line in (tmp_path / "out" / "results.md").read_text().splitlines() if line.startswith("| l2 |"))
    assert "1 of 2" in row and "±" not in row


def test_committed_suites_name_their_plugin_packages():
    for name in ("table1-cpu", "table1-full"):
        suite = load_suite(REPO / "benchmarks" / f"{name}.yaml")
        assert suite.plugins == {"colorkit-strided-unet": "pip install --no-build-isolation -e examples/strided_unet"}


def test_cli_bench_errors_in_one_line(tmp_path):
    from colorkit.front.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text("experiments: [{name: a}]\nevaluation: {metrics: [mae]}\ncheckpoint: first\n")
    result = CliRunner().invoke(app, ["bench", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {path}: 'checkpoint' must be last or best, got 'first'"]
    missing = CliRunner().invoke(app, ["bench", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "suite file not found" in missing.output


def test_relative_data_paths_resolve_against_the_suite_then_the_repo(tmp_path):
    from colorkit.front.bench.suite import resolve_path

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "bench").mkdir()
    (tmp_path / "data.tar.gz").write_text("")
    (tmp_path / "bench" / "near.tar.gz").write_text("")
    assert resolve_path("near.tar.gz", tmp_path / "bench") == str((tmp_path / "bench" / "near.tar.gz").resolve())
    assert resolve_path("data.tar.gz", tmp_path / "bench") == str((tmp_path / "data.tar.gz").resolve())


def test_committed_suites_load(example_registry):
    from colorkit.front.bench.plan import build_experiment

    registry = example_registry

    for name in ("table1-cpu.yaml", "table1-full.yaml"):
        suite = load_suite(REPO / "benchmarks" / name)
        for e in suite.experiments:
            exp = build_experiment(registry, suite, e, suite.seeds[0])
            assert exp.train.seed == suite.seeds[0]
    cpu = load_suite(REPO / "benchmarks" / "table1-cpu.yaml")
    assert cpu.seeds == [0, 1, 2] and cpu.protocol.images == 10000 and cpu.threads == 1 and cpu.jobs == 2
    exp = build_experiment(registry, cpu, cpu.experiment("gan-ns_l1"), 0)
    assert exp.train.max_cpu_minutes == 10 and exp.loss.name == "ns_l1" and exp.disc.name == "conv"
    assert exp.gen.options.output == "lab"
    ab = build_experiment(registry, cpu, cpu.experiment("gan-ns_l1-ab"), 0)
    assert ab.gen.options.output == "ab" and ab.to_dict()["disc"] == exp.to_dict()["disc"]


def test_figure1_is_computed_from_the_losses(registry):
    import math

    from colorkit.front.bench.figures import generator_costs

    d, costs, labels = generator_costs(registry, points=5)
    assert set(costs) == {"minimax_l1", "ns_l1"} and "saturating" in labels["minimax_l1"]
    for x, sat, ns in zip(d, costs["minimax_l1"], costs["ns_l1"]):
        assert sat == pytest.approx(math.log(1 - x), rel=1e-6)
        assert ns == pytest.approx(-math.log(x), rel=1e-6)


def test_figure1_takes_a_third_party_loss_through_the_loss_interface(tmp_path):
    import torch

    import colorkit
    from colorkit.front.bench.figures import figure1, generator_costs
    from colorkit.kernel.registry import build_registry

    class Hinge(colorkit.Loss):
        needs_discriminator = True
        gan_label = "hinge: -D(G(z))"

        def __init__(self, options):
            pass

        def generator_loss(self, batch, disc):
            return {"total": torch.zeros(())}

        def gan_term(self, fake_logits):
            return (-fake_logits).mean()

    class Plugin:
        @colorkit.hookimpl
        def register_losses(self, register):
            register("hinge_gan", Hinge)

    reg = build_registry(autoload=False, extra_plugins=[Plugin()])
    d, costs, labels = generator_costs(reg, points=3)
    assert set(costs) == {"minimax_l1", "ns_l1", "hinge_gan"} and labels["hinge_gan"] == "hinge_gan: hinge: -D(G(z))"
    assert costs["hinge_gan"] == pytest.approx([-math.log(x / (1 - x)) for x in d], rel=1e-6)
    assert figure1(reg, tmp_path / "f1.png").stat().st_size > 1000


def test_results_md_is_generated_from_the_committed_outputs():
    spec = importlib.util.spec_from_file_location("make_results", REPO / "benchmarks" / "make_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    expected = mod.generate(REPO / "benchmarks")
    actual = (REPO / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    assert actual == expected, "benchmarks/RESULTS.md is stale: run python benchmarks/make_results.py"


def _make_results():
    spec = importlib.util.spec_from_file_location("make_results_mod", REPO / "benchmarks" / "make_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_make_results_collects_a_suite_and_the_speed_files(done, tmp_path):
    suite, out, _ = done
    mod = _make_results()
    bench = tmp_path / "benchmarks"
    dest = mod.collect(out, suite, None, bench=bench)
    assert not list(dest.rglob("*.pt"))
    for f in ("results.csv", "results.md", "results.json", "machine.json", "runs/l2-s0/metrics.jsonl",
              "runs/gan-s1/eval-last.json", "runs/gan-s1/config.yaml", "figures/figure1_generator_costs.png"):
        assert (dest / f).is_file(), f
    text = mod.generate(bench)
    assert "## Suite `tiny`" in text and "no colour" in text and text.count("Not measured yet.") == 3
    assert "colorkit bench benchmarks/tiny.yaml" in text
    speed = bench / "results" / "speed"
    speed.mkdir(parents=True)
    (speed / "train_overhead_cpu.json").write_text(json.dumps(
        {"device": "cpu", "precision": "fp32", "batch": 32, "colorkit_images_per_s": 10.0, "bare_images_per_s": 10.5,
         "ratio": 0.952, "step_gflop": 30.1, "achieved_gflops": 50.0, "matmul_gflops": 100.0, "fraction_of_matmul": 0.5}))
    (speed / "colorize_latency.json").write_text(json.dumps(
        {"runs": 7, "rows": [{"photo": "512x512", "working_size": 32, "model_input": "32x32", "array_median_s": 0.05,
                              "file_median_s": 0.07, "peak_rss_mib": 700, "threads": 2}]}))
    (speed / "data_pipeline.json").write_text(json.dumps(
        [{"case": "CIFAR-10", "device": "cpu", "batch": 128, "training": {"images_per_s": 20.0},
          "pipeline": [{"workers": 0, "images_per_s": 5000.0}], "ratios": {"0": 250.0}}]))
    text = mod.generate(bench)
    assert "Not measured yet." not in text
    assert "| 0.952 |" in text and "| 0.050 |" in text and "| 250.0 |" in text


def test_only_and_seeds_restrict_what_runs(tmp_path, registry):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    rows = run_suite(suite, out, registry=registry, log=None, figures=False, only=["l2"], seeds=[1])
    assert [(r["experiment"], r["seed"]) for r in rows] == [("l2", 1)]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["l2-s1"]
    assert "1 of 4 runs" in (out / "results.md").read_text()
    with pytest.raises(UsageError, match="--only nope: not an experiment"):
        run_suite(suite, out, registry=registry, log=None, only=["nope"])
    with pytest.raises(UsageError, match="--seeds 7: not a seed"):
        run_suite(suite, out, registry=registry, log=None, seeds=[7])


@pytest.mark.slow
def test_results_never_mix_evaluation_protocols(done, tmp_path, registry):
    """After the suite's evaluation changes, a run scored on the old protocol leaves the table
    (named as left out) until it is scored again; `--only` rescores just its runs."""
    import shutil

    suite, ref_out, _ = done
    out = tmp_path / "out"
    shutil.copytree(ref_out / "runs", out / "runs")
    changed = tmp_path / "tiny.yaml"
    changed.write_text(suite.read_text(encoding="utf-8").replace("  images: 6\n", "  images: 5\n"), encoding="utf-8")
    rows = run_suite(changed, out, registry=registry, log=None, figures=False, only=["l2"])
    assert sorted((r["experiment"], r["seed"]) for r in rows) == [("l2", 0), ("l2", 1)]
    assert {r["eval_images"] for r in rows} == {5}
    md = (out / "results.md").read_text()
    assert "Left out: 2 finished run(s) evaluated on another protocol" in md and "gan-s0, gan-s1" in md
    assert "6 images" not in md
    rows = run_suite(changed, out, registry=registry, log=None, figures=False)
    assert len(rows) == 4 and {r["eval_images"] for r in rows} == {5}
    assert "Left out" not in (out / "results.md").read_text()


@pytest.mark.slow
def test_parallel_jobs_give_the_sequential_results(done, tmp_path):
    """``jobs=2``: every run in a ``colorkit bench`` worker process of its own, two at a time,
    on one output folder; the same runs and, on the CPU with one thread, the same numbers."""
    suite, sequential, _ = done
    out = tmp_path / "parallel"
    logs: list[str] = []
    rows = run_suite(suite, out, log=logs.append, figures=False, jobs=2)
    assert len(rows) == 4
    assert sum("worker done" in line for line in logs) == 4
    keys = ("experiment", "seed", "config_sha256", "steps", "images_seen", "mae", "accuracy", "psnr")

    def table(folder):
        with open(folder / "results.csv", newline="") as fh:
            return [{k: r[k] for k in keys} for r in csv.DictReader(fh)]

    assert table(out) == table(sequential)
    assert "4 of 4 runs" in (out / "results.md").read_text()


@pytest.mark.slow
def test_a_failing_worker_is_reported_and_the_others_finish(tmp_path):
    suite = write_suite(tmp_path)
    text = suite.read_text().replace("config: {loss: ns_l1,", "set: [gen.depth=5]\n    config: {loss: ns_l1,")
    suite.write_text(text)
    logs: list[str] = []
    with pytest.raises(Exception, match=r"2 run\(s\) failed.*gan-s0: worker exited with code 1"):
        run_suite(suite, tmp_path / "out", log=logs.append, figures=False, jobs=2)
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["l2-s0", "l2-s1"]


def _figures(value, path=()):
    """Every measured number in a benchmark script's JSON output, with where it sits."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _figures(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _figures(v, (*path, str(i)))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


#: Fields of the speed files that describe the set-up rather than measure something.
_SET_UP = {"environment", "gen", "disc", "cpus", "seed", "warmup_steps", "timed_steps", "runs", "threads",
           "train_images", "size", "batch", "workers", "load_s", "load_average_before", "load_average_after",
           "working_size", "steps_per_run", "rounds"}


def test_results_md_shows_every_figure_the_speed_benchmarks_measured():
    """The committed speed files are the real output of the benchmark scripts (``--json``): every
    measured figure in them must reach RESULTS.md, so a renamed key cannot empty a table again."""
    mod = _make_results()
    text = mod.generate(REPO / "benchmarks")
    speed = REPO / "benchmarks" / "results" / "speed"
    files = sorted(speed.glob("*.json"))
    assert {f.name.split("_cpu")[0].split("_h100")[0] for f in files} >= {"data_pipeline", "train_overhead", "colorize_latency"}
    missing = []
    for f in files:
        for path, value in _figures(json.loads(f.read_text())):
            if _SET_UP & set(path) or path[-1] in ("steps",) and "training" not in path:
                continue
            shown = {mod._fmt(value, d) for d in (0, 1, 2, 3)} | {f"{value:,.0f}"}
            if not any(f"| {s} |" in text or f" {s} " in text for s in shown):
                missing.append(f"{f.name}: {'/'.join(path)} = {value}")
    assert not missing, "measured figures RESULTS.md drops:\n" + "\n".join(missing)


def test_data_pipeline_table_reads_the_format_the_script_writes(tmp_path):
    """``data_pipeline.py --json`` writes ``{"environment", "results"}``: the table must have rows."""
    mod = _make_results()
    speed = tmp_path / "benchmarks" / "results" / "speed"
    speed.mkdir(parents=True)
    case = {"case": "CIFAR-10", "device": "cpu", "batch": 128,
            "pipeline": [{"workers": 0, "images": 50048, "seconds": 12.25, "images_per_s": 4085.6}],
            "training": {"steps": 50, "batch": 128, "seconds": 801.5, "images_per_s": 7.98}, "ratios": {"0": 511.9}}
    (speed / "data_pipeline_cpu.json").write_text(json.dumps({"environment": {"python": "3.11", "cpus": 2}, "results": [case]}))
    text = mod.generate(tmp_path / "benchmarks")
    row = next(line for line in text.splitlines() if line.startswith("| CIFAR-10 | cpu |"))
    for figure in ("50048", "12.250", "4086", "| 50 |", "801.500", "8.0", "511.9"):
        assert figure in row, (figure, row)
    assert "fewer than 50 timed training steps" not in text


def test_a_turing_study_becomes_a_column_of_the_results(done, registry, tmp_path):
    """A `colorkit turing` study of two suite runs, answered through the server's own code: the
    results table gets a fooling-rate column with the study's numbers; bad keys are one line."""
    from PIL import Image
    from skimage import data

    from colorkit.front.bench.results import write_results
    from colorkit.front.turing.study import create_study, summarize
    from colorkit.front.turing.server import StudyServer

    suite_path, out, _ = done
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, img in enumerate([data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]):
        Image.fromarray(img[:64, :64]).save(photos / f"p{i}.png")
    study = create_study([out / "runs" / "l2-s0", out / "runs" / "gan-s0"], str(photos), tmp_path / "study",
                         registry=registry, size=32, log=lambda s: None)
    server = StudyServer(("127.0.0.1", 0), study)
    try:
        for _ in range(3):
            session = server.new_session()
            for k, trial in enumerate(session["trials"]):
                assert server.answer({"session": session["session"], "trial": trial["trial"],
                                      "answer": "real" if k % 2 else "fake", "rt_ms": 700}) is not None
    finally:
        server.server_close()
    labels = [m["label"] for m in study.config["models"]]
    assert labels == ["l2-s0", "gan-s0"]
    suite2 = suite_path.parent / "tiny-turing.yaml"
    suite2.write_text(suite_path.read_text() + f"turing:\n  study: {tmp_path / 'study'}\n"
                      "  models: {l2: l2-s0, gan: gan-s0}\n", encoding="utf-8")
    write_results(load_suite(suite2), out, figures=[])
    text = (out / "results.md").read_text(encoding="utf-8")
    summary = summarize(tmp_path / "study")
    assert f"fooled (%, 95% CI; 3 people, {summary['answers']} answers) ↑" in text
    for row in summary["models"]:
        experiment = row["condition"][:-3]
        line = next(line for line in text.splitlines() if line.startswith(f"| {experiment} |"))
        assert line.endswith(f"| {100 * row['rate']:.1f} ({100 * row['ci95'][0]:.0f}-{100 * row['ci95'][1]:.0f}) |")
    original = summary["original"]
    assert f"| {100 * original['rate']:.1f} ({100 * original['ci95'][0]:.0f}-" in next(
        line for line in text.splitlines() if "original photos" in line)
    suite2.write_text(suite_path.read_text() + f"turing:\n  study: {tmp_path / 'study'}\n  models: {{nope: x}}\n",
                      encoding="utf-8")
    with pytest.raises(UsageError, match="turing.models.*'nope', which is not an experiment"):
        load_suite(suite2)
    write_results(load_suite(suite_path), out, figures=[])  # leave the shared outputs as they were
