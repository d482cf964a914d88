"""Figures of fine-tuning: a classifier's loss and accuracy on each split, epoch by epoch."""

from __future__ import annotations

from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure
from minigpt.plots.training import _rows

__all__ = ["plot_classification"]


def plot_classification(metrics, out_png=None, title: str | None = None) -> Figure:
    """Loss (left) and accuracy (right) against epoch, for the train, validation and test
    splits. metrics: the rows of a fine-tuning run's metrics.jsonl, or its path (epoch 0
    is the model before fine-tuning)."""
    rows = _rows(metrics)
    fig, (loss_ax, acc_ax) = new_figure(10, 3.8, ncols=2)
    epochs = [row["epoch"] for row in rows]
    for split, label in (("train", "train"), ("val", "validation"), ("test", "test")):
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in rows], marker="o", markersize=3, label=label)
        acc_ax.plot(epochs, [100 * row[f"{split}_accuracy"] for row in rows], marker="o", markersize=3, label=label)
    loss_ax.set_ylabel("cross-entropy loss")
    acc_ax.set_ylabel("accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or "classification fine-tuning")
    return finish(fig, out_png)
