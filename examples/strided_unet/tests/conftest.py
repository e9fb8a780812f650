"""Run the tests from a checkout too: without ``pip install -e .``, import the package from src/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("colorkit_strided_unet") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
