"""The matmul ladder (minigpt/kernels/matmul_by_hand.py, matmul_like_blas.py): every rung
computes a @ b to the rounding error of its dtype, for any shapes and memory layouts; the
benchmark's table and the ladder's figure report what was measured. No timing is asserted.

The oracle is the exact product, rounded once: float32 inputs multiplied in float64 (every
product of two float32 numbers is exact in float64), float64 inputs in long double. A sum
of K products, added in any order in a precision with unit roundoff u, is off from the
exact sum by at most gamma_K * sum_k |a_ik| |b_kj|, gamma_K = K u / (1 - K u) (Higham,
"Accuracy and Stability of Numerical Algorithms", section 3.1); storing the result adds
one more rounding. Every rung, whatever order it adds in, must stay within that bound; a
product missed or counted twice is off by about |a_ik b_kj|, thousands of times more.
"""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest

from minigpt import plots
from minigpt.bench import kernels as kernel_bench
from minigpt.kernels import matmul_by_hand, matmul_like_blas

RUNGS = list(matmul_by_hand.KERNELS)
DTYPES = [np.float32, np.float64]
# (M, K, N): 1 x 1; smaller than a 4 x 4 tile; whole tiles; odd sizes; more rows than a band
# (64) and than rung 2's tiles (64 x 128 x 256); K longer than a block of k (512); N < 4.
SHAPES = [(1, 1, 1), (3, 2, 3), (4, 4, 4), (5, 7, 3), (8, 16, 12), (65, 129, 257), (130, 600, 70),
          (3, 300, 70), (130, 7, 2)]


def exact(a, b):
    """a @ b with (almost) no rounding error, as float64."""
    wide = np.float64 if a.dtype == np.float32 else np.longdouble
    return (a.astype(wide) @ b.astype(wide)).astype(np.float64)


def assert_within_rounding(ours, a, b):
    """|ours - exact| <= (gamma_K + u) (|a| @ |b|), elementwise (see the module docstring)."""
    dtype = np.result_type(a, b)
    assert ours.dtype == dtype, f"result is {ours.dtype}, expected {dtype}"
    assert ours.shape == (a.shape[0], b.shape[1])
    u = np.finfo(dtype).eps / 2
    K = a.shape[1]
    bound = (K * u / (1 - K * u) + u) * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    error = np.abs(ours.astype(np.float64) - exact(a, b))
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert np.all(error <= bound), f"error {error[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


