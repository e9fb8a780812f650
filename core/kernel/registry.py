"""The plugin registry: a fresh pluggy manager per call, never a global filled at import time.

``build_registry()`` registers the built-in plugin modules listed in ``registry.yaml`` and then
the ``colorkit`` entry-point group of installed packages, through the same hooks. Environment:

* ``COLORKIT_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins (built-ins only);
* ``COLORKIT_PLUGINS=a,b``: load only the entry-point plugins whose entry-point name or
  distribution name is listed.

A third-party plugin that fails to import or to register is recorded in ``Registry.failed`` and
shown by ``colorkit list``; everything else keeps working. Two plugins registering one name is
an error naming both packages.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata as md
import importlib.resources
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pluggy
import yaml

from colorkit.kernel import hookspecs
from colorkit.kernel.errors import PluginError, UnknownNameError, one_line
from colorkit.kernel.kinds import BY_NAME, COMPONENT_KINDS
from colorkit.kernel.models import ModelEntry
from colorkit.kernel.options import NoOptions, build_options

ENTRY_POINT_GROUP = "colorkit"
DISABLE_ENV = "COLORKIT_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_ENV = "COLORKIT_PLUGINS"

#: kind -> hook name, from :data:`colorkit.kernel.kinds.COMPONENT_KINDS`, in the order
#: ``colorkit list`` prints.
KINDS: dict[str, str] = {kind.name: kind.hook for kind in COMPONENT_KINDS}


@dataclasses.dataclass(frozen=True)
class Component:
    """One registered component: how to build it and where it came from."""

    kind: str
    name: str
    #: The factory, or a ``"module:attr"`` reference to it, imported on first use (so that
    #: ``colorkit list`` imports no network code).
    factory: Callable[[Any], Any] | str
    options: type
    description: str
    plugin: str
    package: str
    version: str

    def make_options(self, values: dict[str, Any] | None = None) -> Any:
        """Validated options for this component (unknown or ill-typed keys are rejected)."""
        return build_options(self.options, values, BY_NAME[self.kind].prefix)

    def load(self) -> Callable[[Any], Any]:
        """The factory, imported first when it was registered as a ``"module:attr"`` reference
        (a class is then checked against its interface, as at registration)."""
        if not isinstance(self.factory, str):
            return self.factory
        module, _, attr = self.factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"{self.kind} '{self.name}' from package {self.package} {self.version}: cannot import "
                              f"{self.factory} ({one_line(exc, first_line=True)})") from None
        check_interface(self.kind, self.name, factory, self.plugin)
        return factory

    def build(self, values: dict[str, Any] | Any | None = None) -> Any:
        """Build the component from raw option values (or an options instance)."""
        opts = values if isinstance(values, self.options) else self.make_options(values)
        factory = self.load()
        built = factory(opts)
        if not isinstance(factory, type):
            check_interface(self.kind, self.name, type(built), self.plugin)
        return built


@dataclasses.dataclass(frozen=True)
class FailedPlugin:
    """A plugin that could not be loaded or registered; ``error`` is one line."""

    plugin: str
    package: str
    error: str


def registry_path() -> Path:
    """The ``registry.yaml`` shipped inside the installed package."""
    return Path(str(importlib.resources.files("colorkit").joinpath("registry.yaml")))


def read_registry_file(path: Path | None = None) -> dict[str, Any]:
    path = path or registry_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PluginError(f"{path}: registry file not found; reinstall colorkit") from None
    except yaml.YAMLError as exc:
        raise PluginError(f"{path}: not valid YAML ({one_line(exc, first_line=True)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("plugins", []), list):
        raise PluginError(f"{path}: expected a mapping with a 'plugins' list")
    return data


def _package_of(obj: object) -> tuple[str, str]:
    """Best-effort (distribution, version) of a plugin object registered directly."""
    module = getattr(obj, "__module__", None) if not hasattr(obj, "__spec__") else obj.__name__  # type: ignore[attr-defined]
    top = (module or "").split(".")[0]
    if top:
        dists = md.packages_distributions().get(top, [])
        if dists:
            return dists[0], md.version(dists[0])
    return f"(local {module or type(obj).__name__})", ""


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, presets: dict[str, Any],
                 defaults: dict[str, Any] | None = None) -> None:
        self.pm = pm
        self.presets = presets
        self.defaults = dict(defaults or {})
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self.models: dict[str, ModelEntry] = {}
        self.failed: list[FailedPlugin] = []
        self._info: dict[str, tuple[str, str]] = {}

    # -- lookup -----------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``, or a one-line error with the closest names."""
        if kind not in KINDS:
            raise UnknownNameError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
        found = self.components[kind].get(name)
        if found is not None:
            return found
        names = self.names(kind)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        msg = f"unknown {kind} '{name}'"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" (available: {', '.join(names) or 'none'})"
        if self.failed:
            msg += "; plugins that failed to load: " + "; ".join(
                f"{f.plugin} from {f.package}: {f.error}" for f in self.failed
            )
        raise UnknownNameError(msg)

    def build(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        return self.get(kind, name).build(options)

    def preset(self, name: str) -> dict[str, Any]:
        if name in self.presets:
            return self.presets[name]
        close = difflib.get_close_matches(name, list(self.presets), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown preset '{name}'{hint} (available: {', '.join(sorted(self.presets)) or 'none'})"
        )

    def __iter__(self):
        for kind in KINDS:
            for name in self.names(kind):
                yield self.components[kind][name]

    # -- loading ----------------------------------------------------------------------------
    def add_plugin(self, plugin: object, name: str, package: str, version: str, *, builtin: bool = False) -> bool:
        """Register a plugin of ``package``; a third-party one that fails goes to ``failed``."""
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break colorkit
            if builtin:
                raise
            self.failed.append(FailedPlugin(name, package, one_line(exc, first_line=True)))
            return False
        self._info[name] = (package, version)
        return True

    def _check_pending(self, builtin: set[str]) -> None:
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                if name in builtin:
                    raise PluginError(f"built-in plugin {name}: {exc}") from None
                package, _ = self._info.get(name, ("?", ""))
                self.pm.unregister(exc.plugin)
                self.failed.append(FailedPlugin(name, package, one_line(exc, first_line=True)))

    def collect(self, builtin: set[str]) -> None:
        """Once every plugin is added: check and call their hooks (``builtin`` plugins raise)."""
        self._check_pending(builtin)
        for kind in COMPONENT_KINDS:
            for comp in self._call_hook(kind.hook, self._component_register(kind.name), builtin):
                self._add_unique(self.components[kind.name], kind.name, comp)
        for entry in self._call_hook("register_models", self._model_register(), builtin):
            self._add_unique(self.models, "model", entry)

    def _call_hook(self, hook_name: str, make: Callable[[list[Any], Any], Callable[..., None]],
                   builtin: set[str]) -> list[Any]:
        """Call a hook with, for each implementation, a ``register`` made by ``make`` that credits
        what it registers to that implementation's plugin; returns what was registered. pluggy
        calls them (so ``tryfirst``, ``trylast`` and wrappers apply), through :func:`_crediting`.
        A third-party plugin that raises is recorded in ``failed`` and the hook is called again
        without it (registering has no side effects); a built-in one raises."""
        excluded: list[object] = []
        while True:
            caller = self.pm.subset_hook_caller(hook_name, excluded) if excluded else getattr(self.pm.hook, hook_name)
            added: list[Any] = []
            raised: list[tuple[BaseException, Any]] = []
            try:
                _crediting(hook_name, caller.get_hookimpls(), lambda impl: make(added, impl), raised)()
                return added
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break colorkit
                impl = next((i for e, i in raised if e is exc), None)
                if impl is None or impl.plugin_name in builtin:
                    raise
                package, _ = self._info.get(impl.plugin_name, ("?", ""))
                self.failed.append(FailedPlugin(impl.plugin_name, package, one_line(exc, first_line=True)))
                excluded.append(impl.plugin)

    def _component_register(self, kind: str) -> Callable[..., Callable[..., None]]:
        def make(added: list[Component], impl: Any) -> Callable[..., None]:
            def register(name: str, factory: Callable[[Any], Any], *, options: type | None = None,
                         description: str = "") -> None:
                package, version = self._info.get(impl.plugin_name, ("?", ""))
                if not isinstance(name, str) or not name:
                    raise ValueError(f"a {kind} name must be a non-empty string, got {name!r}")
                opts = options or NoOptions
                if not dataclasses.is_dataclass(opts):
                    raise TypeError(f"{kind} '{name}': options must be a dataclass, got {opts!r}")
                if isinstance(factory, str):
                    if not re.fullmatch(r"[\w.]+:\w+", factory) or not description:
                        raise ValueError(f"{kind} '{name}': a factory given by reference must be 'module:attr' "
                                         f"and come with a description, got {factory!r}")
                else:
                    check_interface(kind, name, factory, impl.plugin_name)
                doc = description or (getattr(factory, "__doc__", "") or "").strip().split("\n")[0]
                added.append(Component(kind, name, factory, opts, doc, impl.plugin_name, package, version))

            return register

        return make

    def _model_register(self) -> Callable[..., Callable[..., None]]:
        def make(added: list[ModelEntry], impl: Any) -> Callable[..., None]:
            def register(name: str, weights: str | Path | Callable[[], str | Path], *, sha256: str,
                         card: str | Path = "", description: str = "") -> None:
                package, version = self._info.get(impl.plugin_name, ("?", ""))
                if not isinstance(name, str) or not name:
                    raise ValueError(f"a model name must be a non-empty string, got {name!r}")
                if not isinstance(sha256, str) or len(sha256) != 64:
                    raise ValueError(f"model '{name}': sha256 must be the 64-character hex digest of its weights file")
                source = weights if callable(weights) else Path(weights)
                added.append(ModelEntry(name, source, sha256.lower(), card, description, impl.plugin_name,
                                        package, version))

            return register

        return make

    @staticmethod
    def _add_unique(table: dict[str, Any], what: str, item: Any) -> None:
        other = table.get(item.name)
        if other is not None:
            raise PluginError(
                f"{what} '{item.name}' is registered twice: by package {other.package} (plugin {other.plugin}) "
                f"and by package {item.package} (plugin {item.plugin}); uninstall one, or limit plugins with "
                f"{ALLOW_ENV}"
            )
        table[item.name] = item


#: Marks the stand-ins :func:`_crediting` registers (colorkit's project name, as for plugins).
_stand_in_marker = pluggy.HookimplMarker("colorkit")


def _crediting(hook_name: str, impls: list[Any], register_for: Callable[[Any], Callable[..., None]],
               raised: list[tuple[BaseException, Any]]) -> Callable[[], Any]:
    """A caller of hook ``hook_name`` that calls each of ``impls`` (its implementations, in the
    order pluggy keeps them) with the ``register`` that ``register_for(impl)`` makes. Each is
    registered, in that order, as a stand-in plugin of a throwaway plugin manager, so pluggy calls
    them as it would the originals (order, wrappers) while each stand-in knows its implementation.
    An exception is put in ``raised`` with the first implementation it left (the one that raised)."""
    pm = pluggy.PluginManager("colorkit")
    for impl in impls:
        name = None if pm.has_plugin(impl.plugin_name) else impl.plugin_name  # pluggy's warnings name it
        pm.register(SimpleNamespace(**{hook_name: _stand_in(impl, register_for(impl), raised)}), name=name)
    return getattr(pm.hook, hook_name, lambda: [])


def _stand_in(impl: Any, register: Callable[..., None], raised: list[tuple[BaseException, Any]]) -> Any:
    """A hook implementation that calls ``impl`` with ``register`` as pluggy would (``impl`` may take
    it positionally, as a keyword with a default, or not at all) and notes in ``raised`` an exception
    that leaves ``impl``, unless an implementation ``impl`` wraps noted it first."""
    args = [register] * len(impl.argnames)
    kwargs = {"register": register} if "register" in impl.kwargnames else {}

    def note(exc: BaseException) -> None:
        if all(e is not exc for e, _ in raised):
            raised.append((exc, impl))

    def call() -> Any:
        try:
            return impl.function(*args, **kwargs)
        except Exception as exc:
            note(exc)
            raise

    def wrap() -> Any:
        try:
            return (yield from impl.function(*args, **kwargs))
        except Exception as exc:
            note(exc)
            raise

    wraps = bool(impl.wrapper or impl.hookwrapper)
    return _stand_in_marker(wrapper=impl.wrapper, hookwrapper=impl.hookwrapper)(wrap if wraps else call)


def check_interface(kind: str, name: str, factory: Any, plugin: str) -> None:
    """Refuse a component class that leaves a method of its interface unimplemented, naming the
    plugin and the method (``abc`` does not enforce this on ``nn.Module`` interfaces). A factory
    that is a function is checked when it builds (:meth:`Component.build`)."""
    if not isinstance(factory, type):
        return
    base = BY_NAME[kind].interface_class()
    if not issubclass(factory, base):
        return
    missing = [attr for attr in dir(base) if getattr(getattr(base, attr, None), "__isabstractmethod__", False)
               and getattr(getattr(factory, attr, None), "__isabstractmethod__", False)]
    if missing:
        raise PluginError(f"plugin {plugin}: {kind} '{name}' ({factory.__name__}) does not implement "
                          f"{', '.join(m + '()' for m in missing)} of colorkit's {base.__name__}; define it")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def build_registry(
    *,
    autoload: bool | None = None,
    extra_plugins: Iterable[object] = (),
    registry_file: Path | None = None,
) -> Registry:
    """Build a fresh registry.

    :param autoload: load the ``colorkit`` entry-point group; ``None`` means "unless
        ``COLORKIT_DISABLE_PLUGIN_AUTOLOAD`` is set".
    :param extra_plugins: plugin objects (modules or instances with ``@hookimpl`` methods)
        registered after everything else, as tests and notebooks do.
    :param registry_file: another ``registry.yaml`` (default: the packaged one).
    """
    data = read_registry_file(registry_file)
    pm = pluggy.PluginManager("colorkit")
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm, dict(data.get("presets") or {}), data.get("defaults") or {})
    from colorkit import __version__

    builtin: set[str] = set()
    for module_name in data.get("plugins", []):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginError(f"built-in plugin {module_name} listed in registry.yaml: "
                              f"{one_line(exc, first_line=True)}") from exc
        reg.add_plugin(module, module_name, "colorkit", __version__, builtin=True)
        builtin.add(module_name)

    if autoload is None:
        autoload = not _env_flag(DISABLE_ENV)
    if autoload:
        allow = {a.strip() for a in os.environ.get(ALLOW_ENV, "").split(",") if a.strip()}
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else ""
            if allow and ep.name not in allow and dist not in allow:
                continue
            label = f"{dist}:{ep.name}"
            if pm.has_plugin(label):
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - recorded and shown, never swallowed
                reg.failed.append(FailedPlugin(label, dist, one_line(exc, first_line=True)))
                continue
            reg.add_plugin(plugin, label, dist, version)

    for plugin in extra_plugins:
        package, version = _package_of(plugin)
        label = getattr(plugin, "__name__", None) or f"{type(plugin).__module__}.{type(plugin).__name__}"
        if pm.has_plugin(label):
            label = f"{label}#{id(plugin)}"
        reg.add_plugin(plugin, label, package, version)

    reg.collect(builtin)
    return reg
