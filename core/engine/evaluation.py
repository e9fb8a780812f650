"""Evaluation: metrics over a dataset split for one or several generators, beside the
"no colour" reference (``a* = b* = 0``, L* kept) on the same images.

What the metrics see, for every model and the reference alike: the held-out images as 8-bit RGB
(the target); the prediction at the images' own size when the generator can take it (else at the
nearest allowed size, a*b* upsampled back), joined to the image's own L*, converted to sRGB with
out-of-gamut chroma reduced and rounded to 8 bits: the image ``colorize`` writes at the working
size. A generator that also predicts L* (``output_space = "lab"``, the paper's choice) gets an
extra row from :func:`evaluate`, ``... (own L*)``, scored on its own L*.

There is one scoring path, :func:`colorkit.engine.scoring.score`; everything else calls it:

* the training loop's validation (:func:`colorkit.engine.validation.validate`, on each rank's
  shard of the ``val`` split, merged across ranks before any decision);
* :func:`~colorkit.engine.scoring.evaluate_generators` (several generators and the reference
  in one pass) and :func:`~colorkit.engine.scoring.evaluate_generator`;
* :func:`evaluate`, for checkpoints or run directories, which returns an :class:`Evaluation`
  that prints as a table, saves as JSON and draws the Figure 5 grid (``colorkit eval``, ``bench``);
* :func:`evaluate_images`, for a folder of photos at their own sizes, on the very images
  ``colorize`` writes (``colorkit eval --images DIR``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from colorkit.engine.images import sample_indices
from colorkit.engine.photo_files import find_inputs, read_image
from colorkit.engine.devices import pick_device
from colorkit.engine.inference import LoadedModel, colorize_array, experiment_label, load_model
from colorkit.engine.scoring import (
    build_metrics,
    evaluate_generators,
    metric_info,
    no_colour_rgb8,
    parse_metric_names,
    predicts_lightness,
)
from colorkit.kernel.errors import ColorkitError, UsageError, one_line
from colorkit.kernel.interfaces import Dataset
from colorkit.kernel.progress import progress_bar, progress_scope

NO_COLOUR = "no colour"


# -- checkpoints --------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    values: dict[str, float]
    checkpoint: str | None = None
    step: int | None = None
    epoch: int | None = None
    experiment: str | None = None
    #: ``None`` for the image ``colorize`` writes; ``"own L*"`` for an L*a*b* generator's own L*.
    variant: str | None = None


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: the reference row first, then one row per checkpoint."""

    metrics: list[str]
    info: dict[str, dict[str, Any]]
    rows: list[Row]
    images: int
    dataset: dict[str, Any]
    split: str
    seconds: float
    device: str
    batch_size: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        import platform

        from colorkit import __version__

        return {
            "dataset": self.dataset,
            "split": self.split,
            "images": self.images,
            "metrics": self.info,
            "rows": [
                {"label": r.label, "checkpoint": r.checkpoint, "step": r.step, "epoch": r.epoch,
                 "experiment": r.experiment, "variant": r.variant,
                 "values": {k: _json_float(v) for k, v in r.values.items()}}
                for r in self.rows
            ],
            "device": self.device,
            "batch_size": self.batch_size,
            "seconds": round(self.seconds, 3),
            "colorkit": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            **self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def table(self) -> Any:
        """A rich table: one column per metric (with unit and direction), the best value in bold."""
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"{self.dataset.get('name')} / {self.split}: {self.images} images",
                      title_justify="left", caption=f"{NO_COLOUR}: the input's L* with a* = b* = 0 (the floor to beat)",
                      caption_justify="left")
        table.add_column("model", no_wrap=True)
        for name in self.metrics:
            info = self.info[name]
            arrow = "↑" if info["higher_is_better"] else "↓"
            unit = f"\n{info['unit']}" if info["unit"] else ""
            table.add_column(escape(f"{name} {arrow}{unit}"), justify="right", no_wrap=True)
        best = {}
        for name in self.metrics:
            finite = [r.values[name] for r in self.rows if math.isfinite(r.values[name])]
            if finite:
                best[name] = max(finite) if self.info[name]["higher_is_better"] else min(finite)
        for row in self.rows:
            cells = []
            for name in self.metrics:
                v = row.values[name]
                text = _fmt(v)
                cells.append(f"[bold]{text}[/bold]" if len(self.rows) > 1 and v == best.get(name) else text)
            table.add_row(escape(row.label), *cells)
        return table


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _json_float(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _dataset_spec(models: Sequence[LoadedModel], name: str | None) -> dict[str, Any]:
    specs = [m.dataset for m in models]
    if name is None:
        names = sorted({str(s["name"]) for s in specs})
        if len(names) > 1:
            raise UsageError(
                f"the checkpoints were trained on different datasets ({', '.join(names)}); "
                "pass --dataset NAME to evaluate them on one"
            )
        return {"name": specs[0]["name"], "options": dict(specs[0]["options"])}
    if specs[0]["name"] == name:
        return {"name": name, "options": dict(specs[0]["options"])}
    return {"name": name, "options": {}}


def build_eval_dataset(
    registry: Any,
    spec: dict[str, Any],
    data_root: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
) -> tuple[Dataset, dict[str, Any]]:
    """Build the dataset of ``spec`` (``{"name", "options"}``) with ``--data-root`` and
    ``dataset.KEY=VALUE`` overrides; returns it with the resolved spec."""
    from colorkit.kernel.options import options_to_dict

    name = spec["name"]
    comp = registry.get("dataset", name)
    options = {**spec.get("options", {}), **(dataset_options or {})}
    fields = {f.name for f in dataclasses.fields(comp.options)}
    options = {k: v for k, v in options.items() if k in fields or k in (dataset_options or {})}
    if data_root is not None:
        if "root" not in fields:
            raise UsageError(f"dataset '{name}' reads no files from disk; --data-root does not apply")
        options["root"] = str(data_root)
    opts = comp.make_options(options)
    try:
        dataset = comp.build(opts)
    except ColorkitError:
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"dataset '{name}' (package {comp.package}): {exc}") from None
    if not isinstance(dataset, Dataset):
        raise UsageError(f"dataset '{name}' from {comp.package} is not a colorkit Dataset")
    return dataset, {"name": name, "options": options_to_dict(opts), "package": f"{comp.package} {comp.version}".strip()}


