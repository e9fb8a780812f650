"""Image grids and image files, and the paper's Figure 5 grid (grayscale | original | each
generator's colorization) that ``samples.png`` and ``colorkit eval --grid`` draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorkit.engine.scoring import eval_mode, no_colour_rgb8, predict_rgb8
from colorkit.kernel.errors import UsageError


def to_uint8_hwc(rgb: torch.Tensor) -> np.ndarray:
    """A ``3 x H x W`` float RGB tensor in ``[0, 1]`` to an ``H x W x 3`` uint8 array."""
    return (rgb.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def make_grid(columns: list[torch.Tensor], min_cell: int = 96, pad: int = 2) -> np.ndarray:
    """Rows of images side by side: ``columns[j][i]`` is row ``i``, column ``j``.

    Each column is a ``B x 3 x H x W`` float RGB batch in ``[0, 1]``; small images are enlarged
    (nearest neighbour, an integer factor) to at least ``min_cell`` pixels so a 32 px CIFAR-10
    grid is readable. White padding separates the cells.
    """
    rows = columns[0].shape[0]
    h, w = columns[0].shape[-2:]
    k = max(1, -(-min_cell // max(h, w)))
    cells = [F.interpolate(c.float().cpu(), scale_factor=k, mode="nearest") if k > 1 else c.float().cpu() for c in columns]
    ch, cw = h * k, w * k
    grid = torch.ones(3, rows * (ch + pad) + pad, len(columns) * (cw + pad) + pad)
    for j, col in enumerate(cells):
        for i in range(rows):
            y, x = pad + i * (ch + pad), pad + j * (cw + pad)
            grid[:, y : y + ch, x : x + cw] = col[i]
    return to_uint8_hwc(grid)


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    tmp.replace(path)


# -- the Figure 5 grid ----------------------------------------------------------------------------


def comparison_grid(
    gens: Sequence[Any],
    data: Any,
    rows: int = 8,
    device: str | torch.device = "cpu",
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """The paper's Figure 5 layout as an ``H x W x 3`` uint8 array: one row per image of
    ``data`` (its first ``rows`` items): grayscale | original | each generator's prediction;
    a header names the columns when ``labels`` (one per generator) are given."""
    device = torch.device(device)
    n = min(rows, len(data))
    if n < 1:
        raise UsageError("no images for the grid")
    items = [data[i] for i in range(n)]
    batch = torch.stack([it if isinstance(it, torch.Tensor) else it[0] for it in items]).to(device)
    columns = [no_colour_rgb8(batch).cpu(), (batch.float() / 255.0).cpu()]
    with eval_mode(gens):
        for gen in gens:
            columns.append(predict_rgb8(gen, batch).cpu())
    grid = make_grid(columns)
    if labels is None:
        return grid
    return _with_header(grid, ["grayscale", "original", *labels], len(columns))


def _with_header(grid: np.ndarray, names: Sequence[str], ncols: int, pad: int = 2) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    height = 16
    width = grid.shape[1]
    cell = (width - pad) // ncols
    header = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(header)
    font = ImageFont.load_default()
    for j, name in enumerate(names):
        text = name
        while text and draw.textlength(text, font=font) > cell - 4:
            text = text[:-2] + "…" if len(text) > 2 else ""
        x = pad + j * cell + max(0, (cell - pad - int(draw.textlength(text, font=font))) // 2)
        draw.text((x, 2), text, fill="black", font=font)
    return np.concatenate([np.asarray(header), grid], axis=0)


def write_grid(models: Sequence[Any], data: Any, path: str | Path, rows: int = 8) -> Path:
    """Write the Figure 5 grid of ``models`` (several checkpoints side by side) as PNG."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--grid {path}: the grid is written as PNG; give a .png file name")
    device = models[0].device if models else "cpu"
    grid = comparison_grid([m.gen for m in models], data, rows=rows, device=device,
                           labels=[m.label for m in models])
    save_png(grid, path)
    return path
