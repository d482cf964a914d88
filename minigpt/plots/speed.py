"""Figures of speed (chapter 6): the matmul ladder against BLAS, the roofline, the cost of
a step against the batch size, and the traffic of an all-reduce."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from minigpt.plots.base import finish, new_figure

__all__ = ["read_matmul_ladder", "plot_matmul_ladder", "roofline", "plot_roofline", "plot_step_time_vs_batch",
           "plot_allreduce_traffic"]

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


def roofline(intensity, peak_gflops: float, bandwidth_gbs: float):
    """The roof: the fastest a kernel of `intensity` FLOPs per byte can run, in GFLOP/s,
    min(peak, bandwidth x intensity). Below the ridge point (peak / bandwidth FLOPs per
    byte) memory sets the pace; above it, arithmetic does."""
    return np.minimum(peak_gflops, bandwidth_gbs * np.asarray(intensity, dtype=np.float64))


def plot_roofline(points, peak_gflops: float, bandwidth_gbs: float, out_png=None, title: str | None = None) -> Figure:
    """Measured kernels on the roofline of this machine.

    points: {label: (flops, bytes, seconds)} per kernel call: the arithmetic it does, the
    bytes it must move at least (each input read once, each output written once), and its
    measured time. Each is drawn at its arithmetic intensity (flops / bytes) and achieved
    GFLOP/s; the roof is roofline(...) from the measured peak (e.g. BLAS sgemm) and memory
    bandwidth (e.g. a large copy). Both axes are logarithmic."""
    if not points:
        raise ValueError("plot_roofline needs at least one kernel: {label: (flops, bytes, seconds)}")
    for label, (flops, nbytes, seconds) in points.items():
        if flops <= 0 or nbytes <= 0 or seconds <= 0:
            raise ValueError(f"kernel {label!r}: flops, bytes and seconds must be positive, got "
                             f"{(flops, nbytes, seconds)}")
    intensities = {label: f / b for label, (f, b, _) in points.items()}
    achieved = {label: f / s / 1e9 for label, (f, _, s) in points.items()}
    ridge = peak_gflops / bandwidth_gbs
    low = min(min(intensities.values()), ridge) / 4
    high = max(max(intensities.values()), ridge) * 4
    x = np.geomspace(low, high, 200)

    fig, ax = new_figure(7, 4.2)
    ax.plot(x, roofline(x, peak_gflops, bandwidth_gbs), color="black",
            label=f"roof: {bandwidth_gbs:.0f} GB/s x intensity, capped at {peak_gflops:.0f} GFLOP/s")
    ax.axvline(ridge, color="grey", linestyle=":", label=f"ridge point: {ridge:.1f} FLOP/byte")
    for label in points:
        ax.scatter(intensities[label], achieved[label], s=30, zorder=3)
        ax.annotate(label, (intensities[label], achieved[label]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte moved)")
    ax.set_ylabel("achieved GFLOP/s (float32)")
    ax.set_title(title or "the roofline: memory-bound on the left of the ridge, compute-bound on the right",
                 fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return finish(fig, out_png)


def plot_step_time_vs_batch(rows, out_png=None, title: str | None = None) -> Figure:
    """Time per training step and tokens per second against the batch size.

    rows: [{"batch_size": B, "ms_per_step": ..., "tokens_per_s": ...}, ...]. The left panel
    draws a straight line through the step times (least squares): its value at batch 0 is
    the step's fixed cost, which no amount of arithmetic removes (Python, dispatch, thread
    wake-ups); the right panel shows tokens/s rising while that fixed cost dominates."""
    rows = sorted(rows, key=lambda r: r["batch_size"])
    if len(rows) < 2:
        raise ValueError(f"plot_step_time_vs_batch needs at least two batch sizes, got {len(rows)}")
    batch = np.array([r["batch_size"] for r in rows], dtype=np.float64)
    ms = np.array([r["ms_per_step"] for r in rows])
    slope, intercept = np.polyfit(batch, ms, 1)
    fig, (left, right) = new_figure(9, 3.6, ncols=2)
    left.plot(batch, ms, "o", label="measured (median)")
    xs = np.linspace(0, batch.max(), 50)
    left.plot(xs, intercept + slope * xs, "--", color="grey",
              label=f"fit: {intercept:.1f} ms + {slope:.2f} ms per sequence")
    left.set_xlabel("batch size (sequences)")
    left.set_ylabel("ms per training step")
    left.set_ylim(bottom=0)
    left.legend(fontsize=7)
    right.plot(batch, [r["tokens_per_s"] for r in rows], "o-")
    right.set_xlabel("batch size (sequences)")
    right.set_ylabel("tokens per second")
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title or "a small model pays a fixed cost per step: bigger batches amortise it", fontsize=9)
    return finish(fig, out_png)


def plot_allreduce_traffic(max_ranks: int = 16, out_png=None) -> Figure:
    """Elements each rank sends to all-reduce a buffer of P elements, as a multiple of P,
    for 2..max_ranks ranks: a ring sends 2 (N-1)/N P from every rank (never more than 2P,
    however many ranks), while gathering everything at rank 0 and sending the sum back makes
    rank 0 send and receive (N-1) P, growing with N."""
    if max_ranks < 2:
        raise ValueError(f"max_ranks must be at least 2, got {max_ranks}")
    n = np.arange(2, max_ranks + 1)
    fig, ax = new_figure(6, 3.6)
    ax.plot(n, 2 * (n - 1) / n, "o-", label="ring: every rank sends 2 (N-1)/N x P")
    ax.plot(n, n - 1, "s--", label="through rank 0: it sends (N-1) x P (and receives as much)")
    ax.axhline(2, color="grey", linestyle=":", label="2 x P")
    ax.set_yscale("log")
    ax.set_xlabel("ranks N")
    ax.set_ylabel("elements sent, in buffers of P")
    ax.set_title("all-reduce traffic per rank: the ring's stays under 2P", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return finish(fig, out_png)
