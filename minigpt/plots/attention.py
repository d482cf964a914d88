"""Figures of chapter 2, attention: softmax saturating without the 1/sqrt(d) scale, and
attention weights as heat-maps (one matrix, or every head of every layer of a model)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["plot_softmax_saturation", "plot_attention_maps", "plot_attention_heads"]


def plot_softmax_saturation(dims, max_prob: dict, grad_size: dict | None = None, n_keys: int | None = None,
                            out_png=None) -> Figure:
    """How peaked softmax(q.k) gets as the dimension d grows, with and without 1/sqrt(d).

    dims: the dimensions measured; max_prob: {label: mean largest softmax weight at each d};
    grad_size (optional, a second panel): {label: mean size of the gradient that reaches
    the scores at each d}; n_keys: the number of keys, drawn as the uniform level 1/n_keys."""
    panels = 2 if grad_size else 1
    fig, axes = new_figure(5.2 * panels, 3.6, ncols=panels)
    axes = np.atleast_1d(axes)
    curves = [(axes[0], max_prob, "mean largest attention weight")]
    if grad_size:
        curves.append((axes[1], grad_size, "mean |gradient reaching the scores|"))
    for ax, series, ylabel in curves:
        for label, values in series.items():
            ax.plot(dims, values, marker="o", markersize=4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("dimension d of queries and keys")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if n_keys:
        axes[0].axhline(1.0 / n_keys, color="grey", linestyle=":", label=f"uniform (1/{n_keys})")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("softmax saturates unless scores are scaled")
    if grad_size:
        axes[1].set_yscale("log")
        axes[1].set_title("and a saturated softmax passes no gradient")
    axes[0].legend()
    return finish(fig, out_png)


def plot_attention_maps(maps: dict, tokens=None, ncols: int | None = None, out_png=None,
                        title: str | None = None) -> Figure:
    """Several (T, T) matrices side by side, row t = query position, column j = key position.

    maps: {panel title: matrix}. A matrix whose entries all lie in [0, 1] is drawn as
    attention weights (white 0 to dark blue 1); any other (scores) on its own colour scale,
    with -inf entries (masked positions) in grey. tokens: labels of the T positions."""
    names = list(maps)
    ncols = ncols or len(names)
    nrows = -(-len(names) // ncols)
    T = np.shape(maps[names[0]])[0]
    size = max(3.4, 1.0 + 0.13 * T)  # inches per panel: room for T tick labels and a title
    fig, axes = new_figure(size * ncols, size * nrows, ncols=ncols, nrows=nrows)
    axes = np.atleast_1d(axes).reshape(-1)
    weight_images = []  # panels of attention weights share one colour bar
    for ax, name in zip(axes, names):
        matrix = np.asarray(maps[name], dtype=np.float64)
        finite = matrix[np.isfinite(matrix)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            weight_images.append(ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0))
        else:
            image = ax.imshow(np.ma.masked_invalid(matrix), cmap=_grey_for_masked("viridis"))
            fig.colorbar(image, ax=ax, shrink=0.75)
        ax.set_title(name, fontsize=10)
        labels = [str(t) for t in tokens] if tokens is not None else [str(i) for i in range(T)]
        fontsize = 8 if T <= 16 else 6
        ax.set_xticks(range(T), labels, fontsize=fontsize, rotation=90 if tokens is not None else 0)
        ax.set_yticks(range(T), labels, fontsize=fontsize)
        ax.set_xlabel("key position (attended to)", fontsize=8)
        ax.set_ylabel("query position", fontsize=8)
    for ax in axes[len(names):]:
        ax.axis("off")
    if weight_images:
        fig.colorbar(weight_images[0], ax=[image.axes for image in weight_images], shrink=0.6,
                     label="attention weight")
    if title:
        fig.suptitle(title)
    return finish(fig, out_png)


def plot_attention_heads(weights, tokens=None, row: int = 0, out_png=None, title: str | None = None) -> Figure:
    """Every head of every layer for one sequence: a grid with a row per layer.

    weights: one (B, H, T, T) array per layer, as GPT.attention_weights() returns them;
    row: which sequence of the batch to draw; tokens: its T token ids, used as labels."""
    n_heads = np.shape(weights[0])[1]
    maps = {f"layer {layer}, head {head}": np.asarray(att)[row, head]
            for layer, att in enumerate(weights) for head in range(n_heads)}
    return plot_attention_maps(maps, tokens=tokens, ncols=n_heads, out_png=out_png, title=title)


def _grey_for_masked(name):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="lightgrey")
