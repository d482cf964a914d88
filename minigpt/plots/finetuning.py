"""Figures of fine-tuning (chapter 5): a classifier's loss and accuracy epoch by epoch, which
position last-token pooling reads, which targets of an instruction batch count, and the
table of training choices."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure
from minigpt.plots.training import _rows

__all__ = ["plot_classification", "plot_last_token_pooling", "plot_instruction_targets", "plot_training_choices"]


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


def _role_grid(ax, roles, names, colors, texts=None):
    """Draw a (B, T) grid of small integer roles, one colour each, with a legend of names
    and, when given, a short text in every cell."""
    roles = np.asarray(roles)
    ax.imshow(roles, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(colors) - 0.5, aspect="equal")
    B, T = roles.shape
    ax.set_xticks(np.arange(T))
    ax.set_yticks(np.arange(B), [f"sequence {b}" for b in range(B)])
    ax.set_xticks(np.arange(T + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(B + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    if texts is not None:
        for b in range(B):
            for t in range(T):
                ax.text(t, b, texts[b][t], ha="center", va="center", fontsize=7)
    for name, color in zip(names, colors):
        ax.bar(0, 0, color=color, label=name)  # legend entries only
    ax.figure.legend(loc="outside lower center", ncol=2, frameon=False)


def plot_last_token_pooling(lengths, T: int, out_png=None) -> Figure:
    """Which hidden state a classifier reads: for each sequence of a right-padded batch,
    its real tokens, the padding, and the pooled position lengths[b] - 1 (the last real
    token, the only one that has read the whole text)."""
    lengths = np.asarray(lengths)
    positions = np.arange(T)[None, :]
    roles = np.where(positions < lengths[:, None], 0, 1)  # 0 real, 1 padding
    roles[np.arange(len(lengths)), lengths - 1] = 2  # the pooled position
    fig, ax = new_figure(max(6.0, 1.5 + 0.45 * T), 1.8 + 0.45 * len(lengths))
    _role_grid(ax, roles, ["real token", "padding (end-of-text)", "pooled: h[b, lengths[b] - 1]"],
               ["#9ecae1", "#e0e0e0", "#e6550d"])
    ax.set_xlabel("position t")
    ax.set_title("last-token pooling reads one position per sequence")
    return finish(fig, out_png)


def plot_instruction_targets(targets, prompt_lengths, ignore_index: int = -100, out_png=None,
                             title: str | None = None) -> Figure:
    """The targets of an instruction batch, position by position: prompt tokens (or -100
    where the prompt is masked), response tokens, the end-of-text that ends the response
    (a target: the model learns to stop) and the ignored padding.

    targets (B, T) as instruction collate returns them; prompt_lengths (B,) the number of
    prompt tokens of each row (target t is the token at position t + 1, a prompt token
    when t + 1 < prompt_length)."""
    targets = np.asarray(targets)
    B, T = targets.shape
    roles = np.zeros((B, T), dtype=int)
    texts = [[""] * T for _ in range(B)]
    for b in range(B):
        real = np.flatnonzero(targets[b] != ignore_index)
        last = real.max() if real.size else -1  # the row's end-of-text target
        for t in range(T):
            if targets[b, t] == ignore_index:
                roles[b, t] = 3 if t > last else 0  # padding, or a masked prompt token
                texts[b][t] = str(ignore_index)
            elif t == last:
                roles[b, t], texts[b][t] = 2, "eot"
            else:
                roles[b, t] = 0 if t + 1 < prompt_lengths[b] else 1
    fig, ax = new_figure(max(6.0, 1.5 + 0.42 * T), 1.8 + 0.5 * B)
    _role_grid(ax, roles, ["prompt token", "response token", "first end-of-text (a target)", "padding (ignored)"],
               ["#c6dbef", "#74c476", "#fd8d3c", "#e0e0e0"], texts)
    ax.set_xlabel("target position t (the token at t + 1)")
    ax.set_title(title or "which targets count")
    return finish(fig, out_png)


def plot_training_choices(rows, out_png=None, title: str | None = None) -> Figure:
    """Test accuracy of each row of a comparison table (minigpt.finetune.compare), as bars
    labelled with the number of parameters each trained. Rows trained with several seeds
    (`compare --seeds`) also show each seed's accuracy as a dot: the spread a bar hides."""
    rows = list(rows)
    fig, ax = new_figure(8, 0.9 + 0.5 * len(rows))
    names = [row["name"] for row in rows]
    accuracy = [100 * row["test_accuracy"] for row in rows]
    y = np.arange(len(rows))[::-1]
    ax.barh(y, accuracy, color=["#6baed6" if "trainable_fraction" in row else "#bdbdbd" for row in rows])
    seeded = [(yi, [100 * run["test_accuracy"] for run in row["seeds"]]) for yi, row in zip(y, rows) if "seeds" in row]
    if seeded:
        ax.scatter([acc for _, accs in seeded for acc in accs], [yi for yi, accs in seeded for _ in accs],
                   color="black", s=12, zorder=3, label=f"each seed ({len(seeded[0][1])} per row)")
        ax.legend(loc="lower right", fontsize=8)
    for yi, acc, row in zip(y, accuracy, rows):
        right = max([acc] + [100 * run["test_accuracy"] for run in row.get("seeds", ())])  # past the dots
        ax.text(right + 0.3, yi, f"{acc:.1f}%  ({row['trainable_params']:,} trained)", va="center", fontsize=8)
    ax.set_yticks(y, names)
    low = max(0.0, min(accuracy + [acc for _, accs in seeded for acc in accs]) - 10)
    ax.set_xlim(low, 100 + (100 - low) * 0.6)  # room on the right for the labels
    ax.set_xticks([tick for tick in ax.get_xticks() if low <= tick <= 100])  # no accuracy above 100%
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "SMS spam, one balanced split: what the transformer adds")
    return finish(fig, out_png)
