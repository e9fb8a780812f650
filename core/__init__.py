"""colorkit: automatic image colorization with conditional GANs, assembled from plugins.

The package is three layers, each importing only from the layers below it:
:mod:`colorkit.kernel` (interfaces, hooks, registry, options, colour, files: what a plugin
imports), :mod:`colorkit.engine` (training, evaluation, inference, export: everything that runs
a network) and :mod:`colorkit.front` (the command line, benchmark suites, figures, the Turing
test). Importing this package is cheap: it imports no torch; the names below are loaded on first
use.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

from colorkit.kernel.lazy import lazy_exports

try:
    __version__ = version("colorkit")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that is not installed
    __version__ = "0.0.0+unknown"

#: Decorator for plugin hook implementations: ``@colorkit.hookimpl``.
hookimpl = pluggy.HookimplMarker("colorkit")

#: Public name -> the module that defines it (imported on first use: no torch at start-up).
_LAZY = {
    "ColorkitError": "colorkit.kernel.errors",
    "Dataset": "colorkit.kernel.interfaces",
    "Discriminator": "colorkit.kernel.interfaces",
    "Generator": "colorkit.kernel.interfaces",
    "Loss": "colorkit.kernel.interfaces",
    "Metric": "colorkit.kernel.interfaces",
    "colorize": "colorkit.engine.colorizer",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = ["__version__", "hookimpl", *_LAZY]
