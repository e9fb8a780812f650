"""What each lever of a time-to-quality suite does: every row against its reference row.

A row's reference is the row it changes one thing of:

* a ``from`` row: its source (the same weights, scored with other generator options);
* a row with a ``preset`` and ``set``/``config`` changes: the suite's row of the same preset with no
  changes (``fast-gan-lam300`` against ``fast-gan``).

Differences are paired by seed (row minus reference, the seeds both have at the mark), so a
``from`` row's difference is free of seed noise. A difference counts as measured (bold) when the
95% confidence interval of the mean paired difference (Student t, n - 1 degrees of freedom)
excludes zero at the precision the table prints (a +0.00 difference is not one, however tight);
with one seed pair nothing is judged.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

#: two-sided 95% Student t quantiles by degrees of freedom (1..10); larger samples use 10's
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def references(suite: Any) -> dict[str, str]:
    """``{row: reference row}`` for every row that has one (see the module's text)."""
    plain: dict[str, str] = {}
    for e in suite.experiments:
        if e.source is None and e.preset and not e.sets and not e.config:
            plain.setdefault(e.preset, e.name)
    refs = {}
    for e in suite.experiments:
        if e.source is not None:
            refs[e.name] = e.source
        elif e.preset and (e.sets or e.config) and e.preset in plain:
            refs[e.name] = plain[e.preset]
    return refs


def pairs(evals: dict[tuple[str, int], dict[str, Any]], row: str, ref: str, label: str,
          which: str, metric: str) -> list[tuple[float, float]]:
    """(row, reference) values at mark ``label`` for every seed both have one at; ``which`` "step"
    for the training steps, else the set ("cifar", "photos") of ``metric``."""
    out = []
    for (name, seed), ev in sorted(evals.items()):
        if name != row:
            continue
        a = ev.get("marks", {}).get(label)
        b = evals.get((ref, seed), {}).get("marks", {}).get(label)
        if a is None or b is None:
            continue
        va, vb = (a.get("step"), b.get("step")) if which == "step" else (a[which].get(metric), b[which].get(metric))
        if va is not None and vb is not None:
            out.append((float(va), float(vb)))
    return out


def interval(diffs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% interval (NaN for fewer than two values)."""
    mean = statistics.fmean(diffs) if diffs else math.nan
    if len(diffs) < 2:
        return mean, math.nan
    return mean, T95[min(len(diffs) - 1, 10)] * statistics.stdev(diffs) / math.sqrt(len(diffs))


def lever_table(suite: Any, evals: dict[tuple[str, int], dict[str, Any]], info: dict[str, Any],
                label: str, columns: list[tuple[str, str, str]]) -> list[str]:
    """Markdown lines: one row per lever with a reference, at the mark keyed ``label`` in ``evals``.
    ``columns``: (set, metric, heading) of the differences to show."""
    refs = references(suite)
    lines = []
    for e in suite.experiments:
        ref = refs.get(e.name)
        if ref is None:
            continue
        steps = pairs(evals, e.name, ref, label, "step", "")
        n = len(steps)
        if n == 0:
            continue
        cells, better, worse = [], [], []
        for which, metric, heading in columns:
            mean, half = interval([a - b for a, b in pairs(evals, e.name, ref, label, which, metric)])
            digits = 1 if metric in ("accuracy", "auc") else (3 if metric == "ssim" else 2)
            text = "–" if not math.isfinite(mean) else f"{mean:+.{digits}f}"
            if math.isfinite(half):
                text += f" ± {half:.{digits}f}"
                if round(abs(mean), digits) > round(half, digits):  # judged at the precision shown
                    text = f"**{text}**"
                    up = mean > 0
                    (better if up == info[metric]["higher_is_better"] else worse).append(heading)
            cells.append(text)
        ratio = sum(a for a, _ in steps) / max(sum(b for _, b in steps), 1.0)
        verdict = "one seed pair: not judged" if n < 2 else "; ".join(
            x for x in (("better: " + ", ".join(better)) if better else "",
                        ("worse: " + ", ".join(worse)) if worse else "") if x) or "no measured difference"
        lines.append(f"| {e.name} | {ref} | {n} | {ratio:.2f} | " + " | ".join(cells) + f" | {verdict} |")
    if not lines:
        return []
    return [f"### Each lever against its reference at {label} CPU-minutes", "",
            "Row minus reference, paired by seed (mean ± the half-width of its 95% interval, Student t); bold: the "
            "interval excludes zero. Steps: the row's training steps at the mark over the reference's (a lever that "
            "slows a step buys fewer of them in the same CPU-minutes).", "",
            "| row | reference | seed pairs | steps ratio | " + " | ".join(h for _, _, h in columns) + " | verdict |",
            "|" + "---|" * (5 + len(columns)), *lines, ""]
