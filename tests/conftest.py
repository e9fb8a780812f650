"""Shared fixtures: a throwaway plugin that registers a tiny generator."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import colorkit
from colorkit.kernel.interfaces import Generator
from colorkit.kernel.options import opt


@pytest.fixture(autouse=True)
def _no_entry_point_plugins_unless_asked(monkeypatch):
    """Tests see only the built-ins plus what they register, unless a test re-enables autoload,
    and no progress display unless they turn it on."""
    monkeypatch.setenv("COLORKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("COLORKIT_PLUGINS", raising=False)
    # No progress lines on stderr (subprocesses inherit it), so tests read only what they assert;
    # tests/test_progress.py turns the display back on.
    monkeypatch.setenv("COLORKIT_PROGRESS", "off")
    monkeypatch.delenv("COLORKIT_PROGRESS_PREFIX", raising=False)


@pytest.fixture(autouse=True)
def _each_test_sees_its_own_data_reports():
    """Data report lines print once per process; each test starts with none said."""
    from colorkit.plugins._decode import forget_said

    forget_said()


@dataclass(frozen=True)
class TinyOptions:
    width: int = opt(4, "hidden channels")


class TinyGenerator(Generator):
    """Two 3x3 convs: a throwaway generator for tests."""

    output_space = "ab"

    def __init__(self, options: TinyOptions) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, options.width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(options.width, 2, 3, padding=1), nn.Tanh())

    def forward(self, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
        return self.net(l)


class ThrowawayPlugin:
    """A plugin object registered for one test and gone afterwards (registries are fresh)."""

    @colorkit.hookimpl
    def register_generators(self, register):
        register("tiny", TinyGenerator, options=TinyOptions, description="throwaway test generator")


@pytest.fixture
def throwaway_plugin():
    return ThrowawayPlugin()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: one thread is as fast, and does not stall when other jobs share the CPUs.

    Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A run trained for two steps on 32 px crops with a tiny U-Net (shared: read it, never write it)."""
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.kernel.registry import build_registry
    from colorkit.engine.runs import train

    registry = build_registry(autoload=False)
    exp = experiment_from_sources(
        registry,
        cli={"gen": "unet", "disc": "conv", "loss": "ns_l1", "dataset": "samples", "metrics": ["mae"],
             "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "grid_rows": 2}},
        sets=["gen.base=8", "disc.base=8", "dataset.size=32", "dataset.crops_per_epoch=16", "dataset.eval_crops=8"],
    )
    out = tmp_path_factory.mktemp("eval") / "run"
    train(registry, exp, out, progress=False)
    assert (out / "checkpoints" / "last.pt").is_file()
    return out


@pytest.fixture
def every_update(monkeypatch):
    """Plain progress lines at every update: what a long job shows every 30 s, without waiting for it."""
    from colorkit.kernel.progress import EVERY_ENV, MODE_ENV, PREFIX_ENV

    monkeypatch.setenv(EVERY_ENV, "0")
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.delenv(PREFIX_ENV, raising=False)
