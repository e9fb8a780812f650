"""Benchmark suites: a YAML file of experiments and seeds, trained, scored and tabulated (``colorkit bench``).

:mod:`~colorkit.front.bench.suite` parses a suite file (its format is documented there),
:mod:`~colorkit.front.bench.presets` reads the presets a suite brings,
:mod:`~colorkit.front.bench.plan` resolves each run's experiment, :mod:`~colorkit.front.bench.runner`
trains and evaluates the runs (:mod:`~colorkit.front.bench.rundirs`: their directories),
:mod:`~colorkit.front.bench.results` writes the tables and :mod:`~colorkit.front.bench.figures`
the paper's figures. The names below are the public API the scripts under ``benchmarks/`` use;
each is imported on first use (no torch or matplotlib until then).
"""

from __future__ import annotations

from colorkit.kernel.lazy import lazy_exports

#: Public name -> the module that defines it.
_LAZY = {
    "load_suite": "colorkit.front.bench.suite",
    "run_suite": "colorkit.front.bench.runner",
    "set_value": "colorkit.front.bench.runner",
    "run_name": "colorkit.front.bench.rundirs",
    "mean_std": "colorkit.front.bench.results",
    "METRIC_DIGITS": "colorkit.front.bench.results",
    "plt": "colorkit.front.bench.figures",
    "save_figure": "colorkit.front.bench.figures",
    "figure5_from_checkpoints": "colorkit.front.bench.figures",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())


__all__ = list(_LAZY)
