"""Loading a generator from a checkpoint alone, and colorizing images of any size.

A checkpoint carries the resolved experiment and the names, packages and versions of the plugins
that built it, so :func:`load_model` needs nothing else: it rebuilds only the generator through
the registry (the dataset, loss and discriminator plugins need not be installed) and loads the
weights with ``torch.load(weights_only=True)``; a checkpoint can never run code.

Any-size inference (:func:`colorize_array`):

1. the input's L* is computed at full resolution (a colour input is treated as its luminance);
2. L* is resized (bilinear, antialiased) to the *working shape*: the aspect ratio is kept, the
   area is about ``working_size**2`` pixels, and each side is rounded to the nearest multiple of
   the generator's ``size_multiple`` (at least one multiple). ``working_size`` defaults to the
   size a model file names (``colorkit export --working-size``, chosen by measurement), else to
   the image size the model was trained at (``dataset.size`` in the checkpoint), so the model sees
   scenes at the scale it learnt colour at and the cost does not grow with the photo's size;
3. the predicted a*b* is upsampled to the full resolution (``chroma``: ``bilinear``, or ``guided``
   by the photo's own L* so that colour edges follow its lightness edges; see
   :mod:`colorkit.engine.chroma_numpy`; the default is what a model file records, else bilinear)
   and joined to the input's full-resolution L* (a generator that predicts L*a*b* has its L*
   discarded), so the output keeps every detail of the original's brightness;
4. L*a*b* goes to sRGB with the chroma of out-of-gamut pixels reduced (hue and L* kept) until
   the colour fits, instead of clipping RGB, which would change L*. Written as 8-bit, the
   output's L* equals the input's within 1 (about 0.3 at worst from the 8-bit rounding).

A model whose weights hold NaN or infinite values is refused by :func:`load_model`, and a
prediction that is not finite by :func:`colorize_array`, each with one line naming the model: such
a model would write black images (their L* lost too) that look like a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from colorkit.kernel import color
from colorkit.kernel.errors import ColorkitError, UnknownNameError, UsageError
from colorkit.kernel.experiment import COMPONENT_KEYS
from colorkit.kernel.interfaces import Generator
from colorkit.engine.chroma import guided_upsample
from colorkit.engine.chroma_numpy import CHROMA_UPSAMPLING, DEFAULT_CHROMA, check_chroma
from colorkit.engine.devices import uses_channels_last
from colorkit.engine.shapes import CHUNK_PIXELS, check_working_size, working_shape

#: The working size used when a checkpoint's dataset has no ``size`` option.
FALLBACK_WORKING_SIZE = 256


# -- loading ----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A generator rebuilt from a checkpoint, in eval mode on ``device``."""

    gen: Generator
    path: Path
    experiment: dict[str, Any]
    plugins: dict[str, Any]
    working_size: int
    step: int | None = None
    epoch: int | None = None
    notes: list[str] = field(default_factory=list)
    name: str | None = None  # the registered model name, when it was loaded by name
    chroma: str = DEFAULT_CHROMA  # how predicted a*b* is upsampled (see colorkit.engine.chroma_numpy)

    @property
    def label(self) -> str:
        """A short name for tables: the model name, or the run directory (or file) name and the step."""
        if self.name is not None:
            return self.name
        name = self.run_name
        return f"{name} ({self.path.stem}, step {self.step})" if self.step is not None else name

    @property
    def run_name(self) -> str:
        """The run directory's name (or the file's stem when it is not in a run's ``checkpoints``)."""
        p = self.path
        return p.parent.parent.name if p.parent.name == "checkpoints" else p.stem

    @property
    def experiment_names(self) -> str:
        """``unet/conv/ns_l1/cifar10``: the component names of the checkpoint's experiment."""
        return experiment_label(self.experiment, "/")

    @property
    def dataset(self) -> dict[str, Any]:
        """The checkpoint's dataset as ``{"name": ..., "options": {...}}``."""
        raw = self.experiment.get("dataset") or {}
        if isinstance(raw, str):
            return {"name": raw, "options": {}}
        return {"name": raw.get("name"), "options": dict(raw.get("options") or {})}

    @property
    def device(self) -> torch.device:
        p = next(self.gen.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


def experiment_label(exp: dict[str, Any], sep: str = "-") -> str:
    """``unet-conv-ns_l1-cifar10``: the component names of a checkpoint's experiment."""
    return sep.join(str((exp.get(k) or {}).get("name") if isinstance(exp.get(k), dict) else exp.get(k))
                    for k in COMPONENT_KEYS)


def _gen_spec(experiment: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    raw = experiment.get("gen")
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise UsageError(f"{path}: the checkpoint's experiment names no generator")
    return raw["name"], dict(raw.get("options") or {})


def load_model(
    target: str | Path | None = None,
    registry: Any = None,
    device: str | torch.device = "cpu",
    working_size: int | None = None,
    chroma: str | None = None,
) -> LoadedModel:
    """Rebuild the generator of a pretrained model, a checkpoint or a run directory.

    :param target: a registered model name (``colorkit list model``; ``None``: the default
        model), a checkpoint or model file, or a run directory (``checkpoints/best.pt``, else
        ``checkpoints/last.pt``).
    :param registry: a :class:`colorkit.kernel.registry.Registry`; default: a fresh one.
    :param device: where the generator runs.
    :param working_size: override the working size (default: the model's own, else the
        training image size).
    :param chroma: how predicted a*b* is upsampled to the photo's size, ``bilinear`` or
        ``guided`` (default: what the model file records, else ``bilinear``).
    :raises UsageError: one line naming the model and its package, or the file, or the plugin
        package and version to install.
    :raises ColorkitError: its weights hold NaN or infinite values (exit code 1).
    """
    from colorkit.kernel.models import resolve_model

    if chroma is not None:
        check_chroma(chroma)
    if registry is None:
        from colorkit.kernel.registry import build_registry

        registry = build_registry()
    path, entry = resolve_model(target, registry)
    try:
        model = _load_generator(path, registry, device, working_size, chroma)
    except UsageError as exc:
        if entry is None:
            raise
        raise UsageError(f"{entry.label}: {exc}") from None
    model.name = entry.name if entry is not None else None
    from colorkit.engine.checkpoints import first_non_finite

    bad = first_non_finite(dict(model.gen.named_parameters()))  # statistics may overflow half precision harmlessly
    if bad is not None:  # every prediction would be NaN: a black image that loses L* too
        raise ColorkitError(f"{entry.label if entry is not None else model.path}: its weights hold NaN or infinite values "
                            f"({bad}), so its predictions are not finite; retrain it (or resume from an earlier "
                            "checkpoint) or pick another model")
    return model


def _load_generator(target: Path, registry: Any, device: str | torch.device, working_size: int | None,
                    chroma: str | None = None) -> LoadedModel:
    from colorkit.engine.checkpoints import load_checkpoint

    state = load_checkpoint(target, map_location="cpu")
    path = Path(state["path"])
    experiment = state.get("experiment")
    weights = state.get("gen_ema") or state.get("gen")  # the weights' moving average when the run kept one
    if not isinstance(experiment, dict) or not isinstance(weights, dict):
        raise UsageError(f"{path}: the checkpoint lacks its experiment or generator weights")
    plugins = state.get("plugins") if isinstance(state.get("plugins"), dict) else {}
    name, options = _gen_spec(experiment, path)
    recorded = plugins.get("generator") if isinstance(plugins.get("generator"), dict) else {}
    package, version = recorded.get("package") or "?", recorded.get("version") or ""
    try:
        comp = registry.get("generator", name)
    except UnknownNameError:
        pin = f"{package}=={version}" if version else package
        raise UsageError(
            f"{path}: the checkpoint needs generator '{name}' from package {package} "
            f"{version or '(version not recorded)'}, which is not installed here; install it "
            f"(pip install '{pin}') or check `colorkit list generator`"
        ) from None
    notes = []
    if package not in ("?", comp.package) or (version and comp.version and version != comp.version):
        notes.append(
            f"generator '{name}' was saved with {package} {version}; loading it with "
            f"{comp.package} {comp.version}"
        )
    from colorkit.engine.checkpoints import build_saved

    gen = build_saved(comp, options, weights, path, "gen")  # options checked against the weights before allocating
    if not isinstance(gen, Generator):
        raise UsageError(f"{path}: generator '{name}' from {comp.package} is not a colorkit Generator")
    gen.eval().requires_grad_(False)
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    gen.to(dev)
    train = experiment.get("train") if isinstance(experiment.get("train"), dict) else {}
    if uses_channels_last(str(train.get("channels_last", "auto")), dev):
        gen.to(memory_format=torch.channels_last)  # the kernels training validated with: the same numbers
    if working_size is not None:
        size = check_working_size(working_size, "--size")
    else:
        size = check_working_size(state.get("working_size") or _training_size(experiment), f"{path}: working size")
    recorded_chroma = state.get("chroma_upsample")
    if chroma is None and recorded_chroma is not None and recorded_chroma not in CHROMA_UPSAMPLING:
        raise UsageError(f"{path}: records chroma_upsample {recorded_chroma!r}, which this colorkit does not know "
                         f"({', '.join(CHROMA_UPSAMPLING)}); upgrade colorkit or pass --chroma")
    chroma = chroma or recorded_chroma or DEFAULT_CHROMA
    return LoadedModel(
        gen=gen, path=path, experiment=experiment, plugins=plugins, working_size=int(size),
        step=state.get("step"), epoch=state.get("epoch"), notes=notes, chroma=chroma,
    )


def _training_size(experiment: dict[str, Any]) -> int:
    raw = experiment.get("dataset")
    if isinstance(raw, dict):
        size = (raw.get("options") or {}).get("size")
        if isinstance(size, int) and size > 0:
            return size
    return FALLBACK_WORKING_SIZE


# -- prediction ---------------------------------------------------------------------------------


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in ``[0, 1]`` (any shape and float type) to uint8 of the same shape, rounded
    (computed in float32, without gradients)."""
    return (rgb.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


@torch.inference_mode()
def predict_lab(gen: Generator, l_star: torch.Tensor, shape: tuple[int, int] | None = None,
                keep_l: bool = True, chroma: str = DEFAULT_CHROMA) -> torch.Tensor:
    """Full-resolution L*a*b* (not normalised) for L* (``B x 1 x H x W``, in ``[0, 100]``).

    :param shape: run the model at this ``(h, w)`` (resize L*, upsample a*b*); ``None`` runs it
        at the input's own size, which must suit the generator.
    :param keep_l: join the prediction to the input L* (always true for a*b* generators); with
        ``False`` an L*a*b* generator's own L* is used (at the model's resolution).
    :param chroma: how a*b* is upsampled when the model ran at another size: ``bilinear``, or
        ``guided`` by the input L* (:func:`colorkit.engine.chroma.guided_upsample`).
    """
    check_chroma(chroma)
    height, width = l_star.shape[-2:]
    small = l_star
    if shape is not None and tuple(shape) != (height, width):
        small = F.interpolate(l_star, size=tuple(shape), mode="bilinear", align_corners=False, antialias=True)
    out = gen(small / color.L_SCALE - 1.0).float()
    if out.shape[1] == 3:
        out_l, ab = out[:, :1], out[:, 1:]
    elif out.shape[1] == 2:
        out_l, ab = None, out
    else:
        raise ColorkitError(f"generator {type(gen).__name__} returned {out.shape[1]} channels; expected 2 or 3")
    if ab.shape[-2:] != (height, width):
        if chroma == "guided":
            if small.shape[-2:] != ab.shape[-2:]:  # a generator whose output is not the size of its input
                small = F.interpolate(l_star, size=tuple(ab.shape[-2:]), mode="bilinear", align_corners=False,
                                      antialias=True)
            ab = guided_upsample(small, l_star, ab)
        else:
            ab = F.interpolate(ab, size=(height, width), mode="bilinear", align_corners=False)
        if out_l is not None:
            out_l = F.interpolate(out_l, size=(height, width), mode="bilinear", align_corners=False)
    lum = l_star if keep_l or out_l is None else (out_l + 1.0) * color.L_SCALE
    return torch.cat((lum.to(ab.dtype), ab * color.AB_SCALE), dim=1)


def _as_model(model: LoadedModel | Generator) -> tuple[Generator, int, str, str | None]:
    """The generator, working size, chroma upsampling and the name errors give the model."""
    if isinstance(model, LoadedModel):
        return model.gen, model.working_size, model.chroma, f"model '{model.name}'" if model.name else str(model.path)
    if isinstance(model, Generator):
        return model, FALLBACK_WORKING_SIZE, DEFAULT_CHROMA, None
    raise TypeError(f"expected a LoadedModel or a Generator, got {type(model).__name__}")


def colorize_array(
    model: LoadedModel | Generator,
    image: np.ndarray,
    working_size: int | None = None,
    chroma: str | None = None,
) -> np.ndarray:
    """Colorize one image of any size; returns ``H x W x 3`` uint8 RGB.

    :param model: a :class:`LoadedModel` (from :func:`load_model`) or a bare generator.
    :param image: ``H x W`` (grayscale) or ``H x W x 3`` / ``H x W x 4`` (colour, used as its
        luminance; alpha ignored), uint8 or float in ``[0, 1]``.
    :param working_size: override the model's working size (see the module docs).
    :param chroma: override how predicted a*b* is upsampled, ``bilinear`` or ``guided`` (default:
        the model's, :attr:`LoadedModel.chroma`; ``bilinear`` for a bare generator).

    The generator runs in eval mode on the device its parameters are on. A prediction that is
    not finite (NaN or infinite values) raises :class:`ColorkitError` naming the model.
    """
    gen, default_size, default_chroma, name = _as_model(model)
    size = check_working_size(working_size, "working_size") if working_size else int(default_size)
    chroma = check_chroma(chroma or default_chroma)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[..., None]  # grayscale: one channel, broadcast to three per chunk
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {np.asarray(image).shape}")
    height, width = arr.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({height}x{width})")
    param = next(gen.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    # Full-resolution work goes in bands of rows on the CPU: the peak memory stays at a few
    # full-size planes instead of a dozen temporaries the size of the photo.
    rows = height if device.type != "cpu" else max(1, CHUNK_PIXELS // width)
    l_star = torch.empty(1, 1, height, width, device=device)
    for top in range(0, height, rows):
        band = _float_rgb(arr[top : top + rows]).to(device)
        l_star[..., top : top + rows, :] = color.lightness(band)
    h, w = working_shape(height, width, size, gen.size_multiple)
    was_training = gen.training
    gen.eval()
    try:
        lab = predict_lab(gen, l_star, (h, w), keep_l=True, chroma=chroma)
    finally:
        gen.train(was_training)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        band = lab[..., top : top + rows, :]
        if not bool(band.isfinite().all()):  # black pixels, L* lost too: refused before anything is written
            raise ColorkitError(f"{name or 'generator ' + type(gen).__name__}: its prediction is not finite (NaN or "
                                "infinite values; its weights or statistics may hold them); retrain it or pick "
                                "another checkpoint")
        rgb = color.lab_to_rgb_fitted(band)
        out[top : top + rows] = to_uint8(rgb)[0].permute(1, 2, 0).cpu().numpy()
    return out


def _float_rgb(arr: np.ndarray) -> torch.Tensor:
    """``h x w x (1|3)`` uint8, uint16 or float array to a ``1 x 3 x h x w`` float tensor in [0, 1]."""
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype not in (np.uint8, np.uint16):
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"integer images must hold 0..255 (uint8) or be uint16, got {arr.dtype} values outside 0..255")
        arr = arr.astype(np.uint8)
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.array(arr, copy=True)).float().div_(255.0)
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(arr.astype(np.float32)).div_(65535.0)
    else:
        t = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True)).clamp_(0.0, 1.0)
    return t.permute(2, 0, 1).expand(3, -1, -1)[None]