@pytest.mark.parametrize("name", RUNGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, K, N", SHAPES)
def test_every_rung_is_the_product_to_rounding(name, dtype, M, K, N):
    rng = np.random.default_rng(M * 10_000 + K * 100 + N)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    a_before, b_before = a.copy(), b.copy()
    assert_within_rounding(matmul_by_hand.KERNELS[name](a, b), a, b)
    assert np.array_equal(a, a_before) and np.array_equal(b, b_before), "the inputs were changed"


@pytest.mark.parametrize("name", RUNGS)
def test_every_rung_takes_non_contiguous_views(name):
    """Strided, transposed (Fortran-ordered) and reversed views are copied to the layout the
    loops need, so they give the same product as their contiguous copies."""
    rng = np.random.default_rng(3)
    big = rng.standard_normal((140, 90)).astype(np.float32)
    cases = [(big[::2, 1::3], rng.standard_normal((30, 9)).astype(np.float32)),  # strided rows and columns
             (big[:37, :50], big[:33, :50].T),  # b is a transposed view (Fortran order)
             (np.asfortranarray(big[:9, :21]), big[::-1, ::-1][:21, :6])]  # Fortran a, reversed b
    for a, b in cases:
        assert not (a.flags.c_contiguous and b.flags.c_contiguous)
        ours = matmul_by_hand.KERNELS[name](a, b)
        assert_within_rounding(ours, np.ascontiguousarray(a), np.ascontiguousarray(b))


@pytest.mark.parametrize("name", RUNGS)
def test_dtypes_mixed_and_integer_inputs_and_empty_sums(name):
    rng = np.random.default_rng(4)
    a32, b64 = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal((6, 7))
    mixed = matmul_by_hand.KERNELS[name](a32, b64)  # as np.matmul: the wider dtype wins
    assert mixed.dtype == np.float64
    assert_within_rounding(mixed, a32.astype(np.float64), b64)
    ints = matmul_by_hand.KERNELS[name](np.arange(6).reshape(2, 3), np.arange(12).reshape(3, 4))
    assert ints.dtype == np.float64  # integers are promoted to floats
    assert np.array_equal(ints, np.arange(6).reshape(2, 3) @ np.arange(12).reshape(3, 4))
    empty = matmul_by_hand.KERNELS[name](np.ones((3, 0), np.float32), np.ones((0, 5), np.float32))
    assert empty.shape == (3, 5) and empty.dtype == np.float32 and np.all(empty == 0)


@pytest.mark.parametrize("name", RUNGS)
def test_nan_and_infinity_propagate_as_in_numpy(name):
    """The top rungs are compiled with fastmath={"reassoc", "contract"} only: NaN and
    infinity must still come out where np.matmul puts them."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((9, 70)).astype(np.float32)
    b = rng.standard_normal((70, 11)).astype(np.float32)
    a[2, 40] = np.nan  # row 2 of the product is all NaN
    b[7, 5] = np.inf  # column 5 is +-inf (NaN in row 2, and where a[i, 7] is 0)
    a[6, 7] = 0.0
    ours = matmul_by_hand.KERNELS[name](a, b)
    with np.errstate(invalid="ignore"):  # NumPy warns of the NaN it makes; so it should
        expected = a @ b
    assert np.array_equal(np.isnan(ours), np.isnan(expected))
    assert np.array_equal(np.isinf(ours), np.isinf(expected))
    assert np.array_equal(np.sign(ours[np.isinf(ours)]), np.sign(expected[np.isinf(expected)]))
    assert np.isnan(ours).sum() == 11 + 1 and np.isinf(ours).sum() == 7  # the case built above


def test_the_parallel_rung_adds_in_the_serial_rungs_order():
    """Bands of rows go to different threads, but each element's sum is done by one thread in
    the same order: on any number of threads the result is the serial rung's, bit for bit."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((300, 530)).astype(np.float32)  # 5 bands, 2 blocks of k, edges
    b = rng.standard_normal((530, 67)).astype(np.float32)
    serial = matmul_by_hand.matmul_register_blocked(a, b)
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            assert np.array_equal(matmul_by_hand.matmul_parallel_register_blocked(a, b), serial)
        finally:
            numba.set_num_threads(previous)


@pytest.mark.parametrize("K, N", [(1, 1), (17, 33), (16, 32), (40, 3)])
def test_packing_copies_b_transposed(K, N):
    b = np.random.default_rng(7).standard_normal((K, N)).astype(np.float32)
    bt = matmul_like_blas.pack_transposed(b)
    assert bt.flags.c_contiguous and bt.dtype == np.float32 and np.array_equal(bt, b.T)


def test_misaligned_or_not_2d_inputs_are_clear_errors():
    for name in RUNGS:
        with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4, 2\) do not align: 3 != 4"):
            matmul_by_hand.KERNELS[name](np.ones((2, 3)), np.ones((4, 2)))
        with pytest.raises(ValueError, match="needs 2-D arrays"):
            matmul_by_hand.KERNELS[name](np.ones(3), np.ones((3, 2)))


# --- the benchmark's ladder and its figure -------------------------------------------------

def test_the_ladder_benchmark_reports_every_rung_against_blas_on_the_same_threads(capsys):
    thread_counts = sorted({1, numba.get_num_threads()})
    limit_blas = kernel_bench.blas_thread_limit()
    shapes = {"tiny": (6, 5, 7), "odd": (9, 13, 3)}
    rows = kernel_bench.matmul_ladder(shapes, thread_counts, rounds=1, limit_blas=limit_blas, budget=1e-4)
    expected = {(shape, name, t) for shape in shapes for t in thread_counts
                for name in ["BLAS", *RUNGS] if t == 1 or name == "BLAS" or name in matmul_by_hand.PARALLEL}
    assert {(r["shape"], r["kernel"], r["threads"]) for r in rows} == expected
    seconds = {(r["shape"], r["kernel"], r["threads"]): r["seconds"] for r in rows}
    for r in rows:  # each rate from its own time, each % from BLAS's time on the same threads
        assert r["gflops"] == pytest.approx(2 * r["M"] * r["K"] * r["N"] / r["seconds"] / 1e9)
        assert r["percent_of_blas"] == pytest.approx(100 * seconds[r["shape"], "BLAS", r["threads"]] / r["seconds"])
    kernel_bench.print_ladder(rows, thread_counts)
    out = capsys.readouterr().out
    assert "6x5 @ 5x7" in out and "9x13 @ 13x3" in out and "odd" in out
    for name in RUNGS:
        assert len([line for line in out.splitlines() if f" {name} " in line]) == len(shapes)


