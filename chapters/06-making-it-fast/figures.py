"""Regenerate this chapter's figures: python chapters/06-making-it-fast/figures.py

Three of the four figures are measurements of the machine that runs this script, taken
as the notebook (notebooks/06-making-it-fast.ipynb) takes them, on one thread: the
roofline (memory bandwidth, BLAS sgemm and four kernels of a shakespeare-char step), the
matmul ladder at 512^3 (minigpt.bench.kernels.matmul_ladder, 5 rounds; its parallel rungs
on every core too when the load average is below the core count), and the time of a
training step against the batch size (interleaved rounds). The fourth, the traffic of an
all-reduce, is arithmetic. About 10 seconds on an idle 2-core machine; on a busy one the
measured figures show the load (their titles give the load average)."""

import os
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from minigpt import plots
from minigpt.bench import seconds
from minigpt.bench.kernels import matmul_ladder
from minigpt.bench.train import PRESETS, minigpt_step, minigpt_trainer, random_batches, sgemm_gflops
from minigpt.kernels import numba_kernels
from minigpt.model import count_params

HERE = Path(__file__).resolve().parent
PRESET = PRESETS["shakespeare-char"]


def median_seconds(fn, repeats=20):
    fn()  # warm-up
    return float(np.median([seconds(fn) for _ in range(repeats)]))


def roofline_measurements():
    """(points, peak GFLOP/s, bandwidth GB/s) as the notebook's section 3 measures them."""
    big = np.ones(16 * 2**20, dtype=np.float32)  # 64 MB
    dst = np.empty_like(big)
    bandwidth = 2 * big.nbytes / np.median([seconds(lambda: np.copyto(dst, big)) for _ in range(5)]) / 1e9
    peak = sgemm_gflops(n=512, reps=30)  # the fastest call: the one least disturbed
    config = PRESET.config
    B, T, C, P = PRESET.batch_size, config.block_size, config.n_embd, count_params(config)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B * T, C)).astype(np.float32)
    w_fc = rng.standard_normal((C, 4 * C)).astype(np.float32)
    h = rng.standard_normal((B, T, 4 * C)).astype(np.float32)
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    p, g, m, v, decay = (rng.standard_normal(P).astype(np.float32) for _ in range(5))
    M, K, N = B * T, C, 4 * C
    points = {
        f"matmul ({M},{K})@({K},{N})": (2 * M * K * N, 4 * (M * K + K * N + M * N), median_seconds(lambda: x @ w_fc)),
        f"GELU ({B},{T},{4 * C})": (9 * h.size, 8 * h.size, median_seconds(lambda: numba_kernels.gelu_forward(h))),
        f"layernorm ({B},{T},{C})": (8 * x.size, 8 * x.size,
                                     median_seconds(lambda: numba_kernels.layernorm_forward(x, w, b))),
        f"AdamW ({P:,})": (15 * P, 28 * P, median_seconds(
            lambda: numba_kernels.adamw_update(p, g, m, v, decay, 1e-9, 0.9, 0.99, 1e-8, 0.0, 1))),
    }
    return points, peak, bandwidth


def step_times_by_batch(batch_sizes=(1, 2, 4, 8, 16), rounds=5):
    """[{batch_size, ms_per_step, tokens_per_s}]: the median of interleaved rounds."""
    steppers = {}
    for b in batch_sizes:
        step = minigpt_step(*minigpt_trainer(PRESET.config))
        x, y = random_batches(PRESET.config, b, 1, np.random.default_rng(b))[0]
        step(x, y)  # warm-up
        steppers[b] = (step, x, y)
    times = {b: [] for b in batch_sizes}
    for _ in range(rounds):
        for b, (step, x, y) in steppers.items():
            times[b].append(seconds(lambda: step(x, y)))
    rows = []
    for b in batch_sizes:
        ms = float(np.median(times[b])) * 1e3
        rows.append({"batch_size": b, "ms_per_step": ms, "tokens_per_s": b * PRESET.config.block_size / ms * 1e3})
    return rows


def main():
    numba.set_num_threads(1)  # one thread, as the notebook: the most reproducible numbers
    threadpool_limits(limits=1, user_api="blas")
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    print(load)
    points, peak, bandwidth = roofline_measurements()
    plots.plot_roofline(points, peak, bandwidth, out_png=HERE / "roofline.png",
                        title=f"four kernels of a training step on the roofline, 1 thread ({load})")
    # On a machine busier than its cores, a second thread measures the other processes, not
    # the kernel (it waits for a core at every synchronisation): then the ladder is drawn on one.
    cores = os.cpu_count() or 1
    thread_counts = [1, cores] if cores > 1 and os.getloadavg()[0] < cores else [1]
    ladder = matmul_ladder({"square": (512, 512, 512)}, thread_counts, rounds=5,
                           limit_blas=lambda n: threadpool_limits(limits=n, user_api="blas"), budget=0.05)
    plots.plot_matmul_ladder(ladder, out_png=HERE / "matmul-ladder.png",
                             title=f"the matmul ladder, 512^3; bar labels: % of BLAS on the same threads ({load})")
    plots.plot_step_time_vs_batch(step_times_by_batch(), out_png=HERE / "step-time-vs-batch.png",
                                  title=f"shakespeare-char, 1 thread: the fixed cost per step ({load})")
    plots.plot_allreduce_traffic(16, out_png=HERE / "allreduce-traffic.png")
    for png in sorted(HERE.glob("*.png")):
        print(f"wrote {png.relative_to(HERE.parents[1])} ({png.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
