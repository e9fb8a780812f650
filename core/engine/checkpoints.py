"""Run directories, checkpoints and model files: self-describing, written atomically, safe to load.

A run directory holds ``config.yaml`` (the resolved experiment, written once and never
overwritten), ``environment.json``, ``metrics.jsonl``, ``checkpoints/last.pt`` and
``samples.png``. Checkpoints carry the resolved experiment and the plugin versions, so
``eval`` and ``colorize`` need nothing else; they load with ``torch.load(weights_only=True)``, so
a checkpoint can never run code.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from colorkit.engine.chroma_numpy import check_chroma
from colorkit.engine.shapes import check_working_size
from colorkit.kernel.errors import ColorkitError, OptionError, UsageError, one_line
from colorkit.kernel.files import atomic_open, check_replaceable
from colorkit.kernel.models import MODEL_FILE_KIND
from colorkit.kernel.options import options_to_dict

CHECKPOINT_FORMAT = "colorkit-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save a checkpoint atomically: a crash or full disk mid-save keeps the previous file."""
    with atomic_open(path) as fh:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, fh)


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint file from a path to a checkpoint or to a run directory."""
    p = Path(target)
    if p.is_dir():
        for candidate in (p / "checkpoints" / "best.pt", p / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        raise UsageError(f"{p}: no checkpoints/best.pt or checkpoints/last.pt in this run directory")
    if not p.exists():
        raise UsageError(f"{p}: no such checkpoint file or run directory")
    return p


def _exported_kind(path: Path) -> str | None:
    """``"ONNX"`` or ``"TorchScript"`` for a file ``colorkit export`` wrote, else ``None``."""
    import zipfile

    if path.suffix.lower() == ".onnx":
        return "ONNX"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if any(name.endswith("extra/colorkit.json") for name in archive.namelist()):
                    return "TorchScript"
    except OSError:
        return None
    return None


def load_checkpoint(target: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a colorkit checkpoint safely (``weights_only=True``); errors name the file."""
    path = resolve_checkpoint(target)
    exported = _exported_kind(path)
    if exported:
        how = ("run it with colorkit colorize --backend onnxruntime --model FILE" if exported == "ONNX"
               else "load it with torch.jit.load")
        raise UsageError(f"{path}: an exported {exported} file, not a checkpoint, model or run directory; {how}, "
                         "or pass the run directory or model name it was exported from")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UsageError(f"{path}: not a readable colorkit checkpoint ({_load_failure(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path}: not a colorkit checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise UsageError(f"{path}: checkpoint version {state['version']} is newer than this colorkit; upgrade colorkit")
    if "experiment" in state and not _plain(state["experiment"], MAX_EXPERIMENT_VALUES):
        raise UsageError(f"{path}: its experiment is not a plain config (over {MAX_EXPERIMENT_VALUES} values, nested "
                         f"over {MAX_EXPERIMENT_DEPTH} deep, or not text, numbers, lists and mappings); the file is "
                         "damaged or was not written by colorkit")
    if "working_size" in state:
        check_working_size(state["working_size"], f"{path}: working_size",
                           "; the file was edited or is damaged (colorkit export --format model --working-size N "
                           "writes a model file with another)")
    state["path"] = str(path)
    return state


#: Bounds on a checkpoint's experiment, which is read before anything checks it: a pickle can
#: share one list many times over, and walking it (a message quoting it) would never end.
MAX_EXPERIMENT_VALUES = 10_000
MAX_EXPERIMENT_DEPTH = 16


def _plain(value: Any, budget: int) -> bool:
    """Whether ``value`` is a config of at most ``budget`` values (text, numbers, lists, mappings
    with text keys) nested at most :data:`MAX_EXPERIMENT_DEPTH` deep; the walk stops at the bound."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if budget < 0 or depth > MAX_EXPERIMENT_DEPTH:
            return False
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return False
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, (list, tuple)):
            stack += [(v, depth + 1) for v in item]
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            return False
    return True


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words. A file refused for holding code never gets
    PyTorch's advice to load it unsafely, only what it holds."""
    text = str(exc).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
        what = f"the Python object {found.group(1)[:100]}" if found else "a Python object"
        return (f"refused: it holds {what}, not only tensors, and loading it could run code; "
                "colorkit loads only plain weights, so get the file from a source you trust or re-export it")
    if "central directory" in text or "PytorchStreamReader failed" in text:
        return ("incomplete or damaged: not a whole zip archive, as when a copy or download was cut short; copy the "
                "file again")
    first = text.splitlines()[0] if text else type(exc).__name__
    return textwrap.shorten(re.split(r"(?<=\.)\s", first, maxsplit=1)[0].rstrip("."), 200, placeholder=" ...")


def first_non_finite(weights: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``weights`` holding NaN or infinite values."""
    return next((k for k, v in weights.items() if torch.is_tensor(v) and torch.is_floating_point(v)
                 and not bool(v.isfinite().all())), None)


def weights_misfit(expected: dict[str, Any], saved: dict[str, Any]) -> str:
    """How the weights ``saved`` differ from the state dict ``expected`` (names and shapes), in a
    few words: ``2 missing (a, b), 1 mis-shaped (c: saved 8x1x3x3 vs built 64x1x3x3)``; ``''`` when
    they fit."""
    def shape(value: Any) -> str:
        return "x".join(map(str, getattr(value, "shape", ()))) or "a scalar"

    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")

    parts = []
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    misshaped = [f"{k}: saved {shape(saved[k])} vs built {shape(v)}" for k, v in expected.items()
                 if k in saved and shape(saved[k]) != shape(v)]
    for count, label in ((missing, "missing"), (unexpected, "unexpected"), (misshaped, "mis-shaped")):
        if count:
            parts.append(f"{len(count)} {label} ({some(count)})")
    return ", ".join(parts)


def build_saved(comp: Any, options: dict[str, Any], weights: dict[str, Any], path: str | Path, key: str) -> Any:
    """Build the component ``comp`` with the options a checkpoint's experiment records under
    ``key`` (``gen``), and load the checkpoint's ``weights`` into it (strictly).

    The component is first built on PyTorch's ``meta`` device, which allocates nothing, and its
    weights' names and shapes are compared with the file's: options that do not describe these
    weights (an edited ``gen.base=1024``) are refused before anything is allocated, so the memory
    the model takes is what the file holds. A component that cannot be built on ``meta`` (it
    computes with real tensors while it is built) is built directly. Every error is one
    :class:`UsageError` line that names the checkpoint and the key.
    """
    try:
        opts = comp.make_options(options)
    except OptionError as exc:
        raise UsageError(f"{path}: {exc} (the checkpoint's {key}: {comp.name}); the file was edited, or written by "
                         f"a version of {comp.package} other than {comp.version}") from None
    probe = None
    try:
        with torch.device("meta"):
            probe = comp.build(opts)
    except ColorkitError:
        raise
    except Exception:  # noqa: BLE001 - no probe: it is built for real below, and any error shows there
        probe = None
    if isinstance(probe, torch.nn.Module):
        _check_fit(comp, opts, probe.state_dict(), weights, path, key)
    try:
        module = comp.build(opts)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot rebuild {comp.kind} '{comp.name}' ({one_line(exc)})") from None
    if isinstance(module, torch.nn.Module):
        if not isinstance(probe, torch.nn.Module):  # not checked on meta: the names and shapes now
            _check_fit(comp, opts, module.state_dict(), weights, path, key)
        try:
            module.load_state_dict(weights, strict=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: the saved weights do not fit {comp.kind} '{comp.name}' of {comp.package} "
                             f"{comp.version} ({one_line(exc)})") from None
    return module


def _check_fit(comp: Any, opts: Any, expected: dict[str, Any], weights: dict[str, Any], path: str | Path,
               key: str) -> None:
    problem = weights_misfit(expected, weights)
    if not problem:
        return
    defaults = options_to_dict(comp.make_options({}))
    changed = [f"{key}.{k}={v!r:.40}" for k, v in options_to_dict(opts).items() if defaults.get(k) != v]
    built = f"options {', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}" if changed else "default options"
    raise UsageError(f"{path}: the saved weights do not fit {comp.kind} '{comp.name}' of {comp.package} {comp.version} "
                     f"built with the checkpoint's {built}: {problem}; the file was edited or is damaged, or "
                     f"{comp.package} changed the {comp.kind}")


def _git_commit(folder: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5,
    )
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment_manifest(*, seed: int, device: torch.device, plugins: dict[str, Any]) -> dict[str, Any]:
    """Versions, hardware, git commit, seed and device of a run."""
    from colorkit import __version__

    import numpy

    info: dict[str, Any] = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "colorkit": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "seed": seed,
        "command": sys.argv,
        "git_commit_colorkit": _git_commit(Path(__file__).resolve().parent),
        "git_commit_cwd": _git_commit(Path.cwd()),
        "plugins": plugins,
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class RunLock:
    """An exclusive lock on a run directory (``.lock``, an ``flock``): one process trains in it
    at a time. The operating system drops it when the process ends, however it ends, so a
    killed run never leaves its directory locked. No-op where ``fcntl`` is missing (Windows)."""

    def __init__(self, path: Path) -> None:
        self.path, self._fh = path, None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        try:
            check_replaceable(path / ".lock")
            fh = open(path / ".lock", "a")
        except OSError as exc:
            raise UsageError(f"{path}: cannot use this run directory ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise UsageError(f"{path}: another colorkit process is training in this run directory; wait for it "
                             "to end or choose another --out") from None
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def foreign_entry(path: Path) -> Path | None:
    """The first entry (sorted) of an existing folder that a run killed before writing its
    ``config.yaml`` could not have left there, or ``None``: such a run leaves at most its lock
    (``.lock``), temporary files (``.NAME.XXXX.tmp``) and an empty ``checkpoints`` folder."""
    if not path.is_dir():
        return None
    for entry in sorted(path.iterdir()):
        if entry.name == ".lock" or (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        if entry.name == "checkpoints" and entry.is_dir() and not entry.is_symlink() and \
                all(e.name.startswith(".") and e.name.endswith(".tmp") for e in entry.iterdir()):
            continue
        return entry
    return None


def new_run_dir(out: str | Path | None, label: str, root: str | Path = "runs") -> Path:
    """Create a run directory; refuse one that already holds a run. The caller locks it
    (:class:`RunLock`) and checks again that it holds no run."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{stamp}-{label}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{stamp}-{label}-{n}"
    else:
        path = Path(out)
        if (path / "config.yaml").exists():
            raise UsageError(f"{path}: already holds a run (config.yaml); choose another --out")
        foreign = foreign_entry(path)
        if foreign is not None:
            raise UsageError(f"--out {path}: holds {foreign.name!r}, which is not a colorkit run's; a new run needs a new "
                             "or empty folder (colorkit run --resume RUN_DIR continues a run, --resume RUN_DIR --fork "
                             "--out NEW starts one from it)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the run directory ({exc.strerror})") from None
    return path


def write_model_file(source: str | Path, out: str | Path, *, half: bool = True,
                     working_size: int | None = None, experiment: dict[str, Any] | None = None,
                     chroma: str | None = None) -> Path:
    """Write the model file of a checkpoint or run directory: its experiment, plugin versions,
    counters and generator weights (the moving average where the run kept one), in half
    precision unless ``half`` is false, the ``working_size`` colorize should use and how it
    upsamples the predicted a*b*, ``chroma`` (``bilinear`` or ``guided``, recorded as
    ``chroma_upsample``); each defaults to what ``source`` records (a model file), else to the
    training image size and to bilinear at load time. ``experiment`` replaces the stored one
    (the same training with an inference-time generator option changed, such as
    ``gen.ab_gain``). Written atomically; returns ``out``."""
    if chroma is not None:
        check_chroma(chroma)
    state = load_checkpoint(source)
    if experiment is not None:
        state["experiment"] = experiment
    weights = state.get("gen_ema") or state.get("gen")
    if not isinstance(state.get("experiment"), dict) or not isinstance(weights, dict):
        raise UsageError(f"{state['path']}: the checkpoint lacks its experiment or generator weights")
    bad = first_non_finite(weights)
    if bad is not None:
        raise ColorkitError(f"{state['path']}: the weight {bad} is not finite (NaN or infinite values); no model "
                            "file written: pick another checkpoint")
    if half:  # a tensor half precision cannot hold (batch norm's running variance can pass 65,504) stays float32
        weights = {k: v.half() if torch.is_floating_point(v) and bool(v.half().isfinite().all()) else v
                   for k, v in weights.items()}
    kept = {k: state[k] for k in ("experiment", "plugins", "epoch", "step", "images", "cpu_seconds", "working_size",
                                  "chroma_upsample") if k in state}
    out = Path(out)
    if working_size is not None:
        kept["working_size"] = check_working_size(working_size, "--working-size")
    if chroma is not None:
        kept["chroma_upsample"] = chroma
    save_checkpoint(out, {**kept, "kind": MODEL_FILE_KIND, "gen": weights})
    return out
