"""colorkit: automatic image colorization with conditional GANs, assembled from plugins.

The public API a plugin author needs lives here and in :mod:`colorkit.interfaces`,
:mod:`colorkit.color` and :mod:`colorkit.testing`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("colorkit")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that is not installed
    __version__ = "0.0.0+unknown"

#: Decorator for plugin hook implementations: ``@colorkit.hookimpl``.
hookimpl = pluggy.HookimplMarker("colorkit")

from colorkit.errors import ColorkitError  # noqa: E402
from colorkit.interfaces import Dataset, Discriminator, Generator, Loss, Metric  # noqa: E402



def __getattr__(name: str):  # lazy: ``from colorkit import colorize`` without importing it at start-up
    if name == "colorize":
        from colorkit.colorizer import colorize

        return colorize
    raise AttributeError(f"module 'colorkit' has no attribute {name!r}")


__all__ = [
    "ColorkitError",
    "Dataset",
    "Discriminator",
    "Generator",
    "Loss",
    "Metric",
    "__version__",
    "colorize",
    "hookimpl",
]
