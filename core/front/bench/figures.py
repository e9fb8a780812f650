"""The paper's figures, drawn with matplotlib (Agg backend) from computed values:

* :func:`figure1`: the two generator costs against ``D(G(z))``, evaluated by the loss plugins'
  own ``gan_term`` functions on logits (``minimax_l1``: ``log(1 - D)``; ``ns_l1``: ``-log D``);
* :func:`figure5`: rows of grayscale | original | each run's colorization, on the same images;
* :func:`training_curves`: loss parts and validation metrics against images seen, from each
  run's ``metrics.jsonl``.

:func:`suite_figures` draws all three for a benchmark suite (``colorkit bench``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

DPI = 100
#: Characters per line of a Figure 5 column header (7 pt in a 1.25 inch column).
HEADER_CHARS = 22


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG, the same bytes for the same inputs, and close it."""
    from colorkit.kernel.files import atomic_path

    # no timestamps or software tags: the same inputs give the same bytes; written atomically
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


# -- Figure 1 -----------------------------------------------------------------------------------


def generator_costs(registry: Any, points: int = 199) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, str]]:
    """``D(G(z))`` in (0, 1), each adversarial loss's generator term at it, and its legend.

    Every registered loss whose :meth:`~colorkit.kernel.interfaces.Loss.gan_term` is not
    ``None`` takes part, with its default options: the term is called on the logit of each ``D``
    value, one point at a time (``gan_term`` averages over its input); the legend is the loss's
    name and its :attr:`~colorkit.kernel.interfaces.Loss.gan_label`.
    """
    d = np.linspace(0.005, 0.995, points)
    logits = torch.logit(torch.tensor(d, dtype=torch.float64))
    costs: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for name in registry.names("loss"):
        loss = registry.build("loss", name)
        if loss.gan_term(logits[:1]) is None:
            continue
        costs[name] = np.array([float(loss.gan_term(x.reshape(1))) for x in logits])
        labels[name] = f"{name}: {loss.gan_label}" if loss.gan_label else name
    return d, costs, labels


def figure1(registry: Any, path: str | Path) -> Path:
    """Figure 1: the generator cost of every adversarial loss against ``D(G(z))``."""
    d, costs, labels = generator_costs(registry)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, cost in costs.items():
        ax.plot(d, cost, label=labels[name])
    ax.set_xlabel(r"$D(G(z))$")
    ax.set_ylabel("generator cost (GAN term)")
    ax.set_title("Figure 1: generator costs, computed by the loss plugins")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, Path(path))


# -- Figure 5 -----------------------------------------------------------------------------------


