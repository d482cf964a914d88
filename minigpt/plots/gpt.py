"""Figures of chapter 3, the GPT: GELU and its derivative, the gradient through the residual
stream, where the parameters of GPT-2 and GPT-3 are, and their FLOPs per token."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["plot_gelu", "plot_gradient_through_depth", "plot_parameter_breakdown", "plot_flops_against_params"]


def plot_gelu(out_png=None) -> Figure:
    """GELU (GPT-2's tanh form) beside ReLU and the exact erf form, and their derivatives.
    The curves come from minigpt.kernels.reference, the code the model runs."""
    from minigpt.kernels import reference

    x = np.linspace(-4, 4, 801)
    erf = np.vectorize(math.erf)
    exact = 0.5 * x * (1 + erf(x / math.sqrt(2)))  # x * Phi(x)
    exact_slope = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    fig, (left, right) = new_figure(9, 3.6, ncols=2)
    left.plot(x, reference.gelu_forward(x), label="GELU, tanh form (GPT-2)", linewidth=2)
    left.plot(x, exact, "k:", label="GELU, exact: x Φ(x)")
    left.plot(x, np.maximum(x, 0), "--", label="ReLU", alpha=0.7)
    left.set_title("the activation")
    right.plot(x, reference.gelu_backward(np.ones_like(x), x), label="d GELU / dx (tanh form)", linewidth=2)
    right.plot(x, exact_slope, "k:", label="d GELU / dx (exact)")
    right.plot(x, (x > 0).astype(float), "--", label="d ReLU / dx", alpha=0.7)
    right.set_title("its derivative")
    for ax in (left, right):
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, out_png)


def plot_gradient_through_depth(shares: dict, out_png=None) -> Figure:
    """shares: {wiring: array of the share of the top gradient found at each block's input,
    block 0 first and the top last} (minigpt.residual.share_of_top_gradient)."""
    fig, ax = new_figure(6, 3.8)
    for label, share in shares.items():
        ax.plot(np.arange(len(share)), share, marker="o", markersize=3, label=label)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("block (its input); the last point is the top of the stack")
    ax.set_ylabel("share of the top gradient\nfound in dL/dx here")
    ax.set_title("how much of the gradient at the top reaches each block")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig, out_png)


def plot_parameter_breakdown(groups: dict, out_png=None) -> Figure:
    """groups: {model name: {group: parameter count}} (minigpt.model_sizes.parameter_groups).
    One bar a model, split into the share of each group; the total is written beside it."""
    names = list(groups)
    group_names = list(next(iter(groups.values())))
    fig, ax = new_figure(8, 0.6 * len(names) + 1.8)
    left = np.zeros(len(names))
    for group in group_names:
        counts = np.array([groups[name][group] for name in names], dtype=float)
        totals = np.array([sum(groups[name].values()) for name in names], dtype=float)
        share = counts / totals
        ax.barh(names, share, left=left, label=group)
        for i, s in enumerate(share):
            if s > 0.06:
                ax.text(left[i] + s / 2, i, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += share
    for i, name in enumerate(names):
        ax.text(1.01, i, _human(sum(groups[name].values())), va="center", fontsize=9)
    ax.set_xlim(0, 1.12)
    ax.invert_yaxis()  # the first model on top
    ax.set_xlabel("share of the model's parameters")
    ax.set_title("where the parameters are")
    ax.legend(ncols=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(names) < 4 else -0.18))
    return finish(fig, out_png)


def plot_flops_against_params(models: dict, out_png=None) -> Figure:
    """models: {name: (parameters, training FLOPs per token)}, on log-log axes with the line
    6 N (6 FLOPs per parameter per token) for comparison."""
    fig, ax = new_figure(6, 4)
    params = np.array([p for p, _ in models.values()], dtype=float)
    line = np.geomspace(params.min() / 2, params.max() * 2, 50)
    ax.plot(line, 6 * line, "k:", label="6 N")
    for name, (n, flops) in models.items():
        ax.scatter([n], [flops], zorder=3)
        ax.annotate(name, (n, flops), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("training FLOPs per token")
    ax.set_title("compute per token grows with the parameters")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    return finish(fig, out_png)


def _human(n: float) -> str:
    """124439808 -> '124M', 1557611200 -> '1.56B' (three significant digits)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(int(n))
