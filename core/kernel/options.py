"""Typed component options.

A plugin declares its options as a dataclass; values from YAML files, ``--set KEY=VALUE`` and
Python calls are converted to the declared types here, and anything unknown or ill-typed is
rejected with a message naming the key. Strings are never passed through unchecked, and YAML 1.1
quirks (``1e-4`` read as a string) do not matter because conversion follows the declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from typing import Any, Literal, get_args, get_origin

from colorkit.kernel.errors import OptionError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
#: How messages quote a value: bounded in length and depth, whatever the value (a checkpoint's
#: nested lists, a megabyte string).
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80


class _NotFinite(OptionError):
    """A float option given NaN or an infinity: the message stands, whatever else the type allows."""


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a component that takes none."""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp``; raise :class:`OptionError` naming ``where``."""
    origin = get_origin(tp)
    bad = OptionError(f"option '{where}': {_SHOWN.repr(value)} is not a valid {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        members = get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in members:
                return None
        for member in members:
            if member is type(None):
                continue
            try:
                return convert(value, member, where)
            except _NotFinite:
                raise
            except OptionError:
                continue
        raise bad
    if origin is Literal:
        choices = get_args(tp)
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value.strip()):
                return choice
        raise OptionError(
            f"option '{where}': {_SHOWN.repr(value)} is not one of {', '.join(repr(c) for c in choices)}"
        )
    if origin in (list, tuple):
        args = get_args(tp)
        item_tp = args[0] if args else str
        if isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise bad
        items = [convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                return int(text)
            except ValueError:
                try:
                    as_float = float(text)
                except ValueError:
                    raise bad from None
                if as_float.is_integer():
                    return int(as_float)
        raise bad
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise bad
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (ValueError, OverflowError):
            raise bad from None
        if not math.isfinite(number):
            raise _NotFinite(f"option '{where}': {_SHOWN.repr(value)} is not a finite number; give one")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if tp is Any:
        return value
    raise OptionError(f"option '{where}': unsupported option type {_type_name(tp)}")


def option_fields(options_cls: type) -> dict[str, dataclasses.Field]:
    """The fields of an options dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(options_cls)}


def build_options(options_cls: type, values: dict[str, Any] | None, prefix: str) -> Any:
    """Instantiate ``options_cls`` from ``values``, converting each to its declared type.

    :param options_cls: a dataclass whose annotated fields are the options.
    :param values: raw values (from YAML, the command line or Python).
    :param prefix: the key prefix used in messages, e.g. ``gen`` for ``gen.base``.
    """
    values = dict(values or {})
    if not dataclasses.is_dataclass(options_cls):
        raise TypeError(f"options class {options_cls!r} must be a dataclass")
    hints = typing.get_type_hints(options_cls)
    fields = option_fields(options_cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        parts = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(fields), n=1)
            parts.append(f"'{prefix}.{key}'" + (f" (did you mean '{prefix}.{close[0]}'?)" if close else ""))
        known = ", ".join(fields) or "none"
        raise OptionError(f"unknown option {', '.join(parts)}; known options: {known}")
    kwargs = {k: convert(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    try:
        return options_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"options for '{prefix}': {exc}") from None


def options_to_dict(options: Any) -> dict[str, Any]:
    """A plain, YAML-serialisable dict of an options instance."""
    out = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def describe_options(options_cls: type) -> list[dict[str, Any]]:
    """Name, type, default and help text of each option, for ``colorkit list`` and docs."""
    hints = typing.get_type_hints(options_cls)
    rows = []
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        rows.append(
            {
                "name": f.name,
                "type": _type_name(hints[f.name]),
                "default": list(default) if isinstance(default, tuple) else default,
                "help": f.metadata.get("help", ""),
            }
        )
    return rows


def opt(default: Any, help: str) -> Any:  # noqa: A002 - mirrors typer/argparse
    """A dataclass field with a help text: ``base: int = opt(64, "channels of the first unit")``."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
