"""The grader of chapter 6: python -m minigpt grade 06 (see solutions.py's docstring).

The oracles are minigpt's own code or first principles, never the chapter's solutions:
the timer against a fake clock whose durations the grader chose, the FLOPs against
minigpt.model.flops_per_token, the tiled matmul against np.matmul with its products
watched, the fused bias + GELU against minigpt.kernels.reference.gelu_forward and its
backward against central finite differences, the ring against the sum of the buffers
added in the ring's order and against the element count each rank must send, the line of
step times against the least-squares line, from its formula, through the medians of
timings that the grader chose."""

import math

import numpy as np
import pytest

from minigpt.course import checks
from minigpt.course.grading import ex, exercise  # noqa: F401  (ex is a fixture)
from minigpt.kernels import reference
from minigpt.model import GPTConfig, flops_per_token

# --- 6.1 median_time -------------------------------------------------------------------------


def expect_python_float(function, got):
    """The docstrings promise Python floats: np.float64 passes isinstance(x, float) but is not one."""
    kind = type(got).__name__ if type(got).__module__ == "builtins" else f"{type(got).__module__}.{type(got).__name__}"
    checks.expect(type(got) is float, f"{function} returned a {kind}, expected a Python float: convert with float(...)")


class FakeClock:
    """A clock that moves only when the timed function runs, by the durations given:
    the answer is then exact, whatever else the machine is doing."""

    def __init__(self, durations):
        self.now, self.durations, self.calls, self.reads = 100.0, list(durations), 0, 0

    def __call__(self):
        self.reads += 1
        return self.now

    def expect_read(self):
        checks.expect(self.reads > 0, "clock() was never read: time the calls with the clock argument, "
                      "not with time.perf_counter (the grader's clock moves only while the function runs)")

    def work(self):
        self.now += self.durations[self.calls] if self.calls < len(self.durations) else 1.0
        self.calls += 1


TIMER_CASES = [  # (what, warmup, durations of every call in order: warm-up calls first)
    ("2 warm-up calls (compiling: 5 s), then 5 repeats with one disturbed (9 s)", 2,
     [5.0, 0.5, 0.25, 0.5, 9.0, 0.75, 0.5]),
    ("no warm-up, 4 repeats (an even count: the median is the mean of the middle two)", 0,
     [0.5, 0.125, 0.25, 4.0]),
    ("3 warm-up calls, 1 repeat", 3, [7.0, 6.0, 5.0, 0.375]),
    ("1 warm-up call, 6 repeats", 1, [3.0, 1.0, 2.0, 8.0, 1.5, 0.5, 6.0]),
    ("1 warm-up call, 3 repeats of about a microsecond", 1, [2.5e-3, 1.234567e-6, 3.1e-6, 1.2e-6]),
    ("no warm-up, 5 repeats of about 10 ms", 0, [0.0123456789, 0.0098765432, 0.0111111111, 0.0154321, 0.0100000001]),
]


@exercise("median_time")
@pytest.mark.parametrize("what, warmup, durations", TIMER_CASES)
def test_median_time_is_the_median_of_the_repeats_after_the_warmup(ex, what, warmup, durations):
    clock = FakeClock(durations)
    repeats = len(durations) - warmup
    got = ex.median_time(clock.work, warmup, repeats, clock=clock)
    checks.expect(clock.calls == warmup + repeats,
                  f"fn was called {clock.calls} times for warmup={warmup}, repeats={repeats}; "
                  f"expected {warmup + repeats} (warm-up calls, then one per repeat)")
    expect_python_float("median_time", got)
    clock.expect_read()
    timed = sorted(durations[warmup:])
    want = (timed[(repeats - 1) // 2] + timed[repeats // 2]) / 2  # the median, from its definition
    # (1e-13: the clock's float64 rounding at 100 s is 1.4e-14; durations kept in float32,
    # or rounded to any number of decimals a person would choose, are off by far more)
    checks.expect(abs(got - want) <= 1e-13 + 1e-12 * abs(want), f"with {what}: returned {got!r}, expected the "
                  f"median of the {repeats} repeat(s) after the warm-up, {want!r}")


@exercise("median_time")
def test_median_time_uses_the_real_clock_by_default(ex):
    calls = []
    got = ex.median_time(lambda: calls.append(1), 1, 3)
    checks.expect(len(calls) == 4, f"fn was called {len(calls)} times for warmup=1, repeats=3; expected 4")
    checks.expect(isinstance(got, float) and 0.0 <= got, f"with the default clock: returned {got!r}, "
                  f"expected a non-negative float (seconds)")


# --- 6.2 step_flops --------------------------------------------------------------------------


FLOP_CASES = [  # (config, batch_size, seq_len)
    (GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128), 12, None),
    (GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384), 8, None),
    (GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768), 2, 300),
    (GPTConfig(vocab_size=97, block_size=32, n_layer=3, n_head=2, n_embd=10, bias=False), 5, None),
    (GPTConfig(vocab_size=11, block_size=9, n_layer=1, n_head=1, n_embd=6), 1, 1),
]


