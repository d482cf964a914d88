"""Figures shared by the command line and the notebooks.

Each function builds and returns a matplotlib `Figure` (and saves it when given a path).
Figures are made with `matplotlib.figure.Figure` rather than pyplot, so no window or
display is ever needed (the command line writes PNGs on headless machines), nothing is
kept in pyplot's global list of open figures, and a notebook shows the returned figure
when it is the last expression of a cell.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure


def read_metrics(path) -> list[dict]:
    """The rows of a metrics.jsonl file (a line cut short by a kill is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _rows(metrics) -> list[dict]:
    return read_metrics(metrics) if isinstance(metrics, (str, Path)) else list(metrics)


def _curves(curves: dict, ylabel: str, title: str, out_png) -> Figure:
    """curves: {label: (rows, key)}, each drawn as rows[i][key] against rows[i]["iter"]."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for label, (rows, key) in curves.items():
        ax.plot([row["iter"] for row in rows], [row[key] for row in rows], marker="o", markersize=3, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if out_png is not None:
        fig.savefig(out_png, dpi=120)
    return fig


def plot_losses(metrics, out_png=None, title: str | None = None) -> Figure:
    """Train and validation loss against iteration.

    metrics: the rows written by training ({"iter", "train_loss", "val_loss", ...}) or
    the path of a metrics.jsonl file. out_png: where to save the figure, if anywhere."""
    rows = _rows(metrics)
    return _curves({"train": (rows, "train_loss"), "validation": (rows, "val_loss")},
                   "cross-entropy loss (nats per token)", title or "loss during training", out_png)


def compare_val_losses(runs: dict, out_png=None, title: str | None = None) -> Figure:
    """The validation loss of several runs on one set of axes, to compare settings.

    runs: {label: metrics rows or the path of a metrics.jsonl file}."""
    return _curves({label: (_rows(metrics), "val_loss") for label, metrics in runs.items()},
                   "validation loss (nats per token)", title or "validation loss", out_png)


def plot_lr_schedule(warmup: int, lr_decay_iters: int, lr: float, min_lr: float,
                     max_iters: int | None = None, out_png=None) -> Figure:
    """The learning rate of every iteration: linear warm-up, cosine decay, then flat."""
    from minigpt.optim import lr_at

    iters = range((max_iters or lr_decay_iters) + 1)
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(iters, [lr_at(it, warmup, lr_decay_iters, lr, min_lr) for it in iters])
    ax.axvline(warmup, color="grey", linestyle=":", label=f"end of warm-up ({warmup})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    if out_png is not None:
        fig.savefig(out_png, dpi=120)
    return fig
