"""Image grids and image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


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
