"""Colorize photo files and folders, and the one-call Python API for notebooks.

(The module is not called ``colorize`` so that ``colorkit.colorize`` can be the function.)

:func:`colorize_files` takes files and folders (searched recursively for image files), reads
grayscale, colour (used as its luminance), palette, 16-bit and RGBA images of any size, applies
the EXIF orientation, colorizes each with :func:`colorkit.engine.inference.colorize_array` and writes
PNG or JPEG under the output folder:

* a file given directly is written as ``OUT/<name>``; the files found in a folder as
  ``OUT/<path inside that folder>`` (the folder structure is kept); the name keeps its stem and
  takes the suffix of the output format (``.png``; ``.jpg``, or the input's ``.jpeg``/``.JPG``);
* the output has the input's size; an RGBA input keeps its alpha channel in PNG output; an sRGB
  input's ICC profile is carried over;
* an input is never overwritten: an output path that is one of the inputs is refused. An
  existing output is left alone unless ``overwrite=True``. Two inputs that map to one output
  name: the second is skipped. The output folder is never searched for inputs;
* a file that cannot be read is reported (one line each) and the others are still processed;
  every file is written through a temporary file and a rename, so no half-written outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Generator
from colorkit.engine.chroma_numpy import check_chroma
from colorkit.engine.inference import LoadedModel, colorize_array, load_model
from colorkit.kernel.files import atomic_open

#: File suffixes searched for in folders (a file named directly is always tried).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm", ".tga"}
)
FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}
_JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe"}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # H x W x 3, uint8 or float32 in [0, 1] (16-bit and float inputs)
    alpha: np.ndarray | None  # H x W uint8
    icc_profile: bytes | None
    frames: int = 1  # an animated GIF/PNG/WebP or a multi-page TIFF: only the first is read


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file for colorization; raises ``OSError``/``ValueError`` when it cannot."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        loaded = _from_pil(ImageOps.exif_transpose(im))
        loaded.frames = int(getattr(im, "n_frames", 1) or 1)
        return loaded


def _from_pil(im: Any) -> LoadedImage:
    icc = im.info.get("icc_profile") if im.mode in ("RGB", "RGBA") else None
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return LoadedImage(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), icc)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float32)
        return LoadedImage(np.clip(arr / 65535.0, 0.0, 1.0), None, None)
    if mode == "F":
        arr = np.asarray(im).astype(np.float32)
        top = float(arr.max()) if arr.size else 1.0
        return LoadedImage(np.clip(arr / (255.0 if top > 1.0 else 1.0), 0.0, 1.0), None, None)
    return LoadedImage(np.asarray(im.convert("RGB")), None, icc)


def _to_pil(rgb: np.ndarray, alpha: np.ndarray | None) -> Any:
    from PIL import Image

    if alpha is not None:
        return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    return Image.fromarray(rgb, mode="RGB")


# -- planning ----------------------------------------------------------------------------------


@dataclass
class Job:
    source: Path
    dest: Path


@dataclass
class ColorizeReport:
    """What :func:`colorize_files` did: files written, files that failed (unreadable, missing)
    and files skipped on purpose (an output would overwrite an input, exists already, clashes)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _suffix_for(source: Path, fmt: str) -> str:
    if fmt == "jpeg" and source.suffix.lower() in _JPEG_SUFFIXES:
        return source.suffix
    return FORMATS[fmt]


def _resolve(path: Path, role: str) -> Path:
    """``path.resolve()``; a symbolic link loop is a one-line error naming the link."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        raise UsageError(f"{role}{path}: a symbolic link loop; remove or fix the link") from None


def find_inputs(inputs: Sequence[str | Path], out: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(source, relative output path)`` pairs for files and folders, and the missing inputs."""
    out_resolved = _resolve(out, "--out ")
    found: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                here = Path(dirpath)
                # Skip hidden folders, and the output folder when it lies inside an input folder.
                dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _resolve(here / d, "") != out_resolved)
                for name in sorted(filenames):
                    if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    src = here / name
                    _resolve(src, "")
                    found.append((src, src.relative_to(p)))
        elif p.is_file():
            found.append((p, Path(p.name)))
        else:
            missing.append((p, "no such file or folder"))
    return found, missing


