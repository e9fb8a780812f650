"""The front: what people run, on top of the engine and the kernel, in three sub-packages.

:mod:`~colorkit.front.cli` is the ``colorkit`` command line (its commands import torch only once
one runs; ``colorkit list`` is there too), :mod:`~colorkit.front.bench` the benchmark suites
(parsing, presets, running, results tables and the paper's figures, with the public API the
scripts under ``benchmarks/`` use) and :mod:`~colorkit.front.turing` the visual Turing test (study
files, participant sessions and its local web page). Nothing imports the front but the command
line, ``python -m colorkit`` and the benchmark scripts.
"""
