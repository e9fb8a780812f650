"""The one progress display of colorkit, always on stderr, so stdout stays free for results
(``--json``, tables). Training, validation, evaluation, colorizing, ``bench`` and the datasets'
decoding use it; it lives in the kernel so that plugins can use it too.

* On a terminal: a rich bar, the same columns everywhere (what runs, the bar, the unit and done of
  total, time spent, time left, a free text such as the loss parts); on a narrow terminal the bar
  and then the free text give way, so the step and the time left always show.
* Anywhere else (``nohup``, CI, a cluster job, a pipe): one plain line per task every
  ``COLORKIT_PROGRESS_EVERY`` seconds (default 30; ``0``: at every update) with what runs, done of
  total, the rate in images/s, the time left and the free text, and a last line when the task ends
  (it alone reports the total reached; new text alone waits for the next line).

``COLORKIT_PROGRESS`` chooses: ``auto`` (the default: a bar on a terminal, plain lines elsewhere),
``bar``, ``plain`` or ``off``. :func:`progress_scope` silences every display opened inside it, the
datasets' decoding included (``-q``; ``train(progress=False)``). A display opened while another is
showing adds its tasks to that one and removes them when it closes (validation inside training).
``COLORKIT_PROGRESS_PREFIX`` starts every plain line and note (``bench`` sets it to each worker's
run name, so that the lines of runs trained side by side can be told apart).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from colorkit.kernel.errors import UsageError

MODE_ENV = "COLORKIT_PROGRESS"
EVERY_ENV = "COLORKIT_PROGRESS_EVERY"
PREFIX_ENV = "COLORKIT_PROGRESS_PREFIX"
#: a file of the report lines already printed by the processes that share it (bench workers):
#: a line in it is not printed again
SAID_ENV = "COLORKIT_SAID_FILE"
DEFAULT_EVERY = 30.0
MODES = ("auto", "bar", "plain", "off")

_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("colorkit_progress_on", default=True)
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("colorkit_progress_display", default=None)


def progress_mode() -> str:
    """``COLORKIT_PROGRESS``: auto, bar, plain or off (a one-line error for anything else)."""
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "auto"
    if mode not in MODES:
        raise UsageError(f"{MODE_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def report_every() -> float:
    """``COLORKIT_PROGRESS_EVERY``: seconds between two plain lines of one task (default 30)."""
    raw = os.environ.get(EVERY_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_EVERY
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f"{EVERY_ENV}={raw!r}: expected a number of seconds, e.g. 30 (0: a line at every update)")
    return seconds


def showing() -> bool:
    """Whether a display opened now would show anything (no :func:`progress_scope` silences it,
    ``COLORKIT_PROGRESS`` is not ``off``)."""
    return _ON.get() and progress_mode() != "off"


@contextlib.contextmanager
def progress_scope(enabled: bool = True) -> Iterator[None]:
    """Within it, every display stays hidden unless ``enabled`` (an outer silence is kept)."""
    token = _ON.set(_ON.get() and enabled)
    try:
        yield
    finally:
        _ON.reset(token)


def progress_note(text: str, enabled: bool = True, console: Any = None) -> None:
    """One line on stderr (e.g. where a run writes), shown when a display would be."""
    if not enabled or not showing():
        return
    text = os.environ.get(PREFIX_ENV, "") + text
    if console is not None:
        console.print(text, markup=False, highlight=False)
    else:
        print(text, file=sys.stderr, flush=True)


def progress_bar(enabled: bool = True, console: Any = None) -> Any:
    """A context manager with ``add_task(description, total=..., completed=0, parts="",
    unit="images", **fields)`` and ``update(task, advance=..., parts=..., images=...)``, as rich's
    Progress has. ``unit`` names what ``total`` counts; ``images`` (optional) is a running count of
    images when the unit is another (training's steps), for the rate. ``console`` replaces the
    stderr console (a rich ``Console``; its ``is_terminal`` then chooses the bar or plain lines)."""
    if not enabled or not showing():
        return _Hidden()
    active = _ACTIVE.get()
    if active is not None:
        return _Display(active.backend, nested=True)
    mode = progress_mode()
    if mode == "auto":
        terminal = console.is_terminal if console is not None else getattr(sys.stderr, "isatty", lambda: False)()
        mode = "bar" if terminal else "plain"
    return _Display(_RichBars(console) if mode == "bar" else _PlainLines(console, report_every()), nested=False)


def format_parts(values: dict[str, float], skip: tuple[str, ...] = ()) -> str:
    """Named numbers as a display's free text: ``d_total 1.412  g_total 29.18`` (4 significant
    digits; names in ``skip`` and values that are not finite are left out)."""
    return "  ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in skip and math.isfinite(v))


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


class _Display:
    """One display's handle: the outermost starts and stops its backend; a nested one only adds
    tasks to it and takes them away again when it closes."""

    def __init__(self, backend: Any, nested: bool) -> None:
        self.backend, self.nested = backend, nested
        self.tasks: list[Any] = []
        self.token: Any = None

    def __enter__(self) -> _Display:
        if not self.nested:
            self.backend.start()
            self.token = _ACTIVE.set(self)
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            for task in self.tasks:
                self.backend.finish(task, ok=exc_type is None, remove=self.nested)
        finally:
            if not self.nested:
                _ACTIVE.reset(self.token)
                self.backend.stop()

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> Any:
        fields.setdefault("parts", "")
        fields.setdefault("unit", "images")
        task = self.backend.add(description, total, completed, fields)
        self.tasks.append(task)
        return task

    def update(self, task: Any, advance: float = 0, **fields: Any) -> None:
        self.backend.update(task, advance, fields)


class _RichBars:
    """The terminal backend: rich's Progress, one row per task."""

    def __init__(self, console: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.table import Column

        # The unit, done of total, time spent and time left keep their width at any terminal
        # width; the bar and then the free text (the loss parts) give way, the text cut with "…".
        def fixed(**kwargs: Any) -> Column:
            return Column(no_wrap=True, **kwargs)

        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=fixed(overflow="ellipsis", max_width=32)),
            BarColumn(bar_width=None, table_column=Column(width=8, ratio=1)),
            TextColumn("{task.fields[unit]}", table_column=fixed()), MofNCompleteColumn(table_column=fixed()),
            TimeElapsedColumn(table_column=fixed()), TimeRemainingColumn(table_column=fixed()),
            TextColumn("{task.fields[parts]}", table_column=fixed(overflow="ellipsis", ratio=2)),
            console=console or Console(stderr=True), expand=True,
        )

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def add(self, description: str, total: float | None, completed: float, fields: dict[str, Any]) -> Any:
        return self.progress.add_task(description, total=total, completed=completed, **fields)

    def update(self, task: Any, advance: float, fields: dict[str, Any]) -> None:
        self.progress.update(task, advance=advance or None, **fields)

    def finish(self, task: Any, ok: bool, remove: bool) -> None:
        if remove:
            self.progress.remove_task(task)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    start: float
    first: float  # completed when the task was added (a resumed run starts past 0)
    first_images: float | None
    last_line: float = field(default=0.0)


