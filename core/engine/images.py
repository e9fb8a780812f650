"""Image grids and image files, and the paper's Figure 5 grid (grayscale | original | each
generator's colorization) that ``samples.png`` and ``colorkit eval --grid`` draw."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorkit.engine.inference import to_uint8
from colorkit.engine.scoring import eval_mode, no_colour_rgb8, predict_rgb8
from colorkit.kernel import color
from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import atomic_path


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
    return to_uint8(grid).permute(1, 2, 0).cpu().numpy()


def save_png(array: np.ndarray, path: Path) -> None:
    """Write an ``H x W x 3`` uint8 array as PNG, atomically (:func:`~colorkit.kernel.files.atomic_path`)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


# -- the Figure 5 grid ----------------------------------------------------------------------------


#: What a sample row's truth must hold to show a colorizer at work (:func:`showing`): L*
#: structure (its standard deviation, on the 0-100 scale) and colour (mean a*b* chroma).
MIN_L_STD, MIN_CHROMA = 8.0, 5.0
#: Candidates drawn per row when rows are chosen by what they show.
CANDIDATES = 8


def sample_indices(n_items: int, rows: int, seed: int = 0, score: Callable[[int], float] | None = None) -> list[int]:
    """``rows`` indices of a split, a seeded sample across it: one from each of ``rows`` equal
    slices, so a class-ordered split (CIFAR-10) shows several classes and a photo-ordered one
    (``samples``) several photos; the same ``seed`` gives the same rows. ``eval --limit N`` scores
    such a sample too (every class of CIFAR-10's class-sorted test split in its share).

    Without ``score``, each is drawn at random from its slice. With it (index to a number,
    :func:`showing`), up to :data:`CANDIDATES` are drawn from each slice, seeded, and the row is
    the first that scores 1 or more, else the best of them."""
    rows = max(0, min(rows, n_items))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, n_items, rows + 1)
    picked = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        lo, hi = int(lo), max(int(lo) + 1, int(hi))
        if score is None:
            picked.append(int(rng.integers(lo, hi)))
            continue
        candidates = [lo + int(k) for k in rng.choice(hi - lo, size=min(CANDIDATES, hi - lo), replace=False)]
        scores: list[float] = []
        for i in candidates:
            scores.append(score(i))
            if scores[-1] >= 1.0:
                break
        picked.append(candidates[int(np.argmax(scores))])
    return picked


def showing(item: Any) -> float:
    """How well an image (a uint8 RGB ``3 x H x W`` tensor, or an ``(image, label)`` pair) can show
    a colorizer at work, judged on its truth: ``min(L* std / MIN_L_STD, mean chroma / MIN_CHROMA)``;
    1 or more has both structure and colour (a dark sky, a black field of stars, a grey wall or a
    flat coloured surface score less)."""
    rgb = item if isinstance(item, torch.Tensor) else item[0]
    rgb = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float()
    lab = color.rgb_to_lab(rgb[None].clamp(0, 1))[0]
    chroma = lab[1:].pow(2).sum(0).sqrt().mean()
    return float(min(lab[0].std() / MIN_L_STD, chroma / MIN_CHROMA))


def sample_rows(data: Any, rows: int, seed: int = 0) -> list[int]:
    """The rows of a Figure 5 grid (``samples.png``, ``eval --grid``, bench's figure5): a seeded
    sample across ``data`` (:func:`sample_indices`) of images whose truth :func:`showing` has
    structure and colour, so the grid shows what the model does with them."""
    return sample_indices(len(data), rows, seed, score=lambda i: showing(data[i]))


def wrap_label(text: str, fits: Callable[[str], bool]) -> list[str]:
    """``text`` as lines that each ``fits``, broken after ``-``, ``_``, ``/``, ``,`` or a space
    where it can, within a word where it must; ``\n`` starts a new line. Nothing is cut."""
    lines: list[str] = []
    for part in text.split("\n"):
        line = ""
        for piece in re.findall(r"[^-_/, ]*[-_/, ]?", part):
            if not piece:
                continue
            if fits((line + piece).rstrip()):
                line += piece
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = ""
            for ch in piece:  # a piece too wide alone goes on, a character at a time
                if line and not fits((line + ch).rstrip()):
                    lines.append(line.rstrip())
                    line = ""
                line += ch
        lines.append(line.rstrip())
    return lines


def model_header(models: Sequence[Any]) -> list[str]:
    """Column headers for loaded models (:class:`~colorkit.engine.inference.LoadedModel`): the
    registered model name, or the experiment's names (gen/disc/loss/dataset), then the
    checkpoint file and its step; the run directory's name too only where two headers would
    otherwise read the same."""
    heads = []
    for m in models:
        step = f", step {m.step}" if m.step is not None else ""
        heads.append(f"{m.name or m.experiment_names}\n{m.path.name}{step}")
    return [f"{h}\n{m.run_name}" if heads.count(h) > 1 else h for h, m in zip(heads, models)]


def comparison_grid(
    gens: Sequence[Any],
    data: Any,
    rows: int = 8,
    device: str | torch.device = "cpu",
    labels: Sequence[str] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The paper's Figure 5 layout as an ``H x W x 3`` uint8 array: one row per image of
    ``data`` (a seeded sample across it, :func:`sample_rows`): grayscale | original | each
    generator's prediction; a header names the columns when ``labels`` (one per generator) are
    given, each wrapped onto as many lines as it needs."""
    device = torch.device(device)
    idx = sample_rows(data, rows, seed)
    if not idx:
        raise UsageError("no images for the grid")
    items = [data[i] for i in idx]
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
    from PIL import ImageDraw, ImageFont

    width = grid.shape[1]
    cell = (width - pad) // ncols
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.load_default()
    columns = [wrap_label(name, lambda t: draw.textlength(t, font=font) <= cell - 4) for name in names]
    line_height = 12
    header = Image.new("RGB", (width, 4 + line_height * max(len(c) for c in columns)), "white")
    draw = ImageDraw.Draw(header)
    for j, lines in enumerate(columns):
        for k, text in enumerate(lines):
            x = pad + j * cell + max(0, (cell - pad - int(draw.textlength(text, font=font))) // 2)
            draw.text((x, 2 + k * line_height), text, fill="black", font=font)
    return np.concatenate([np.asarray(header), grid], axis=0)


def write_grid(models: Sequence[Any], data: Any, path: str | Path, rows: int = 8, seed: int = 0) -> Path:
    """Write the Figure 5 grid of ``models`` (several checkpoints side by side) as PNG, each
    column headed by :func:`model_header`."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--grid {path}: the grid is written as PNG; give a .png file name")
    device = models[0].device if models else "cpu"
    grid = comparison_grid([m.gen for m in models], data, rows=rows, device=device, labels=model_header(models),
                           seed=seed)
    save_png(grid, path)
    return path
