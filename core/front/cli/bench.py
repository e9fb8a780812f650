"""``colorkit bench SUITE.yaml [--out DIR]``: run a benchmark suite (see :mod:`colorkit.front.bench.runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from colorkit.front.cli.common import get_registry, handle_errors


@handle_errors
def bench_command(
    ctx: typer.Context,
    suite: Annotated[Path, typer.Argument(help="the suite YAML file (experiments, seeds, budget, evaluation protocol)")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output folder (default: bench/<suite name>)")] = None,
    results_only: Annotated[bool, typer.Option("--results-only", help="train and evaluate nothing: rewrite results.csv, results.md and the figures from the runs present")] = False,
    no_figures: Annotated[bool, typer.Option("--no-figures", help="skip the figures")] = False,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="train and evaluate only these of the suite's seeds now (e.g. 0 or 0,1)")] = None,
    only: Annotated[Optional[str], typer.Option("--only", help="train and evaluate only these experiments now (comma-separated names)")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="runs trained side by side, one worker process each (default: the suite's jobs, else 1)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress display (the line per run start and end stays)")] = False,
) -> None:
    """Train what is missing of a suite, evaluate every run, write results.csv, results.md and figures.

    A rerun reuses finished runs and cached evaluations, and resumes interrupted runs. Progress
    goes to stderr: a line as each run starts and ends, and each run's progress display; the
    results table goes to stdout at the end.
    """
    from colorkit.front.bench.runner import run_suite
    from colorkit.front.bench.suite import load_suite
    from colorkit.kernel.errors import UsageError

    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(x) for x in seeds.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--seeds {seeds!r}: expected integers like 0 or 0,1") from None
    names = [x.strip() for x in only.split(",") if x.strip()] if only is not None else None
    run_suite(suite, out, registry=get_registry(ctx), log=lambda s: typer.echo(s, err=True),
              figures=not no_figures, only_results=results_only, seeds=seed_list, only=names, jobs=jobs,
              progress=not quiet)
    results = (out if out is not None else Path("bench") / load_suite(suite).name) / "results.md"
    typer.echo(results_summary(results))


def results_summary(results_md: Path) -> str:
    """The main table of a suite's ``results.md`` (its first Markdown table: a row per experiment,
    the "no colour" floor and the paper's numbers) and where the rest is."""
    table: list[str] = []
    for line in results_md.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return "\n".join([*table, f"protocol, per-run table and figures: {results_md}"])
