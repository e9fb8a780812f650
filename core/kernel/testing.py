"""Contract checks for colorkit components, for plugin authors' own test suites.

Each ``check_*`` function takes your component (or, for metrics, a factory) and raises
``AssertionError`` with a precise message where it breaks the interface contract of
:mod:`colorkit.kernel.interfaces`. colorkit runs the same checks over every registered component
(``tests/test_contracts.py``). The shortest test of a whole plugin module is::

    import my_colorkit_plugin
    from colorkit.kernel.testing import check_plugin

    def test_contracts(tmp_path):
        check_plugin(my_colorkit_plugin, tmp_path, options={"my_gen": {"width": 8}})

and single components can be checked directly::

    from colorkit.kernel.testing import check_generator
    def test_my_generator():
        check_generator(MyGenerator(MyOptions()), size=32)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
import yaml

from colorkit.kernel import abbins, color
from colorkit.kernel.errors import OptionError, one_line
from colorkit.kernel.interfaces import Dataset, Discriminator, Generator, Loss, Metric, Prediction
from colorkit.kernel.options import build_options, convert, describe_options, options_to_dict
from colorkit.kernel.kinds import BY_NAME
from colorkit.kernel.registry import Component

__all__ = [
    "check_component",
    "check_dataset",
    "check_discriminator",
    "check_generator",
    "check_loss",
    "check_metric",
    "check_options",
    "check_plugin",
    "random_lab",
]


def random_lab(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Normalised L*a*b* of random smooth RGB images, ``batch x 3 x size x size``."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, max(1, size // 4), max(1, size // 4), generator=gen)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return color.rgb_to_model(rgb)


def _smallest_size(module: Any, size: int | None) -> int:
    m = int(getattr(module, "size_multiple", 1) or 1)
    if size is not None:
        return size
    return max(m, 8)


def check_generator(gen: Generator, size: int | None = None, batch: int = 2) -> None:
    """A generator maps ``B x 1 x S x S`` to ``B x (2|3) x S x S``, finite, with gradients, is
    fully convolutional (takes ``S x 2S`` too), and rejects a size it cannot take with
    ``ValueError``. ``size`` defaults to the smallest it takes (its ``size_multiple``, at least 8)."""
    assert isinstance(gen, Generator), f"{type(gen).__name__} must subclass colorkit.Generator"
    assert gen.output_space in ("ab", "lab"), f"output_space must be 'ab' or 'lab', got {gen.output_space!r}"
    size = _smallest_size(gen, size)
    lab = random_lab(batch, size)
    l = lab[:, :1]  # noqa: E741
    gen.train()
    out = gen(l)
    channels = 2 if gen.output_space == "ab" else 3
    assert tuple(out.shape) == (batch, channels, size, size), (
        f"{type(gen).__name__}: expected output {(batch, channels, size, size)}, got {tuple(out.shape)}"
    )
    assert torch.isfinite(out).all(), f"{type(gen).__name__}: non-finite output"
    out.float().pow(2).mean().backward()
    params = [p for p in gen.parameters() if p.requires_grad]
    assert params, f"{type(gen).__name__} has no trainable parameters"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), (
        f"{type(gen).__name__}: no gradient reaches the parameters"
    )
    gen.zero_grad(set_to_none=True)
    gen.eval()
    with torch.no_grad():
        again = gen(l)
        assert tuple(again.shape) == tuple(out.shape)
        wide = gen(torch.cat((l, l.flip(-1)), dim=-1))
    assert tuple(wide.shape) == (batch, channels, size, 2 * size), (
        f"{type(gen).__name__}: a generator must be fully convolutional; a {size}x{2 * size} input "
        f"gave {tuple(wide.shape)}"
    )
    m = int(gen.size_multiple)
    if m > 1:
        bad = size + m // 2 if m // 2 else size + 1
        try:
            gen.check_input_size(bad, bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"{type(gen).__name__}.check_input_size accepted {bad}x{bad} (size_multiple {m})")


def check_discriminator(disc: Discriminator, size: int | None = None, batch: int = 2) -> None:
    """A discriminator maps (``B x 1 x S x S``, ``B x 3 x S x S``) to finite logits ``B x 1 [x h x w]``
    that depend on the colour input, with gradients."""
    assert isinstance(disc, Discriminator), f"{type(disc).__name__} must subclass colorkit.Discriminator"
    size = _smallest_size(disc, size)
    lab = random_lab(batch, size)
    disc.train()
    logits = disc(lab[:, :1], lab)
    assert logits.shape[0] == batch and logits.shape[1] == 1 and logits.dim() in (2, 4), (
        f"{type(disc).__name__}: logits must be B x 1 or B x 1 x h x w, got {tuple(logits.shape)}"
    )
    assert torch.isfinite(logits).all(), f"{type(disc).__name__}: non-finite logits"
    logits.mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters()), (
        f"{type(disc).__name__}: no gradient reaches the parameters"
    )
    disc.zero_grad(set_to_none=True)
    disc.eval()
    with torch.no_grad():
        a = disc(lab[:, :1], lab)
        b = disc(lab[:, :1], color.gray_lab(lab[:, :1]))
    assert not torch.equal(a, b), f"{type(disc).__name__}: logits ignore the colour input"


def check_loss(loss: Loss, disc: Discriminator | None = None, size: int = 32, batch: int = 2) -> None:
    """A loss returns a dict of finite scalars with a differentiable ``total`` for both a*b* and
    L*a*b* predictions; an adversarial loss also gives a discriminator loss."""
    assert isinstance(loss, Loss), f"{type(loss).__name__} must subclass colorkit.Loss"
    if loss.needs_discriminator:
        assert disc is not None, "check_loss needs a discriminator for an adversarial loss"
    lab = random_lab(batch, size)
    l = lab[:, :1]  # noqa: E741
    if loss.trains_on == "ab_bins":
        _check_bins_loss(loss, lab)
        return
    for channels in (2, 3):
        target = lab[:, 1:] if channels == 2 else lab
        pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
        parts = loss.generator_loss(Prediction(l, pred, target), disc if loss.needs_discriminator else None)
        _check_parts(parts, type(loss).__name__, "generator_loss")
        parts["total"].backward()
        assert pred.grad is not None and pred.grad.abs().sum() > 0, f"{type(loss).__name__}: no gradient to the prediction"
        if loss.needs_discriminator:
            assert disc is not None
            d_parts = loss.discriminator_loss(Prediction(l, pred.detach(), target), disc)
            _check_parts(d_parts, type(loss).__name__, "discriminator_loss")
            d_parts["total"].backward()
            disc.zero_grad(set_to_none=True)
    perfect = loss.generator_loss(Prediction(l, lab[:, 1:].clone(), lab[:, 1:]), disc if loss.needs_discriminator else None)
    worse = loss.generator_loss(Prediction(l, -lab[:, 1:], lab[:, 1:]), disc if loss.needs_discriminator else None)
    if not loss.needs_discriminator:
        assert perfect["total"].item() < worse["total"].item(), f"{type(loss).__name__}: a perfect prediction is not better"


def _check_bins_loss(loss: Loss, lab: torch.Tensor) -> None:
    """A loss on a*b* cell logits: finite parts, a gradient to the logits, and logits on each pixel's true cell beat the opposite colour's."""
    l, target = lab[:, :1], lab[:, 1:]  # noqa: E741
    logits = torch.randn(lab.shape[0], abbins.count(), *lab.shape[-2:], requires_grad=True)
    parts = loss.generator_loss(Prediction(l, logits, target, abbins.annealed_mean(logits)), None)
    _check_parts(parts, type(loss).__name__, "generator_loss")
    parts["total"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0, f"{type(loss).__name__}: no gradient to the logits"
    peaked = [20.0 * F.one_hot(abbins.nearest(ab), abbins.count()).permute(0, 3, 1, 2).float() for ab in (target, -target)]
    right, wrong = (loss.generator_loss(Prediction(l, p, target, abbins.annealed_mean(p)), None)["total"].item() for p in peaked)
    assert right < wrong, f"{type(loss).__name__}: logits on the true cells are not better"


def _check_parts(parts: Any, who: str, method: str) -> None:
    assert isinstance(parts, dict) and "total" in parts, f"{who}.{method} must return a dict with 'total'"
    for name, value in parts.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, f"{who}.{method}: part '{name}' is not a scalar tensor"
        assert torch.isfinite(value), f"{who}.{method}: part '{name}' is not finite"


def check_dataset(dataset: Dataset, max_items: int = 4) -> None:
    """A dataset names its splits, gives the three roles (train, val, test) three different
    splits, serves ``uint8`` RGB ``3 x size x size`` tensors from each, and ``head(name, n)`` is
    the first ``n`` of them."""
    assert isinstance(dataset, Dataset), f"{type(dataset).__name__} must subclass colorkit.Dataset"
    assert dataset.splits, "a dataset needs at least one split"
    roles = (dataset.train_split, dataset.val_split, dataset.test_split)
    for role, name in zip(("train_split", "val_split", "test_split"), roles):
        assert name in dataset.splits, f"{type(dataset).__name__}.{role} = {name!r} is not one of its splits {dataset.splits}"
    assert len(set(roles)) == 3, (
        f"{type(dataset).__name__}: train, val and test must be three different splits (got {roles}); "
        "selecting models on the test split makes the reported numbers optimistic")
    size = dataset.size
    assert isinstance(size, int) and size > 0
    for name in roles:
        head = dataset.head(name, 2)  # first, as eval --limit asks a fresh dataset
        plain = dataset.split(name, train=False)
        assert len(head) == min(2, len(plain)) and all(torch.equal(head[i], plain[i]) for i in range(len(head))), (
            f"{type(dataset).__name__}.head('{name}', 2) must be the first 2 items of split('{name}')")
        for train in (False, True):
            data = dataset.split(name, train=train)
            assert len(data) > 0, f"{type(dataset).__name__}: split '{name}' is empty"
            for i in range(min(max_items, len(data))):
                item = data[i]
                assert isinstance(item, torch.Tensor), f"split '{name}' item {i} is {type(item).__name__}, not a tensor"
                assert item.dtype == torch.uint8, f"split '{name}' item {i} has dtype {item.dtype}, not uint8"
                assert tuple(item.shape) == (3, size, size), (
                    f"split '{name}' item {i} has shape {tuple(item.shape)}, expected {(3, size, size)}"
                )
    try:
        dataset.split("no-such-split")
    except Exception as exc:  # noqa: BLE001
        assert "no-such-split" in str(exc), "an unknown split must be named in the error"
    else:
        raise AssertionError(f"{type(dataset).__name__}: an unknown split name was accepted")


def check_metric(make: Callable[[], Metric], size: int = 16) -> None:
    """A metric gives a finite float, is deterministic, resets, and accumulates over batches
    (two half-batches give the value of the whole batch, up to 1e-4 relative)."""
    metric = make()
    assert isinstance(metric, Metric), f"{type(metric).__name__} must subclass colorkit.Metric"
    assert isinstance(metric.unit, str) and isinstance(metric.higher_is_better, bool)
    g = torch.Generator().manual_seed(1)
    target = torch.rand(4, 3, size, size, generator=g)
    pred = (target + 0.2 * torch.rand(4, 3, size, size, generator=g) - 0.1).clamp(0, 1)
    metric.reset()
    metric.update(pred, target)
    whole = metric.compute()
    assert isinstance(whole, float) and math.isfinite(whole), f"{type(metric).__name__}.compute() gave {whole!r}"
    metric.reset()
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    halves = metric.compute()
    assert math.isclose(whole, halves, rel_tol=1e-4, abs_tol=1e-6), (
        f"{type(metric).__name__}: one batch gives {whole}, two halves give {halves}"
    )
    metric.reset()
    metric.update(pred, target)
    assert math.isclose(metric.compute(), whole, rel_tol=1e-6, abs_tol=1e-9), f"{type(metric).__name__}: reset() keeps state"


def check_options(options_cls: type, prefix: str = "opt") -> Any:
    """An options class is a dataclass whose every field has a default and a supported type, and
    whose values survive the round trip through a saved ``config.yaml`` (runs and checkpoints are
    rebuilt from it). Returns the default instance."""
    name = getattr(options_cls, "__name__", repr(options_cls))
    assert dataclasses.is_dataclass(options_cls) and isinstance(options_cls, type), (
        f"options {name} must be a dataclass class"
    )
    missing = [
        f.name for f in dataclasses.fields(options_cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    assert not missing, f"options {name}: every option needs a default; missing for {', '.join(missing)}"
    hints = typing.get_type_hints(options_cls)
    defaults = build_options(options_cls, {}, prefix)
    for f in dataclasses.fields(options_cls):
        try:  # the type is one colorkit converts values to, and the default is one of them
            convert(getattr(defaults, f.name), hints[f.name], f"{prefix}.{f.name}")
        except OptionError as exc:
            raise AssertionError(f"options {name}: {exc}") from None
    _check_saved_options(defaults, prefix)
    return defaults


def _check_saved_options(options: Any, prefix: str = "opt") -> None:
    """An options instance survives ``options_to_dict`` -> YAML -> ``build_options`` unchanged."""
    who = type(options).__name__
    try:
        saved = yaml.safe_load(yaml.safe_dump(options_to_dict(options), sort_keys=False))
    except yaml.YAMLError as exc:
        raise AssertionError(
            f"options {who} cannot be saved in config.yaml ({one_line(exc, first_line=True)}); keep option values "
            "plain: numbers, strings, booleans, None, tuples or lists of them"
        ) from None
    try:
        again = build_options(type(options), saved, prefix)
    except OptionError as exc:
        raise AssertionError(f"options {who} cannot be rebuilt from a saved config: {exc}") from None
    assert again == options, (
        f"options {who} do not survive a saved config: {options!r} came back as {again!r}"
    )


class _TinyDiscriminator(Discriminator):
    """A small discriminator for checking adversarial losses: a patch map or one logit each."""

    def __init__(self, patch: bool) -> None:
        super().__init__()
        self.patch = patch
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(8, 1, 3, padding=1)
        )

    def forward(self, l: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # noqa: E741
        out = self.net(torch.cat((l, lab), dim=1))
        return out if self.patch else out.mean(dim=(2, 3))


def _check_rebuild(component: Component, module: torch.nn.Module, options: Any) -> None:
    """A second build from the same options takes the first one's weights (checkpoints rely on it)."""
    again = component.build(options)
    try:
        again.load_state_dict(module.state_dict())
    except RuntimeError as exc:
        raise AssertionError(
            f"{component.kind} '{component.name}': two builds from the same options have different "
            f"weights, so checkpoints cannot be loaded: {one_line(exc, first_line=True)}"
        ) from None


