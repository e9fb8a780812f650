"""Colorize photo files and folders, and the one-call Python API for notebooks.

(The module is not called ``colorize`` so that ``colorkit.colorize`` can be the function.)

:func:`colorize_files` takes files and folders (searched recursively for image files; only
regular files are read), reads them with :func:`colorkit.engine.photo_files.read_image` (any size,
EXIF orientation applied, colour-managed photos converted to sRGB), colorizes each with
:func:`colorkit.engine.inference.colorize_array` and writes PNG or JPEG under the output folder:

* a file given directly is written as ``OUT/<name>``; the files found in a folder as
  ``OUT/<path inside that folder>`` (the folder structure is kept); the name keeps its stem and
  takes the suffix of the output format (``.png``; ``.jpg``, or the input's ``.jpeg``/``.JPG``);
  inputs that would share one output name (``x.jpg`` and ``x.png``) keep their own suffix in it
  instead (``x.jpg.png`` and ``x.png.png``), so no photo is left out;
* the output has the input's size; an RGBA input keeps its alpha channel in PNG output; an sRGB
  input's ICC profile is carried over, any other profile's photo is written as plain sRGB;
* an input is never overwritten: an output path that is one of the inputs is refused. An
  existing output is left alone unless ``overwrite=True``. The output folder is never searched
  for inputs;
* a file that cannot be read, or an output that cannot be written, is reported (one line each)
  and the others are still processed; a full disk stops the batch. Every file is written through
  a temporary file and a rename, so no half-written outputs, and the temporary files a killed
  colorize left for the outputs it writes are removed first.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from colorkit.kernel.errors import ColorkitError, DiskFullError, UsageError, one_line
from colorkit.kernel.interfaces import Generator
from colorkit.engine.chroma_numpy import check_chroma
from colorkit.engine.inference import LoadedModel, colorize_array, load_model
from colorkit.engine.photo_files import IMAGE_SUFFIXES, LoadedImage, find_inputs, from_pil, read_image, to_pil
from colorkit.kernel.files import atomic_open, remove_stale_temps

FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}
_JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe"}


# -- planning ----------------------------------------------------------------------------------


@dataclass
class Job:
    source: Path
    dest: Path


@dataclass
class ColorizeReport:
    """What :func:`colorize_files` did: files written, files that failed (unreadable, missing)
    and files skipped on purpose, each with its reason (an output would overwrite an input, exists
    already, clashes). ``existing`` names those of the skipped inputs whose output exists already
    and was left alone (no ``overwrite``): a kind of skip that is not a problem."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)


def _suffix_for(source: Path, fmt: str) -> str:
    if fmt == "jpeg" and source.suffix.lower() in _JPEG_SUFFIXES:
        return source.suffix
    return FORMATS[fmt]


def output_paths(found: Sequence[tuple[Path, Path]], out: Path, fmt: str) -> list[Path]:
    """Each input's output: ``OUT/<relative path>`` with the format's suffix; inputs that would
    share one output (``x.jpg`` and ``x.png``) each keep their own suffix in its name instead
    (``x.jpg.png``, ``x.png.png``), whichever of them can be read."""
    plain = [out / rel.with_suffix(_suffix_for(src, fmt)) for src, rel in found]
    counts = Counter(str(d.resolve()) for d in plain)
    return [out / rel.with_name(rel.name + _suffix_for(src, fmt)) if counts[str(d.resolve())] > 1 else d
            for (src, rel), d in zip(found, plain)]


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
        raise UsageError(f"{missing[0][0]}: {missing[0][1]}{more} (nothing was colorized)")
    report = ColorizeReport()
    input_set = {src.resolve() for src, _ in found}
    jobs: list[Job] = []
    taken: dict[Path, Path] = {}
    for (src, _), dest in zip(found, output_paths(found, out, fmt)):
        key = dest.resolve()
        if key in input_set or (dest.exists() and os.path.samefile(dest, src)):
            report.skipped.append((src, f"the output {dest} would overwrite an input"))
        elif key in taken:  # only where a name of the x.jpg.png form exists as an input too
            report.skipped.append((src, f"its output {dest} is also the output of {taken[key]}; rename one of them"))
        elif dest.exists() and not overwrite:
            report.skipped.append((src, f"{dest} exists (pass --overwrite to replace it)"))
            report.existing.append(src)
        else:
            taken[key] = src
            jobs.append(Job(src, dest))
    return jobs, report


