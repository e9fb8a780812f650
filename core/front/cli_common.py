"""What every ``colorkit`` command shares: one-line errors with their exit codes and the registry
(with the extra plugins tests pass through the command context). The command modules import
this, and :mod:`colorkit.front.cli` attaches them to the app: no module imports the app back.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import typer

from colorkit.kernel.errors import ColorkitError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
            text = " ".join(str(exc).split())[:300]
            fail(f"{type(exc).__name__}: {text or 'no message'} (unexpected; rerun with COLORKIT_DEBUG=1 "
                 "for the traceback)", 1)

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
