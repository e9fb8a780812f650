"""What the CLI tests share: invoking ``colorkit`` in-process and reading a one-line error."""

from __future__ import annotations

from typer.testing import CliRunner

from colorkit.front.cli import app

runner = CliRunner()


def invoke(args, plugins=None, obj=True):
    """Run ``colorkit ARGS`` in this process; only the named ``plugins`` (none by default) load.

    ``obj=False`` loads plugins as an installed ``colorkit`` does (entry points included).
    """
    return runner.invoke(app, [str(a) for a in args], obj={"plugins": plugins or []} if obj else None)


def one_line_error(result, code: int = 2) -> str:
    """The one ``error: ...`` line a user mistake prints, after checking the exit code."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


#: A two-epoch run of a tiny U-Net on the bundled samples, on the CPU (seconds).
TINY_RUN = ["run", "--gen", "unet", "--set", "gen.base=8", "--loss", "l2", "--disc", "none", "--dataset", "samples",
            "--set", "dataset.size=32", "--set", "dataset.crops_per_epoch=16", "--set", "dataset.eval_crops=8",
            "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--metrics", "mae"]


def lines(text: str) -> list[str]:
    """The non-blank lines of a command's output."""
    return [line for line in text.splitlines() if line.strip()]