def check_component(
    component: Component,
    folder: Path | None = None,
    registry: Any = None,
    *,
    options: dict[str, Any] | None = None,
) -> None:
    """Run the contract checks that fit a registered component.

    The component is built from ``options`` (default: all its defaults; datasets start from
    their ``example_options(folder)``, ``folder`` defaulting to a temporary one). Its options
    class must pass :func:`check_options` (datasets: the options used must survive a saved
    config). Generators and discriminators must also rebuild with the same weights.
    Adversarial losses are checked against a small built-in discriminator, once with a patch map
    of logits and once with one logit per image. ``registry`` is accepted for compatibility and
    not needed.
    """
    kind = component.kind
    prefix = BY_NAME[kind].prefix if kind in BY_NAME else kind
    values = dict(options or {})
    if kind == "dataset":
        describe_options(component.options)
        with _folder(folder) as where:
            factory = component.load()
            if hasattr(factory, "example_options"):
                values = {**factory.example_options(where), **values}
            opts = component.make_options(values)
            _check_saved_options(opts, prefix)
            check_dataset(component.build(opts))
        return
    check_options(component.options, prefix)
    opts = component.make_options(values)
    _check_saved_options(opts, prefix)
    if kind == "generator":
        gen = component.build(opts)
        check_generator(gen)
        _check_rebuild(component, gen, opts)
    elif kind == "discriminator":
        disc = component.build(opts)
        check_discriminator(disc)
        _check_rebuild(component, disc, opts)
    elif kind == "loss":
        loss = component.build(opts)
        if loss.needs_discriminator:
            for patch in (True, False):
                torch.manual_seed(0)
                check_loss(loss, _TinyDiscriminator(patch))
        else:
            check_loss(loss)
    elif kind == "metric":
        check_metric(lambda: component.build(opts))
    else:  # pragma: no cover
        raise AssertionError(f"unknown kind {kind}")


