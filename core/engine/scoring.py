"""Scoring: the one path from generators and images to metric values. :func:`score` feeds every
image through each generator, as the image ``colorize`` writes (the input's L*, the predicted
a*b*, out-of-gamut chroma reduced, 8-bit RGB), and into its metrics, beside the "no colour"
reference. Training's validation, ``colorkit eval`` and ``bench`` all call it.

Metrics come by name from the registry, or built by the caller (a ``{name: Metric}`` mapping,
copied for each generator): :func:`evaluate_generators` takes either.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from colorkit.engine.chroma_numpy import DEFAULT_CHROMA
from colorkit.engine.inference import predict_lab, to_uint8
from colorkit.kernel import color
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Generator, Metric
from colorkit.kernel.progress import progress_bar


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


def fresh_metrics(metrics: Sequence[str] | Mapping[str, Metric], registry: Any = None,
                  options: dict[str, dict[str, Any]] | None = None) -> dict[str, Metric]:
    """Metric instances to accumulate into: built by name from ``registry`` (with ``options``),
    or reset copies of the caller's built ``{name: Metric}``."""
    if isinstance(metrics, Mapping):
        out = {name: copy.deepcopy(m) for name, m in metrics.items()}
        for m in out.values():
            m.reset()
        return out
    return build_metrics(registry, list(metrics), options)


def metric_info(registry: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Unit, direction, package and definition (the class docstring) of each metric."""
    info = {}
    for name in names:
        comp = registry.get("metric", name)
        factory = comp.load()
        cls = factory if isinstance(factory, type) else type(comp.build({}))
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
def predict_rgb8(gen: Any, rgb: torch.Tensor, own_l: bool = False, chroma: str = DEFAULT_CHROMA) -> torch.Tensor:
    """The 8-bit RGB image (as floats in ``[0, 1]``) a generator makes of a batch of RGB
    images (uint8 or float), as evaluation measures it: the input's L* joined with the predicted
    a*b* (``own_l``: an L*a*b* generator's own L* instead; ``chroma``: how a*b* is upsampled when
    the images' size does not suit the generator). ``gen`` must be in eval mode."""
    rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    l_star = color.rgb_to_lab(rgb)[:, :1]
    lab = predict_lab(gen, l_star, _model_shape(gen, *rgb.shape[-2:]), keep_l=not own_l, chroma=chroma)
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


class eval_mode:
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
    chroma: Sequence[str] | None = None,
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
    :param chroma: per generator, how a*b* is upsampled (default: bilinear; see ``predict_lab``).
    :returns: the number of images scored.
    """
    device = torch.device(device)
    flags = list(own_l) if own_l is not None else [False] * len(gens)
    upsampling = list(chroma) if chroma is not None else [DEFAULT_CHROMA] * len(gens)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    images = 0
    with eval_mode(gens), progress_bar(progress, console) as bar:
        task = bar.add_task(description, total=len(data), parts="")
        for batch in loader:
            if not isinstance(batch, torch.Tensor):  # (image, label) datasets
                batch = batch[0]
            batch = batch.to(device, non_blocking=True)
            target = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
            for gen, own, how, ms in zip(gens, flags, upsampling, metrics):
                pred = predict_rgb8(gen, batch, own_l=own, chroma=how)
                for metric in ms.values():
                    metric.update(pred, target)
            if reference is not None:
                grey = no_colour_rgb8(batch)
                for metric in reference.values():
                    metric.update(grey, target)
            images += batch.shape[0]
            bar.update(task, advance=batch.shape[0])
    return images


def evaluate_generators(
    gens: Sequence[Generator],
    data: Any,
    metric_names: Sequence[str] | Mapping[str, Metric],
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
    chroma: Sequence[str] | None = None,
) -> tuple[list[dict[str, float]], dict[str, float] | None, int]:
    """Metrics of several generators (and of the "no colour" reference) on the same images.

    :param data: a ``torch.utils.data.Dataset`` of uint8 RGB ``3 x H x W`` tensors (a split).
    :param limit: only the first ``limit`` items (deterministic).
    :param own_l: per generator, whether to score it on its own L* (see :func:`score`).
    :param chroma: per generator, how a*b* is upsampled (see :func:`score`).
    :returns: one dict of metric values per generator, the reference's dict (or ``None``) and
        the number of images.
    """
    data = _subset(data, limit)
    if len(data) == 0:
        raise UsageError("the evaluation split is empty")
    per_model = [fresh_metrics(metric_names, registry, metric_options) for _ in gens]
    reference = fresh_metrics(metric_names, registry, metric_options) if baseline else None
    images = score(gens, data, per_model, device, reference=reference, own_l=own_l, chroma=chroma, batch_size=batch_size,
                   workers=workers, progress=progress, console=console, description=description)
    values = [{n: float(m.compute()) for n, m in metrics.items()} for metrics in per_model]
    ref = {n: float(m.compute()) for n, m in reference.items()} if reference is not None else None
    return values, ref, images


def evaluate_generator(gen: Generator, data: Any, metric_names: Sequence[str] | Mapping[str, Metric], registry: Any,
                       device: str | torch.device, **options: Any) -> dict[str, float]:
    """Metric values of one generator on a split, scored as :func:`score` does; ``options`` as
    for :func:`evaluate_generators` (``batch_size``, ``limit``, ``progress`` ...).

    The generator is put in eval mode for the pass and returned to its previous mode; the
    data (uint8 RGB items) is read in order, the first ``limit`` items when given.
    """
    values, _, _ = evaluate_generators([gen], data, metric_names, registry, device, baseline=False, **options)
    return values[0]
