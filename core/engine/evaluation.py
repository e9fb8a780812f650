"""Evaluation: metrics over a dataset split for one or several generators, beside the
"no colour" reference (``a* = b* = 0``, L* kept) on the same images.

What the metrics see, for every model and for the reference alike: the held-out images as
8-bit RGB (the target); the model's prediction at the images' own size when the generator can
take it (otherwise at the nearest allowed size, with a*b* upsampled back), joined to the
image's own L*, converted to sRGB with out-of-gamut chroma reduced (as :mod:`colorkit.engine.inference`
does for ``colorize``) and rounded to 8 bits: exactly the image ``colorize`` writes at the
working size. For a generator that also predicts L* (``output_space = "lab"``, the paper's
choice), :func:`evaluate` adds one extra row, named ``... (own L*)``, scored on the generator's
own L*.

There is one scoring path, :func:`score`; everything else calls it:

* the training loop's validation (:meth:`colorkit.engine.training.Trainer.validate`, on each rank's
  shard of the ``val`` split, merged across ranks before any decision);
* :func:`evaluate_generators` (several generators and the reference in one pass) and
  :func:`evaluate_generator`;
* :func:`evaluate`, for checkpoints or run directories, which returns an :class:`Evaluation`
  that prints as a table, saves as JSON and draws the Figure 5 grid (``colorkit eval``, ``bench``);
* :func:`evaluate_images`, for a folder of photos at their own sizes, scored on the very images
  ``colorkit colorize`` writes (``colorkit eval --images DIR``).
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
from torch.utils.data import DataLoader, Subset

from colorkit.kernel import color
from colorkit.engine.progress import progress_bar
from colorkit.kernel.errors import ColorkitError, UsageError
from colorkit.engine.inference import LoadedModel, load_model, predict_lab, to_uint8
from colorkit.kernel.interfaces import Dataset, Generator, Metric

NO_COLOUR = "no colour"


# -- metrics ------------------------------------------------------------------------------------


def parse_metric_names(text: str | Sequence[str] | None) -> list[str]:
    """``"mae, accuracy,psnr"`` or a list to a list of names, without repeats."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [str(n).strip() for n in items if str(n).strip()]
    return list(dict.fromkeys(names))


def build_metrics(registry: Any, names: Sequence[str], options: dict[str, dict[str, Any]] | None = None) -> dict[str, Metric]:
    """Fresh metric instances by name (unknown names are a one-line error with suggestions)."""
    if not names:
        raise UsageError("no metrics to compute; pass --metrics NAME,... (see `colorkit list metric`)")
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise UsageError(f"options given for metric(s) {', '.join(unknown)} that are not computed")
    out: dict[str, Metric] = {}
    for name in names:
        comp = registry.get("metric", name)
        metric = comp.build(options.get(name) or {})
        if not isinstance(metric, Metric):
            raise UsageError(f"metric '{name}' from {comp.package} is not a colorkit Metric")
        metric.reset()
        out[name] = metric
    return out


