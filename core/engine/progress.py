"""The one progress display of colorkit: a rich bar on stderr, the same columns everywhere
(what runs, the bar, done of total, time spent, time left, a free text such as the loss parts).
Training, evaluation and colorizing use it; stdout stays free for results.
"""

from __future__ import annotations

from typing import Any


class _Hidden:
    """What :func:`progress_bar` returns when nothing is to be shown: the same calls, no output."""

    def __enter__(self) -> _Hidden:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def progress_bar(enabled: bool = True, console: Any = None) -> Any:
    """A context manager with rich's ``add_task(description, total=..., parts="")`` and
    ``update(task, advance=..., parts=...)``; ``console`` replaces the stderr console (tests)."""
    if not enabled:
        return _Hidden()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[parts]}"),
        console=console or Console(stderr=True),
    )
