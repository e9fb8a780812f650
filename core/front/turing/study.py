"""The visual Turing test of Nazeri & Ng (their ``test-turing.py``), as a study on disk.

A study directory holds everything one study needs and produces::

    STUDY_DIR/
      study.json         the study's config (models, images, seed, size, timing); written once
      stimuli/*.png      every image a participant can see: each photo as it is and as each
                         model colorizes it, all at the study's size, under opaque names
      answers/*.jsonl    one file per participant session: a line for the session's plan, then
                         one line per answer, appended as it arrives (a killed server loses none)

Each participant sees every photo once, in an order shuffled with the study's seed and the
participant's number; which version of a photo (the original or one model's colorization) is
rotated with the participant's number, so conditions are balanced within a session (their
counts differ by at most one) and across sessions. :mod:`colorkit.front.turing.server` serves the page;
:func:`summarize` turns the answers into fooling rates with 95% Wilson intervals.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from colorkit.kernel.errors import UsageError

ORIGINAL = "original"
STUDY_FILE = "study.json"
#: The keys of study.json that define a study: a directory made with others is refused.
CONFIG_KEYS = ("models", "images", "seed", "size", "seconds", "limit")
#: The longest --seconds: each photo shown up to an hour (a browser's timer holds at most 24 days).
MAX_SECONDS = 3600.0


@dataclass
class Stimulus:
    image: int  # index into the study's images
    condition: str  # ORIGINAL or a model label
    file: str  # name under stimuli/


@dataclass
class Study:
    folder: Path
    config: dict[str, Any]
    stimuli: dict[str, Stimulus] = field(default_factory=dict)  # file name -> stimulus

    @property
    def conditions(self) -> list[str]:
        return [ORIGINAL] + [m["label"] for m in self.config["models"]]

    @property
    def n_images(self) -> int:
        return len(self.config["images"])

    def stimulus_file(self, image: int, condition: str) -> str:
        key = f"{self.config['salt']}:{image}:{condition}".encode()
        return hashlib.sha256(key).hexdigest()[:20] + ".png"

    def plan(self, participant: int) -> list[dict[str, Any]]:
        """The trials of one participant: each image once, conditions rotated, order shuffled."""
        conditions = self.conditions
        order = list(range(self.n_images))
        random.Random(f"{self.config['seed']}:{participant}").shuffle(order)
        trials = []
        for k, image in enumerate(order):
            condition = conditions[(image + participant) % len(conditions)]
            trials.append({"trial": k, "image": image, "condition": condition,
                           "file": self.stimulus_file(image, condition)})
        return trials


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in CONFIG_KEYS:
        if a.get(key) != b.get(key):
            return key
    return None


def _read_study(folder: Path) -> dict[str, Any]:
    path = folder / STUDY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable study file ({exc.__class__.__name__}); "
                         "use a new --out folder") from None
    if not isinstance(data, dict) or not all(k in data for k in CONFIG_KEYS + ("salt",)):
        raise UsageError(f"{path}: not a colorkit study file; use a new --out folder")
    return data


def open_study(folder: str | Path) -> Study:
    """An existing study directory (for ``--results`` and for serving it again)."""
    folder = Path(folder)
    if not (folder / STUDY_FILE).is_file():
        raise UsageError(f"{folder}: no {STUDY_FILE} here; is this a study directory made by colorkit turing?")
    study = Study(folder, _read_study(folder))
    for image in range(study.n_images):
        for condition in study.conditions:
            name = study.stimulus_file(image, condition)
            study.stimuli[name] = Stimulus(image, condition, name)
    return study


def _resize(rgb: Any, size: int) -> Any:
    """The photo with its longer side at ``size`` pixels (aspect ratio kept)."""
    from PIL import Image

    im = Image.fromarray(rgb)
    scale = size / max(im.size)
    shape = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    return im.resize(shape, Image.Resampling.LANCZOS)


def _folder_images(folder: Path, limit: int, seed: int, log: Callable[[str], None]) -> list[tuple[str, Any]]:
    import numpy as np

    from colorkit.engine.photo_files import find_inputs, read_image

    found, _ = find_inputs([folder], folder / ".colorkit-no-output")
    images, left_out = [], Counter()
    for src, rel in found:
        try:
            img = read_image(src)
        except (OSError, ValueError):
            left_out["unreadable"] += 1
            continue
        rgb = img.rgb if img.rgb.dtype == np.uint8 else (np.clip(img.rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
        if rgb.ndim != 3 or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            left_out["grayscale"] += 1  # no true colour to show
            continue
        images.append((rel.as_posix(), rgb))
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(left_out.items()))
    if not images:
        raise UsageError(f"--images {folder}: no readable colour photo in this folder"
                         + (f" ({skipped})" if skipped else ""))
    if skipped:
        log(f"left out of the study: {skipped} file(s) of {folder}")
    if limit and len(images) > limit:
        picked = sorted(random.Random(seed).sample(range(len(images)), limit))
        images = [images[i] for i in picked]
    return images


def _dataset_images(registry: Any, name: str, data_root: str | None, limit: int, seed: int) -> list[tuple[str, Any]]:
    from colorkit.engine.evaluation import build_eval_dataset

    if name not in registry.names("dataset"):
        raise UsageError(f"--images {name}: neither a folder nor a dataset name (colorkit list dataset)")
    dataset, _ = build_eval_dataset(registry, {"name": name, "options": {}}, data_root)
    split = dataset.split(dataset.test_split)
    count = len(split)
    if count == 0:
        raise UsageError(f"--images {name}: its {dataset.test_split} split is empty")
    picked = sorted(random.Random(seed).sample(range(count), min(limit or 50, count)))
    return [(f"{name}/{dataset.test_split}/{i}", split[i].permute(1, 2, 0).numpy()) for i in picked]


def create_study(
    targets: Sequence[str],
    images: str,
    out: str | Path,
    *,
    registry: Any,
    size: int = 256,
    seconds: float = 0.0,
    seed: int = 0,
    limit: int = 0,
    data_root: str | None = None,
    log: Callable[[str], None] = print,
) -> Study:
    """Make (or reopen, when its config is the same) a study directory and its stimuli."""
    import io

    import numpy as np
    from PIL import Image

    from colorkit.engine.inference import colorize_array, load_model
    from colorkit.kernel.files import atomic_write_bytes, write_new_text

    if not targets:
        raise UsageError("give at least one model to test (a model name, run directory or checkpoint)")
    if size < 16 or size > 2048:
        raise UsageError(f"--size {size}: pick a size between 16 and 2048 pixels")
    check_timing(seconds, limit)
    folder = Path(out)
    source = Path(images)
    models = [load_model(t, registry) for t in targets]  # a model that cannot load fails before any work
    photos = (_folder_images(source, limit, seed, log) if source.is_dir()
              else _dataset_images(registry, images, data_root, limit, seed))
    labels = [m.name or Path(t).name for m, t in zip(models, targets)]
    labels = [f"{label}#{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]
    config = {"models": [{"label": lab, "target": str(t)} for lab, t in zip(labels, targets)],
              "images": [name for name, _ in photos], "seed": seed, "size": size, "seconds": seconds,
              "limit": limit}
    if (folder / STUDY_FILE).exists():
        old = _read_study(folder)
        key = _first_difference(old, config)
        if key is not None:
            raise UsageError(f"{folder}: this study directory was made with a different config ('{key}' differs); "
                             "pass a new --out folder, or the same options to continue the study")
        config = old
    elif folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder}: exists and is not a study directory; pass a new or empty --out folder")
    else:
        try:
            (folder / "answers").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{folder}: cannot create the study directory ({exc.strerror})") from None
        config = {**config, "salt": secrets.token_hex(16), "version": 1}
    study = Study(folder, config)
    (folder / "stimuli").mkdir(parents=True, exist_ok=True)
    (folder / "answers").mkdir(parents=True, exist_ok=True)
    for image, (name, rgb) in enumerate(photos):
        small = _resize(rgb, size)
        versions = {ORIGINAL: small}
        for label, model in zip(labels, models):
            versions[label] = Image.fromarray(colorize_array(model, np.asarray(small)))
        for condition, im in versions.items():
            file = study.stimulus_file(image, condition)
            study.stimuli[file] = Stimulus(image, condition, file)
            path = folder / "stimuli" / file
            if not path.is_file():
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                atomic_write_bytes(path, buf.getvalue())
    if not (folder / STUDY_FILE).exists():
        write_new_text(folder / STUDY_FILE, json.dumps(config, indent=2) + "\n")
    return study


def check_timing(seconds: float, limit: int) -> None:
    """Refuse a ``--seconds`` that is not a finite time from 0 to :data:`MAX_SECONDS`, and a
    negative ``--limit``, with a one-line :class:`UsageError` naming the option."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or not 0 <= seconds <= MAX_SECONDS:
        raise UsageError(f"--seconds {seconds}: give the seconds each photo is shown, from 0 (until "
                         f"answered) to {MAX_SECONDS:g}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UsageError(f"--limit {limit}: give the most photos to use, or 0 for all of a folder (50 of a dataset)")


def now_iso() -> str:
    """The time now, in UTC, as ISO 8601 with milliseconds (the answers' time stamps)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write on an ``O_APPEND`` descriptor, then fsync: a
    killed process leaves every earlier line whole. Standard JSON only (no NaN or Infinity)."""
    data = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_answers(folder: Path) -> tuple[list[dict[str, Any]], int]:
    """All answer lines of a study, and the number of sessions with at least one answer. A line
    cut short by a kill (the last of its file) is skipped."""
    answers: list[dict[str, Any]] = []
    sessions = 0
    for path in sorted((folder / "answers").glob("*.jsonl")):
        mine = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("type") == "answer":
                answers.append(record)
                mine += 1
        sessions += mine > 0
    return answers, sessions


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(folder: str | Path) -> dict[str, Any]:
    """Per model: the fooling rate (share of its colorizations judged real) with a 95% Wilson
    interval; for the originals, the share judged real; participants and answers."""
    study = open_study(folder)
    answers, sessions = read_answers(study.folder)
    rows = []
    for condition in study.conditions:
        mine = [a for a in answers if a.get("condition") == condition]
        real = sum(a.get("answer") == "real" for a in mine)
        low, high = wilson(real, len(mine))
        rows.append({"condition": condition, "answers": len(mine), "judged_real": real,
                     "rate": real / len(mine) if mine else None,
                     "ci95": [low, high] if mine else None})
    return {"study": str(study.folder), "participants": sessions, "answers": len(answers),
            "images": study.n_images, "size": study.config["size"], "seconds": study.config["seconds"],
            "original": rows[0], "models": rows[1:]}


def format_summary(summary: dict[str, Any]) -> str:
    def pct(row: dict[str, Any]) -> str:
        if row["rate"] is None:
            return "no answers yet"
        low, high = row["ci95"]
        return f"{100 * row['rate']:.1f}% (95% CI {100 * low:.1f}-{100 * high:.1f}%, {row['judged_real']} of {row['answers']})"

    n = summary["participants"]
    lines = [f"study {summary['study']}: {n} participant{'s' * (n != 1)}, {summary['answers']} answers, "
             f"{summary['images']} images at {summary['size']} px"
             + (f", shown for {summary['seconds']:g} s" if summary["seconds"] else "")]
    for row in summary["models"]:
        lines.append(f"  {row['condition']}: fooling rate {pct(row)}")
    lines.append(f"  originals judged real: {pct(summary['original'])}")
    return "\n".join(lines)
