"""The plugin hooks.

Each hook receives a ``register`` callable; a plugin calls it once per component it provides::

    @colorkit.hookimpl
    def register_generators(register):
        register("unet", UNet, options=UNetOptions, description="the paper's U-Net")

``register(name, factory, options=NoOptions, description="")``: ``factory`` is called with one
argument, an instance of the ``options`` dataclass, and returns the component. It may be given
as a ``"module:attr"`` string (with a description): the module is then imported only when the
component is built, so a plugin module that holds only options and registrations keeps
``colorkit list`` from importing torch (the built-in plugins do this). Built-in plugins
use exactly these hooks. Pretrained models have a hook of their own, :func:`register_models`.
Which kind of component each hook registers, with its option prefix and its interface, is declared
once, in :mod:`colorkit.kernel.kinds`.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

hookspec = pluggy.HookspecMarker("colorkit")


class Register(Protocol):
    def __call__(
        self, name: str, factory: object, *, options: type | None = None, description: str = ""
    ) -> None: ...


@hookspec
def register_generators(register: Register) -> None:
    """Register generators: ``nn.Module`` s mapping normalised L to colour.

    :param register: call ``register(name, factory, options=..., description=...)`` for each;
        the factory returns a :class:`colorkit.kernel.interfaces.Generator`.
    """


@hookspec
def register_discriminators(register: Register) -> None:
    """Register discriminators: ``nn.Module`` s scoring (L, L*a*b*) pairs with logits.

    :param register: as for :func:`register_generators`; the factory returns a
        :class:`colorkit.kernel.interfaces.Discriminator`.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register training objectives.

    :param register: as for :func:`register_generators`; the factory returns a
        :class:`colorkit.kernel.interfaces.Loss`.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets of colour images.

    :param register: as for :func:`register_generators`; the factory returns a
        :class:`colorkit.kernel.interfaces.Dataset`. Options named ``root``, ``size`` and ``limit`` are
        filled from ``--data-root`` and the matching ``--set dataset.KEY=VALUE``.
    """


class ModelRegister(Protocol):
    def __call__(
        self, name: str, weights: object, *, sha256: str, card: object = "", description: str = ""
    ) -> None: ...


@hookspec
def register_models(register: ModelRegister) -> None:
    """Register pretrained models (see :mod:`colorkit.kernel.models`).

    :param register: call ``register(name, weights, sha256=..., card=..., description=...)``
        for each: ``weights`` is the path of a colorkit model file (``colorkit export RUN
        --format model``) or a function returning it, ``sha256`` its hex digest, ``card`` the
        model card (Markdown text or a path).
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    :param register: as for :func:`register_generators`; the factory returns a fresh
        :class:`colorkit.kernel.interfaces.Metric` each time it is called.
    """