def remove_stale_outputs(jobs: Sequence[Job]) -> None:
    """Remove the temporary files a killed colorize left for the outputs about to be written."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.dest.parent, set()).add(job.dest.name)
    for folder, names in by_folder.items():
        if folder.is_dir():
            remove_stale_temps(folder, names)


def _write(image: Any, dest: Path, fmt: str, quality: int, icc: bytes | None) -> None:
    kwargs: dict[str, Any] = {"icc_profile": icc} if icc else {}
    with atomic_open(dest) as fh:
        if fmt == "png":
            image.save(fh, format="PNG", **kwargs)
        else:
            image.convert("RGB").save(fh, format="JPEG", quality=quality, **kwargs)


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
    threads: int | None = None,
) -> ColorizeReport:
    """Colorize image files and folders into ``out`` (see the module docs for the rules).

    :param model: a pretrained model name (``None``: the default model), a checkpoint file, a
        run directory or a :class:`LoadedModel`.
    :param fmt: ``png`` (lossless: the output's L* is the input's within 1) or ``jpeg``.
    :param on_problem: called with ``(path, one-line reason)`` for each file that fails or is
        skipped, as it happens, and for a multi-frame image of which only the first frame was
        colorized; not for an output left alone because it exists (``report.existing``).
    :param backend: ``torch``, or ``onnxruntime`` for an ONNX file from ``colorkit export``
        (:mod:`colorkit.engine.onnx_backend`: no PyTorch computation).
    :param chroma: how the predicted a*b* is upsampled to the photo's size: ``bilinear``, or
        ``guided`` by the photo's own L* (sharper colour edges); default: what the model file
        records, else ``bilinear``.
    :param threads: ONNX Runtime's intra-op threads (default: its own choice); the torch backend
        computes with torch's setting (``torch.set_num_threads``; ``colorkit colorize --threads``
        sets both).
    """
    if chroma is not None:
        check_chroma(chroma)
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be between 1 and 100, got {quality}")
    jobs, report = plan_jobs(inputs, out, fmt, overwrite)
    fmt = "png" if fmt.lower() == "png" else "jpeg"
    for path, reason in [*report.failed, *report.skipped]:
        if on_problem and path not in report.existing:
            on_problem(path, reason)
    if backend == "onnxruntime":
        from colorkit.engine import onnx_backend

        if model is None or not str(model).endswith(".onnx"):
            raise UsageError(f"--backend onnxruntime runs an exported .onnx file, not {model or 'the default model'}; "
                             "write one with colorkit export MODEL --format onnx --out FILE.onnx")
        loaded: Any = onnx_backend.load_onnx(model, working_size, threads=threads, chroma=chroma)
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

    remove_stale_outputs(jobs)
    with progress_bar(progress, console) as bar:
        task = bar.add_task("colorizing", total=len(jobs), parts="")
        for job in jobs:
            try:
                written, reason = _colorize_one(job, loaded, run, working_size, chroma, fmt, quality)
            except DiskFullError as exc:  # every later photo would fail the same way: stop here
                raise DiskFullError(f"{exc} (colorize skips the {len(report.written)} photo(s) already written "
                                    "when run again)") from None
            if written:
                report.written.append(job.dest)
            else:
                report.failed.append((job.source, str(reason)))
            if reason and on_problem:
                on_problem(job.source, reason)
            bar.update(task, advance=1, parts=job.source.name)
    return report


def _colorize_one(job: Job, loaded: Any, run: Callable[..., np.ndarray], working_size: int | None,
                  chroma: str | None, fmt: str, quality: int) -> tuple[bool, str | None]:
    """Colorize one photo into its output: ``(written, note)``; the note says why it was not
    written, or what to know about the one written (a multi-frame image)."""
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
        return False, f"cannot read: {one_line(exc)}"
    try:
        _write(to_pil(rgb, image.alpha), job.dest, fmt, quality, image.icc_profile)
    except DiskFullError:
        raise
    except (OSError, ColorkitError) as exc:  # this output cannot be written (a file where its folder goes...)
        return False, f"cannot write {job.dest}: {exc if isinstance(exc, ColorkitError) else one_line(exc)}; skipped"
    if image.frames > 1:
        return True, (f"has {image.frames} frames; only the first was colorized (split it into single images to "
                      "colorize every frame)")
    return True, None


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

        img = from_pil(ImageOps.exif_transpose(image))
    else:
        raise TypeError(f"image must be a path, a PIL image or a numpy array, not {type(image).__name__}")
    rgb = colorize_array(loaded, img.rgb, working_size=working_size, chroma=chroma)
    return to_pil(rgb, img.alpha)
