"""The front: what people run, on top of the engine and the kernel. The ``colorkit`` command line
(:mod:`~colorkit.front.cli` and its ``cli_*`` command groups, which import torch only once a
command needs it), benchmark suites (parsing, running, results tables), the paper's figures, the
component listing and the visual Turing test (study files and its local web page). Nothing
imports the front but the command line and ``python -m colorkit``.
"""