def test_the_ladder_times_blas_after_the_rungs_at_each_thread_count(monkeypatch):
    """OpenBLAS's idle threads spin on their cores for ~0.1 s after a call; a parallel rung
    timed right after BLAS would share a core with one. So at every thread count, in the
    warm-up and in every round, no rung may run after BLAS has."""
    calls = []

    def recorder(name):
        def fn(a, b):
            calls.append((name, numba.get_num_threads()))
            return np.zeros((a.shape[0], b.shape[1]), np.float32)
        return fn

    monkeypatch.setattr(kernel_bench.np, "matmul", recorder("BLAS"))
    monkeypatch.setattr(matmul_by_hand, "KERNELS", {name: recorder(name) for name in RUNGS})
    thread_counts = sorted({1, numba.get_num_threads()})
    kernel_bench.matmul_ladder({"tiny": (3, 4, 5)}, thread_counts, rounds=2, limit_blas=None, budget=1e-4)
    in_turn = [call for i, call in enumerate(calls) if i == 0 or call != calls[i - 1]]  # repeats merged
    one_pass = [(name, t) for t in thread_counts
                for name in [*(n for n in RUNGS if t == thread_counts[0] or n in matmul_by_hand.PARALLEL), "BLAS"]]
    assert in_turn == one_pass * 3  # the warm-up, then two rounds: at every thread count, BLAS last


def ladder_rows():
    rows = []
    for kernel, threads, gflops, percent in [("naive", 1, 1.0, 1.0), ("register_blocked", 1, 60.0, 60.0),
                                             ("parallel_register_blocked", 1, 59.0, 59.0),
                                             ("parallel_register_blocked", 2, 110.0, 55.0),
                                             ("BLAS", 1, 100.0, 100.0), ("BLAS", 2, 200.0, 100.0)]:
        rows.append({"shape": "square", "M": 512, "K": 512, "N": 512, "kernel": kernel, "threads": threads,
                     "gflops": gflops, "percent_of_blas": percent})
    return rows + [dict(rows[0], shape="qkv: x @ W_qkv", gflops=2.0)]


def test_the_ladder_figure_draws_each_rung_blas_and_the_peak(tmp_path):
    fig = plots.plot_matmul_ladder({"rows": ladder_rows()}, peak_gflops=250.0, out_png=tmp_path / "ladder.png")
    assert (tmp_path / "ladder.png").stat().st_size > 0
    ax = fig.axes[0]
    heights = [round(bar.get_height(), 6) for bar in ax.patches]
    assert heights == [1.0, 60.0, 59.0, 110.0]  # 1 thread in the lesson's order, then 2 threads
    assert [t.get_text() for t in ax.get_xticklabels()] == ["naive", "register\nblocked",
                                                            "parallel\nregister\nblocked"]
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
    assert lines == {"BLAS, 1 thread: 100 GFLOP/s": 100.0, "BLAS, 2 threads: 200 GFLOP/s": 200.0,
                     "peak: 250 GFLOP/s": 250.0}
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.texts] == ["1%", "60%", "59%", "55%"]


def test_the_ladder_figure_reads_the_bench_json_and_names_what_is_missing(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine": {}, "kernels": {"matmul": {"rows": ladder_rows()}}}))
    fig = plots.plot_matmul_ladder(str(path), shape="qkv: x @ W_qkv")
    assert [bar.get_height() for bar in fig.axes[0].patches] == [2.0]
    with pytest.raises(ValueError, match=r"no results for shape 'nope'; the results have \['qkv: x @ W_qkv', "
                                         r"'square'\]"):
        plots.plot_matmul_ladder(path, shape="nope")
    path.write_text(json.dumps({"machine": {}, "train": {}}))
    with pytest.raises(ValueError, match="no 'kernels' key.*bench kernels --json"):
        plots.read_matmul_ladder(path)


@pytest.mark.slow
def test_bench_kernels_writes_the_ladder_to_json(tmp_path, capsys):
    from minigpt.__main__ import main

    path = tmp_path / "bench.json"
    assert main(["bench", "kernels", "--iters", "1", "--json", str(path)]) == 0
    results = json.loads(path.read_text())["kernels"]
    rows = results["matmul"]["rows"]
    assert {r["shape"] for r in rows} == set(kernel_bench.matmul_shapes())
    assert {r["kernel"] for r in rows} == {"BLAS", *RUNGS}
    assert all(r["gflops"] > 0 for r in rows)
    assert len(results["numba_vs_numpy"]) == len(kernel_bench.kernel_cases())
    assert "The matmul ladder" in capsys.readouterr().out
    plots.plot_matmul_ladder(path)  # the figure reads what the benchmark wrote
