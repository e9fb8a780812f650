"""What every ``colorkit`` command shares: one-line errors with their exit codes and the registry
(with the extra plugins tests pass through the command context). The command modules import
this, and :mod:`colorkit.front.cli` attaches them to the app: no module imports the app back.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import typer

from colorkit.kernel.errors import ColorkitError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ColorkitError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

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