def metric_info(registry: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Unit, direction, package and definition (the class docstring) of each metric."""
    info = {}
    for name in names:
        comp = registry.get("metric", name)
        cls = comp.factory if isinstance(comp.factory, type) else type(comp.build({}))
        doc = (cls.__doc__ or comp.description or "").strip()
        info[name] = {
            "unit": getattr(cls, "unit", ""),
            "higher_is_better": bool(getattr(cls, "higher_is_better", True)),
            "package": f"{comp.package} {comp.version}".strip(),
            "definition": " ".join(doc.split()),
        }
    return info


# -- prediction -------------------------------------------------------------------------------


def _multiple(gen: Any) -> int:
    for obj in (gen, getattr(gen, "module", None), getattr(gen, "_orig_mod", None)):
        m = getattr(obj, "size_multiple", None)
        if m:
            return int(m)
    return 1


def _model_shape(gen: Any, height: int, width: int) -> tuple[int, int] | None:
    """``None`` when the generator takes ``height x width``; else the nearest allowed shape."""
    m = _multiple(gen)
    if height % m == 0 and width % m == 0:
        return None
    return max(m, m * round(height / m)), max(m, m * round(width / m))


@torch.inference_mode()
def predict_rgb8(gen: Any, rgb: torch.Tensor, own_l: bool = False) -> torch.Tensor:
    """The 8-bit RGB image (as floats in ``[0, 1]``) a generator makes of a batch of RGB
    images (uint8 or float), as evaluation measures it: the input's L* joined with the predicted
    a*b* (``own_l``: an L*a*b* generator's own L* instead). ``gen`` must be in eval mode."""
    rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    l_star = color.rgb_to_lab(rgb)[:, :1]
    lab = predict_lab(gen, l_star, _model_shape(gen, *rgb.shape[-2:]), keep_l=not own_l)
    return to_uint8(color.lab_to_rgb_fitted(lab)).float() / 255.0


def predicts_lightness(gen: Any) -> bool:
    """Whether a generator predicts L* too (``output_space == "lab"``)."""
    for obj in (gen, getattr(gen, "module", None), getattr(gen, "_orig_mod", None)):
        space = getattr(obj, "output_space", None)
        if space is not None:
            return space == "lab"
    return False


@torch.inference_mode()
def no_colour_rgb8(rgb: torch.Tensor) -> torch.Tensor:
    """The "no colour" reference: L* kept, a* = b* = 0, as 8-bit RGB in ``[0, 1]``."""
    rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    lab = color.rgb_to_lab(rgb)
    lab[:, 1:] = 0.0
    return to_uint8(color.lab_to_rgb(lab)).float() / 255.0


# -- the loop ---------------------------------------------------------------------------------


def _subset(data: Any, limit: int | None) -> Any:
    if limit is not None:
        if limit < 1:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        if limit < len(data):
            return Subset(data, range(limit))
    return data


class _eval_mode:
    """Put modules in eval mode and restore each one's mode afterwards."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        self.modules = list(modules)
        self.modes = [m.training for m in self.modules]

    def __enter__(self) -> None:
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.modules, self.modes):
            m.train(mode)


class ColourL1(Metric):
    """Mean absolute a*b* error of the scored images, normalised as models predict colour
    (``|a*| / 110``, ``|b*| / 110``), pooled over pixels: the plateau signal of training
    (``val_l1``). Not a registered metric; lower is better."""

    unit = ""
    higher_is_better = False
    #: The key it has among a run's validation metrics (reported as ``val_l1``).
    key = "__l1__"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        d = (color.rgb_to_lab(pred.double())[:, 1:] - color.rgb_to_lab(target.double())[:, 1:]).abs() / color.AB_SCALE
        self.total += float(d.sum())
        self.count += d.numel()

    def compute(self) -> float:
        return self.total / self.count if self.count else math.nan


@torch.inference_mode()
def score(
    gens: Sequence[Any],
    data: Any,
    metrics: Sequence[dict[str, Metric]],
    device: str | torch.device,
    *,
    reference: dict[str, Metric] | None = None,
    own_l: Sequence[bool] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
    console: Any = None,
    description: str = "evaluating",
) -> int:
    """Feed every image of ``data`` through each generator and into its metrics: the one
    scoring path of colorkit (validation, ``eval``, ``bench``).

    :param data: a ``torch.utils.data.Dataset`` of uint8 RGB ``3 x H x W`` tensors, read in order.
    :param metrics: one dict of metric instances per generator, updated in place (not reset).
    :param reference: metrics of the "no colour" reference, updated in place.
    :param own_l: per generator, score an L*a*b* generator on its own L* (default: the input's).
    :returns: the number of images scored.
    """
    device = torch.device(device)
    flags = list(own_l) if own_l is not None else [False] * len(gens)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    images = 0
    with _eval_mode(gens), progress_bar(progress, console) as bar:
        task = bar.add_task(description, total=len(loader), parts="")
        for batch in loader:
            if not isinstance(batch, torch.Tensor):  # (image, label) datasets
                batch = batch[0]
            batch = batch.to(device, non_blocking=True)
            target = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
            for gen, own, ms in zip(gens, flags, metrics):
                pred = predict_rgb8(gen, batch, own_l=own)
                for metric in ms.values():
                    metric.update(pred, target)
            if reference is not None:
                grey = no_colour_rgb8(batch)
                for metric in reference.values():
                    metric.update(grey, target)
            images += batch.shape[0]
            bar.update(task, advance=1, parts=f"{images} images")
    return images


def evaluate_generators(
    gens: Sequence[Generator],
    data: Any,
    metric_names: Sequence[str],
    registry: Any,
    device: str | torch.device,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    baseline: bool = True,
    metric_options: dict[str, dict[str, Any]] | None = None,
    workers: int = 0,
    console: Any = None,
    description: str = "evaluating",
    own_l: Sequence[bool] | None = None,
) -> tuple[list[dict[str, float]], dict[str, float] | None, int]:
    """Metrics of several generators (and of the "no colour" reference) on the same images.

    :param data: a ``torch.utils.data.Dataset`` of uint8 RGB ``3 x H x W`` tensors (a split).
    :param limit: only the first ``limit`` items (deterministic).
    :param own_l: per generator, whether to score it on its own L* (see :func:`score`).
    :returns: one dict of metric values per generator, the reference's dict (or ``None``) and
        the number of images.
    """
    names = list(metric_names)
    data = _subset(data, limit)
    if len(data) == 0:
        raise UsageError("the evaluation split is empty")
    per_model = [build_metrics(registry, names, metric_options) for _ in gens]
    reference = build_metrics(registry, names, metric_options) if baseline else None
    images = score(gens, data, per_model, device, reference=reference, own_l=own_l, batch_size=batch_size,
                   workers=workers, progress=progress, console=console, description=description)
    values = [{n: float(m.compute()) for n, m in metrics.items()} for metrics in per_model]
    ref = {n: float(m.compute()) for n, m in reference.items()} if reference is not None else None
    return values, ref, images


def evaluate_generator(
    gen: Generator,
    data: Any,
    metric_names: Sequence[str],
    registry: Any,
    device: str | torch.device,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Metric values of one generator on a split, scored as :func:`score` does.

    The generator is put in eval mode for the pass and returned to its previous mode; the
    data (uint8 RGB items) is read in order, the first ``limit`` items when given.
    """
    values, _, _ = evaluate_generators([gen], data, metric_names, registry, device,
                                       batch_size=batch_size, limit=limit, progress=progress, baseline=False)
    return values[0]


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
) -> tuple[Evaluation, list[LoadedModel], Any]:
    """Evaluate checkpoints (files or run directories) on a dataset split.

    :param dataset: dataset name (default: the checkpoints' own, with their options).
    :param split: split name (default: the dataset's held-out split).
    :param metrics: names (default: the checkpoint's ``metrics``, else mae, accuracy, psnr).
    :param own_l_rows: add an ``(own L*)`` row for each generator that predicts L* too.
    :returns: the :class:`Evaluation`, the loaded models and the split evaluated (for grids).
    """
    from colorkit.engine.devices import pick_device

    if not targets:
        raise UsageError("give at least one checkpoint or run directory")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if registry is None:
        from colorkit.kernel.registry import build_registry

        registry = build_registry()
    dev = pick_device(device)
    models = [load_model(t, registry, device=dev) for t in targets]
    dataset_sets, metric_options = parse_sets(sets)
    spec = _dataset_spec(models, dataset)
    ds, resolved = build_eval_dataset(registry, spec, data_root, dataset_sets)
    split_name = split or ds.test_split
    ds.check_split(split_name)
    data = ds.split(split_name, train=False)
    names = parse_metric_names(metrics) if metrics else default_metrics(models, registry)
    info = metric_info(registry, names)
    start = time.perf_counter()
    lab_models = [i for i, m in enumerate(models) if own_l_rows and predicts_lightness(m.gen)]
    gens = [m.gen for m in models] + [models[i].gen for i in lab_models]
    values, ref, images = evaluate_generators(
        gens, data, names, registry, dev, batch_size=batch_size, limit=limit,
        progress=progress, baseline=True, metric_options=metric_options, workers=workers, console=console,
        description=f"{resolved['name']}/{split_name}", own_l=[False] * len(models) + [True] * len(lab_models),
    )
    seconds = time.perf_counter() - start
    plain = [m.label for m in models]
    labels = [f"{targets[i]} (step {models[i].step})" if plain.count(label) > 1 else label for i, label in enumerate(plain)]
    rows = [Row(NO_COLOUR, ref or {})]
    order = list(range(len(models))) + lab_models
    for j, (i, vals) in enumerate(zip(order, values)):
        m, exp = models[i], models[i].experiment
        exp_label = "-".join(str((exp.get(k) or {}).get("name") if isinstance(exp.get(k), dict) else exp.get(k))
                             for k in ("gen", "disc", "loss", "dataset"))
        variant = "own L*" if j >= len(models) else None
        label = labels[i] + (f" ({variant})" if variant else "")
        rows.append(Row(label, vals, str(m.path), m.step, m.epoch, exp_label, variant))
    result = Evaluation(
        metrics=names, info=info, rows=rows, images=images, dataset=resolved, split=split_name,
        seconds=seconds, device=str(dev), batch_size=batch_size,
        extra={"limit": limit, "metric_options": metric_options},
    )
    return result, models, data


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
) -> Evaluation:
    """Evaluate one checkpoint on every photo of a folder (recursively), at each photo's own
    size, scored on exactly the image ``colorkit colorize`` writes for it (the model at its
    working size, a*b* upsampled and joined to the photo's full-resolution L*), beside the
    "no colour" reference of the same photo (``colorkit eval RUN --images DIR``).

    Photos that are already grayscale (R = G = B everywhere) have no colour to compare with and
    are left out, as are files that cannot be read; each is passed to ``on_problem(path,
    reason)``. Metrics see one photo per batch, so per-image metrics average over photos and
    pooled ones over all their pixels.
    """
    from colorkit.engine.colorizer import find_inputs, read_image
    from colorkit.engine.inference import colorize_array
    from colorkit.engine.devices import pick_device

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
    model = load_model(target, registry, device=dev, working_size=working_size)
    names = parse_metric_names(metrics) if metrics else default_metrics([model], registry)
    info = metric_info(registry, names)
    found, _ = find_inputs([folder], folder / ".colorkit-no-output")
    ours = build_metrics(registry, names, metric_options)
    reference = build_metrics(registry, names, metric_options)
    used: list[str] = []
    start = time.perf_counter()
    with progress_bar(progress, console) as bar:
        task = bar.add_task(f"images in {folder}", total=len(found), parts="")
        for path, rel in found:
            try:
                image = read_image(path)
            except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a bad file
                if on_problem:
                    on_problem(path, f"cannot read: {type(exc).__name__}: {' '.join(str(exc).split())}")
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
    if not used:
        raise UsageError(f"--images {folder}: no readable colour photo in it (searched recursively; grayscale "
                         "photos have no colour to compare with); point it at a folder of colour photos")
    seconds = time.perf_counter() - start
    exp = model.experiment
    exp_label = "-".join(str((exp.get(k) or {}).get("name") if isinstance(exp.get(k), dict) else exp.get(k))
                         for k in ("gen", "disc", "loss", "dataset"))
    rows = [Row(NO_COLOUR, {n: float(m.compute()) for n, m in reference.items()}),
            Row(model.label, {n: float(m.compute()) for n, m in ours.items()}, str(model.path), model.step,
                model.epoch, exp_label)]
    return Evaluation(
        metrics=names, info=info, rows=rows, images=len(used),
        dataset={"name": "images", "options": {"root": str(folder)}}, split="as colorize writes them",
        seconds=seconds, device=str(dev), batch_size=1,
        extra={"working_size": model.working_size, "files": used, "metric_options": metric_options},
    )


# -- the Figure 5 grid ----------------------------------------------------------------------------


def comparison_grid(
    gens: Sequence[Any],
    data: Any,
    rows: int = 8,
    device: str | torch.device = "cpu",
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """The paper's Figure 5 layout as an ``H x W x 3`` uint8 array: one row per image of
    ``data`` (its first ``rows`` items): grayscale | original | each generator's prediction;
    a header names the columns when ``labels`` (one per generator) are given."""
    from colorkit.engine.images import make_grid

    device = torch.device(device)
    n = min(rows, len(data))
    if n < 1:
        raise UsageError("no images for the grid")
    items = [data[i] for i in range(n)]
    batch = torch.stack([it if isinstance(it, torch.Tensor) else it[0] for it in items]).to(device)
    columns = [no_colour_rgb8(batch).cpu(), (batch.float() / 255.0).cpu()]
    with _eval_mode(gens):
        for gen in gens:
            columns.append(predict_rgb8(gen, batch).cpu())
    grid = make_grid(columns)
    if labels is None:
        return grid
    return _with_header(grid, ["grayscale", "original", *labels], len(columns))


def _with_header(grid: np.ndarray, names: Sequence[str], ncols: int, pad: int = 2) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    height = 16
    width = grid.shape[1]
    cell = (width - pad) // ncols
    header = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(header)
    font = ImageFont.load_default()
    for j, name in enumerate(names):
        text = name
        while text and draw.textlength(text, font=font) > cell - 4:
            text = text[:-2] + "…" if len(text) > 2 else ""
        x = pad + j * cell + max(0, (cell - pad - int(draw.textlength(text, font=font))) // 2)
        draw.text((x, 2), text, fill="black", font=font)
    return np.concatenate([np.asarray(header), grid], axis=0)


def write_grid(models: Sequence[LoadedModel], data: Any, path: str | Path, rows: int = 8) -> Path:
    """Write the Figure 5 grid of ``models`` (several checkpoints side by side) as PNG."""
    from colorkit.engine.images import save_png

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--grid {path}: the grid is written as PNG; give a .png file name")
    device = models[0].device if models else "cpu"
    grid = comparison_grid([m.gen for m in models], data, rows=rows, device=device,
                           labels=[m.label for m in models])
    save_png(grid, path)
    return path
