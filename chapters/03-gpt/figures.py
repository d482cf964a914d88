"""Regenerate this chapter's figures: python chapters/03-gpt/figures.py

Each PNG is drawn by a function of minigpt.plots from numbers the package computes; the
notebook (notebooks/03-gpt.ipynb) draws the same figures from the same calls."""

from pathlib import Path

from minigpt import plots
from minigpt.model import count_params, flops_per_token
from minigpt.model_sizes import GPT2_AND_GPT3, parameter_groups
from minigpt.residual import LABELS, WIRINGS, gradients_through_depth, share_of_top_gradient

HERE = Path(__file__).resolve().parent


def main():
    plots.plot_gelu(HERE / "gelu.png")
    shares = {LABELS[wiring]: share_of_top_gradient(gradients_through_depth(wiring)) for wiring in WIRINGS}
    plots.plot_gradient_through_depth(shares, HERE / "residual-gradient.png")
    plots.plot_parameter_breakdown({m.name: parameter_groups(m.config) for m in GPT2_AND_GPT3},
                                   HERE / "parameters.png")
    plots.plot_flops_against_params({m.name: (count_params(m.config), flops_per_token(m.config))
                                     for m in GPT2_AND_GPT3}, HERE / "flops.png")
    for png in sorted(HERE.glob("*.png")):
        print(f"wrote {png.relative_to(HERE.parents[1])} ({png.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