def describe(config, batch_size, seq_len):
    return (f"V={config.vocab_size}, T={config.block_size}, L={config.n_layer}, C={config.n_embd}, "
            f"bias={config.bias}, batch {batch_size}, seq_len {seq_len}")


@exercise("step_flops")
@pytest.mark.parametrize("config, batch_size, seq_len", FLOP_CASES)
def test_step_flops_matches_minigpts_count(ex, config, batch_size, seq_len):
    got = ex.step_flops(config, batch_size, seq_len)
    T = seq_len or config.block_size
    want = flops_per_token(config, T) * batch_size * T
    checks.expect(isinstance(got, int), f"returned a {type(got).__name__}, expected a Python int")
    checks.expect(got == want, f"{describe(config, batch_size, seq_len)}: {got:,} FLOPs, expected {want:,} "
                  f"({got / want:.6f} times the right count)")


# --- 6.3 matmul_tiled ------------------------------------------------------------------------


class Watched(np.ndarray):
    """An array that records the shapes of every matrix product it takes part in (a slice of
    it is Watched too). Results come back as plain arrays."""

    log = None  # set to a list by watch()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and Watched.log is not None:
            Watched.log.append(tuple(np.shape(x) for x in inputs))
        plain = [x.view(np.ndarray) if isinstance(x, Watched) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, Watched) else x for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        if func in (np.dot, np.tensordot, np.einsum, np.inner, np.vdot) and Watched.log is not None:
            Watched.log.append(tuple(np.shape(x) for x in args if isinstance(x, np.ndarray)))

        def plain(x):
            if isinstance(x, Watched):
                return x.view(np.ndarray)
            if isinstance(x, (list, tuple)):
                return type(x)(plain(y) for y in x)
            return x

        return func(*plain(args), **{k: plain(v) for k, v in kwargs.items()})


def watch(x):
    return np.ascontiguousarray(x).view(Watched)


MATMUL_CASES = [(5, 7, 3, 2, np.float64, 1), (33, 17, 40, 8, np.float64, 2), (3, 4, 5, 16, np.float64, 3),
                (1, 1, 1, 1, np.float64, 4), (20, 31, 12, 10, np.float32, 5), (12, 8, 4, 4, np.float32, 6)]


