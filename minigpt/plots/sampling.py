"""Figures of sampling (chapter 4): what each rule leaves of the next-token distribution."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["token_label", "plot_next_token_distributions"]


def token_label(text: str) -> str:
    """A token as a tick label: whitespace made visible ('\\n', 'sp', '\\t')."""
    return text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "sp") if text.strip() == "" else text


def _entropy(probs: np.ndarray) -> float:
    p = probs[probs > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # + 0.0: a one-hot's -0.0 prints as 0.00


def plot_next_token_distributions(distributions: dict, token_labels=None, top_n: int = 12,
                                  ncols: int = 3, out_png=None) -> Figure:
    """One bar chart per sampling rule of the distribution it leaves over the next token.

    distributions: {label: probs (V,)}, e.g. from minigpt.generate.sampling_probs (one row),
    the first being the reference the others are compared with (usually temperature 1, no
    filter). The same top_n tokens are shown in every panel: the reference's most likely,
    in its order. The reference is drawn as a grey outline behind every panel, so what a
    rule moved or removed shows at a glance. Each title gives how many tokens keep a
    nonzero probability and the entropy in nats (lower: more predictable).
    token_labels: V strings for the ticks (e.g. tokenizer.decode([i])), or None for ids."""
    labels = list(distributions)
    dists = {label: np.asarray(probs, dtype=np.float64).reshape(-1) for label, probs in distributions.items()}
    V = len(next(iter(dists.values())))
    for label, probs in dists.items():
        if probs.shape != (V,):
            raise ValueError(f"distribution {label!r} has {probs.size} entries, the first one {V}")
    reference = dists[labels[0]]
    shown = np.argsort(-reference, kind="stable")[:top_n]  # (n,) token ids, most likely first
    ticks = [token_label(token_labels[i]) if token_labels is not None else str(i) for i in shown]
    nrows = -(-len(labels) // ncols)
    fig, axes = new_figure(3.2 * ncols, 2.5 * nrows, ncols=ncols, nrows=nrows)
    axes = np.atleast_1d(axes).reshape(-1)
    top = max(float(d[shown].max()) for d in dists.values()) * 1.08
    for ax, label in zip(axes, labels):
        probs = dists[label]
        x = np.arange(len(shown))
        ax.bar(x, reference[shown], color="none", edgecolor="0.6", linewidth=0.8, label="reference")
        kept = probs[shown] > 0
        ax.bar(x[kept], probs[shown][kept], color="tab:blue", alpha=0.85)
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_ylim(0, top)
        ax.set_title(f"{label}\n{int(np.count_nonzero(probs))} of {V} kept, entropy {_entropy(probs):.2f}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    axes[0].set_ylabel("probability")
    return finish(fig, out_png)
