"""Kernel benchmarks: Numba vs the NumPy reference, hand-written matmuls vs BLAS.

    python -m minigpt bench kernels [--iters REPEATS] [--startup]

Three tables, each measured in one run so that the ratios are fair on a shared, noisy
machine (absolute times drift; ratios taken back to back drift much less):

1. Every kernel at the shapes of the training benchmark (its shakespeare-char preset and
   batch size): the NumPy reference time, the Numba time, and the speed-up. The two are
   timed alternately and the best of --iters repeats (default 7) is kept for each.
2. The matmul ladder (minigpt/kernels/matmul_by_hand.py): every hand-written matmul in
   GFLOP/s and as a percentage of np.matmul (BLAS sgemm) on the same number of threads,
   on one thread and on all of them, at 512^3 and at the matmul shapes of a
   shakespeare-char training step. Each of --iters rounds runs every kernel and BLAS in
   turn, at each thread count; the fastest call of each is kept.
3. With --startup: the wall time of a fresh Python process that calls every Numba kernel
   once, with an empty compilation cache (cold) and then with the cache filled (warm).

With --json, every number goes to the file under "kernels"
(plots.plot_matmul_ladder draws the ladder from it).
"""

from __future__ import annotations

import contextlib
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
    qkv, dy = randn(B, T, 3 * C), randn(B, T, C)
    _, qkv_att = reference.qkv_attention_forward(qkv, H)
    bias4 = randn(4 * C)
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
        ("residual_layernorm_forward", shape_ln, lambda K: K.residual_layernorm_forward(x, dx, w, b)),
        ("residual_layernorm_backward", shape_ln,
         lambda K: K.residual_layernorm_backward(dx, x, x, w, mean, rstd)),
        ("bias_gelu_forward", f"({B},{T},{4 * C})", lambda K: K.bias_gelu_forward(hidden, bias4)),
        ("bias_gelu_backward", f"({B},{T},{4 * C})", lambda K: K.bias_gelu_backward(dhidden, hidden)),
        ("cross_entropy_forward", f"({B * T},{V})",
         lambda K: K.cross_entropy_forward(logits, targets)),
        ("cross_entropy_backward", f"({B * T},{V})",
         lambda K: K.cross_entropy_backward(dlosses, probs, targets)),
        ("attention_forward", shape_att, lambda K: K.attention_forward(q, k, v)),
        ("attention_forward+dropout", shape_att, lambda K: K.attention_forward(q, k, v, mask)),
        ("attention_backward", shape_att, lambda K: K.attention_backward(dout, q, k, v, att)),
        ("qkv_attention_forward", f"({B},{T},{3 * C})", lambda K: K.qkv_attention_forward(qkv, H)),
        ("qkv_attention_backward", f"({B},{T},{3 * C})", lambda K: K.qkv_attention_backward(dy, qkv, qkv_att, H)),
        ("embedding_backward", f"({B},{T},{C})->({V},{C})",
         lambda K: K.embedding_backward(x, idx, V)),
        ("adamw_update", f"({n_params:,})",
         lambda K: K.adamw_update(params, grads, m, v2, decay, 1e-3, 0.9, 0.95, 1e-8, 0.1, 1)),
        ("matmul (BLAS in both)", f"({B * T},{C})@({C},{4 * C})",
         lambda K: K.matmul(x.reshape(-1, C), hidden.reshape(-1, 4 * C)[:C])),
    ]


def kernel_table(repeats) -> list[dict]:
    print("Numba vs NumPy reference, float32, GPT shapes "
          + ", ".join(f"{k}={v}" for k, v in GPT_SHAPES.items()))
    print("(numba 1t: Numba on one thread; numba: on all threads. Speed-up = numpy / numba.)")
    print(f"{'kernel':26s} {'shape':22s} {'numpy us':>9s} {'numba 1t':>9s} {'numba us':>9s}"
          f" {'speed-up 1t':>11s} {'speed-up':>9s}")
    rows = []
    for name, shape, call in kernel_cases():
        t_numpy, t_one, t_all = compare(lambda: call(reference),
                                        single_threaded(lambda: call(numba_kernels)),
                                        lambda: call(numba_kernels), repeats=repeats)
        rows.append({"kernel": name, "shape": shape, "numpy_us": t_numpy * 1e6, "numba_1_thread_us": t_one * 1e6,
                     "numba_us": t_all * 1e6})
        print(f"{name:26s} {shape:22s} {t_numpy * 1e6:9.1f} {t_one * 1e6:9.1f} "
              f"{t_all * 1e6:9.1f} {t_numpy / t_one:10.2f}x {t_numpy / t_all:8.2f}x")
    speedups = [(r["numpy_us"] / r["numba_1_thread_us"], r["numpy_us"] / r["numba_us"]) for r in rows]
    geo_one, geo_all = np.exp(np.mean(np.log(speedups), axis=0))
    print(f"{'geometric mean':26s} {'':22s} {'':9s} {'':9s} {'':9s} {geo_one:10.2f}x "
          f"{geo_all:8.2f}x\n")
    return rows


def matmul_shapes() -> dict[str, tuple[int, int, int]]:
    """{label: (M, K, N)}: a square 512^3, and the matmuls of a shakespeare-char training step."""
    BT, C = GPT_SHAPES["B"] * GPT_SHAPES["T"], GPT_SHAPES["C"]
    return {"square": (512, 512, 512),
            "qkv: x @ W_qkv": (BT, C, 3 * C),
            "mlp up: x @ W_fc": (BT, C, 4 * C),
            "mlp down: h @ W_proj": (BT, 4 * C, C),
            "grad W_qkv: x^T @ dqkv": (C, BT, 3 * C)}


