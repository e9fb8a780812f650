"""Quantised a*b*: the in-gamut grid of Zhang et al. 2016 ("Colorful Image Colorization").

The a*b* plane is cut into square cells of side ``GRID`` (10) centred on multiples of 10; a cell
is kept when some point of it (its centre, corners or edge midpoints) is the colour of an sRGB
pixel at some lightness: 261 cells (Zhang et al. keep 313 with a gamut test they do not spell
out). A generator that classifies colour predicts one logit per kept cell
(:func:`bin_centers` gives their centres, normalised as models see a*b*), and a loss encodes the
true a*b* of every pixel as a soft label over the cells around it (:func:`soft_encode`).

Decoding is the annealed mean (:func:`annealed_mean`): ``softmax(logits / T)`` weights the cell
centres; ``T = 1`` is the mean of the predicted distribution (safe, greyish), ``T -> 0`` its mode
(vivid, patchy); Zhang et al. use 0.38.
"""

from __future__ import annotations

import functools

import torch

from colorkit.kernel.color import AB_SCALE, lab_to_linear_rgb

#: Side of a cell in a*b* units.
GRID = 10.0
#: Centres on the grid from -LIMIT to LIMIT on both axes (every sRGB colour lies inside).
LIMIT = 110


@functools.cache
def _table() -> tuple[torch.Tensor, torch.Tensor]:
    """``(centres Q x 2 in a*b* units, lookup)``: ``lookup[i, j]`` is the kept cell nearest to
    grid point ``(i, j)`` (itself when kept), so any grid index maps to an in-gamut cell. Computed
    on the CPU whatever the default device (a model built on the ``meta`` device needs the count)."""
    with torch.device("cpu"):
        return _cpu_table()


def _cpu_table() -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.arange(-LIMIT, LIMIT + 1, GRID, dtype=torch.float64)
    n = len(axis)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    lightness = torch.linspace(0.5, 99.5, 100, dtype=torch.float64).view(-1, 1, 1)
    inside = torch.zeros(n, n, dtype=torch.bool)
    half = GRID / 2
    for da in (-half, 0.0, half):
        for db in (-half, 0.0, half):
            lab = torch.stack(torch.broadcast_tensors(lightness, a + da, b + db), dim=1)  # L x 3 x n x n
            linear = lab_to_linear_rgb(lab)
            inside |= ((linear >= 0) & (linear <= 1)).all(dim=1).any(dim=0)
    kept = inside.flatten().nonzero().squeeze(1)
    grid = torch.stack((a.flatten(), b.flatten()), dim=1)
    centres = grid[kept]
    nearest = torch.cdist(grid, centres).argmin(dim=1)
    return centres.float(), nearest.view(n, n)


def count() -> int:
    """Q, the number of in-gamut cells."""
    return len(_table()[0])


def bin_centers(device: torch.device | str = "cpu") -> torch.Tensor:
    """The cells' centres, ``Q x 2``, normalised as models see a*b* (``/ 110``)."""
    return (_table()[0] / AB_SCALE).to(device)


def _corners(ab: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The 4 grid points around each pixel of ``ab`` (``B x 2 x H x W``, normalised): their cell
    indices (``B x H x W``, in-gamut) and bilinear weights."""
    lookup = _table()[1].to(ab.device)
    n = lookup.shape[0]
    pos = ((ab.float() * AB_SCALE + LIMIT) / GRID).clamp(0, n - 1 - 1e-4)
    base = pos.floor()
    frac = pos - base
    i0, j0 = base[:, 0].long(), base[:, 1].long()
    fa, fb = frac[:, 0], frac[:, 1]
    indices, weights = [], []
    for di, dj, w in ((0, 0, (1 - fa) * (1 - fb)), (1, 0, fa * (1 - fb)), (0, 1, (1 - fa) * fb), (1, 1, fa * fb)):
        indices.append(lookup[i0 + di, j0 + dj])
        weights.append(w)
    return indices, weights


def soft_encode(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices B x 4 x H x W, weights B x 4 x H x W)``: each pixel's true a*b* as bilinear
    weights over the 4 grid points around it (out-of-gamut points replaced by their nearest kept
    cell); the weights sum to 1."""
    indices, weights = _corners(ab)
    return torch.stack(indices, dim=1), torch.stack(weights, dim=1)


def nearest(ab: torch.Tensor) -> torch.Tensor:
    """The index of each pixel's nearest kept cell (``B x H x W``) for normalised ``ab``."""
    lookup = _table()[1].to(ab.device)
    n = lookup.shape[0]
    pos = ((ab.float() * AB_SCALE + LIMIT) / GRID).round().long().clamp(0, n - 1)
    return lookup[pos[:, 0], pos[:, 1]]


@functools.cache
def grey_logits() -> torch.Tensor:
    """Logits (``Q``) of the broadest distribution over the cells whose mean is a* = b* = 0: the
    maximum-entropy one, ``softmax(-c . theta)`` with ``theta`` solved by Newton's method. A
    generator started there predicts the "no colour" floor at step 0, and every cell is open."""
    c = _table()[0].double() / AB_SCALE
    theta = torch.zeros(2, dtype=torch.float64)
    for _ in range(50):
        p = torch.softmax(-c @ theta, dim=0)
        mean = p @ c
        cov = (c * p[:, None]).T @ c - torch.outer(mean, mean)
        theta = theta + torch.linalg.solve(cov, mean)  # the gradient of logsumexp(-c . theta) is -mean
    return (-c @ theta).float()


def annealed_mean(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Normalised a*b* (``B x 2 x H x W``) from cell logits (``B x Q x H x W``):
    ``sum_q softmax(logits / T)_q * centre_q``."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probs, bin_centers(logits.device)).to(logits.dtype)


def rebalance_weights(counts: torch.Tensor, mix: float = 0.5) -> torch.Tensor:
    """Per-cell class-rebalancing weights from cell counts over a data set (Zhang et al., eq. 4):
    ``w ∝ 1 / ((1 - mix) p + mix / Q)``, ``p`` the cells' frequencies, scaled so that the
    expected weight of a pixel, ``sum_q p_q w_q``, is 1 (``mix = 1``: no rebalancing)."""
    p = counts.double() / counts.sum().clamp_min(1)
    w = 1.0 / ((1.0 - mix) * p + mix / len(p))
    return (w / (p * w).sum().clamp_min(1e-12)).float()
