"""An experiment: component names + options + training settings.

Sources are merged in this order, later ones winning: a preset from ``registry.yaml``, a
``--config`` YAML file, command-line flags, then ``--set KEY=VALUE`` overrides. The result is
validated against the registry (every unknown key or name is a one-line error) and resolved: all
component options are filled in with their defaults, so the saved config is complete.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from pathlib import Path
from typing import Any, Literal

from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import dump_yaml, load_yaml
from colorkit.kernel.kinds import COMPONENT_KINDS
from colorkit.kernel.options import build_options, opt, options_to_dict
from colorkit.kernel.registry import Registry

#: Experiment key -> the kind of the one component it names (``gen`` -> ``generator``).
COMPONENT_KEYS = {kind.config_key: kind.name for kind in COMPONENT_KINDS if kind.config_key}
TOP_KEYS = set(COMPONENT_KEYS) | {"train", "metrics", "description"}
#: Keys a run's config.yaml carries for the reader (written by colorkit), ignored when read back:
#: ``splits`` names the split of each role and its image count.
INFO_KEYS = {"splits"}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Training settings (``--set train.KEY=VALUE``); defaults follow the paper's section 3.3.

    Every field is documented in ``docs/training.md`` (a test keeps the two in step).
    """

    epochs: int = opt(5, "passes over the training split")
    batch_size: int = opt(16, "images per batch (per process under DDP)")
    lr: float = opt(5e-4, "Adam learning rate of the generator (the paper: 5e-4; the authors' code: 3e-4)")
    lr_d: float | None = opt(None, "Adam learning rate of the discriminator (default: lr; the authors' code: lr/10)")
    beta1: float = opt(0.5, "Adam beta1 (the paper: 0.5; the authors' code: 0)")
    beta2: float = opt(0.999, "Adam beta2")
    g_steps: int = opt(1, "generator steps per discriminator step (the authors' code: 2)")
    gan_start: float = opt(
        0.0, "share of the run's budget trained on the loss's reconstruction term alone, with no "
        "discriminator steps, before the adversarial phase begins (DeOldify's NoGAN; 0: adversarial from the start)"
    )
    lr_schedule: Literal["plateau", "exponential", "cosine", "none"] = opt(
        "plateau", "plateau: lr x lr_factor when the validation L1 stops improving (the paper); "
        "exponential: lr x gamma every epoch (the authors' code); cosine: from lr down to 0 over the run's "
        "budget (whichever of epochs, max_steps, max_minutes, max_cpu_minutes ends it first)"
    )
    warmup: int = opt(0, "linear learning-rate warm-up over the first N steps (with any schedule)")
    lr_factor: float = opt(0.1, "learning-rate factor on a plateau (the paper: 0.1)")
    patience: int = opt(3, "validations without improvement before the plateau decay")
    gamma: float = opt(0.95, "per-epoch factor of the exponential schedule")
    ema: float = opt(
        0.0, "exponential moving average of the generator's weights, decay per step (e.g. 0.999; 0: off); "
        "validation, best.pt, eval and colorize use the average"
    )
    init: Literal["he", "default"] = opt("he", "weight init: He et al. (the paper) or PyTorch's default")
    seed: int = opt(0, "random seed (weights, data order, augmentation)")
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto", "autocast precision; auto: bf16 on CUDA GPUs that support it, fp32 elsewhere"
    )
    channels_last: Literal["auto", "true", "false"] = opt("auto", "channels-last memory format; auto: on CUDA only (slower on the CPU)")
    compile: bool = opt(False, "torch.compile the networks")
    val_every: int = opt(0, "validate every N batches (0: at the end of every epoch)")
    val_limit: int | None = opt(None, "validate on the first N images of the val split (a seeded random sample for CIFAR-10 and Places365)")
    best_metric: str | None = opt(None, "metric that picks checkpoints/best.pt (default: the first of --metrics)")
    keep_best_state: bool = opt(
        False, "checkpoints/best.pt keeps the full training state (a hard link or copy of last.pt, with optimiser "
        "states and discriminator); default: the generator weights eval and colorize use and the experiment"
    )
    ckpt_every: int = opt(0, "also save checkpoints/last.pt every N batches (0: at epoch ends only)")
    max_steps: int | None = opt(None, "stop after this many batches in all (smoke tests, benchmarks)")
    max_minutes: float | None = opt(None, "stop after this many minutes of training steps (wall clock)")
    max_cpu_minutes: float | None = opt(None, "stop after this many CPU-minutes of training steps (this process)")
    keep_cpu_minutes: list[float] = opt(
        [], "also keep checkpoints/cpu-<M>min.pt (generator weights only) when the training steps' CPU time "
        "passes each of these CPU-minute marks (time-to-quality benchmarks)"
    )
    workers: int | Literal["auto"] = opt(
        "auto", "data-loader worker processes; auto: 0 on the CPU and for in-memory data, up to 8 for files on a GPU"
    )
    sync_bn: bool = opt(False, "SyncBatchNorm across processes under DDP")
    log_every: int = opt(10, "write a metrics-log line every N batches")
    grid_rows: int = opt(8, "val images in the sample grid")

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "g_steps", "log_every", "grid_rows"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be at least 1")
        if self.workers != "auto" and self.workers < 0:
            raise ValueError("train.workers must be >= 0 or auto")
        for key in ("val_every", "ckpt_every", "patience"):
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0")
        for key in ("lr", "lr_d", "max_minutes", "max_cpu_minutes"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ValueError(f"train.{key} must be positive, got {getattr(self, key)}")
        for key in ("max_steps", "val_limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be at least 1 (or none for no limit), got {getattr(self, key)}")
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"train.{key} must be in [0, 1), got {getattr(self, key)}")
        if not 0.0 <= self.gan_start < 1.0:
            raise ValueError("train.gan_start must be in [0, 1): the share of the budget before the GAN phase")
        if self.warmup < 0:
            raise ValueError("train.warmup must be >= 0")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError("train.ema must be in [0, 1): the decay per step, 0 for off")
        if any(m <= 0 for m in self.keep_cpu_minutes):
            raise ValueError("train.keep_cpu_minutes: every mark must be a positive number of CPU-minutes")
        if not (0 < self.lr_factor < 1 and 0 < self.gamma <= 1):
            raise ValueError("train.lr_factor must be in (0, 1) and train.gamma in (0, 1]")


