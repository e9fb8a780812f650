"""Building and initialising the components of an experiment: generator, discriminator, loss,
dataset from the registry, checked to fit together, and He initialisation of the networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from colorkit.kernel.errors import ColorkitError, PluginError, UsageError, one_line
from colorkit.kernel.kinds import BY_NAME
from colorkit.kernel.experiment import Experiment
from colorkit.kernel.interfaces import KEEP_INIT, Dataset, Discriminator, Generator, Loss
from colorkit.kernel.registry import Registry


def he_init(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every conv and linear layer; batch norm to (1, 0).

    What the plugin initialised itself is left as it is: a component whose class sets
    ``initialises_itself``, and every module marked with :func:`colorkit.kernel.interfaces.keep_init`
    (with all it contains)."""
    if getattr(type(module), "initialises_itself", False):
        return
    kept = [m for m in module.modules() if getattr(m, KEEP_INIT, False)]
    inside_kept = {id(x) for k in kept for x in k.modules()}
    for m in module.modules():
        if id(m) in inside_kept:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # A parametrised weight (spectral norm) is computed: initialise what it is computed from.
            weight = (m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight")
                      else m.weight)
            nn.init.kaiming_normal_(weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class Components:
    """The built components of an experiment."""

    gen: Generator
    disc: Discriminator | None
    loss: Loss
    dataset: Dataset
    plugins: dict[str, Any] = field(default_factory=dict)


def build_components(registry: Registry, exp: Experiment) -> Components:
    """Build generator, discriminator, loss and dataset from the registry (:func:`check_fit`
    checks that they fit together)."""
    plugins: dict[str, Any] = {}

    def build(kind: str, spec: Any) -> Any:
        comp = registry.get(kind, spec.name)
        plugins[kind] = {"name": comp.name, "package": comp.package, "version": comp.version}
        try:
            return comp.build(spec.options)
        except ColorkitError:
            raise
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{kind} '{spec.name}' (package {comp.package}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a plugin's own failure, named with its package
            raise PluginError(f"{kind} '{spec.name}' from package {comp.package} {comp.version} failed to build: "
                              f"{one_line(exc, first_line=True)}") from exc

    gen = build("generator", exp.gen)
    disc = build("discriminator", exp.disc) if exp.disc else None
    loss = build("loss", exp.loss)
    dataset = build("dataset", exp.dataset)
    return Components(gen, disc, loss, dataset, plugins)


def component_name(c: Components, kind: str) -> str:
    """How errors name a component: its registered name, else its class name (hand-built)."""
    obj = getattr(c, str(BY_NAME[kind].config_key))  # Components holds each under its experiment key
    return str((c.plugins.get(kind) or {}).get("name") or type(obj).__name__)


def check_fit(c: Components) -> None:
    """The networks are colorkit's and the generator takes the dataset's images (one line if not)."""
    for obj, kind, base in ((c.gen, "generator", Generator), (c.disc, "discriminator", Discriminator)):
        if obj is not None and not isinstance(obj, base):
            package = (c.plugins.get(kind) or {}).get("package", "the caller")
            raise UsageError(f"{kind} '{component_name(c, kind)}' from {package} is not a colorkit {base.__name__}")
    if c.loss.trains_on != "colour" and getattr(c.gen, "training_output", "colour") != c.loss.trains_on:
        raise UsageError(f"loss '{component_name(c, 'loss')}' trains on {c.loss.trains_on} but generator "
                         f"'{component_name(c, 'generator')}' gives {getattr(c.gen, 'training_output', 'colour')} "
                         f"in training: choose a generator (or its output option) that gives {c.loss.trains_on}")
    size = c.dataset.size
    try:
        c.gen.check_input_size(size, size)
    except ValueError as exc:
        raise UsageError(f"generator '{component_name(c, 'generator')}' cannot take {component_name(c, 'dataset')} "
                         f"images at {size} px: {exc}") from None


def split_target(gen: Generator, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition ``l`` and the target in the generator's output space, from normalised Lab."""
    l = lab[:, :1]  # noqa: E741
    return l, (lab[:, 1:] if gen.output_space == "ab" else lab)