class _PlainLines:
    """The backend off a terminal: a line per task every ``every`` seconds, and a last one."""

    def __init__(self, console: Any, every: float) -> None:
        self.console, self.every = console, every
        self.tasks: dict[int, _Task] = {}

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def add(self, description: str, total: float | None, completed: float, fields: dict[str, Any]) -> int:
        now = time.monotonic()
        key = max(self.tasks, default=-1) + 1
        self.tasks[key] = _Task(description, total, completed, dict(fields), now, completed, fields.get("images"), now)
        return key

    def update(self, task: int, advance: float, fields: dict[str, Any]) -> None:
        t = self.tasks.get(task)
        if t is None:
            return
        moved = bool(advance) or "completed" in fields  # (new text alone waits for the next line)
        if "completed" in fields:
            t.completed = fields.pop("completed")
        if "total" in fields:  # a run with a time budget refines its number of steps as it goes
            t.total = fields.pop("total")
        t.completed += advance or 0
        t.fields.update(fields)
        now = time.monotonic()
        if moved and now - t.last_line >= self.every and not (t.total and t.completed >= t.total):
            t.last_line = now  # (at the total, the last line, written when the task ends, says it)
            self._write(self._line(t, now, final=False))

    def finish(self, task: int, ok: bool, remove: bool) -> None:
        t = self.tasks.pop(task, None)
        if t is not None and ok:
            self._write(self._line(t, time.monotonic(), final=True))

    def _write(self, line: str) -> None:
        stream = self.console.file if self.console is not None else sys.stderr
        print(os.environ.get(PREFIX_ENV, "") + line, file=stream, flush=True)

    @staticmethod
    def _line(t: _Task, now: float, final: bool) -> str:
        """``[12:01:02] what: step 120/1000 (12%), 85.1 images/s, ETA 0:02:10, free text``."""
        unit = t.fields.get("unit", "images")
        seconds = max(now - t.start, 1e-9)
        done = f"{unit} {t.completed:,.0f}" + (f"/{t.total:,.0f} ({100 * t.completed / t.total:.0f}%)" if t.total else "")
        images = t.fields.get("images")
        if images is not None and t.first_images is not None:
            rate = f"{(images - t.first_images) / seconds:,.1f} images/s"
        else:
            rate = f"{(t.completed - t.first) / seconds:,.1f} {unit}/s"
        per_second = (t.completed - t.first) / seconds
        if final:
            timing = f"done in {_clock(now - t.start)}"
        elif t.total and per_second > 0:
            timing = f"ETA {_clock((t.total - t.completed) / per_second)}"
        else:
            timing = "ETA unknown"
        parts = str(t.fields.get("parts") or "")
        return f"[{time.strftime('%H:%M:%S')}] {t.description}: " + ", ".join(x for x in (done, rate, timing, parts) if x)


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