@dataclasses.dataclass
class ComponentSpec:
    name: str
    options: Any  # the component's options dataclass instance

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": options_to_dict(self.options)}


@dataclasses.dataclass
class Experiment:
    """A validated, fully resolved experiment."""

    gen: ComponentSpec
    disc: ComponentSpec | None
    loss: ComponentSpec
    dataset: ComponentSpec
    train: TrainOptions
    metrics: list[str]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        out["gen"] = self.gen.to_dict()
        out["disc"] = self.disc.to_dict() if self.disc else "none"
        out["loss"] = self.loss.to_dict()
        out["dataset"] = self.dataset.to_dict()
        out["metrics"] = list(self.metrics)
        out["train"] = options_to_dict(self.train)
        return out

    def to_yaml(self) -> str:
        """The experiment as the YAML ``config.yaml`` holds (no anchors: :func:`load_yaml` reads it back)."""
        return dump_yaml(self.to_dict())

    @property
    def label(self) -> str:
        """A short name: ``unet-conv-ns_l1-samples``."""
        parts = [self.gen.name, self.disc.name if self.disc else "nodisc", self.loss.name, self.dataset.name]
        return "-".join(parts)


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read an experiment YAML file; errors name the file."""
    p = Path(path)
    data = load_yaml(p, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping of experiment keys ({', '.join(sorted(TOP_KEYS))})")
    return data


def _normalise_component(value: Any, key: str, source: str) -> dict[str, Any] | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null", ""}):
        return None
    if isinstance(value, str):
        return {"name": value.strip(), "options": {}}
    if isinstance(value, dict):
        extra = set(value) - {"name", "options"}
        if extra or "name" not in value:
            raise UsageError(f"{source}: '{key}' must be a name or {{name: ..., options: {{...}}}}")
        options = value.get("options") or {}
        if not isinstance(options, dict):
            raise UsageError(f"{source}: '{key}.options' must be a mapping")
        return {"name": str(value["name"]), "options": dict(options)}
    raise UsageError(f"{source}: '{key}' must be a name or a mapping, got {value!r}")


def merge_layers(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge raw experiment dicts (``(source, data)`` pairs, lowest priority first)."""
    merged: dict[str, Any] = {"train": {}}
    for source, data in layers:
        data = {k: v for k, v in data.items() if k not in INFO_KEYS}
        unknown = sorted(set(data) - TOP_KEYS)
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, sorted(TOP_KEYS), n=1)
                hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise UsageError(f"{source}: unknown key {', '.join(hints)}; known keys: {', '.join(sorted(TOP_KEYS))}")
        for key, value in data.items():
            if key in COMPONENT_KEYS:
                new = _normalise_component(value, key, source)
                old = merged.get(key)
                if new is not None and isinstance(old, dict) and old["name"] == new["name"]:
                    new = {"name": new["name"], "options": {**old["options"], **new["options"]}}
                merged[key] = new if new is not None else "none"
            elif key == "train":
                if not isinstance(value, dict):
                    raise UsageError(f"{source}: 'train' must be a mapping")
                merged["train"] = {**merged["train"], **value}
            elif key == "metrics":
                if isinstance(value, str):
                    value = [v.strip() for v in value.split(",") if v.strip()]
                if not isinstance(value, list):
                    raise UsageError(f"{source}: 'metrics' must be a list of names")
                merged["metrics"] = [str(v) for v in value]
            else:
                merged[key] = _description(value, source)
    return merged


