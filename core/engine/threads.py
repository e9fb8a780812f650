"""How many CPU threads torch computes with: the one default of colorkit's commands
(``OMP_NUM_THREADS`` when set, else the CPUs the load average leaves free, 1 to
:data:`MAX_DEFAULT_THREADS`) and :func:`cpu_threads`, which applies it for a block of work.
Importing this module imports no torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: The most threads the default gives: colorizing at a working size of 64 to 256 px gains
#: little beyond, and every thread more is one more to wait for on a shared machine.
MAX_DEFAULT_THREADS = 4


def default_threads(cpus: int, load: float, omp_num_threads: str | None = None) -> int:
    """The thread count :func:`cpu_threads` picks: ``OMP_NUM_THREADS`` when it holds a number,
    else the ``cpus`` the load average leaves free (rounded), 1 to :data:`MAX_DEFAULT_THREADS`."""
    with contextlib.suppress(ValueError):
        if omp_num_threads and int(omp_num_threads.split(",")[0]) >= 1:
            return int(omp_num_threads.split(",")[0])
    return max(1, min(MAX_DEFAULT_THREADS, cpus, round(cpus - load)))


@contextlib.contextmanager
def cpu_threads(threads: int | None = None) -> Iterator[int]:
    """Within it, torch computes with ``threads`` CPU threads (``None``: :func:`default_threads`
    for this process and machine); yields that number; torch's setting is restored after."""
    import torch

    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = default_threads(cpus, load, os.environ.get("OMP_NUM_THREADS"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
