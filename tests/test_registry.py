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
        "    from colorkit.plugins.losses import L2\n"
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
