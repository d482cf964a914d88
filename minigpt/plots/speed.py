"""Figures of speed (chapter 6): the matmul ladder against BLAS."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["read_matmul_ladder", "plot_matmul_ladder"]

THREAD_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def read_matmul_ladder(results) -> list[dict]:
    """The rows of the matmul ladder measured by `python -m minigpt bench kernels`.

    results: the path of the JSON file that `bench kernels --json PATH` wrote, that file's
    contents, its "matmul" part, or the rows themselves ({"shape", "kernel", "threads",
    "gflops", "percent_of_blas", ...}, BLAS as kernel "BLAS")."""
    if isinstance(results, (str, Path)):
        path = Path(results)
        results = json.loads(path.read_text(encoding="utf-8"))
        if "kernels" not in results:
            raise ValueError(f"{path} holds no kernel benchmark (no 'kernels' key): write it with "
                             f"python -m minigpt bench kernels --json {path}")
    if isinstance(results, dict) and "kernels" in results:
        results = results["kernels"]["matmul"]
    if isinstance(results, dict):
        results = results["rows"]
    return list(results)


def plot_matmul_ladder(results, shape: str = "square", peak_gflops: float | None = None,
                       out_png=None, title: str | None = None) -> Figure:
    """GFLOP/s of every rung of the matmul ladder at one shape, BLAS as a line per thread count.

    results: as read_matmul_ladder takes it. shape: which of the benchmark's shapes to draw
    (its label, e.g. "square" for 512^3). One bar per rung and thread count, labelled with
    its % of BLAS on the same threads; a dashed line per thread count for BLAS; a dotted
    line for the machine's peak when `peak_gflops` is given: cores x clock (GHz) x float32
    FLOPs per cycle, which is FMA units x lanes per unit x 2 (a multiply-add is two FLOPs):
    2 x 8 x 2 = 32 for two 256-bit units (most AVX2 cores; AMD Zen 4 even for AVX-512),
    64 for two 512-bit units. The GFLOP/s axis is logarithmic: the ladder spans two orders
    of magnitude."""
    rows = [r for r in read_matmul_ladder(results) if r["shape"] == shape]
    if not rows:
        shapes = sorted({r["shape"] for r in read_matmul_ladder(results)})
        raise ValueError(f"no results for shape {shape!r}; the results have {shapes}")
    rungs = list(dict.fromkeys(r["kernel"] for r in rows if r["kernel"] != "BLAS"))
    thread_counts = sorted({r["threads"] for r in rows})
    found = {(r["kernel"], r["threads"]): r for r in rows}
    M, K, N = (rows[0][d] for d in "MKN")

    fig, ax = new_figure(9, 4)
    width = 0.8 / len(thread_counts)
    for n, (threads, colour) in enumerate(zip(thread_counts, THREAD_COLOURS)):
        label = f"{threads} thread{'s' if threads > 1 else ''}"
        xs = [x + (n - (len(thread_counts) - 1) / 2) * width for x, rung in enumerate(rungs)
              if (rung, threads) in found]
        measured = [found[rung, threads] for rung in rungs if (rung, threads) in found]
        bars = ax.bar(xs, [r["gflops"] for r in measured], width, color=colour, label=label)
        ax.bar_label(bars, [f"{r['percent_of_blas']:.0f}%" for r in measured], fontsize=7)
        if ("BLAS", threads) in found:
            blas = found["BLAS", threads]["gflops"]
            ax.axhline(blas, color=colour, linestyle="--", label=f"BLAS, {label}: {blas:.0f} GFLOP/s")
    if peak_gflops is not None:
        ax.axhline(peak_gflops, color="black", linestyle=":", label=f"peak: {peak_gflops:.0f} GFLOP/s")
    ax.set_yscale("log")
    ax.set_xticks(range(len(rungs)), [rung.replace("_", "\n") for rung in rungs], fontsize=8)
    ax.set_ylabel("GFLOP/s (float32)")
    ax.set_title(title or f"the matmul ladder, ({M}, {K}) @ ({K}, {N}); bar labels: % of BLAS on the same threads",
                 fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes, clear of the bars
    return finish(fig, out_png)
