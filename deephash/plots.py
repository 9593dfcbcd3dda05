"""Figures for run directories and reports (matplotlib, Agg backend, PNG written atomically).

* :func:`pr_curve` — precision vs recall over Hamming radii (``metrics["pr_curve"]``);
* :func:`training_curves` — each training-history series against the epoch;
* :func:`metric_vs_bits` — a metric (e.g. mAP) against the code length, one line per method.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

from deephash.io import atomic_write


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (headless machines, CI)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str) -> str:
    """Render ``fig`` to PNG, close it, and write the file atomically; returns ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def pr_curve(
    curves: Mapping[str, Mapping[str, Sequence[float]]] | Mapping[str, Sequence[float]],
    path: str,
    title: str = "Precision-recall (Hamming radius 0..k)",
) -> str:
    """Plot one PR curve (``{"precision": [...], "recall": [...]}``) or several
    (``{label: curve}``) and write a PNG to ``path``."""
    if "precision" in curves and "recall" in curves:
        curves = {"": curves}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, c in curves.items():
        p, r = list(c["precision"]), list(c["recall"])
        if len(p) != len(r):
            raise ValueError(f"pr curve {label!r}: {len(p)} precisions but {len(r)} recalls")
        ax.plot(r, p, marker=".", label=label or None)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if any(curves):
        ax.legend()
    return save_png(fig, path)


def training_curves(
    history: Mapping[str, Sequence[float]],
    path: str,
    title: str = "Training",
    epochs: Mapping[str, Sequence[int]] | None = None,
    best_epoch: int | None = None,
    levels: Mapping[str, tuple[float, str]] | None = None,
) -> str:
    """One subplot per history series (loss terms, validation mAP, ...) against the epoch.
    ``epochs``: the epoch of each value of a series not recorded every epoch (e.g.
    ``{"val_map": [5, 10, ...]}``); ``best_epoch``: drawn as a dashed line in every subplot
    (the epoch whose weights early stopping kept); ``levels``: ``{series: (value, label)}``
    drawn as a dotted horizontal line in that series' subplot (e.g. the validation mAP of a
    model that learned nothing)."""
    series = {k: list(v) for k, v in history.items() if len(v)}
    if not series:
        raise ValueError("training_curves: the history is empty")
    plt = pyplot()
    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        xs = list((epochs or {}).get(name, [])) or list(range(1, len(values) + 1))
        if len(xs) != len(values):
            raise ValueError(
                f"training_curves: {name!r} has {len(values)} values but {len(xs)} epochs"
            )
        ax.plot(xs, values, marker=".")
        if best_epoch is not None:
            ax.axvline(
                best_epoch,
                color="tab:red",
                linestyle="--",
                linewidth=1,
                label=f"best epoch {best_epoch}",
            )
        if name in (levels or {}):
            value, label = levels[name]
            ax.axhline(value, color="tab:gray", linestyle=":", linewidth=1, label=label)
            ax.legend(fontsize="small")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if best_epoch is not None:
        axes[0][0].legend(fontsize="small")
    fig.suptitle(title, y=1.03)
    return save_png(fig, path)


def metric_vs_bits(
    results: Mapping[str, Mapping[int, float]],
    path: str,
    metric: str = "mAP",
    title: str | None = None,
) -> str:
    """``results = {method: {bits: value}}``: one line per method."""
    if not results:
        raise ValueError("metric_vs_bits: no results to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for method, by_bits in results.items():
        bits = sorted(int(b) for b in by_bits)
        ax.plot(
            bits,
            [by_bits[b] if b in by_bits else by_bits[str(b)] for b in bits],
            marker="o",
            label=method,
        )
        ax.set_xticks(bits)
    ax.set_xlabel("bits")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"{metric} vs code length")
    return save_png(fig, path)
