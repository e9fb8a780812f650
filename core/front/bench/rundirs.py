"""The run directories of a suite: ``runs/<experiment>-s<seed>/`` under its output folder, each a
colorkit run directory; whether one has finished (an ``end`` event in its ``metrics.jsonl``) and
the hash of the config it trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed process
    return out


def run_finished(run_dir: Path) -> bool:
    return any(e.get("event") == "end" for e in read_events(run_dir))


def config_hash(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest()


def run_name(experiment: str, seed: int) -> str:
    return f"{experiment}-s{seed}"