def plan_jobs(
    inputs: Sequence[str | Path], out: str | Path, fmt: str = "png", overwrite: bool = False
) -> tuple[list[Job], ColorizeReport]:
    """Decide every output path; nothing is written. See the module docs for the rules."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose png or jpeg")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    found, missing = find_inputs(inputs, out)
    if missing:  # a mistyped path stops everything before anything is written
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UsageError(f"{missing[0][0]}: no such file or folder{more}; check the path (nothing was colorized)")
    report = ColorizeReport()
    input_set = {src.resolve() for src, _ in found}
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}
    for src, rel in found:
        dest = out / rel.with_suffix(_suffix_for(src, fmt))
        key = dest.resolve()
        if key in input_set or (dest.exists() and os.path.samefile(dest, src)):
            report.skipped.append((src, f"the output {dest} would overwrite an input"))
        elif key in taken:
            report.skipped.append((src, f"the output {dest} is already written for {taken[key]}"))
        elif dest.exists() and not overwrite:
            report.skipped.append((src, f"{dest} exists (pass --overwrite to replace it)"))
        else:
            taken[key] = src
            jobs.append(Job(src, dest))
    return jobs, report


def _write(image: Any, dest: Path, fmt: str, quality: int, icc: bytes | None) -> None:
    kwargs: dict[str, Any] = {"icc_profile": icc} if icc else {}
    with atomic_open(dest) as fh:
        if fmt == "png":
            image.save(fh, format="PNG", **kwargs)
        else:
            image.convert("RGB").save(fh, format="JPEG", quality=quality, **kwargs)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the two entry points ----------------------------------------------------------------------


def _model(model: str | Path | LoadedModel | None, device: Any, working_size: int | None, registry: Any = None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    from colorkit.engine.devices import pick_device

    return load_model(model, registry, device=pick_device(device or "auto"), working_size=working_size)


def colorize_files(
    model: str | Path | LoadedModel | None,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    fmt: str = "png",
    quality: int = 95,
    working_size: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
    registry: Any = None,
    console: Any = None,
    on_problem: Callable[[Path, str], None] | None = None,
    backend: str = "torch",
    chroma: str | None = None,
) -> ColorizeReport:
    """Colorize image files and folders into ``out`` (see the module docs for the rules).

    :param model: a pretrained model name (``None``: the default model), a checkpoint file, a
        run directory or a :class:`LoadedModel`.
    :param fmt: ``png`` (lossless: the output's L* is the input's within 1) or ``jpeg``.
    :param on_problem: called with ``(path, one-line reason)`` for each file that fails or is
        skipped, as it happens, and for a multi-frame image of which only the first frame was
        colorized.
    :param backend: ``torch``, or ``onnxruntime`` for an ONNX file from ``colorkit export``
        (:mod:`colorkit.engine.onnx_backend`: no PyTorch computation).
    :param chroma: how the predicted a*b* is upsampled to the photo's size: ``bilinear``, or
        ``guided`` by the photo's own L* (sharper colour edges); default: what the model file
        records, else ``bilinear``.
    """
    if chroma is not None:
        check_chroma(chroma)
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be between 1 and 100, got {quality}")
    jobs, report = plan_jobs(inputs, out, fmt, overwrite)
    fmt = "png" if fmt.lower() == "png" else "jpeg"
    for path, reason in [*report.failed, *report.skipped]:
        if on_problem:
            on_problem(path, reason)
    if backend == "onnxruntime":
        from colorkit.engine import onnx_backend

        if model is None or not str(model).endswith(".onnx"):
            raise UsageError(f"--backend onnxruntime runs an exported .onnx file, not {model or 'the default model'}; "
                             "write one with colorkit export MODEL --format onnx --out FILE.onnx")
        loaded: Any = onnx_backend.load_onnx(model, working_size, chroma=chroma)
        run = onnx_backend.colorize_array
    elif backend == "torch":
        loaded, run = _model(model, device, working_size, registry), colorize_array
    else:
        raise UsageError(f"--backend {backend!r}: use torch or onnxruntime")
    if not jobs and not report.skipped:  # checked after the model, whose errors come first
        raise UsageError(f"no photos in {', '.join(str(p) for p in inputs)} (looked for "
                         f"{', '.join(sorted(IMAGE_SUFFIXES))} files, recursively); nothing to colorize")
    if not jobs:
        return report
    from colorkit.kernel.progress import progress_bar

    with progress_bar(progress, console) as bar:
        task = bar.add_task("colorizing", total=len(jobs), parts="")
        for job in jobs:
            try:
                image = read_image(job.source)
                rgb = run(loaded, image.rgb, working_size=working_size, chroma=chroma)
            except Exception as exc:
                # PIL reports a bad file as OSError (unidentified, truncated), ValueError,
                # SyntaxError (malformed headers) or its own DecompressionBombError.
                if not isinstance(exc, (OSError, ValueError, SyntaxError, MemoryError)) and not type(
                    exc
                ).__module__.startswith("PIL"):
                    raise
                reason = f"cannot read: {_one_line(exc)}"
                report.failed.append((job.source, reason))
                if on_problem:
                    on_problem(job.source, reason)
            else:
                try:
                    _write(_to_pil(rgb, image.alpha), job.dest, fmt, quality, image.icc_profile)
                except OSError as exc:
                    reason = f"cannot write {job.dest}: {_one_line(exc)}"
                    report.failed.append((job.source, reason))
                    if on_problem:
                        on_problem(job.source, reason)
                else:
                    report.written.append(job.dest)
                    if image.frames > 1 and on_problem:
                        on_problem(job.source, f"has {image.frames} frames; only the first was colorized "
                                               "(split it into single images to colorize every frame)")
            bar.update(task, advance=1, parts=job.source.name)
    return report


_CACHE: dict[tuple[str, str, float, str, int | None], LoadedModel] = {}


def colorize(
    model: str | Path | LoadedModel | Generator | None,
    image: str | Path | np.ndarray | Any,
    *,
    working_size: int | None = None,
    device: str | None = None,
    chroma: str | None = None,
) -> Any:
    """Colorize one image and return it as a ``PIL.Image`` (RGB, or RGBA for an RGBA input).

    :param model: a pretrained model name (``None``: the default model), a checkpoint file, a
        run directory (its best, else last checkpoint) or a model from
        :func:`colorkit.engine.inference.load_model`, or a generator you built and trained (it runs
        at ``working_size``, default 256). A name or path is loaded once and cached (until the file
        changes).
    :param image: a file path, a ``PIL.Image`` or an ``H x W [x 3|4]`` array (uint8, or float
        in ``[0, 1]``); colour is used as its luminance.
    :param working_size: override the size the model runs at (default: its training size).
    :param device: ``auto``, ``cpu``, ``cuda``, ... (default: ``auto`` for a path).
    :param chroma: ``bilinear`` or ``guided``: how the predicted colour is upsampled to the
        image's size (default: what the model file records, else ``bilinear``).

    Example::

        from colorkit import colorize
        colorize(None, "grandma.jpg").save("grandma-colour.png")          # the default model
        colorize("runs/my-run", "grandma.jpg").save("grandma-colour.png")  # a model you trained
    """
    if chroma is not None:
        check_chroma(chroma)
    if isinstance(model, (LoadedModel, Generator)):
        loaded = model
    else:
        from colorkit.kernel.models import resolve_model
        from colorkit.kernel.registry import build_registry
        from colorkit.engine.checkpoints import resolve_checkpoint

        registry = build_registry()
        path = resolve_checkpoint(resolve_model(model, registry)[0]).resolve()
        key = (str(model), str(path), path.stat().st_mtime, str(device or "auto"), working_size)
        loaded = _CACHE.get(key)
        if loaded is None:
            _CACHE.clear()
            loaded = _model(model, device, working_size, registry)
            _CACHE[key] = loaded
    if isinstance(image, (str, Path)):
        img = read_image(image)
    elif isinstance(image, np.ndarray):
        arr = image
        alpha = arr[..., 3] if arr.ndim == 3 and arr.shape[2] == 4 and arr.dtype == np.uint8 else None
        img = LoadedImage(arr, alpha, None)
    elif hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        from PIL import ImageOps

        img = _from_pil(ImageOps.exif_transpose(image))
    else:
        raise TypeError(f"image must be a path, a PIL image or a numpy array, not {type(image).__name__}")
    rgb = colorize_array(loaded, img.rgb, working_size=working_size, chroma=chroma)
    return _to_pil(rgb, img.alpha)
