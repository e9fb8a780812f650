"""The ``colorkit`` command line: the app, with ``list`` and ``run``, and the commands of its modules.

Thin commands over functions that tests call directly: :mod:`~colorkit.front.cli.eval` (``eval``,
``colorize``, ``export``), :mod:`~colorkit.front.cli.bench`, :mod:`~colorkit.front.cli.turing`
and :mod:`~colorkit.front.cli.listing` (``list``); :mod:`~colorkit.front.cli.common` holds what
they share. Every command imports torch only once it runs. User mistakes print one line
(``error: ...``) and exit with code 2 (bad input) or 1 (a failure while running); no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from colorkit.front.cli.common import OneLineGroup, fail, get_registry, handle_errors
from colorkit.kernel.errors import ColorkitError
from colorkit.kernel.registry import read_registry_file


def _registry_defaults() -> dict[str, Any]:
    """``defaults:`` of registry.yaml, for the help texts (a YAML read: no plugin, no torch); a
    broken file is reported by the command that needs it, not by ``--help``."""
    try:
        return dict(read_registry_file().get("defaults") or {})
    except ColorkitError:
        return {}


_DEFAULTS = _registry_defaults()

app = typer.Typer(
    name="colorkit",
    help="Automatic image colorization with conditional GANs, assembled from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineGroup,
)


def version_lines(registry: Any) -> list[str]:
    """colorkit's, Python's and torch's versions, then every package that registers components or
    models (read from package metadata: torch is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    from colorkit import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    lines = [f"colorkit {__version__}", f"python {sys.version.split()[0]}", f"torch {torch_version}"]
    packages = {(c.package, c.version) for c in registry} | {(m.package, m.version) for m in registry.models.values()}
    lines += [f"plugin package {name} {ver or '(no version)'}" for name, ver in sorted(packages) if name != "colorkit"]
    return lines


def _print_versions(ctx: typer.Context, value: bool) -> None:
    if value:
        typer.echo("\n".join(version_lines(get_registry(ctx))))
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_versions, is_eager=True, help="Print the versions of colorkit, Python, torch and the plugin packages, and exit.")] = False,
) -> None:
    """Automatic image colorization with conditional GANs, assembled from plugins."""

@app.command("list")
@handle_errors
def list_command(
    ctx: typer.Context,
    kind: Annotated[Optional[str], typer.Argument(help="generator, discriminator, loss, dataset, metric or preset")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    options: Annotated[bool, typer.Option("--options", help="Also list each component's options.")] = False,
) -> None:
    """List registered components (kind, name, package, description), presets and failed plugins."""
    from colorkit.front.cli.listing import list_components

    list_components(get_registry(ctx), kind, as_json=as_json, show_options=options)


@app.command("run")
@handle_errors
def run_command(
    ctx: typer.Context,
    gen: Annotated[Optional[str], typer.Option("--gen", help=f"Generator name (default: {_DEFAULTS.get('gen')}).")] = None,
    disc: Annotated[Optional[str], typer.Option("--disc", help=f"Discriminator name, or none (default: {_DEFAULTS.get('auto_disc')} if the loss needs one).")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help=f"Loss name (default: {_DEFAULTS.get('loss')}).")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help=f"Dataset name (default: {_DEFAULTS.get('dataset')}).")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Where the dataset's files are (sets dataset.root).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per batch.")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Learning rate (paper: 5e-4).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps.")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Comma-separated metric names for validation.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Experiment YAML file.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A preset from registry.yaml (colorkit list preset).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE for any option, e.g. gen.base=32 (repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<timestamp>-<names>).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="auto, bf16, fp16 or fp32 (autocast).")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this directory from its last checkpoint.")] = None,
    fork: Annotated[bool, typer.Option("--fork", help="With --resume and a changed config: continue in a new run directory.")] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="Train with N local processes (DDP through torchrun).", min=1)] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train an experiment assembled from component names and write a run directory."""
    from colorkit.engine import distributed
    from colorkit.kernel.experiment import experiment_from_sources
    from colorkit.engine.runs import train

    registry = get_registry(ctx)
    cli: dict[str, Any] = {}
    for key, value in (("gen", gen), ("disc", disc), ("loss", loss), ("dataset", dataset)):
        if value is not None:
            cli[key] = value
    train_opts = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                                     ("seed", seed), ("device", device), ("precision", precision)) if v is not None}
    if train_opts:
        cli["train"] = train_opts
    if metrics is not None:
        cli["metrics"] = metrics
    sets = list(set_ or [])
    if data_root is not None:
        sets.insert(0, f"dataset.root={data_root}")
    exp = None  # the one experiment: what --nproc validates is what every process trains
    if resume is not None:
        if preset is not None or config is not None:
            fail("--resume takes the experiment from the run's config.yaml; drop --preset/--config "
                 "(flags and --set may change it together with --fork)", 2)
        if cli or sets:
            exp = experiment_from_sources(registry, config=resume / "config.yaml", cli=cli, sets=sets)
    else:
        if preset is not None:
            from colorkit.front.bench.presets import check_not_a_benchmark_preset

            check_not_a_benchmark_preset(registry, preset)
        exp = experiment_from_sources(registry, preset=preset, config=config, cli=cli, sets=sets)
    if nproc > 1 and not distributed.env_info().enabled:
        # Validate here, so that a user mistake is one line rather than one per process.
        if exp is not None and exp.train.sync_bn and not _cuda_device(exp.train.device):
            fail("train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); drop it on the CPU", 2)
        code = distributed.launch(nproc, _argv_without_nproc(sys.argv[1:]))
        if code:
            fail(f"distributed run with {nproc} processes failed (exit code {code}); see the messages above", 1)
        return
    result = train(registry, exp, out, progress=not quiet, resume=resume, fork=fork)
    from colorkit.engine.distributed import env_info

    if env_info().is_main and result.finished_already:
        typer.echo(f"{result.run_dir}: finished already ({result.steps} steps); nothing to do")
    elif env_info().is_main:
        best = f"; best {result.best['metric']} {result.best['value']:.4g}" if result.best and result.best["value"] is not None else ""
        typer.echo(f"run written to {result.run_dir} ({result.steps} steps, {result.images} images, "
                   f"{result.seconds:.1f} s{best})")


def _cuda_device(name: str) -> bool:
    import torch

    return name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())


def _argv_without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


# --- commands defined in other modules are attached below (keep each on its own line) ---
from colorkit.front.cli.eval import colorize_command, eval_command, export_command  # noqa: E402
app.command("eval")(eval_command)
app.command("colorize")(colorize_command)
app.command("export")(export_command)
from colorkit.front.cli.bench import bench_command  # noqa: E402
app.command("bench")(bench_command)
from colorkit.front.cli.turing import turing_command  # noqa: E402
app.command("turing")(handle_errors(turing_command))


def main() -> None:
    """Console-script entry point."""
    app()

