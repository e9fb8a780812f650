"""docs/python-api.md's notebook example runs as written: a hand-built generator trained by the
Trainer on built components, then colorizing with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from colorkit.engine.scoring import evaluate_generator
from colorkit.kernel.files import read_jsonl

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def notebook_block() -> str:
    tokens = MarkdownIt("commonmark").parse(GUIDE.read_text(encoding="utf-8"))
    [block] = [t.content for t in tokens if t.type == "fence" and t.info.strip() == "python notebook"]
    return block


def test_the_notebook_example_is_about_ten_lines_of_training():
    code = notebook_block().split("reg = build_registry()")[1]
    assert len([line for line in code.splitlines() if line.strip()]) <= 10


def test_the_notebook_example_trains_a_hand_built_module(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(notebook_block(), str(GUIDE), "exec"), namespace)
    result, trainer, photo = namespace["result"], namespace["trainer"], namespace["photo"]
    run = tmp_path / "runs" / "tiny"
    assert result.run_dir.resolve() == run and result.steps == 8  # 2 epochs of 16 crops in batches of 4
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert (run / "samples.png").is_file()
    records = read_jsonl(run / "metrics.jsonl")
    vals = [r for r in records if r["event"] == "val"]
    assert len(vals) == 2 and records[-1]["event"] == "end"
    assert result.best["metric"] == "mae" and result.best["value"] > 0
    assert photo.size == (64, 48) and photo.mode == "RGB"
    # evaluation takes the same built components: the metric as built, copied for the pass
    data = namespace["data"]
    mae = namespace["reg"].build("metric", "mae")
    values = evaluate_generator(trainer.eval_gen, data.split("val"), {"mae": mae}, None, "cpu")
    assert values["mae"] == pytest.approx(vals[-1]["val_mae"], rel=1e-6)  # what the last validation scored
