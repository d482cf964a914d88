"""Figures of training: loss curves, several runs compared, the learning-rate schedule."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["read_metrics", "plot_losses", "compare_val_losses", "plot_lr_schedule"]


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
    fig, ax = new_figure(6, 4)
    for label, (rows, key) in curves.items():
        ax.plot([row["iter"] for row in rows], [row[key] for row in rows], marker="o", markersize=3, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, out_png)


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
    fig, ax = new_figure(6, 3)
    ax.plot(iters, [lr_at(it, warmup, lr_decay_iters, lr, min_lr) for it in iters])
    ax.axvline(warmup, color="grey", linestyle=":", label=f"end of warm-up ({warmup})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, out_png)
