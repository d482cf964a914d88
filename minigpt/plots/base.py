"""What every figure shares: made without pyplot, saved small.

Figures are `matplotlib.figure.Figure` objects rather than pyplot's, so no window or
display is ever needed (the command line writes PNGs on headless machines), nothing is
kept in pyplot's global list of open figures, and a notebook shows a returned figure
when it is the last expression of a cell.
"""

from __future__ import annotations

from matplotlib.figure import Figure

DPI = 120  # PNGs of a few tens of KB: small enough to commit beside a chapter


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    """(fig, ax) for one panel, or (fig, axes array) for a grid of panels."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def finish(fig: Figure, out_png=None) -> Figure:
    """Save the figure when given a path; return it (a notebook cell then shows it)."""
    if out_png is not None:
        fig.savefig(out_png, dpi=DPI)
    return fig
