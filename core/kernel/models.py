"""Pretrained models: named generator weights that installed packages ship.

A plugin registers models through the ``register_models`` hook, as it registers components::

    @colorkit.hookimpl
    def register_models(register):
        register("places365-gan", weights=Path(__file__).parent / "places365-gan.pt",
                 sha256="3f1c...", card=Path(__file__).parent / "MODEL.md",
                 description="conditional GAN trained on Places365 at 256 px")

``weights`` is a path, or a function returning one (a plugin that downloads its weights on first
use returns the cached file). The file is a colorkit model file: a checkpoint that holds the
experiment, the plugin versions and the generator's weights, nothing else (``colorkit export RUN
--format model`` writes one, in half precision by default). It loads like any checkpoint, with
``torch.load(weights_only=True)``, after its SHA-256 is checked. ``card`` is the model card: its
Markdown text or a path to it. colorkit's own default model is registered the same way, by the
built-in plugin :mod:`colorkit.plugins.pretrained`; ``registry.yaml`` names the default.

Wherever a model is expected (``colorkit colorize --model``, ``eval``, ``export``,
:func:`colorkit.colorize`), a registered model name, a run directory and a checkpoint file all
work: :func:`resolve_model` tells them apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colorkit.kernel.errors import UnknownNameError, UsageError, one_line

#: Marks a model file (:func:`colorkit.engine.checkpoints.write_model_file`).
MODEL_FILE_KIND = "model"


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered pretrained model and the package that ships it."""

    name: str
    weights: Path | Callable[[], str | Path]
    sha256: str
    card: str | Path
    description: str
    plugin: str
    package: str
    version: str

    @property
    def label(self) -> str:
        """``model 'NAME' (package P V)``: how errors name the model."""
        return f"model '{self.name}' (package {self.package} {self.version})".replace(" )", ")")

    def path(self) -> Path:
        """The weights file, fetched by the plugin's function where ``weights`` is one."""
        if callable(self.weights):
            try:
                found = self.weights()
            except Exception as exc:  # noqa: BLE001 - a plugin's fetch failing is one line for the user
                raise UsageError(f"{self.label}: its weights could not be fetched "
                                 f"({one_line(exc, first_line=True)})") from None
            return Path(found)
        return Path(self.weights)

    def verified_path(self) -> Path:
        """:meth:`path`, after checking that the file exists and has the registered SHA-256."""
        path = self.path()
        if not path.is_file():
            raise UsageError(f"{self.label}: weights file {path} is missing; reinstall {self.package}")
        digest = sha256_file(path)
        if digest != self.sha256.lower():
            raise UsageError(
                f"{self.label}: weights file {path} fails its checksum (SHA-256 {digest[:12]}..., expected "
                f"{self.sha256[:12]}...); the file is corrupt or truncated: reinstall {self.package}"
            )
        return path

    def card_text(self) -> str:
        """The model card's Markdown text ('' when there is none)."""
        card = self.card
        if isinstance(card, Path):
            try:
                return card.read_text(encoding="utf-8")
            except OSError as exc:
                return f"(model card {card} unreadable: {exc.strerror})"
        return str(card or "")



def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_model_name(registry: Any) -> str:
    """The model ``registry.yaml`` names under ``defaults: model:``."""
    name = (registry.defaults or {}).get("model")
    if not isinstance(name, str) or not name:
        raise UsageError("registry.yaml names no default model (defaults: model:); pass --model NAME or a run directory")
    return name


def _looks_like_path(target: str) -> bool:
    return any(sep in target for sep in ("/", "\\")) or target.endswith((".pt", ".pth")) or target in (".", "..")


def resolve_model(target: str | Path | None, registry: Any) -> tuple[Path, ModelEntry | None]:
    """Where the weights of ``target`` are: ``(path, entry)``.

    ``None`` is the default model; an existing file or directory is a checkpoint or run directory
    (``entry`` is ``None``); any other string is a registered model name, whose file is checked
    against its SHA-256. An unknown name gets one line with the closest names.
    """
    if target is None:
        target = default_model_name(registry)
    if Path(target).exists() or _looks_like_path(str(target)):
        path = Path(target)
        if not path.exists():
            raise UsageError(f"{path}: no such checkpoint file, run directory or model name (colorkit list model)")
        return path, None
    name = str(target)
    entry = registry.models.get(name)
    if entry is None:
        names = sorted(registry.models)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown model '{name}'{hint} (models: {', '.join(names) or 'none'}; a run directory or "
            "checkpoint file works too)"
        )
    return entry.verified_path(), entry
