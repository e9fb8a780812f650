"""The ``colorkit eval`` and ``colorkit colorize`` commands: thin wrappers over
:func:`colorkit.engine.evaluation.evaluate` and :func:`colorkit.engine.colorizer.colorize_files`.

``colorkit.front.cli`` attaches them to the app.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from colorkit.engine.threads import cpu_threads
from colorkit.front.cli.common import THREADS_HELP, get_registry, handle_errors

CHROMA_HELP = ("How the predicted colour is upsampled to the photo's size: bilinear, or guided by the photo's own "
               "L* (colour edges follow its lightness edges); default: what the model file records, else bilinear.")


class ImageFormat(str, enum.Enum):
    png = "png"
    jpeg = "jpeg"


@handle_errors
def eval_command(
    ctx: typer.Context,
    checkpoints: Annotated[list[Path], typer.Argument(
        help="Checkpoint files or run directories (best.pt, else last.pt); several are compared side by side.",
        show_default=False)],
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset name (default: the checkpoint's own, with its options).")] = None,
    data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Where the dataset's files are (sets dataset.root).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Split to evaluate (default: the dataset's test split; val is what training selected on).")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Instead of a dataset: every photo in this folder (recursively) at its own size, scored on the image `colorkit colorize` writes.")] = None,
    size: Annotated[Optional[int], typer.Option("--size", help="With --images: the working size the model runs at (default: its training size), as colorize --size.")] = None,
    chroma: Annotated[Optional[str], typer.Option("--chroma", help=CHROMA_HELP, show_default=False)] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Comma-separated metric names (default: the checkpoint's, else mae,accuracy,psnr; with --images the photo metrics of registry.yaml, defaults.photo_metrics); see `colorkit list metric`.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Score a sample of N images spread over the split (seeded: the split cut into N equal runs, one image drawn from each, so each class of a split sorted by class, such as CIFAR-10's test split, gets its share).")] = None,
    first: Annotated[Optional[int], typer.Option("--first", help="Score the first N images of the split instead (only those are decoded: quick, but biased on a split sorted by class).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 64,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the results (with metric definitions and versions) to this JSON file.")] = None,
    grid: Annotated[Optional[Path], typer.Option("--grid", help="Write a Figure 5 grid (grayscale | original | each checkpoint) to this PNG file.")] = None,
    grid_rows: Annotated[int, typer.Option("--grid-rows", help="Images (rows) in the --grid figure.")] = 8,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="dataset.KEY=VALUE or metric.NAME.KEY=VALUE, e.g. metric.accuracy.threshold=1 (repeatable).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Data-loader worker processes.")] = 0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate checkpoints on a dataset split: a table of metrics beside the "no colour" reference."""
    from rich.console import Console

    from colorkit.engine.evaluation import evaluate
    from colorkit.engine.images import write_grid
    from colorkit.kernel.files import atomic_write_bytes, check_writable

    for option, target in (("--json", json_path), ("--grid", grid)):
        if target is not None:
            check_writable(target, option)
    if grid is not None and grid.suffix.lower() != ".png":
        from colorkit.kernel.errors import UsageError

        raise UsageError(f"--grid {grid}: the grid is written as PNG; give a .png file name")
    if grid_rows < 1:
        from colorkit.kernel.errors import UsageError

        raise UsageError(f"--grid-rows must be at least 1, got {grid_rows}")
    with cpu_threads(threads):  # (--grid runs the models too)
        if images is not None:
            from colorkit.kernel.errors import UsageError
            from colorkit.engine.evaluation import evaluate_images

            given = [name for name, value in (("--dataset", dataset), ("--data-root", data_root), ("--split", split),
                                              ("--limit", limit), ("--first", first), ("--grid", grid)) if value is not None]
            if given or len(checkpoints) != 1:
                what = ", ".join(given) if given else "several checkpoints"
                raise UsageError(f"--images evaluates one checkpoint on a folder of photos; {what} cannot go with it")
            if size is not None:
                from colorkit.engine.shapes import check_working_size

                check_working_size(size, "--size")
            result = evaluate_images(
                checkpoints[0], images, registry=get_registry(ctx), metrics=metrics, working_size=size, device=device,
                sets=list(set_ or []), progress=not quiet, chroma=chroma,
                on_problem=lambda path, reason: typer.echo(f"note: {path}: {reason}", err=True))
            models, data = [], None
        else:
            if size is not None:
                from colorkit.kernel.errors import UsageError

                raise UsageError("--size goes with --images (a dataset is evaluated at its own working size)")
            result, models, data = evaluate(
                checkpoints, registry=get_registry(ctx), dataset=dataset, data_root=data_root, split=split,
                metrics=metrics, limit=limit, first=first, batch_size=batch_size, device=device, sets=list(set_ or []),
                workers=workers, progress=not quiet, chroma=chroma,
            )
        for m in models:
            for note in m.notes:
                typer.echo(f"note: {m.path}: {note}", err=True)
        console = Console()
        if not console.is_terminal:  # a pipe or a file: no wrapping at 80 columns
            console = Console(width=200)
        console.print(result.table())
        if json_path is not None:
            atomic_write_bytes(json_path, (result.to_json() + "\n").encode())
            typer.echo(f"results written to {json_path}")
        if grid is not None:
            write_grid(models, data, grid, rows=grid_rows)
            typer.echo(f"grid written to {grid}")


