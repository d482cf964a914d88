"""Kernel benchmarks: Numba vs the NumPy reference, hand-written matmuls vs BLAS.

    python -m minigpt bench kernels [--iters REPEATS] [--startup]

Three tables, each measured in one run so that the ratios are fair on a shared, noisy
machine (absolute times drift; ratios taken back to back drift much less):

1. Every kernel at the shapes of the training benchmark (its shakespeare-char preset and
   batch size): the NumPy reference time, the Numba time, and the speed-up. The two are
   timed alternately and the best of --iters repeats (default 7) is kept for each.
2. The hand-written matmuls (naive, blocked, parallel) in GFLOP/s against np.matmul
   (BLAS sgemm) on the MLP's shape and on a square matrix.
3. With --startup: the wall time of a fresh Python process that calls every Numba kernel
   once, with an empty compilation cache (cold) and then with the cache filled (warm).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from minigpt import kernels
from minigpt.bench import seconds
from minigpt.bench.train import BATCH_SIZE, PRESET
from minigpt.kernels import matmul_by_hand, numba_kernels, reference
from minigpt.model import parameter_shapes

# The training benchmark's shapes (importing its module does not import torch: PyTorch
# runs in a child process there).
GPT_SHAPES = {"B": BATCH_SIZE, "T": PRESET.block_size, "C": PRESET.n_embd, "H": PRESET.n_head,
              "V": PRESET.vocab_size}
DEFAULT_REPEATS = 7


def best_time(fn, number):
    """Seconds per call: `number` calls timed together, so tiny kernels are measurable."""
    def repeat():
        for _ in range(number):
            fn()

    return seconds(repeat) / number


def compare(*fns, repeats=7, budget=0.02):
    """Best-of-`repeats` seconds per call of each function, timed in turn (interleaved, so
    a burst of load from elsewhere on the machine hits all of them alike)."""
    for fn in fns:
        fn()  # warm up (and compile)
    number = max(1, int(budget / max(max(best_time(fn, 1) for fn in fns), 1e-7)))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            fn_times.append(best_time(fn, number))
    return [min(fn_times) for fn_times in times]


def single_threaded(fn):
    """fn run with Numba limited to one thread (prange loops then run serially)."""
    def call():
        with kernels.single_threaded():
            fn()

    return call


def kernel_cases(dtype=np.float32, seed=0):
    """(name, shape description, function(module) -> None) for every kernel at GPT shapes."""
    rng = np.random.default_rng(seed)
    B, T, C, H, V = (GPT_SHAPES[k] for k in "BTCHV")
    hs = C // H

    def randn(*shape):
        return rng.standard_normal(shape).astype(dtype)

    x, dx = randn(B, T, C), randn(B, T, C)
    w, b = randn(C), randn(C)
    _, mean, rstd = reference.layernorm_forward(x, w, b)
    hidden, dhidden = randn(B, T, 4 * C), randn(B, T, 4 * C)
    scores = randn(B, H, T, T)
    probs_tt = reference.softmax_forward(scores)
    q, k, v, dout = randn(B, H, T, hs), randn(B, H, T, hs), randn(B, H, T, hs), randn(B, H, T, hs)
    _, att = reference.attention_forward(q, k, v)
    mask = (rng.random((B, H, T, T)) > 0.1).astype(dtype) / dtype(0.9)
    logits = randn(B * T, V)
    targets = rng.integers(0, V, B * T)
    targets[::7] = -100
    _, probs = reference.cross_entropy_forward(logits, targets)
    dlosses = np.full(B * T, 1.0 / (B * T), dtype=dtype)
    idx = rng.integers(0, V, (B, T))
    n_params = sum(math.prod(s) for s in parameter_shapes(PRESET).values())  # the preset's count
    params, grads = randn(n_params), randn(n_params)
    m, v2, decay = np.zeros_like(params), np.zeros_like(params), np.ones_like(params)

    shape_ln, shape_att = f"({B},{T},{C})", f"({B},{H},{T},{hs})"
    return [
        ("softmax_forward", f"({B},{H},{T},{T})", lambda K: K.softmax_forward(scores)),
        ("softmax_backward", f"({B},{H},{T},{T})",
         lambda K: K.softmax_backward(scores, probs_tt)),
        ("layernorm_forward", shape_ln, lambda K: K.layernorm_forward(x, w, b)),
        ("layernorm_backward", shape_ln, lambda K: K.layernorm_backward(dx, x, w, mean, rstd)),
        ("gelu_forward", f"({B},{T},{4 * C})", lambda K: K.gelu_forward(hidden)),
        ("gelu_backward", f"({B},{T},{4 * C})", lambda K: K.gelu_backward(dhidden, hidden)),
        ("cross_entropy_forward", f"({B * T},{V})",
         lambda K: K.cross_entropy_forward(logits, targets)),
        ("cross_entropy_backward", f"({B * T},{V})",
         lambda K: K.cross_entropy_backward(dlosses, probs, targets)),
        ("attention_forward", shape_att, lambda K: K.attention_forward(q, k, v)),
        ("attention_forward+dropout", shape_att, lambda K: K.attention_forward(q, k, v, mask)),
        ("attention_backward", shape_att, lambda K: K.attention_backward(dout, q, k, v, att)),
        ("embedding_backward", f"({B},{T},{C})->({V},{C})",
         lambda K: K.embedding_backward(x, idx, V)),
        ("adamw_update", f"({n_params:,})",
         lambda K: K.adamw_update(params, grads, m, v2, decay, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1)),
        ("matmul (BLAS in both)", f"({B * T},{C})@({C},{4 * C})",
         lambda K: K.matmul(x.reshape(-1, C), hidden.reshape(-1, 4 * C)[:C])),
    ]


def kernel_table(repeats):
    print("Numba vs NumPy reference, float32, GPT shapes "
          + ", ".join(f"{k}={v}" for k, v in GPT_SHAPES.items()))
    print("(numba 1t: Numba on one thread; numba: on all threads. Speed-up = numpy / numba.)")
    print(f"{'kernel':26s} {'shape':22s} {'numpy us':>9s} {'numba 1t':>9s} {'numba us':>9s}"
          f" {'speed-up 1t':>11s} {'speed-up':>9s}")
    speedups = []
    for name, shape, call in kernel_cases():
        t_numpy, t_one, t_all = compare(lambda: call(reference),
                                        single_threaded(lambda: call(numba_kernels)),
                                        lambda: call(numba_kernels), repeats=repeats)
        speedups.append((t_numpy / t_one, t_numpy / t_all))
        print(f"{name:26s} {shape:22s} {t_numpy * 1e6:9.1f} {t_one * 1e6:9.1f} "
              f"{t_all * 1e6:9.1f} {t_numpy / t_one:10.2f}x {t_numpy / t_all:8.2f}x")
    geo_one, geo_all = np.exp(np.mean(np.log(speedups), axis=0))
    print(f"{'geometric mean':26s} {'':22s} {'':9s} {'':9s} {'':9s} {geo_one:10.2f}x "
          f"{geo_all:8.2f}x\n")


def matmul_table(repeats):
    print("Hand-written Numba matmuls vs BLAS sgemm (np.matmul, float32)")
    print(f"{'shape (M,K,N)':18s} {'kernel':10s} {'GFLOP/s':>9s} {'% of BLAS':>10s}")
    rng = np.random.default_rng(0)
    B, T, C = GPT_SHAPES["B"], GPT_SHAPES["T"], GPT_SHAPES["C"]
    for M, K, N in [(B * T, C, 4 * C), (512, 512, 512)]:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        flops = 2.0 * M * K * N
        for name, fn in matmul_by_hand.KERNELS.items():
            # the naive kernel is slow: fewer repeats keep the benchmark short
            t_blas, t_ours = compare(lambda: np.matmul(a, b), lambda: fn(a, b),
                                     repeats=repeats if name != "naive" else 2)
            print(f"{str((M, K, N)):18s} {name:10s} {flops / t_ours / 1e9:9.2f} "
                  f"{100 * t_blas / t_ours:9.1f}%")
        print(f"{str((M, K, N)):18s} {'BLAS':10s} {flops / t_blas / 1e9:9.2f} {100.0:9.1f}%")
    print()


STARTUP_SCRIPT = """
import numpy as np
from minigpt.kernels import numba_kernels as K
for dtype in (np.float32, np.float64):
    x = np.ones((2, 3, 4), dtype); w = np.ones(4, dtype)
    K.softmax_backward(x, K.softmax_forward(x))
    out, mean, rstd = K.layernorm_forward(x, w, w); K.layernorm_backward(x, x, w, mean, rstd)
    K.gelu_backward(x, K.gelu_forward(x))
    t = np.array([0, 1, -100]); losses, probs = K.cross_entropy_forward(x[0], t)
    K.cross_entropy_backward(losses, probs, t)
    q = x[None]; out, att = K.attention_forward(q, q, q); K.attention_backward(q, q, q, q, att)
    K.embedding_backward(x, np.zeros((2, 3), dtype=np.int64), 5)
    p = np.ones(8, dtype)
    K.adamw_update(p, p.copy(), p * 0, p * 0, p.copy(), 1e-3, 0.9, 0.95, 1e-8, 0.1, 1)
"""


def startup_table():
    print("Numba start-up: fresh process calling every kernel once (float32 + float64)")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
                   PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for label in ("cold (empty cache)", "warm (cache filled)"):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", STARTUP_SCRIPT], env=env, check=True)
            print(f"{label:22s} {time.perf_counter() - start:7.2f} s")
    print()


def run(args) -> int:
    repeats = args.iters or DEFAULT_REPEATS
    import numba

    print(f"numba {numba.__version__}, numpy {np.__version__}, "
          f"{numba.get_num_threads()} Numba threads\n")
    kernel_table(repeats)
    matmul_table(repeats)
    if args.startup:
        startup_table()
    return 0