#: The longest ``description`` an experiment takes, in characters.
MAX_DESCRIPTION = 2000


def _description(value: Any, source: str) -> str:
    """An experiment's ``description``: text of at most :data:`MAX_DESCRIPTION` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(f"{source}: 'description' must be text (a string), got a {type(value).__name__}")
    if len(value) > MAX_DESCRIPTION:
        raise UsageError(f"{source}: 'description' is {len(value)} characters long, over the {MAX_DESCRIPTION} "
                         "allowed; shorten it")
    return value


def apply_sets(merged: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``--set KEY=VALUE`` overrides (``gen.base=32``, ``train.epochs=3``)."""
    merged = copy.deepcopy(merged)
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip()
        prefix, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE with KEY like gen.base or train.epochs")
        if prefix == "train":
            merged["train"][field] = value
        elif prefix in COMPONENT_KEYS:
            comp = merged.get(prefix)
            if not isinstance(comp, dict):
                raise UsageError(f"--set {item!r}: there is no {COMPONENT_KEYS[prefix]} in this experiment")
            comp["options"][field] = value
        else:
            raise UsageError(
                f"--set {item!r}: unknown prefix '{prefix}'; use one of {', '.join([*COMPONENT_KEYS, 'train'])}"
            )
    return merged


#: The keys of ``defaults:`` in ``registry.yaml`` that make the lowest experiment layer.
DEFAULT_KEYS = (*COMPONENT_KEYS, "metrics")


def experiment_defaults(registry: Registry) -> dict[str, Any]:
    """The experiment every other layer is merged onto: ``gen``, ``disc``, ``loss``, ``dataset``
    and ``metrics`` under ``defaults:`` in ``registry.yaml``."""
    return {k: copy.deepcopy(registry.defaults[k]) for k in DEFAULT_KEYS if k in registry.defaults}


