"""The plugin registry: fresh managers, the same hooks for built-ins and others, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import colorkit
from colorkit.kernel.errors import PluginError, UnknownNameError
from colorkit.kernel.registry import KINDS, build_registry, registry_path


def test_installed_package_ships_registry_yaml():
    path = registry_path()
    assert path.is_file()
    assert path.parent == Path(colorkit.__file__).parent
    assert "colorkit.plugins.unet" in path.read_text()


def test_builtins_are_registered_through_the_hooks():
    reg = build_registry()
    assert {"unet"} <= set(reg.names("generator"))
    assert {"conv"} <= set(reg.names("discriminator"))
    assert {"ns_l1", "l2", "minimax_l1"} <= set(reg.names("loss"))
    assert {"samples"} <= set(reg.names("dataset"))
    unet = reg.get("generator", "unet")
    assert unet.package == "colorkit" and unet.plugin == "colorkit.plugins.unet"
    # Every built-in module is an ordinary pluggy plugin of the manager.
    assert reg.pm.has_plugin("colorkit.plugins.unet")
    assert all(kind in KINDS for kind in {c.kind for c in reg})


def test_each_call_builds_a_fresh_registry(throwaway_plugin):
    with_plugin = build_registry(extra_plugins=[throwaway_plugin])
    assert "tiny" in with_plugin.names("generator")
    assert "tiny" not in build_registry().names("generator")
    assert with_plugin.pm is not build_registry().pm


@pytest.mark.slow
def test_throwaway_plugin_builds_with_typed_options(throwaway_plugin):
    reg = build_registry(extra_plugins=[throwaway_plugin])
    gen = reg.build("generator", "tiny", {"width": "6"})
    assert gen.net[0].out_channels == 6


def test_two_plugins_with_one_name_is_an_error_naming_both():
    class Clash:
        @colorkit.hookimpl
        def register_generators(self, register):
            register("unet", object, description="a second unet")

    with pytest.raises(PluginError) as info:
        build_registry(extra_plugins=[Clash()])
    msg = str(info.value)
    assert "generator 'unet' is registered twice" in msg
    assert "package colorkit" in msg and "test_registry" in msg


def test_unknown_name_suggests_close_names():
    reg = build_registry()
    with pytest.raises(UnknownNameError) as info:
        reg.get("generator", "unte")
    assert "did you mean 'unet'" in str(info.value)
    assert "\n" not in str(info.value)


def test_misspelled_hook_in_a_third_party_plugin_is_reported_not_fatal():
    class Misspelled:
        @colorkit.hookimpl
        def register_generator(self, register):  # missing "s": no such hook
            register("x", object)

    reg = build_registry(extra_plugins=[Misspelled()])
    assert "unet" in reg.names("generator")
    assert len(reg.failed) == 1 and "register_generator" in reg.failed[0].error


@pytest.mark.slow
def test_plugin_whose_hook_raises_is_recorded_as_failed():
    class Broken:
        @colorkit.hookimpl
        def register_losses(self, register):
            raise RuntimeError("cannot find my weights")

    reg = build_registry(extra_plugins=[Broken()])
    assert reg.failed[0].error == "RuntimeError: cannot find my weights"
    with pytest.raises(UnknownNameError, match="failed to load: .*cannot find my weights"):
        reg.get("loss", "mine")


def test_options_must_be_a_dataclass():
    class BadOptions:
        @colorkit.hookimpl
        def register_generators(self, register):
            register("bad", object, options=dict)

    reg = build_registry(extra_plugins=[BadOptions()])
    assert "options must be a dataclass" in reg.failed[0].error


def test_disable_autoload_env_skips_entry_points(monkeypatch, tmp_path):
    # A fake installed distribution with a colorkit entry point, discovered through sys.path.
    pkg = tmp_path / "fake_ck_plugin.py"
    pkg.write_text(
        "import colorkit\n"
        "@colorkit.hookimpl\n"
        "def register_losses(register):\n"
        "    from colorkit.plugins.loss_functions import L2\n"
        "    register('fake_l2', L2, description='from an entry point')\n"
    )
    dist = tmp_path / "fake_ck_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-ck-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[colorkit]\nfake = fake_ck_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    monkeypatch.delenv("COLORKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    reg = build_registry()
    comp = reg.get("loss", "fake_l2")
    assert (comp.package, comp.version) == ("fake-ck-plugin", "1.0")

    monkeypatch.setenv("COLORKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fake_l2" not in build_registry().names("loss")
    assert "fake_l2" in build_registry(autoload=True).names("loss")


def test_presets_come_from_registry_yaml():
    reg = build_registry()
    assert {"table1-cifar10-unet", "table1-cifar10-gan", "table1-places365-gan"} <= set(reg.presets)
    with pytest.raises(UnknownNameError, match="did you mean 'table1-cifar10-gan'"):
        reg.preset("table1-cifar10-gna")


def test_a_bad_registry_file_is_named(tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text("plugins: [unclosed\n")
    with pytest.raises(PluginError, match=str(bad)):
        build_registry(registry_file=bad)


@pytest.mark.slow
def test_hooks_are_called_through_pluggy_so_wrappers_and_ordering_apply(throwaway_plugin):
    seen = []

    class Wrapper:
        @colorkit.hookimpl(wrapper=True)
        def register_generators(self, register):
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    class Early:
        @colorkit.hookimpl(tryfirst=True)
        def register_generators(self, register):
            seen.append("early")

    class Late:
        @colorkit.hookimpl(trylast=True)
        def register_generators(self, register):
            seen.append("late")

    reg = build_registry(autoload=False, extra_plugins=[Late(), throwaway_plugin, Wrapper(), Early()])
    assert seen == ["before", "early", "late", "after"]
    # what each plugin registers is still credited to it
    assert reg.get("generator", "tiny").plugin == reg.pm.get_name(throwaway_plugin)
    assert reg.get("generator", "unet").plugin == "colorkit.plugins.unet"


def test_a_component_class_missing_a_method_is_refused_naming_plugin_and_method():
    class NoForward(colorkit.Generator):
        """A generator that forgot its forward."""

    class NoScore(colorkit.Discriminator):
        """A discriminator that forgot its forward."""

    class Forgetful:
        @colorkit.hookimpl
        def register_generators(self, register):
            register("no_forward", NoForward)

        @colorkit.hookimpl
        def register_discriminators(self, register):
            register("built_later", lambda options: NoScore())

    reg = build_registry(autoload=False, extra_plugins=[Forgetful()])
    assert "no_forward" not in reg.names("generator")
    [failed] = [f for f in reg.failed if f.plugin.endswith("Forgetful")]
    assert "forward()" in failed.error and "Forgetful" in failed.error and "NoForward" in failed.error
    assert "\n" not in failed.error
    # a factory function is checked on what it builds
    with pytest.raises(PluginError, match=r"Forgetful: discriminator 'built_later' \(NoScore\) does not implement forward\(\)"):
        reg.build("discriminator", "built_later")
    # the built-in components all pass
    assert "unet" in reg.names("generator") and not [f for f in reg.failed if f.package == "colorkit"]


@pytest.mark.slow
def test_two_instances_of_one_plugin_class_are_each_credited_with_their_own_components():
    class Flat(colorkit.Generator):
        def forward(self, l):  # noqa: E741
            return l.new_zeros(l.shape[0], 2, *l.shape[2:])

    class Twin:
        def __init__(self, name):
            self.name = name

        @colorkit.hookimpl
        def register_generators(self, register):
            register(self.name, Flat)

    one, two = Twin("twin_one"), Twin("twin_two")
    reg = build_registry(autoload=False, extra_plugins=[one, two])
    assert reg.get("generator", "twin_one").plugin == reg.pm.get_name(one)
    assert reg.get("generator", "twin_two").plugin == reg.pm.get_name(two)
    assert reg.pm.get_name(one) != reg.pm.get_name(two)


@pytest.mark.slow
def test_old_style_wrappers_and_hooks_without_register_are_called_and_credited():
    class Flat(colorkit.Generator):
        def forward(self, l):  # noqa: E741
            return l.new_zeros(l.shape[0], 2, *l.shape[2:])

    seen = []

    class OldWrapper:
        @colorkit.hookimpl(hookwrapper=True)
        def register_generators(self, register):
            register("from_old_wrapper", Flat)
            outcome = yield
            seen.append(("after", outcome.get_result()))

    class NoArgument:
        @colorkit.hookimpl
        def register_generators(self):
            seen.append("called")

    class KeywordArgument:
        @colorkit.hookimpl
        def register_generators(self, register=None):
            register("by_keyword", Flat)

    plugins = [OldWrapper(), NoArgument(), KeywordArgument()]
    reg = build_registry(autoload=False, extra_plugins=plugins)
    assert seen == ["called", ("after", [])] and not reg.failed
    assert reg.get("generator", "from_old_wrapper").plugin == reg.pm.get_name(plugins[0])
    assert reg.get("generator", "by_keyword").plugin == reg.pm.get_name(plugins[2])


@pytest.mark.slow
def test_a_hook_that_raises_under_a_wrapper_is_the_one_recorded_as_failed():
    class Wrapper:
        @colorkit.hookimpl(wrapper=True)
        def register_losses(self, register):
            return (yield)

    class Broken:
        @colorkit.hookimpl
        def register_losses(self, register):
            raise RuntimeError("broken inside")

    wrapper, broken = Wrapper(), Broken()
    reg = build_registry(autoload=False, extra_plugins=[wrapper, broken])
    assert [f.plugin for f in reg.failed] == [reg.pm.get_name(broken)]
    assert reg.failed[0].error == "RuntimeError: broken inside"
    assert "ns_l1" in reg.names("loss")


def test_one_table_of_kinds_gives_every_other():
    from colorkit.front.cli.listing import ALIASES
    from colorkit.kernel import hookspecs
    from colorkit.kernel.experiment import COMPONENT_KEYS
    from colorkit.kernel.kinds import COMPONENT_KINDS

    assert list(KINDS) == [k.name for k in COMPONENT_KINDS]
    for kind in COMPONENT_KINDS:
        assert callable(getattr(hookspecs, kind.hook)) and KINDS[kind.name] == kind.hook
        assert kind.interface_class().__name__ == kind.interface
        assert ALIASES[kind.plural] == ALIASES.get(kind.prefix, kind.name) == kind.name
        assert kind.config_key is None or COMPONENT_KEYS[kind.config_key] == kind.name
    assert list(COMPONENT_KEYS) == ["gen", "disc", "loss", "dataset"]
