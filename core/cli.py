"""The ``colorkit`` command line: thin commands over functions that tests call directly.

User mistakes print one line (``error: ...``) and exit with code 2 (bad input) or 1 (a failure
while running); no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from colorkit.errors import ColorkitError

app = typer.Typer(
    name="colorkit",
    help="Automatic image colorization with conditional GANs, assembled from plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ColorkitError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


def get_registry(ctx: typer.Context | None = None) -> Any:
    """A fresh registry; tests pass extra plugin objects as ``obj={"plugins": [...]}``."""
    from colorkit.registry import build_registry

    extra = []
    if ctx is not None:
        root = ctx.find_root()
        if isinstance(root.obj, dict):
            extra = list(root.obj.get("plugins", []))
    return build_registry(extra_plugins=extra)


@app.command("list")
@handle_errors
def list_command(
    ctx: typer.Context,
    kind: Annotated[Optional[str], typer.Argument(help="generator, discriminator, loss, dataset, metric or preset")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    options: Annotated[bool, typer.Option("--options", help="Also list each component's options.")] = False,
) -> None:
    """List registered components (kind, name, package, description), presets and failed plugins."""
    from colorkit.listing import list_components

    list_components(get_registry(ctx), kind, as_json=as_json, show_options=options)


@app.command("run")
@handle_errors
def run_command(
    ctx: typer.Context,
    gen: Annotated[Optional[str], typer.Option("--gen", help="Generator name (default: unet).")] = None,
    disc: Annotated[Optional[str], typer.Option("--disc", help="Discriminator name, or none (default: conv if the loss needs one).")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help="Loss name (default: ns_l1).")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name (default: samples, needs no download).")] = None,
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train an experiment assembled from component names and write a run directory."""
    from colorkit.experiment import experiment_from_sources
    from colorkit.training import train

    registry = get_registry(ctx)
    cli: dict[str, Any] = {}
    for key, value in (("gen", gen), ("disc", disc), ("loss", loss), ("dataset", dataset)):
        if value is not None:
            cli[key] = value
    train_opts = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                                     ("seed", seed), ("device", device)) if v is not None}
    if train_opts:
        cli["train"] = train_opts
    if metrics is not None:
        cli["metrics"] = metrics
    sets = list(set_ or [])
    if data_root is not None:
        sets.insert(0, f"dataset.root={data_root}")
    exp = experiment_from_sources(registry, preset=preset, config=config, cli=cli, sets=sets)
    result = train(registry, exp, out, progress=not quiet)
    typer.echo(f"run written to {result.run_dir} ({result.steps} steps, {result.images} images, {result.seconds:.1f} s)")


# --- commands defined in other modules are attached below (keep each on its own line) ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