def _is_run_or_checkpoint(path: Path) -> bool:
    return (path.is_dir() and (path / "config.yaml").is_file()) or (path.is_file() and path.suffix in (".pt", ".pth"))


@handle_errors
def colorize_command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(help="Image files and folders (searched recursively).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder; folder structure and file names are kept.", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", help="A pretrained model name (colorkit list model), a run directory (best.pt, else last.pt) or a checkpoint file; default: the built-in default model.", show_default=False)] = None,
    fmt: Annotated[ImageFormat, typer.Option("--format", help="Output format: png (lossless) or jpeg.")] = ImageFormat.png,
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality (1-100).")] = 95,
    size: Annotated[Optional[int], typer.Option("--size", help="Working size the model runs at, in pixels (default: its training size); the aspect ratio is kept.")] = None,
    chroma: Annotated[Optional[str], typer.Option("--chroma", help=CHROMA_HELP, show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help="torch, or onnxruntime to run an exported .onnx file (--model FILE.onnx) without PyTorch.")] = "torch",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (inputs are never overwritten).")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help=THREADS_HELP, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Colorize photos of any size: files and folders in, PNG or JPEG out, inputs never overwritten."""
    from colorkit.engine.colorizer import colorize_files

    if size is not None:
        from colorkit.engine.shapes import check_working_size

        check_working_size(size, "--size")  # before any allocation: --size 100000 would need ~40 GB
    if model is None and len(inputs) > 1 and _is_run_or_checkpoint(inputs[0]):
        model, inputs = str(inputs[0]), inputs[1:]  # the form before --model: colorize RUN PHOTOS...
    with cpu_threads(threads) as n:
        report = colorize_files(
            model, inputs, out, fmt=fmt.value, quality=quality, working_size=size, device=device,
            overwrite=overwrite, progress=not quiet, registry=get_registry(ctx), backend=backend, chroma=chroma,
            threads=n, on_problem=lambda path, reason: typer.echo(f"warning: {path}: {reason}", err=True),
        )
    if report.existing:
        typer.echo(f"note: {len(report.existing)} output(s) exist already and were left alone; pass --overwrite to "
                   "replace them", err=True)
    parts = [f"colorized {len(report.written)} image(s) into {out}"]
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    typer.echo("; ".join(parts))
    if report.failed:
        raise typer.Exit(1)


@handle_errors
def export_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="A pretrained model name (colorkit list model), a run directory or a checkpoint file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The file to write (written whole or not at all).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="onnx, torchscript, or model (a colorkit model file, half precision).")] = "onnx",
    size: Annotated[Optional[int], typer.Option("--working-size", help="The working size recorded in the file (default: the model's own).")] = None,
    chroma: Annotated[Optional[str], typer.Option("--chroma", help="The chroma upsampling recorded in the file, bilinear or guided (default: the model's own); colorize honours it.", show_default=False)] = None,
) -> None:
    """Export a model to ONNX or TorchScript (L* in, a*b* out, any size) or to a model file."""
    from colorkit.engine.export import export_model

    if size is not None:
        from colorkit.engine.shapes import check_working_size

        check_working_size(size, "--working-size")
    path = export_model(model, fmt, out, registry=get_registry(ctx), working_size=size, chroma=chroma)
    typer.echo(f"exported {model} as {fmt} to {path} ({path.stat().st_size / 1e6:.2f} MB)")
