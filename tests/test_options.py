"""Typed component options: conversion by declared type, unknown and ill-typed keys rejected."""

from dataclasses import dataclass
from typing import Literal

import pytest

from colorkit.kernel.errors import OptionError
from colorkit.kernel.options import build_options, describe_options, opt


@dataclass(frozen=True)
class Opts:
    base: int = opt(64, "channels")
    lr: float = opt(1e-3, "rate")
    act: Literal["relu", "leaky_relu"] = opt("relu", "activation")
    flag: bool = opt(False, "a switch")
    limit: int | None = opt(None, "optional count")
    widths: tuple[int, ...] = opt((8, 16), "per-level widths")


def test_strings_convert_to_declared_types():
    o = build_options(Opts, {"base": "32", "lr": "1e-4", "act": "leaky_relu", "flag": "true",
                             "limit": "none", "widths": "4,8,16"}, "gen")
    assert o == Opts(base=32, lr=1e-4, act="leaky_relu", flag=True, limit=None, widths=(4, 8, 16))


def test_yaml_values_convert_too():
    o = build_options(Opts, {"base": 16, "lr": 2, "flag": 0, "limit": 7, "widths": [1, 2]}, "gen")
    assert o.lr == 2.0 and isinstance(o.lr, float) and o.flag is False and o.limit == 7 and o.widths == (1, 2)


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(OptionError, match=r"unknown option 'gen.bse' \(did you mean 'gen.base'\?\)"):
        build_options(Opts, {"bse": 3}, "gen")


@pytest.mark.parametrize(
    "key,value,fragment",
    [("base", "abc", "gen.base"), ("base", 1.5, "gen.base"), ("base", True, "gen.base"),
     ("lr", "fast", "gen.lr"), ("act", "tanh", "'relu', 'leaky_relu'"), ("flag", "maybe", "gen.flag"),
     ("widths", "1,x", "gen.widths[1]")],
)
def test_ill_typed_values_are_rejected_naming_the_key(key, value, fragment):
    with pytest.raises(OptionError) as info:
        build_options(Opts, {key: value}, "gen")
    assert fragment in str(info.value)


def test_describe_options_lists_types_defaults_and_help():
    rows = {r["name"]: r for r in describe_options(Opts)}
    assert rows["base"] == {"name": "base", "type": "int", "default": 64, "help": "channels"}
    assert rows["act"]["type"] == "'relu' | 'leaky_relu'"
    assert rows["widths"]["default"] == [8, 16]


def test_validation_in_post_init_becomes_an_option_error():
    from colorkit.plugins.unet import UNetOptions

    with pytest.raises(OptionError, match="gen.depth"):
        build_options(UNetOptions, {"depth": 0}, "gen")