@exercise("matmul_tiled")
@pytest.mark.parametrize("M, K, N, tile, dtype, seed", MATMUL_CASES)
def test_matmul_tiled_is_the_product_made_of_tile_products(ex, M, K, N, tile, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    what = f"({M}, {K}) @ ({K}, {N}), tile {tile}, {np.dtype(dtype).name}"
    Watched.log = []
    try:
        got = ex.matmul_tiled(watch(a), watch(b), tile)
        products = Watched.log
    finally:
        Watched.log = None
    if isinstance(got, Watched):
        got = got.view(np.ndarray)
    checks.expect_array(f"c for {what}", got, shape=(M, N), dtype=dtype)
    checks.expect_close(f"c for {what}", got, a.astype(np.float64) @ b.astype(np.float64),
                        bar=1e-12 if dtype == np.float64 else 1e-5)
    checks.expect(products, f"{what}: no product of a's and b's slices was seen; multiply slices of a and b "
                  f"as given, with @ (not converted with np.asarray or .astype first)")
    too_big = [shapes for shapes in products if any(n > tile for shape in shapes for n in shape)]
    checks.expect(not too_big, f"{what}: a product of {' @ '.join(map(str, too_big[0])) if too_big else ''}, "
                  f"larger than a tile of {tile}")
    want = math.ceil(M / tile) * math.ceil(K / tile) * math.ceil(N / tile)
    checks.expect(len(products) == want, f"{what}: {len(products)} tile products, expected {want} "
                  f"(one per row tile, k tile and column tile)")


# --- 6.4 bias_gelu_forward -------------------------------------------------------------------


def gelu_cases():
    rng = np.random.default_rng(7)
    yield "h (2, 5, 8), float64", rng.standard_normal((2, 5, 8)) * 2, rng.standard_normal(8)
    yield "h (3, 6), float64, values up to +-8", rng.uniform(-8, 8, (3, 6)), rng.uniform(-1, 1, 6)
    yield "h (1, 1, 1, 3), float32", rng.standard_normal((1, 1, 1, 3)).astype(np.float32), \
        rng.standard_normal(3).astype(np.float32)


@exercise("bias_gelu_forward")
def test_bias_gelu_forward_matches_minigpts_gelu_of_h_plus_bias(ex):
    for what, h, bias in gelu_cases():
        given = h.copy()
        out, u = ex.bias_gelu_forward(given, bias)
        checks.expect(np.array_equal(given, h), "bias_gelu_forward changed h in place (h += bias?): the caller "
                      "still needs it; make u a new array")
        checks.expect_array(f"out for {what}", out, shape=h.shape, dtype=h.dtype)
        checks.expect_array(f"u for {what}", u, shape=h.shape, dtype=h.dtype)
        checks.expect_close(f"u = h + bias for {what}", u, h.astype(np.float64) + bias, bar=1e-7)
        want = reference.gelu_forward(h.astype(np.float64) + bias)
        checks.expect_close(f"out = gelu(h + bias) for {what}", out, want,
                            bar=1e-12 if h.dtype == np.float64 else 1e-6)


# --- 6.5 bias_gelu_backward ------------------------------------------------------------------


def reference_bias_gelu(h, bias):
    """minigpt's GELU of h + bias; the cache is u, what bias_gelu_backward takes."""
    u = h + bias
    return reference.gelu_forward(u), u


@exercise("bias_gelu_backward")
@pytest.mark.parametrize("shape, seed", [((3, 7), 1), ((2, 4, 5), 2), ((1, 1, 4), 3), ((2, 2, 3, 6), 4)])
def test_bias_gelu_backward_matches_finite_differences(ex, shape, seed):
    rng = np.random.default_rng(seed)
    h, bias = rng.standard_normal(shape) * 2, rng.standard_normal(shape[-1])
    checks.expect_gradients(reference_bias_gelu, lambda dout, u: ex.bias_gelu_backward(dout, u), (h, bias),
                            (f"dh (h of shape {shape})", f"dbias (h of shape {shape})"), seed=seed)


@exercise("bias_gelu_backward")
@pytest.mark.parametrize("shape, seed", [((3, 7), 1), ((2, 2, 3, 6), 4)])
def test_bias_gelu_backward_matches_the_derivative_in_float64(ex, shape, seed):
    """Finite differences cannot tell float64 from float32 sums (both within their 1e-7):
    against GELU's derivative, in float64, dbias summed over every axis but the last."""
    rng = np.random.default_rng(seed)
    u, dout = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    given_u = u.copy()
    dh, dbias = ex.bias_gelu_backward(dout.copy(), given_u)
    checks.expect(np.array_equal(given_u, u), f"bias_gelu_backward changed u, its cache, in place (h of shape "
                  f"{shape}): write dh into a new array")
    want_dh = reference.gelu_backward(dout, u)
    checks.expect_array(f"dh (h of shape {shape})", dh, shape=shape, dtype=np.float64)
    checks.expect_close(f"dh (h of shape {shape}), against GELU's derivative", dh, want_dh, bar=1e-12)
    checks.expect_array(f"dbias (h of shape {shape})", dbias, shape=(shape[-1],), dtype=np.float64)
    checks.expect_close(f"dbias (h of shape {shape}), against the sum of dh over every axis but the last", dbias,
                        want_dh.reshape(-1, shape[-1]).sum(axis=0), bar=1e-12)


@exercise("bias_gelu_backward")
def test_bias_gelu_backward_keeps_float32(ex):
    rng = np.random.default_rng(5)
    u, dout = rng.standard_normal((4, 3, 6)).astype(np.float32), rng.standard_normal((4, 3, 6)).astype(np.float32)
    dh, dbias = ex.bias_gelu_backward(dout, u)
    checks.expect_array("dh for float32 input", dh, shape=u.shape, dtype=np.float32)
    checks.expect_array("dbias for float32 input", dbias, shape=(6,), dtype=np.float32)


# --- 6.6 ring_allreduce ----------------------------------------------------------------------


def ring_order_sum(buffers):
    """The sum every rank must end with: chunk c added up rank by rank around the ring,
    starting at rank c (x_c + x_{c+1}, then + x_{c+2}, ...), in the buffers' dtype."""
    N = len(buffers)
    total = np.empty_like(buffers[0])
    for c, positions in enumerate(np.array_split(np.arange(len(buffers[0])), N)):
        acc = buffers[c][positions].copy()
        for step in range(1, N):
            acc = acc + buffers[(c + step) % N][positions]
        total[positions] = acc
    return total


def elements_sent(P, N):
    """Rank r sends every chunk but one in each phase: all but chunk r+1 in the
    reduce-scatter (it receives that one's sum last) and all but chunk r+2 in the all-gather."""
    sizes = [len(chunk) for chunk in np.array_split(np.arange(P), N)]
    return [0 if N == 1 else 2 * P - sizes[(r + 1) % N] - sizes[(r + 2) % N] for r in range(N)]


def spread_buffers(N, P, seed, dtype):
    """Buffers whose sum depends on the order of the additions (magnitudes from 1e-4 to 1e8)."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(P) * 10.0 ** rng.uniform(-4, 8, P)).astype(dtype) for _ in range(N)]


@exercise("ring_allreduce")
@pytest.mark.parametrize("N, P, seed, dtype", [(4, 10, 1, np.float32), (3, 9, 2, np.float32), (2, 7, 3, np.float32),
                                             (5, 23, 4, np.float32), (6, 40, 5, np.float32), (1, 5, 6, np.float32),
                                             (3, 9, 7, np.float64), (1, 4, 8, np.float64),
                                             (5, 3, 9, np.float32)])  # more ranks than positions: empty chunks
def test_ring_allreduce_sums_in_the_rings_order_and_sends_what_a_ring_sends(ex, N, P, seed, dtype):
    buffers = spread_buffers(N, P, seed, dtype)
    given = [b.copy() for b in buffers]
    results, sent = ex.ring_allreduce(given)
    what = f"{N} rank(s), buffers of {P} {np.dtype(dtype)}"
    checks.expect(all(np.array_equal(g, b) for g, b in zip(given, buffers)),
                  f"{what}: the input buffers were changed; copy them first")
    checks.expect(isinstance(results, (list, tuple)) and len(results) == N,
                  f"{what}: results should be a list of {N} arrays")
    want = elements_sent(P, N)  # first: a wrong count often explains a wrong sum (chunks split otherwise)
    checks.expect(isinstance(sent, (list, tuple)) and list(sent) == want and all(type(s) is int for s in sent),
                  f"{what}: elements sent per rank {list(sent) if isinstance(sent, (list, tuple)) else sent}, "
                  f"expected {want} as Python ints (about 2 (N-1)/N x {P} each, chunks from np.array_split)")
    exact = np.sum(np.array(buffers, dtype=np.float64), axis=0)
    ring = ring_order_sum(buffers)
    for r, got in enumerate(results):
        checks.expect_array(f"rank {r}'s result ({what})", got, shape=(P,), dtype=dtype)
        checks.expect_close(f"rank {r}'s result, against the sum of the buffers ({what})", got, exact,
                            bar=1e-5 if dtype == np.float32 else 1e-12)
        mismatch = np.flatnonzero(got != ring)
        checks.expect(mismatch.size == 0, f"rank {r}'s result ({what}): position {mismatch[:1].tolist()} is not "
                      f"the sum added in the ring's order (bit for bit in {np.dtype(dtype)}: each addition in the "
                      f"buffers' dtype): chunk c starts at rank c and gains one rank per reduce-scatter step")
    for r in range(N):
        for q in range(N):
            checks.expect(not np.shares_memory(results[r], given[q]),
                          f"{what}: rank {r}'s result is (or shares memory with) input buffer {q}: return new arrays")
            checks.expect(q <= r or not np.shares_memory(results[r], results[q]),
                          f"{what}: ranks {r} and {q} share one result array; each rank has its own buffer")


# --- 6.7 step_time_line ----------------------------------------------------------------------


class FakeSteps:
    """Steps of several batch sizes on one fake clock: the n-th call of the whole run takes
    duration(batch size, n) seconds of clock time, and the order of the calls is kept."""

    def __init__(self, sizes, duration):
        self.clock = FakeClock([])
        self.duration, self.order = duration, []
        self.steps = {size: self.step_of(size) for size in sizes}

    def step_of(self, size):
        def step():
            self.clock.now += self.duration(size, len(self.order))
            self.order.append(size)
        return step


def curved_duration(size, n, slow_calls=range(6, 11), disturbed_call=13):
    """A step time that is not quite a line (so the least-squares line is neither the line
    through the end points nor one through the origin), a little different every call (so
    the fastest call is not the median), with a slow spell of five calls in a row (three
    times as long: interleaved rounds give no batch size more than two of them) and one
    call ten times as long (it moves a mean, not a median)."""
    seconds = 0.003 + 0.004 * size + 0.0002 * size**2
    seconds *= 1.0 + 0.01 * ((7 * n) % 5)
    if n in slow_calls:
        seconds *= 3.0
    return seconds * (10.0 if n == disturbed_call else 1.0)


def least_squares_line(xs, ys):
    """(intercept, slope) of the least-squares line: slope = cov(x, y) / var(x)."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    slope = ((xs - xs.mean()) * (ys - ys.mean())).sum() / ((xs - xs.mean()) ** 2).sum()
    return float(ys.mean() - slope * xs.mean()), float(slope)


STEP_LINE_CASES = [  # (what, batch sizes in the dict's order, rounds)
    ("batch sizes [1, 2, 4, 8] and 5 rounds", (1, 2, 4, 8), 5),
    ("batch sizes [8, 1, 4] (in that order) and 3 rounds", (8, 1, 4), 3),
    ("batch sizes [2, 16] and 1 round", (2, 16), 1),
    ("batch sizes [1, 3, 5, 7, 9] and 4 rounds (an even count)", (1, 3, 5, 7, 9), 4),
]


@exercise("step_time_line")
@pytest.mark.parametrize("what, sizes, rounds", STEP_LINE_CASES)
def test_step_time_line_fits_the_medians_of_interleaved_rounds(ex, what, sizes, rounds):
    fake = FakeSteps(sizes, curved_duration)
    got = ex.step_time_line(fake.steps, rounds, clock=fake.clock)
    interleaved = list(sizes) * rounds
    checks.expect(len(fake.order) == len(interleaved),
                  f"with {what}: the steps were called {len(fake.order)} times, expected {len(interleaved)}: "
                  f"{rounds} round(s) of one call per batch size, and no other call (they are warmed up already)")
    checks.expect(fake.order == interleaved,
                  f"with {what}: the steps were called in the order {fake.order}, expected {interleaved}: "
                  f"{rounds} round(s), each calling every batch size once, in the dict's order")
    checks.expect(isinstance(got, tuple) and len(got) == 3, "returned a " + type(got).__name__ +
                  ", expected a tuple (fixed, per_row, medians)")
    fixed, per_row, medians = got
    fake.clock.expect_read()
    expect_python_float("step_time_line's fixed", fixed)
    expect_python_float("step_time_line's per_row", per_row)
    timed = {size: [curved_duration(size, n) for n in range(len(interleaved)) if interleaved[n] == size]
             for size in sizes}
    want_medians = {size: float(np.median(times)) for size, times in timed.items()}
    checks.expect(isinstance(medians, dict) and sorted(medians) == sorted(sizes),
                  f"with {what}: medians should be a dict keyed by the batch sizes {list(sizes)}, got {medians!r}")
    for size in sizes:
        checks.expect(math.isclose(medians[size], want_medians[size], rel_tol=1e-9),
                      f"with {what}: batch size {size}: median {medians[size]:.9g}, expected {want_medians[size]:.9g} "
                      f"(the median of its {rounds} timed call(s): {[round(t, 9) for t in timed[size]]})")
    want_fixed, want_per_row = least_squares_line(list(want_medians), list(want_medians.values()))
    for name, value, want in (("fixed", fixed, want_fixed), ("per_row", per_row, want_per_row)):
        error = abs(value - want) / abs(want)
        checks.expect(error <= 1e-9, f"with {what}: {name} {value:.9g}, expected {want:.9g} (relative error "
                      f"{error:.1e}, bar 1e-9): the least-squares line through the (batch size, median) points")


@exercise("step_time_line")
def test_step_time_line_uses_the_real_clock_by_default(ex):
    calls = []
    fixed, per_row, medians = ex.step_time_line({1: lambda: calls.append(1), 2: lambda: calls.append(2)}, 3)
    checks.expect(calls == [1, 2] * 3, f"with the default clock: the steps were called in the order {calls}, "
                  f"expected [1, 2, 1, 2, 1, 2]")
    checks.expect(all(isinstance(v, float) and v >= 0.0 for v in medians.values()) and math.isfinite(fixed)
                  and math.isfinite(per_row), f"with the default clock: returned {fixed!r}, {per_row!r}, "
                  f"{medians!r}; expected finite floats and non-negative medians (seconds)")