def _auto_disc(registry: Registry, options: dict[str, Any]) -> dict[str, Any]:
    """What ``disc: auto`` means for an adversarial loss: ``auto_disc`` of ``registry.yaml``."""
    name = registry.defaults.get("auto_disc")
    if not isinstance(name, str) or not name:
        raise UsageError("disc: auto needs a discriminator named under defaults: auto_disc: in registry.yaml; "
                         "pass --disc NAME")
    return {"name": name, "options": options}


def _needs_discriminator(registry: Registry, loss: ComponentSpec) -> bool:
    """``Loss.needs_discriminator`` of the registered loss class, read without building a loss
    (a factory that is a function, not a class, is asked through what it builds)."""
    comp = registry.get("loss", loss.name)
    factory = comp.load()
    if isinstance(factory, type):
        return bool(factory.needs_discriminator)
    return bool(comp.build(loss.options).needs_discriminator)


def resolve(registry: Registry, merged: dict[str, Any]) -> Experiment:
    """Validate a merged experiment dict against the registry and fill in every default."""
    data = {**experiment_defaults(registry), **{k: v for k, v in merged.items() if v is not None}}

    def component(key: str) -> ComponentSpec:
        raw = data.get(key)
        if raw is None:
            raise UsageError(f"no {COMPONENT_KEYS[key]} given and registry.yaml names no default "
                             f"(defaults: {key}:); pass one, e.g. --{key} NAME")
        if isinstance(raw, str):
            raw = {"name": raw, "options": {}}
        comp = registry.get(COMPONENT_KEYS[key], raw["name"])
        return ComponentSpec(comp.name, comp.make_options(raw["options"]))

    gen = component("gen")
    loss = component("loss")
    needs_disc = _needs_discriminator(registry, loss)
    disc_raw = data.get("disc", "none")
    if disc_raw == "auto" or (isinstance(disc_raw, dict) and disc_raw.get("name") == "auto"):
        auto_options = disc_raw.get("options", {}) if isinstance(disc_raw, dict) else {}
        disc_raw = _auto_disc(registry, auto_options) if needs_disc else "none"
    data["disc"] = disc_raw
    disc = None if disc_raw == "none" else component("disc")
    if needs_disc and disc is None:
        raise UsageError(f"loss '{loss.name}' is adversarial and needs a discriminator: pass --disc NAME (e.g. --disc conv)")
    if disc is not None and not needs_disc:
        raise UsageError(
            f"loss '{loss.name}' trains no discriminator, but --disc {disc.name} was given; pass --disc none"
        )
    dataset = component("dataset")
    metrics = list(data.get("metrics") or [])
    for name in metrics:
        registry.get("metric", name)
    train = build_options(TrainOptions, data.get("train") or {}, "train")
    if train.best_metric is not None and train.best_metric not in metrics:
        raise UsageError(
            f"train.best_metric '{train.best_metric}' is not among the validation metrics ({', '.join(metrics) or 'none'}); "
            "add it with --metrics"
        )
    return Experiment(gen, disc, loss, dataset, train, metrics, str(data.get("description") or ""))


def experiment_from_sources(
    registry: Registry,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    cli: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> Experiment:
    """Merge preset, config file, CLI values and ``--set`` overrides, then resolve."""
    layers: list[tuple[str, dict[str, Any]]] = [("registry.yaml defaults", experiment_defaults(registry))]
    if preset:
        layers.append((f"preset '{preset}'", dict(registry.preset(preset))))
    if config:
        layers.append((str(config), load_yaml_file(config)))
    if cli:
        layers.append(("command line", cli))
    return resolve(registry, apply_sets(merge_layers(layers), sets or []))


def experiment_from_dict(registry: Registry, data: dict[str, Any], source: str) -> Experiment:
    """Rebuild a saved (resolved) experiment, e.g. from a checkpoint."""
    return resolve(registry, merge_layers([("registry.yaml defaults", experiment_defaults(registry)), (source, data)]))


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two experiment dicts: ``train.lr (0.001 -> 0.002)`` per key, nested
    keys dotted."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key} ({va!r} -> {vb!r})")
    return out