def blas_thread_limit():
    """threadpoolctl's way to set BLAS's thread count in this process, or None without it
    (BLAS reads OPENBLAS_NUM_THREADS only when NumPy loads)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()
    return lambda n: controller.limit(limits=n, user_api="blas")


@contextlib.contextmanager
def threads(n, limit_blas):
    """Numba's parallel loops and BLAS on n threads each, inside the block."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with limit_blas(n) if limit_blas else contextlib.nullcontext():
            yield
    finally:
        numba.set_num_threads(previous)


def matmul_ladder(shapes, thread_counts, rounds, limit_blas, budget=0.05, seed=0) -> list[dict]:
    """One row per (shape, kernel, threads): GFLOP/s and % of BLAS on the same threads.

    The serial rungs run at the first thread count only (1, unless BLAS's count cannot be
    set); the parallel rungs and BLAS at every count.
    In each round every kernel runs in turn (so a burst of load from elsewhere hits them
    all alike), called as many times as fill `budget` seconds, each call timed on its own;
    the fastest call of all rounds counts (the one the rest of the machine disturbed least)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, (M, K, N) in shapes.items():
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        # BLAS last at each thread count: its idle threads spin on their cores for ~0.1 s after
        # every call, and a parallel rung started in that time shares a core with one and runs
        # at half speed (the 2-thread parallel register-blocked rung measured 45-74% of BLAS after it, 67-75% before).
        kernels_at = {t: {**{name: fn for name, fn in matmul_by_hand.KERNELS.items()
                             if t == thread_counts[0] or name in matmul_by_hand.PARALLEL}, "BLAS": np.matmul}
                      for t in thread_counts}
        calls, best = {}, {}
        for t in thread_counts:  # warm up (compiles), and how many calls fill the budget
            with threads(t, limit_blas):
                for name, fn in kernels_at[t].items():
                    fn(a, b)
                    calls[name, t] = max(1, int(budget / max(seconds(lambda: fn(a, b)), 1e-7)))
        for _ in range(rounds):
            for t in thread_counts:
                with threads(t, limit_blas):
                    for name, fn in kernels_at[t].items():
                        fastest = min(seconds(lambda: fn(a, b)) for _ in range(calls[name, t]))
                        best[name, t] = min(best.get((name, t), math.inf), fastest)
        flops = 2.0 * M * K * N
        for (name, t), elapsed in best.items():
            rows.append({"shape": label, "M": M, "K": K, "N": N, "kernel": name, "threads": t,
                         "seconds": elapsed, "gflops": flops / elapsed / 1e9,
                         "percent_of_blas": 100.0 * best["BLAS", t] / elapsed})
    return rows


def _threads_label(n: int) -> str:
    return f"{n} thread" + ("s" if n > 1 else "")


def print_ladder(rows, thread_counts) -> None:
    header = "".join(f"{_threads_label(t):>20s}" for t in thread_counts)
    print(f"{'(M, K) @ (K, N)':24s} {'kernel':26s}{header}")
    print(f"{'':24s} {'':26s}" + f"{'GFLOP/s  % of BLAS':>20s}" * len(thread_counts))
    found = {(r["shape"], r["kernel"], r["threads"]): r for r in rows}
    for shape in dict.fromkeys(r["shape"] for r in rows):
        M, K, N = (found[shape, "BLAS", thread_counts[0]][d] for d in "MKN")
        titles = [f"{M}x{K} @ {K}x{N}", shape]  # the shape on the first row, its label on the second
        for name in [*matmul_by_hand.KERNELS, "BLAS"]:
            cells = [found.get((shape, name, t)) for t in thread_counts]
            print(f"{titles.pop(0) if titles else '':24s} {name:26s}" + "".join(
                f"{r['gflops']:10.1f} {r['percent_of_blas']:8.1f}%" if r else f"{'':20s}" for r in cells))


def matmul_table(repeats) -> dict:
    import numba

    limit_blas = blas_thread_limit()
    most = numba.get_num_threads()
    thread_counts = sorted({1, most}) if limit_blas else [most]
    print("The matmul ladder (minigpt/kernels/matmul_by_hand.py) against BLAS (np.matmul), float32:")
    print(f"GFLOP/s, and % of BLAS on the same number of threads: the fastest call in {repeats} rounds, each "
          f"running every kernel in turn. Serial rungs only on {_threads_label(thread_counts[0])}.")
    if limit_blas is None:
        print(f"(threadpoolctl is not installed, so BLAS keeps its own thread count: everything is compared "
              f"with BLAS on {most} thread(s); pip install threadpoolctl to compare on 1 thread too)")
    rows = matmul_ladder(matmul_shapes(), thread_counts, repeats, limit_blas)
    print_ladder(rows, thread_counts)
    print()
    return {"dtype": "float32", "threads": thread_counts, "rounds": repeats, "rows": rows}


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
        times = {}
        for key, label in (("cold", "cold (empty cache)"), ("warm", "warm (cache filled)")):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", STARTUP_SCRIPT], env=env, check=True)
            times[key] = time.perf_counter() - start
            print(f"{label:22s} {times[key]:7.2f} s")
    print()
    return times


def run(args) -> int:
    repeats = args.iters or DEFAULT_REPEATS
    import numba

    print(f"numba {numba.__version__}, numpy {np.__version__}, "
          f"{numba.get_num_threads()} Numba threads\n")
    results = {"numba_vs_numpy": kernel_table(repeats), "matmul": matmul_table(repeats)}
    if args.startup:
        results["startup_seconds"] = startup_table()
    args.results["kernels"] = results
    return 0
