"""Errors that the command line prints as one line (no traceback)."""

from __future__ import annotations


class ColorkitError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with ``exit_code``."""

    exit_code = 1


class UsageError(ColorkitError):
    """Bad input from the user: an unknown name, a bad option, a missing file. Exit code 2."""

    exit_code = 2


class UnknownNameError(UsageError):
    """A component name that no loaded plugin registers."""


class OptionError(UsageError):
    """An unknown or ill-typed component or training option."""


class PluginError(ColorkitError):
    """A plugin failed to load, or two plugins claim one name."""


class DiskFullError(ColorkitError, OSError):
    """A write failed for lack of space (the previous file is kept). Exit code 1; an ``OSError``
    too, so code that handles failed writes handles it."""


def one_line(exc: BaseException, limit: int = 300, *, first_line: bool = False) -> str:
    """``TypeName: message`` of an exception on one line, for quoting an exception colorkit did not
    raise itself inside one of its own messages: whitespace (newlines included) collapsed, or with
    ``first_line`` only the first line kept; cut at a word to about ``limit`` characters (``...``
    marks the cut)."""
    text = str(exc).strip()
    if first_line:
        text = text.splitlines()[0] if text else ""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