def figure5(gens: Sequence[Any], labels: Sequence[str], data: Any, path: str | Path, rows: int = 8,
            title: str = "Figure 5", seed: int = 0) -> Path:
    """Rows of grayscale | original | each generator's colorization, on the same images (a
    seeded sample across the split of images with structure and colour, :func:`sample_rows`);
    each column's header is wrapped, never cut."""
    from colorkit.engine.images import sample_rows, wrap_label
    from colorkit.engine.scoring import no_colour_rgb8, predict_rgb8

    idx = sample_rows(data, rows, seed)
    items = [data[i] for i in idx]
    batch = torch.stack([it if isinstance(it, torch.Tensor) else it[0] for it in items])
    columns = [no_colour_rgb8(batch), batch.float() / 255.0]
    for gen in gens:
        was = gen.training
        gen.eval()
        with torch.no_grad():
            columns.append(predict_rgb8(gen, batch))
        gen.train(was)
    names = ["grayscale", "original", *labels]
    ncol = len(columns)
    fig, axes = plt.subplots(len(idx), ncol, figsize=(1.25 * ncol, 1.25 * len(idx) + 0.5), squeeze=False)
    for j, col in enumerate(columns):
        arr = col.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        for i in range(len(idx)):
            ax = axes[i][j]
            ax.imshow(arr[i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("\n".join(wrap_label(names[j], lambda t: len(t) <= HEADER_CHARS)), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, Path(path))


# -- training curves ----------------------------------------------------------------------------


LOSS_KEYS = ["l2", "l1", "gan", "d_real", "d_fake"]
VAL_KEYS = ["val_l1", "val_mae", "val_accuracy", "val_psnr"]


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    steps, vals = [], []
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return steps, vals
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("event") == "step":
            steps.append(rec)
        elif rec.get("event") == "val" or (rec.get("event") == "epoch" and "val_l1" in rec):
            vals.append(rec)
    return steps, vals


def training_curves(runs: dict[str, list[Path]], path: str | Path, title: str = "training curves") -> Path:
    """Loss parts (from ``step`` events) and validation metrics (``val`` events) against images
    seen; ``runs`` maps an experiment name to its run directories (one per seed)."""
    data = {name: [read_metrics(d) for d in dirs] for name, dirs in runs.items()}
    keys_loss = [k for k in LOSS_KEYS if any(k in s for runs_ in data.values() for steps, _ in runs_ for s in steps)]
    keys_val = [k for k in VAL_KEYS if any(k in v for runs_ in data.values() for _, vals in runs_ for v in vals)]
    panels = [("train", k) for k in keys_loss] + [("val", k) for k in keys_val]
    if not panels:
        panels = [("train", "none")]
    ncol = 3
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p, (kind, key) in enumerate(panels):
        ax = axes[p // ncol][p % ncol]
        for c, (name, runs_) in enumerate(data.items()):
            for s, (steps, vals) in enumerate(runs_):
                recs = steps if kind == "train" else vals
                pts = [(r["images"], r[key]) for r in recs if key in r and r[key] is not None
                       and math.isfinite(float(r[key]))]
                if not pts:
                    continue
                x, y = zip(*pts)
                ax.plot(x, y, color=colors[c % len(colors)], alpha=0.9 if s == 0 else 0.45, lw=1.0,
                        marker="o" if kind == "val" else None, ms=2.5,
                        label=name if s == 0 else None)
        where = "train (logged batches)" if kind == "train" else "validation (train.val_limit held-out images)"
        ax.set_title(f"{where}: {key}", fontsize=9)
        ax.set_xlabel("images seen", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for p in range(len(panels), nrow * ncol):
        axes[p // ncol][p % ncol].axis("off")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.suptitle(f"{title} (one line per seed; seed lines after the first are lighter)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", ncol=min(4, len(handles)),
                   fontsize=8, bbox_to_anchor=(0.5, 0.965), frameon=False)
    return save_figure(fig, Path(path))


# -- a suite ------------------------------------------------------------------------------------


def suite_figures(suite: Any, out: Path, registry: Any, log: Callable[[str], None] | None = None) -> list[str]:
    """Figure 1, Figure 5 (the runs of one seed) and the training curves of a suite's runs."""
    from colorkit.front.bench.rundirs import run_finished, run_name

    cfg = suite.figures or {}
    fig_dir = Path(out) / "figures"
    made: list[str] = []
    if cfg.get("figure1", True):
        made.append(str(figure1(registry, fig_dir / "figure1_generator_costs.png")))
    for fig, default in (("figure5", True), ("figure6", False)):
        f5 = cfg.get(fig, default)
        if not f5:
            continue
        f5 = f5 if isinstance(f5, dict) else {}
        names = f5.get("experiments") or [e.name for e in suite.experiments]
        seed = f5.get("seed", suite.seeds[0])
        ckpts = []
        for name in names:
            ckpt = Path(out) / "runs" / run_name(name, seed) / "checkpoints" / f"{suite.checkpoint}.pt"
            if ckpt.is_file() and run_finished(ckpt.parent.parent):
                ckpts.append((name, ckpt))
        if ckpts:
            path = figure5_from_checkpoints(suite, registry, ckpts, fig_dir / f"{fig}_samples.png",
                                            rows=int(f5.get("rows", 8)), seed=seed, title=f"Figure {fig[-1]}")
            made.append(str(path))
        elif log is not None:
            log(f"{fig}: no finished run with a checkpoint yet")
    if cfg.get("curves", True):
        runs = {}
        for e in suite.experiments:
            dirs = [Path(out) / "runs" / run_name(e.name, s) for s in suite.seeds]
            dirs = [d for d in dirs if (d / "metrics.jsonl").is_file()]
            if dirs:
                runs[e.name] = dirs
        if runs:
            made.append(str(training_curves(runs, fig_dir / "training_curves.png", title=f"{suite.name}: training curves")))
    return made


def figure5_from_checkpoints(suite: Any, registry: Any, ckpts: Sequence[tuple[str, Path]], path: Path,
                             rows: int = 8, seed: int = 0, title: str = "Figure 5",
                             checkpoint_name: str | None = None) -> Path:
    from colorkit.engine.evaluation import build_eval_dataset
    from colorkit.engine.inference import load_model

    models = [load_model(c, registry, device="cpu") for _, c in ckpts]
    prot = suite.protocol_for(suite.experiment(ckpts[0][0]))
    spec = models[0].dataset if prot.dataset in (None, models[0].dataset["name"]) else {"name": prot.dataset, "options": {}}
    ds, resolved = build_eval_dataset(registry, spec, None, dict(prot.options))
    split = prot.split or ds.test_split
    data = ds.split(split, train=False)
    if prot.images is not None and prot.images < len(data):
        data = torch.utils.data.Subset(data, range(prot.images))
    labels = [f"{name}\n{m.experiment_names}\nseed {seed}, step {m.step}" for (name, _), m in zip(ckpts, models)]
    return figure5([m.gen for m in models], labels, data, path, rows=rows, seed=seed,
                   title=f"{title}: {resolved['name']} {split}, {checkpoint_name or suite.checkpoint + '.pt'} of each run")
