"""``colorkit turing``: the visual Turing test as a local web page (see :mod:`colorkit.front.turing.study`)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from colorkit.front.cli.common import get_registry
from colorkit.kernel.errors import UsageError


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def turing_command(
    ctx: typer.Context,
    models: Annotated[Optional[list[str]], typer.Argument(help="models to test: names (colorkit list model), run directories or checkpoints")] = None,
    images: Annotated[Optional[str], typer.Option("--images", help="a folder of colour photos, or a dataset name (its test split)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="the study directory (config, stimuli, answers)")] = None,
    port: Annotated[int, typer.Option("--port", help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[str, typer.Option("--host", help="address to listen on; 127.0.0.1 keeps the page on this machine")] = "127.0.0.1",
    size: Annotated[int, typer.Option("--size", help="longer side of the shown images, in pixels")] = 256,
    seconds: Annotated[float, typer.Option("--seconds", help="show each image this long, then hide it (0: until answered)")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the image sample and the orders")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="at most this many photos (0: all of a folder, 50 of a dataset)")] = 0,
    max_sessions: Annotated[int, typer.Option("--max-sessions", help="at most this many participant sessions in the study, earlier runs' included")] = 1000,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="where a dataset's files are")] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="print the results of this study directory instead")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="with --results: JSON for machines")] = False,
) -> None:
    """Run the paper's visual Turing test: people judge photos as real or colorized in a browser.

    Start a study with models and photos, open the printed address, and answer.

    Each participant session appends its answers to STUDY_DIR/answers/ as they come; a server
    started again on the same --out continues the sessions in progress.

    `--results STUDY_DIR` prints each model's fooling rate (its colorizations judged real, 95% CI).
    """
    from colorkit.front.turing.study import check_timing, create_study, format_summary, summarize

    if results is not None:
        if models or images is not None:
            raise UsageError("--results reads a finished study; give no models or --images with it")
        summary = summarize(results)
        typer.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
        return
    if images is None or out is None:
        raise UsageError("a new study needs models, --images DIR_OR_DATASET and --out STUDY_DIR "
                         "(or --results STUDY_DIR to read one)")
    from colorkit.front.turing.server import make_server

    check_timing(seconds, limit)  # NaN, infinite or negative values are one line, before any work
    log = lambda s: typer.echo(s, err=True)  # noqa: E731
    server = make_server(None, host, port, max_sessions)  # a port in use or out of range fails before any work
    try:
        study = create_study(models or [], images, out, registry=get_registry(ctx), size=size, seconds=seconds,
                             seed=seed, limit=limit, data_root=data_root, log=log)
    except BaseException:
        server.server_close()
        raise
    server.attach(study)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    typer.echo(f"visual Turing test: {study.n_images} photos, {len(study.conditions) - 1} model(s); "
               f"open http://{shown}:{bound_port}/ (answers go to {study.folder / 'answers'}; Ctrl+C stops)",
               err=True)
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill PID` stops it as Ctrl+C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo(f"stopped; colorkit turing --results {study.folder} prints the results", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
