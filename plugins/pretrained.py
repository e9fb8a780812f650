"""Built-in pretrained models, registered through the same ``register_models`` hook as a
third-party package's.

``weights/models.yaml`` lists them: for each, the model file beside it, its SHA-256, its model
card and a one-line description. ``benchmarks/default_model.py`` trains-to-file: it writes the
model file and the card from a finished run and updates that list, so the checksum always
matches what ships.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import colorkit

WEIGHTS = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS / "models.yaml"


def read_manifest(path: Path = MANIFEST) -> dict[str, dict[str, str]]:
    """``{name: {file, sha256, card, description}}`` from ``models.yaml`` (empty if absent)."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise ValueError(f"{path}: 'models' must be a mapping of name to file, sha256, card, description")
    return models


@colorkit.hookimpl
def register_models(register):
    for name, spec in read_manifest().items():
        card = spec.get("card")
        register(name, WEIGHTS / spec["file"], sha256=spec["sha256"],
                 card=WEIGHTS / card if card else "", description=spec.get("description", ""))
