"""The five kinds of component, declared once: each kind's name, the hook that registers it, the
prefix of its options (``--set gen.base=32``), the experiment key that names one of it, and its
interface. The registry, experiments, ``colorkit list`` and the contract checks take every other
table of kinds from :data:`COMPONENT_KINDS`. Plain Python: importing it imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component."""

    #: The kind's name, as ``Registry.get(kind, name)`` and ``colorkit list KIND`` take it.
    name: str
    #: The hook of :mod:`colorkit.kernel.hookspecs` that registers components of this kind.
    hook: str
    #: The key prefix of its options in ``--set`` and in error messages (``gen.base``).
    prefix: str
    #: The experiment key (config files, ``config.yaml``) naming the one component of this kind
    #: an experiment has; ``None`` for metrics, which an experiment lists under ``metrics``.
    config_key: str | None
    #: The name of its interface class in :mod:`colorkit.kernel.interfaces`.
    interface: str

    @property
    def plural(self) -> str:
        """``generators``: what the hook registers, as ``colorkit list`` also takes it."""
        return self.hook.removeprefix("register_")

    def interface_class(self) -> type:
        """The interface class (importing :mod:`colorkit.kernel.interfaces`, and so torch)."""
        from colorkit.kernel import interfaces

        return getattr(interfaces, self.interface)


#: Every kind, in the order ``colorkit list`` prints them.
COMPONENT_KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("generator", "register_generators", "gen", "gen", "Generator"),
    ComponentKind("discriminator", "register_discriminators", "disc", "disc", "Discriminator"),
    ComponentKind("loss", "register_losses", "loss", "loss", "Loss"),
    ComponentKind("dataset", "register_datasets", "dataset", "dataset", "Dataset"),
    ComponentKind("metric", "register_metrics", "metric", None, "Metric"),
)

#: The kinds by name.
BY_NAME: dict[str, ComponentKind] = {k.name: k for k in COMPONENT_KINDS}