def parse_sets(sets: Sequence[str] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``dataset.KEY=VALUE`` and ``metric.NAME.KEY=VALUE`` overrides for ``eval``."""
    dataset: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if sep and len(parts) == 2 and parts[0] == "dataset" and parts[1]:
            dataset[parts[1]] = value
        elif sep and len(parts) == 3 and parts[0] == "metric" and parts[1] and parts[2]:
            metrics.setdefault(parts[1], {})[parts[2]] = value
        else:
            raise UsageError(
                f"--set {item!r}: expected dataset.KEY=VALUE or metric.NAME.KEY=VALUE "
                "(e.g. metric.accuracy.threshold=1)"
            )
    return dataset, metrics


def default_metrics(models: Sequence[LoadedModel], registry: Any) -> list[str]:
    """The metrics the (first) checkpoint was trained to report, else those ``registry.yaml``
    names under ``defaults: metrics:``."""
    for m in models:
        names = m.experiment.get("metrics")
        if isinstance(names, list) and names:
            return [str(n) for n in names]
    return [str(n) for n in registry.defaults.get("metrics") or []]


def evaluate(
    targets: Sequence[str | Path],
    *,
    registry: Any = None,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    split: str | None = None,
    metrics: str | Sequence[str] | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    sets: Sequence[str] | None = None,
    workers: int = 0,
    progress: bool = False,
    console: Any = None,
    own_l_rows: bool = True,
    chroma: str | None = None,
    first: int | None = None,
    seed: int = 0,
) -> tuple[Evaluation, list[LoadedModel], Any]:
    """Evaluate checkpoints (files or run directories) on a dataset split.

    :param dataset: dataset name (default: the checkpoints' own, with their options).
    :param split: split name (default: the dataset's held-out split).
    :param limit: a seeded sample of ``limit`` images spread over the split (``images.sample_indices``);
        ``first``: its first ``first`` images instead (only those decoded; biased on a sorted split).
    :param metrics: names (default: the checkpoint's ``metrics``, else mae, accuracy, psnr).
    :param own_l_rows: add an ``(own L*)`` row for each generator that predicts L* too.
    :param chroma: how a*b* is upsampled where an image's size does not suit a generator (default: its own).
    :returns: the :class:`Evaluation`, the loaded models and the split evaluated (for grids).
    """
    if not targets:
        raise UsageError("give at least one checkpoint or run directory")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if registry is None:
        from colorkit.kernel.registry import build_registry

        registry = build_registry()
    for option, value in (("--limit", limit), ("--first", first)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    if limit is not None and first is not None:
        raise UsageError("--limit (a sample spread over the split) and --first (its first images) cannot go together")
    dev = pick_device(device)
    models = [load_model(t, registry, device=dev, chroma=chroma) for t in targets]
    dataset_sets, metric_options = parse_sets(sets)
    spec = _dataset_spec(models, dataset)
    ds, resolved = build_eval_dataset(registry, spec, data_root, dataset_sets)
    split_name = split or ds.test_split
    ds.check_split(split_name)
    with progress_scope(progress):  # decoding shows progress too, unless quiet
        data = ds.split(split_name, train=False) if first is None else ds.head(split_name, first)
    if limit is not None:
        data = Subset(data, sample_indices(len(data), limit, seed))
    names = parse_metric_names(metrics) if metrics else default_metrics(models, registry)
    info = metric_info(registry, names)
    start = time.perf_counter()
    lab_models = [i for i, m in enumerate(models) if own_l_rows and predicts_lightness(m.gen)]
    gens = [m.gen for m in models] + [models[i].gen for i in lab_models]
    values, ref, images = evaluate_generators(
        gens, data, names, registry, dev, batch_size=batch_size,
        progress=progress, baseline=True, metric_options=metric_options, workers=workers, console=console,
        description=f"{resolved['name']}/{split_name}", own_l=[False] * len(models) + [True] * len(lab_models),
        chroma=[m.chroma for m in models] + [models[i].chroma for i in lab_models],
    )
    seconds = time.perf_counter() - start
    plain = [m.label for m in models]
    labels = [f"{targets[i]} (step {models[i].step})" if plain.count(label) > 1 else label for i, label in enumerate(plain)]
    rows = [Row(NO_COLOUR, ref or {})]
    order = list(range(len(models))) + lab_models
    for j, (i, vals) in enumerate(zip(order, values)):
        m = models[i]
        exp_label = experiment_label(m.experiment)
        variant = "own L*" if j >= len(models) else None
        label = labels[i] + (f" ({variant})" if variant else "")
        rows.append(Row(label, vals, str(m.path), m.step, m.epoch, exp_label, variant))
    result = Evaluation(
        metrics=names, info=info, rows=rows, images=images, dataset=resolved, split=split_name,
        seconds=seconds, device=str(dev), batch_size=batch_size,
        extra={"limit": limit, "first": first, "sample": f"spread over the split, seed {seed}" if limit else None,
               "metric_options": metric_options, "chroma": [m.chroma for m in models]},
    )
    return result, models, data


def _score_photos(model: LoadedModel, found: Sequence[tuple[Path, Path]], ours: dict[str, Any],
                  reference: dict[str, Any], working_size: int | None, on_problem: Any, bar: Any,
                  description: str) -> list[str]:
    """Colorize each photo as ``colorize`` does and feed it, and its "no colour" reference, into
    the metrics; returns the photos used (relative paths). Unreadable and grayscale photos go
    to ``on_problem(path, reason)``."""
    used: list[str] = []
    dev = model.device
    with bar:
        task = bar.add_task(description, total=len(found), parts="")
        for path, rel in found:
            try:
                image = read_image(path)
            except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a bad file
                if on_problem:
                    on_problem(path, f"cannot read: {one_line(exc)}")
                bar.update(task, advance=1)
                continue
            rgb = image.rgb if image.rgb.dtype == np.uint8 else np.round(np.clip(image.rgb, 0, 1) * 255).astype(np.uint8)
            if rgb.ndim != 3 or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                if on_problem:
                    on_problem(path, "grayscale: no colour to compare with, left out")
                bar.update(task, advance=1)
                continue
            pred = colorize_array(model, rgb, working_size=working_size)
            truth = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].to(dev)
            truth_f = truth.float() / 255.0
            pred_f = torch.from_numpy(np.ascontiguousarray(pred)).permute(2, 0, 1)[None].to(dev).float() / 255.0
            grey = no_colour_rgb8(truth)
            for m in ours.values():
                m.update(pred_f, truth_f)
            for m in reference.values():
                m.update(grey, truth_f)
            used.append(rel.as_posix())
            bar.update(task, advance=1, parts=path.name)
    return used


def evaluate_images(
    target: str | Path,
    folder: str | Path,
    *,
    registry: Any = None,
    metrics: str | Sequence[str] | None = None,
    working_size: int | None = None,
    device: str = "auto",
    sets: Sequence[str] | None = None,
    progress: bool = False,
    console: Any = None,
    on_problem: Any = None,
    chroma: str | None = None,
) -> Evaluation:
    """Evaluate one checkpoint on every photo of a folder (recursively), at each photo's own
    size, scored on exactly the image ``colorkit colorize`` writes for it (the model at its
    working size, a*b* upsampled and joined to the photo's full-resolution L*), beside the
    "no colour" reference of the same photo (``colorkit eval RUN --images DIR``).

    Without ``metrics``, the photo metrics ``registry.yaml`` names (``defaults: photo_metrics:``).
    Photos that are already grayscale (R = G = B everywhere) have no colour to compare with and
    are left out, as are files that cannot be read; each is passed to ``on_problem(path,
    reason)``. Metrics see one photo per batch, so per-image metrics average over photos and
    pooled ones over all their pixels. ``chroma`` overrides how the predicted a*b* is upsampled
    (``bilinear`` or ``guided``; default: the model's own), as for ``colorize``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"--images {folder}: not a folder")
    if registry is None:
        from colorkit.kernel.registry import build_registry

        registry = build_registry()
    dataset_sets, metric_options = parse_sets(sets)
    if dataset_sets:
        raise UsageError("--images evaluates photos as they are: dataset.KEY=VALUE settings do not apply")
    dev = pick_device(device)
    model = load_model(target, registry, device=dev, working_size=working_size, chroma=chroma)
    names = parse_metric_names(metrics) if metrics else [str(n) for n in registry.defaults.get("photo_metrics") or []]
    names = names or default_metrics([model], registry)
    info = metric_info(registry, names)
    found, _ = find_inputs([folder], folder / ".colorkit-no-output")
    ours = build_metrics(registry, names, metric_options)
    reference = build_metrics(registry, names, metric_options)
    start = time.perf_counter()
    used = _score_photos(model, found, ours, reference, working_size, on_problem,
                         progress_bar(progress, console), f"images in {folder}")
    if not used:
        raise UsageError(f"--images {folder}: no readable colour photo in it (searched recursively; grayscale "
                         "photos have no colour to compare with); point it at a folder of colour photos")
    seconds = time.perf_counter() - start
    exp_label = experiment_label(model.experiment)
    rows = [Row(NO_COLOUR, {n: float(m.compute()) for n, m in reference.items()}),
            Row(model.label, {n: float(m.compute()) for n, m in ours.items()}, str(model.path), model.step,
                model.epoch, exp_label)]
    return Evaluation(
        metrics=names, info=info, rows=rows, images=len(used),
        dataset={"name": "images", "options": {"root": str(folder)}}, split="as colorize writes them",
        seconds=seconds, device=str(dev), batch_size=1,
        extra={"working_size": model.working_size, "chroma": model.chroma, "files": used, "metric_options": metric_options},
    )