@contextlib.contextmanager
def _folder(folder: Path | None) -> Iterator[Path]:
    """``folder`` itself, or a temporary folder removed afterwards."""
    if folder is not None:
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="colorkit-check-") as tmp:
        yield Path(tmp)


def check_plugin(
    plugin: object,
    folder: Path | None = None,
    *,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Component]:
    """Register ``plugin`` (your plugin module, or an object with ``@colorkit.hookimpl`` methods)
    in a fresh registry beside the built-ins, as colorkit does with an installed package, and run
    :func:`check_component` on every component it registers.

    :param folder: where datasets may write files (default: a temporary folder).
    :param options: option values by component name, e.g. ``{"my_gen": {"width": 8}}`` for a
        faster check than the defaults give.
    :returns: the plugin's components.
    :raises AssertionError: the plugin failed to register (a misspelled hook, an error in a hook),
        registers nothing, or a component breaks its contract.
    """
    from colorkit.kernel.registry import build_registry

    reg = build_registry(autoload=False, extra_plugins=[plugin])
    label = reg.pm.get_name(plugin)
    failed = [f for f in reg.failed if label is None or f.plugin == label]
    assert not failed, "the plugin failed to register: " + "; ".join(f"{f.plugin}: {f.error}" for f in failed)
    mine = [c for c in reg if c.plugin == label]
    assert mine, f"plugin {label} registered no component (is each hook decorated with @colorkit.hookimpl?)"
    options = dict(options or {})
    unknown = sorted(set(options) - {c.name for c in mine})
    assert not unknown, f"check_plugin(options=...) names components the plugin does not register: {', '.join(unknown)}"
    for comp in mine:
        try:
            check_component(comp, folder, options=options.get(comp.name))
        except AssertionError as exc:
            raise AssertionError(f"{comp.kind} '{comp.name}': {exc}") from exc
    return mine
