"""What every ``colorkit`` command shares: one-line errors with their exit codes (the command
line's own usage errors too, through :class:`OneLineGroup`) and the registry (with the extra
plugins tests pass through the command context). The command modules import this, and
:mod:`colorkit.front.cli` attaches them to the app: no module imports the app back.
"""

from __future__ import annotations

import contextlib
import functools
import os
import unicodedata
from collections.abc import Iterator
from typing import Any, Callable, TypeVar

import typer
from typer.core import TyperGroup

from colorkit.engine.threads import MAX_DEFAULT_THREADS
from colorkit.kernel.errors import ColorkitError, one_line

try:  # typer 0.2x ships its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer, on click
    from click.exceptions import ClickException  # type: ignore[no-redef]

F = TypeVar("F", bound=Callable[..., Any])


def printable(text: str) -> str:
    """``text`` with each control character (newline, carriage return, escape ...), Unicode line
    or paragraph separator and undecodable byte of a file name written as its Python escape
    (``\\n``, ``\\udcff``): a name cannot break a message into lines, forge an ``error:`` line,
    move the cursor or fail to print."""
    return "".join(repr(ch)[1:-1] if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch
                   for ch in text)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: MESSAGE`` on one line (control characters escaped) and exit with ``code``."""
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def usage_errors_on_one_line() -> Iterator[None]:
    """The command line's own usage errors (an unknown option or command, a bad value, a missing
    argument) as one ``error:`` line with their exit code (2), not a boxed panel."""
    try:
        yield
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # ``colorkit`` alone: its help is the answer
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (try '{ctx.command_path} --help')" if ctx is not None else ""
        fail(exc.format_message().rstrip(".") + hint, exc.exit_code)


class OneLineGroup(TyperGroup):
    """The ``colorkit`` app's command group: usage errors of the group and of every subcommand
    (parsed inside :meth:`invoke`) print one line (:func:`usage_errors_on_one_line`)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with usage_errors_on_one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with usage_errors_on_one_line():
            return super().invoke(ctx)

    def get_params(self, ctx: Any) -> list[Any]:
        return flags_without_type(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            flags_without_type(command.get_params(ctx))
        return command


def flags_without_type(params: list[Any]) -> list[Any]:
    """Give each flag (``--quiet``, ``--help``) an empty metavar: typer's help would otherwise show
    its type (``-q <bool>``) as if it took a value."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


THREADS_HELP = ("CPU threads for the model and the image work (default: OMP_NUM_THREADS when set, else the CPUs this "
                f"process may use that the 1-minute load average leaves free, 1 to {MAX_DEFAULT_THREADS}: on a busy "
                "machine, more threads than free cores run several times slower).")


def debugging() -> bool:
    """``COLORKIT_DEBUG=1``: unexpected failures show their traceback."""
    return os.environ.get("COLORKIT_DEBUG", "").strip() not in ("", "0")


def handle_errors(fn: F) -> F:
    """User mistakes and known failures (:class:`ColorkitError`) print one line with their exit
    code; any other exception prints one line too and exits 1 (its traceback with
    ``COLORKIT_DEBUG=1``)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ColorkitError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own exits
            raise
        except Exception as exc:  # noqa: BLE001 - the one place unexpected failures are reported
            if debugging():
                raise
            fail(f"{one_line(exc)} (unexpected; rerun with COLORKIT_DEBUG=1 for the traceback)", 1)

    return wrapper  # type: ignore[return-value]


def get_registry(ctx: typer.Context | None = None) -> Any:
    """A fresh registry; tests pass extra plugin objects as ``obj={"plugins": [...]}``."""
    from colorkit.kernel.registry import build_registry

    extra = []
    if ctx is not None:
        root = ctx.find_root()
        if isinstance(root.obj, dict):
            extra = list(root.obj.get("plugins", []))
    return build_registry(extra_plugins=extra)
