"""Contract tests over every registered component: a new plugin is tested on arrival.

Entry-point plugins installed in the environment (for example the strided U-Net example) are
included: the registry here is built with autoload on.
"""

from __future__ import annotations

import pytest

from colorkit.kernel.registry import build_registry
from colorkit.kernel.testing import check_component


def _components():
    import os

    saved = os.environ.pop("COLORKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    try:
        reg = build_registry(autoload=True)
    finally:
        if saved is not None:
            os.environ["COLORKIT_DISABLE_PLUGIN_AUTOLOAD"] = saved
    return [pytest.param(c, id=f"{c.kind}:{c.name}") for c in reg]


@pytest.mark.parametrize("component", _components())
@pytest.mark.slow
def test_component_honours_its_contract(component, tmp_path):
    check_component(component, tmp_path)


def test_every_kind_has_a_builtin():
    kinds = {p.values[0].kind for p in _components()}
    assert {"generator", "discriminator", "loss", "dataset"} <= kinds
