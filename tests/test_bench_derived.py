"""Suite rows with ``from``: the checkpoints of an earlier row scored with other inference-time
generator options (gen.ab_gain), derived without training, in this process and after worker
processes; and the one-line errors of a ``from`` row that could not be derived."""

from __future__ import annotations

import csv
import os
import textwrap
from pathlib import Path

import pytest
import torch

from colorkit.front.bench import run_suite
from colorkit.front.bench.suite import load_suite
from colorkit.kernel.errors import ColorkitError, UsageError
from colorkit.kernel.registry import build_registry

SUITE = """\
name: derived
seeds: [0]
threads: 1
jobs: %(jobs)d
defaults:
  gen: {name: unet, options: {base: 8, depth: 2, output: ab}}
  loss: l1
  disc: none
  dataset: {name: samples, options: {size: 16, crops_per_epoch: 16, eval_crops: 6}}
  metrics: [mae]
  train: {batch_size: 4, max_steps: 4, device: cpu, val_every: 100, log_every: 1, ckpt_every: 2}
experiments:
  - name: plain
  - name: vivid
    from: plain
    set: [gen.ab_gain=2]
    description: plain's checkpoints with a*b* doubled
evaluation:
  split: test
  metrics: [mae, colorfulness]
  batch_size: 6
  device: cpu
figures: {figure1: false, curves: false}
"""


def _suite(folder: Path, jobs: int = 1) -> Path:
    path = folder / "derived.yaml"
    path.write_text(SUITE % {"jobs": jobs}, encoding="utf-8")
    return path


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="") as fh:
        return {r["experiment"]: r for r in csv.DictReader(fh)}


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.slow
def test_a_from_row_scores_the_source_weights_with_its_options_and_trains_nothing(tmp_path, jobs):
    threads = torch.get_num_threads()
    suite, out, logs = _suite(tmp_path, jobs), tmp_path / "out", []
    registry = build_registry(autoload=False)
    run_suite(suite, out, registry=registry, log=logs.append, figures=False)
    torch.set_num_threads(threads)
    src, der = out / "runs" / "plain-s0", out / "runs" / "vivid-s0"
    assert sum(" derive vivid-s0 from plain-s0" in line for line in logs) == 1
    assert not any("train vivid-s0" in line for line in logs)
    assert sorted(p.name for p in (der / "checkpoints").iterdir()) == sorted(p.name for p in (src / "checkpoints").iterdir())
    for ckpt in (src / "checkpoints").iterdir():
        a = torch.load(ckpt, map_location="cpu", weights_only=True)
        b = torch.load(der / "checkpoints" / ckpt.name, map_location="cpu", weights_only=True)
        weights = a.get("gen_ema") or a["gen"]
        assert b["gen"].keys() == weights.keys() and all(torch.equal(b["gen"][k], weights[k]) for k in weights)
        assert (b["step"], b["images"]) == (a["step"], a["images"])
        assert a["experiment"]["gen"]["options"]["ab_gain"] == 1.0 and b["experiment"]["gen"]["options"]["ab_gain"] == 2.0
        assert b["experiment"]["train"] == a["experiment"]["train"]
    assert (der / "metrics.jsonl").read_bytes() == (src / "metrics.jsonl").read_bytes()
    rows = _rows(out)
    assert rows["vivid"]["steps"] == rows["plain"]["steps"] and rows["vivid"]["images_seen"] == rows["plain"]["images_seen"]
    # twice the a*b* of the same weights: more colourful (the zero-initialised output has moved in 4 steps)
    assert float(rows["vivid"]["colorfulness"]) > float(rows["plain"]["colorfulness"])
    assert "# derived from plain-s0" in (der / "config.yaml").read_text()

    # a rerun reuses it; a source trained further is derived again
    before = {p.name: p.stat().st_mtime_ns for p in (der / "checkpoints").iterdir()}
    logs.clear()
    run_suite(suite, out, registry=registry, log=logs.append, figures=False)
    assert not any("derive" in line for line in logs)
    assert {p.name: p.stat().st_mtime_ns for p in (der / "checkpoints").iterdir()} == before
    os.utime(src / "checkpoints" / "last.pt")  # as a resumed source writes it again
    run_suite(suite, out, registry=registry, log=logs.append, figures=False)
    assert sum(" derive vivid-s0 from plain-s0" in line for line in logs) == 1
    torch.set_num_threads(threads)


def test_a_from_row_whose_source_has_not_trained_says_so(tmp_path):
    suite, out, logs = _suite(tmp_path), tmp_path / "out", []
    with pytest.raises(ColorkitError, match=r"vivid-s0: UsageError: vivid-s0: derives from plain-s0, which has not "
                                            r"finished training; train it first"):
        run_suite(suite, out, registry=build_registry(autoload=False), log=logs.append, figures=False, only=["vivid"])
    assert not (out / "runs" / "vivid-s0").exists()


@pytest.mark.parametrize("row, key", [
    ("{name: b, from: nowhere, set: [gen.ab_gain=2]}", r"'experiments\[1\].from' must name an earlier row that trains \(a\)"),
    ("{name: b, from: a, set: [train.lr=0.1]}", r"'experiments\[1\].set' of a 'from' row must be generator options"),
    ("{name: b, from: a}", r"'experiments\[1\].set' of a 'from' row"),
    ("{name: b, from: a, preset: fast-cifar10, set: [gen.ab_gain=2]}", r"'experiments\[1\].preset' cannot go with 'from'"),
    ("{name: b, from: a, set: [gen.ab_gain=2]}\n  - {name: c, from: b, set: [gen.ab_gain=3]}",
     r"'experiments\[2\].from' must name an earlier row that trains \(a\), got 'b'"),
])
def test_a_bad_from_row_is_one_line_naming_its_key(tmp_path, row, key):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        experiments:
          - {name: a}
          - %s
        evaluation: {metrics: [mae]}
        """) % row, encoding="utf-8")
    with pytest.raises(UsageError, match=key) as info:
        load_suite(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_from_row_option_that_changes_the_weights_is_refused_naming_the_file(tmp_path):
    suite = _suite(tmp_path)
    suite.write_text(suite.read_text().replace("set: [gen.ab_gain=2]", "set: [gen.base=4]"))
    with pytest.raises(ColorkitError, match=r"vivid-s0: UsageError: .*vivid-s0/checkpoints/"):
        run_suite(suite, tmp_path / "out", registry=build_registry(autoload=False), log=None, figures=False)



@pytest.mark.slow
def test_a_derived_run_directory_holding_someone_elses_file_is_never_deleted(tmp_path):
    suite, out, logs = _suite(tmp_path), tmp_path / "out", []
    run_suite(suite, out, registry=build_registry(autoload=False), log=logs.append, figures=False, only=["plain"])
    mine = out / "runs" / "vivid-s0" / "notes.txt"  # a folder the suite would make again from the source
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes")
    with pytest.raises(ColorkitError, match=r"vivid-s0: holds 'notes.txt', which a derived row does not write; move it "
                                            r"away and run again \(nothing was deleted\)"):
        run_suite(suite, out, registry=build_registry(autoload=False), log=logs.append, figures=False, only=["vivid"])
    assert mine.read_text() == "my notes"
    mine.unlink()  # the folder holds nothing foreign now: derived as usual
    run_suite(suite, out, registry=build_registry(autoload=False), log=logs.append, figures=False, only=["vivid"])
    assert (out / "runs" / "vivid-s0" / "derived.json").is_file()
