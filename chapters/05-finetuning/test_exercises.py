"""The grader of chapter 5: python -m minigpt grade 05 (see solutions.py's docstring).

The oracles are minigpt's own code and first principles, never the chapter's solutions:
pooling against minigpt.layers.last_token_forward, its gradient and the LoRA gradients
against central finite differences of minigpt.layers' forward passes, the LoRA forward and
the merge against minigpt.layers.lora_forward + linear_forward, the parameter count against
a real minigpt.finetune.classifier.GPTClassifier's count, and the instruction batch against
minigpt.finetune.instruct_data.collate, the rule of the exercise written out position by
position, and a case worked by hand; the padding measurement against the three sequences
fed one by one to float64 models, with the last real token found by its own arithmetic (and
on a model whose forward_hidden adds 0.001 x T, where padding on the right is not free)."""

import tracemalloc

import numpy as np
import pytest

from minigpt import layers
from minigpt.course import checks
from minigpt.course.grading import ex, exercise  # noqa: F401  (ex is a fixture)
from minigpt.finetune.classifier import GPTClassifier
from minigpt.finetune.instruct_data import collate
from minigpt.model import GPT, GPTConfig

EVERY_LINEAR = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def expect_unchanged(function, argument, before, after):
    checks.expect(np.array_equal(before, after), f"{function} changed its argument {argument} in place: work on "
                  f"a copy, the caller still needs it")


def call_on_copies(function, answer, **arguments):
    """answer(*arguments), in the order given, on copies of the arrays among them; a Wrong
    naming the argument if it changed one in place. The originals stay as they were, so the
    expected values computed from them never depend on what the answer did."""
    copies = {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in arguments.items()}
    got = answer(*copies.values())
    for name, value in arguments.items():
        if isinstance(value, np.ndarray):
            expect_unchanged(function, name, value, copies[name])
    return got


# --- 5.1 last_token_pool ---------------------------------------------------------------------

POOL_CASES = [  # (B, T, C, lengths): padding of every length, no padding, T = 1
    (4, 7, 5, [3, 7, 1, 6]),
    (3, 6, 2, [6, 6, 6]),
    (2, 1, 3, [1, 1]),
    (5, 9, 4, [2, 9, 5, 1, 8]),
]


@exercise("last_token_pool")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, T, C, lengths", POOL_CASES)
def test_last_token_pool_matches_minigpt(ex, B, T, C, lengths, dtype):
    h = np.random.default_rng(B * T + C).standard_normal((B, T, C)).astype(dtype)
    lengths = np.array(lengths)
    want, _ = layers.last_token_forward(h, lengths)
    got = call_on_copies("last_token_pool", ex.last_token_pool, h=h, lengths=lengths)
    checks.expect_array(f"pooled (h {h.shape}, lengths {lengths.tolist()})", np.asarray(got), shape=(B, C), dtype=h.dtype)
    checks.expect_equal(f"pooled (h {h.shape}, lengths {lengths.tolist()}): row b must be h[b, lengths[b] - 1]",
                        np.asarray(got), want)


# --- 5.2 last_token_pool_backward ------------------------------------------------------------


@exercise("last_token_pool_backward")
@pytest.mark.parametrize("B, T, C, lengths", POOL_CASES)
def test_last_token_pool_backward_matches_finite_differences(ex, B, T, C, lengths):
    h = np.random.default_rng(B + T + C).standard_normal((B, T, C))
    lengths = np.array(lengths)
    checks.expect_gradients(lambda h: layers.last_token_forward(h, lengths),
                            lambda dpooled, cache: ex.last_token_pool_backward(dpooled, lengths, T),
                            (h,), (f"dh (h {h.shape}, lengths {lengths.tolist()})",))


@exercise("last_token_pool_backward")
def test_last_token_pool_backward_keeps_float32(ex):
    dpooled = np.ones((2, 3), dtype=np.float32)
    dh = call_on_copies("last_token_pool_backward", ex.last_token_pool_backward, dpooled=dpooled,
                        lengths=np.array([2, 4]), T=5)
    checks.expect_array("dh for float32 dpooled", dh, shape=(2, 5, 3), dtype=np.float32)


# --- 5.3 trainable_parameters ----------------------------------------------------------------

COUNT_CONFIGS = [
    GPTConfig(vocab_size=37, block_size=11, n_layer=3, n_head=2, n_embd=8),
    GPTConfig(vocab_size=50, block_size=7, n_layer=2, n_head=3, n_embd=12, bias=False),
]
COUNT_CHOICES = [  # (train, last_k, rank, targets)
    ("head", 1, 8, EVERY_LINEAR),
    ("last-k", 1, 8, EVERY_LINEAR),
    ("last-k", 2, 8, EVERY_LINEAR),
    ("all", 1, 8, EVERY_LINEAR),
    ("lora", 1, 2, EVERY_LINEAR),
    ("lora", 1, 3, ("attn.c_attn",)),
    ("lora", 1, 1, ("mlp.c_fc", "attn.c_proj")),
    ("lora", 1, 2, ("mlp.c_proj",)),
]


def measured_count(config, n_classes, train, last_k, rank, targets):
    """What a real classifier trains: the size of every buffer its optimiser would update."""
    lora = {"rank": rank, "alpha": 2.0 * rank, "targets": list(targets)} if train == "lora" else None
    return GPTClassifier(GPT(config), n_classes, train, last_k, lora).num_trainable()


@exercise("trainable_parameters")
@pytest.mark.parametrize("config", COUNT_CONFIGS, ids=["bias", "no-bias"])
def test_trainable_parameters_matches_a_real_classifier(ex, config):
    for n_classes in (2, 5):
        for train, last_k, rank, targets in COUNT_CHOICES:
            got = ex.trainable_parameters(config, n_classes, train, last_k=last_k, rank=rank, targets=targets)
            what = (f"train={train!r}" + (f", last_k={last_k}" if train == "last-k" else "")
                    + (f", rank={rank}, targets={list(targets)}" if train == "lora" else ""))
            want = measured_count(config, n_classes, train, last_k, rank, targets)
            convert = " (int(...) turns a NumPy integer into one)" if isinstance(got, np.integer) else ""
            checks.expect(type(got) is int, f"trainable_parameters ({what}): returned {type(got).__name__} "
                          f"{got!r:.40}, expected a Python int{convert}")
            checks.expect(got == want, f"trainable_parameters ({what}; n_layer {config.n_layer}, n_embd "
                          f"{config.n_embd}, bias {config.bias}, {n_classes} classes): {got:,}, a classifier "
                          f"built this way trains {want:,}")


# --- 5.4 lora_linear_forward -----------------------------------------------------------------


def lora_case(seed, lead, n_in, n_out, r):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, n_in))
    weight, bias = rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)
    A, B = rng.standard_normal((n_in, r)), rng.standard_normal((r, n_out))  # B != 0: a trained adapter
    return x, weight, bias, A, B


LORA_CASES = [  # (seed, leading shape of x, in, out, rank, alpha)
    (1, (2, 3), 6, 5, 2, 4.0),
    (2, (4,), 7, 9, 3, 1.0),
    (3, (1, 1), 5, 4, 1, 16.0),
    (4, (2, 2, 2), 8, 6, 4, 6.0),
]


def reference_lora_linear(x, weight, bias, A, B, alpha):
    """minigpt's way: the effective weight W + (alpha/r) A B, then an ordinary linear layer."""
    effective, _ = layers.lora_forward(weight, A, B, alpha / A.shape[1])
    return layers.linear_forward(x, effective, bias)


@exercise("lora_linear_forward")
@pytest.mark.parametrize("seed, lead, n_in, n_out, r, alpha", LORA_CASES)
def test_lora_linear_forward_matches_minigpt(ex, seed, lead, n_in, n_out, r, alpha):
    x, weight, bias, A, B = lora_case(seed, lead, n_in, n_out, r)
    want, _ = reference_lora_linear(x, weight, bias, A, B, alpha)
    got = call_on_copies("lora_linear_forward", ex.lora_linear_forward, x=x, weight=weight, bias=bias, lora_A=A,
                         lora_B=B, alpha=alpha)
    checks.expect_close(f"out (x {x.shape}, rank {r}, alpha {alpha})", np.asarray(got), want, bar=1e-9)


@exercise("lora_linear_forward")
def test_lora_linear_forward_starts_equal_to_the_base_layer(ex):
    x, weight, bias, A, _ = lora_case(5, (3,), 4, 6, 2)
    want = x @ weight + bias
    got = call_on_copies("lora_linear_forward", ex.lora_linear_forward, x=x, weight=weight, bias=bias, lora_A=A,
                         lora_B=np.zeros((2, 6)), alpha=8.0)
    checks.expect_close("out with B = 0 (a new adapter: exactly the base layer x W + b)", np.asarray(got), want,
                        bar=1e-12)


class AdapterFactor(np.ndarray):
    """lora_A or lora_B, watched for their (in, out) product: whatever NumPy computes from a
    factor (a ufunc, @, np.dot, np.einsum, ...) is watched too, and a watched result whose
    last two dimensions are (in, out) or (out, in) is A B (or its transpose) formed, with the
    scale anywhere. Made by watched_factors, which sets the two class attributes."""

    product_shapes = ()  # (in, out) and (out, in)
    formed = None  # a list: the shapes of the products formed

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return self._watch(getattr(ufunc, method)(*plain(inputs), **plain(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        return self._watch(func(*plain(args), **plain(kwargs)))

    def dot(self, other, out=None):
        return self._watch(np.dot(plain(self), plain(other), out=plain(out)))

    def _watch(self, result):
        if isinstance(result, tuple):
            return tuple(self._watch(r) for r in result)
        if not isinstance(result, np.ndarray):
            return result
        if result.shape[-2:] in self.product_shapes:
            self.formed.append(result.shape)
        return result.view(type(self))


def plain(value):
    """value with every AdapterFactor in it (in tuples, lists and dicts too) as a plain ndarray."""
    if isinstance(value, AdapterFactor):
        return value.view(np.ndarray)
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def watched_factors(A, B):
    """Copies of A and B as AdapterFactors, and the list their (in, out) products are recorded in."""
    watched = type("Watched", (AdapterFactor,), {"product_shapes": ((A.shape[0], B.shape[1]), (B.shape[1], A.shape[0])),
                                                 "formed": []})
    return A.copy().view(watched), B.copy().view(watched), watched.formed


@exercise("lora_linear_forward")
def test_lora_linear_forward_never_forms_the_product(ex):
    # shapes chosen so that no array of a correct answer is (in, out) = (5, 7) wide: x (2, 3, 5),
    # x A (2, 3, 2) or, rows flattened, (6, 2), the output (2, 3, 7) or (6, 7)
    x, weight, bias, A, B = lora_case(8, (2, 3), 5, 7, 2)
    want, _ = reference_lora_linear(x, weight, bias, A, B, 3.0)
    watched_A, watched_B, formed = watched_factors(A, B)
    got = ex.lora_linear_forward(x, weight, bias, watched_A, watched_B, 3.0)
    checks.expect(not formed, "lora_linear_forward formed the product A B (an (in, out) array, here (5, 7), or its "
                  "transpose): compute (x A) B, whose widest intermediate is (..., r); never making the (in, out) "
                  "product is what makes an adapter cheap")
    checks.expect_close("out (x (2, 3, 5), rank 2, alpha 3)", np.asarray(got), want, bar=1e-9)



def peak_bytes(function, *arguments):
    """function(*arguments), and the most memory (bytes) it held at once beyond what was
    held before the call: NumPy reports its arrays to tracemalloc, converted or not."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        got = function(*arguments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    return got, peak - before


@exercise("lora_linear_forward")
def test_lora_linear_forward_never_forms_the_product_of_plain_arrays(ex):
    # the watched factors above stop being watched once converted (np.asarray(lora_A) gives a
    # plain array); memory does not: W + s A B holds two (in, out) arrays at once, while a
    # correct answer's widest is (6, out), even with a copy of W (one (in, out) array).
    # (in, out) = (120, 200) of float64 is 188 KiB, under NumPy's 256 KiB for reusing temporaries.
    x, weight, bias, A, B = lora_case(10, (2, 3), 120, 200, 2)
    want, _ = reference_lora_linear(x, weight, bias, A, B, 3.0)
    got, held = peak_bytes(ex.lora_linear_forward, x.copy(), weight.copy(), bias.copy(), A.copy(), B.copy(), 3.0)
    product = weight.nbytes  # one (in, out) float64 array
    checks.expect(held < 1.5 * product, f"lora_linear_forward held {held / product:.2f} times the memory of an (in, "
                  f"out) array at once for W (120, 200) and rank 2: it formed A B (or W + s A B); compute (x A) B, "
                  f"whose widest intermediate is (..., r)")
    checks.expect_close("out (x (2, 3, 120), rank 2, alpha 3)", np.asarray(got), want, bar=1e-9)

# --- 5.5 lora_linear_backward ----------------------------------------------------------------


@exercise("lora_linear_backward")
@pytest.mark.parametrize("seed, lead, n_in, n_out, r, alpha", LORA_CASES)
def test_lora_linear_backward_matches_finite_differences(ex, seed, lead, n_in, n_out, r, alpha):
    x, weight, bias, A, B = lora_case(seed, lead, n_in, n_out, r)

    def forward(x, A, B):
        out, _ = reference_lora_linear(x, weight, bias, A, B, alpha)
        return out, (x, A, B)

    # weight, not in the cache, goes as a copy too (the B = 0 test below says if it is changed)
    checks.expect_gradients(forward, lambda dout, cache: ex.lora_linear_backward(dout, cache[0], weight.copy(),
                                                                                 cache[1], cache[2], alpha),
                            (x, A, B), (f"dx (x {x.shape}, rank {r}, alpha {alpha})", f"dA (rank {r}, alpha {alpha})",
                                        f"dB (rank {r}, alpha {alpha})"))


@exercise("lora_linear_backward")
def test_lora_linear_backward_of_a_new_adapter(ex):
    x, weight, bias, A, _ = lora_case(6, (5,), 4, 3, 2)
    B = np.zeros((2, 3))  # the start of training: B = 0, so dA = 0 but dB is not
    dout = np.random.default_rng(7).standard_normal((5, 3))
    want_dx, want_dB = dout @ weight.T, 2.0 * (x @ A).T @ dout
    dx, dA, dB = call_on_copies("lora_linear_backward", ex.lora_linear_backward, dout=dout, x=x, weight=weight,
                                lora_A=A, lora_B=B, alpha=4.0)
    checks.expect_close("dx with B = 0 (only the base weight's path: dout W^T)", np.asarray(dx), want_dx, bar=1e-12)
    checks.expect(np.all(np.asarray(dA) == 0), "dA with B = 0 must be exactly 0 (A reaches the output only through B)")
    checks.expect_close("dB with B = 0", np.asarray(dB), want_dB, bar=1e-12)


# --- 5.6 merge_lora --------------------------------------------------------------------------


@exercise("merge_lora")
@pytest.mark.parametrize("seed, n_in, n_out, r, alpha", [(1, 6, 5, 2, 4.0), (2, 3, 8, 3, 1.0), (3, 4, 4, 1, 32.0)])
def test_merge_lora_matches_minigpt(ex, seed, n_in, n_out, r, alpha):
    x, weight, bias, A, B = lora_case(seed, (3,), n_in, n_out, r)
    weight32, A32, B32 = weight.astype(np.float32), A.astype(np.float32), B.astype(np.float32)
    want, _ = layers.lora_forward(weight32, A32, B32, alpha / r)
    merged = call_on_copies("merge_lora", ex.merge_lora, weight=weight32, lora_A=A32, lora_B=B32, alpha=alpha)
    what = f"merged weight ({n_in} x {n_out}, rank {r}, alpha {alpha})"
    checks.expect_array(what, np.asarray(merged), shape=weight.shape, dtype=np.float32)
    checks.expect_close(what, merged, want, bar=1e-6)


@exercise("merge_lora")
def test_merged_layer_computes_what_the_adapter_computes(ex):
    x, weight, bias, A, B = lora_case(9, (4, 2), 5, 7, 3)
    unmerged, _ = reference_lora_linear(x, weight, bias, A, B, 6.0)
    merged = call_on_copies("merge_lora", ex.merge_lora, weight=weight, lora_A=A, lora_B=B, alpha=6.0)
    checks.expect_close("x @ merged + b against the unmerged layer with its adapter (rank 3, alpha 6)",
                        x @ np.asarray(merged) + bias, unmerged, bar=1e-9)


# --- 5.7 instruction_batch -------------------------------------------------------------------


def expected_batch(examples, eot, mask_prompt, ignore):
    """The rule of the exercise, one position at a time."""
    sequences = [list(p) + list(r) + [eot] for p, r in examples]
    L = max(map(len, sequences))
    inputs, targets = [], []
    for (prompt, _), s in zip(examples, sequences):
        padded = s + [eot] * (L - len(s))
        inputs.append(padded[:-1])
        row = []
        for t in range(L - 1):
            if t + 1 >= len(s) or (mask_prompt and t + 1 < len(prompt)):
                row.append(ignore)  # padding (after s's own end-of-text), or a prompt token
            else:
                row.append(padded[t + 1])
        targets.append(row)
    return np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64)


def random_examples(seed, n, eot):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, eot, rng.integers(1, 9)).tolist(), rng.integers(0, eot, rng.integers(1, 7)).tolist())
            for _ in range(n)]


@exercise("instruction_batch")
def test_instruction_batch_by_hand(ex):
    examples = [([5, 6, 7], [8, 9]), ([1], [2])]  # s = 5 6 7 8 9 E and 1 2 E, E = 50 (end-of-text)
    inputs, targets = ex.instruction_batch(examples, 50)
    checks.expect_array("inputs", inputs, shape=(2, 5), dtype=np.int64)
    checks.expect_array("targets", targets, shape=(2, 5), dtype=np.int64)
    checks.expect_equal("inputs of [5 6 7 | 8 9] and [1 | 2], end-of-text 50", inputs,
                        np.array([[5, 6, 7, 8, 9], [1, 2, 50, 50, 50]]))
    checks.expect_equal("targets of [1 | 2] (its first end-of-text stays a target, the padding after it is -100)",
                        targets[1], np.array([2, 50, -100, -100, -100]))
    checks.expect_equal("targets of [5 6 7 | 8 9] (the longest: no padding, ends with end-of-text)", targets[0],
                        np.array([6, 7, 8, 9, 50]))
    _, masked = ex.instruction_batch(examples, 50, mask_prompt=True)
    checks.expect_equal("targets of [5 6 7 | 8 9] with mask_prompt (the targets 6, 7 are prompt tokens)",
                        masked[0], np.array([-100, -100, 8, 9, 50]))
    checks.expect_equal("targets of [1 | 2] with mask_prompt (a 1-token prompt has no prompt target)",
                        masked[1], np.array([2, 50, -100, -100, -100]))


@exercise("instruction_batch")
@pytest.mark.parametrize("mask_prompt", [False, True])
def test_instruction_batch_follows_the_rule(ex, mask_prompt):
    for seed, n, eot, ignore in [(1, 4, 30, -100), (2, 1, 99, -100), (3, 6, 17, -1)]:
        examples = random_examples(seed, n, eot)
        kwargs = {} if ignore == -100 else {"ignore_index": ignore}
        got_inputs, got_targets = ex.instruction_batch(examples, eot, mask_prompt=mask_prompt, **kwargs)
        want_inputs, want_targets = expected_batch(examples, eot, mask_prompt, ignore)
        what = f"{n} example(s), end-of-text {eot}, mask_prompt={mask_prompt}, ignore_index={ignore}"
        checks.expect_array(f"inputs ({what})", got_inputs, shape=want_inputs.shape, dtype=np.int64)
        checks.expect_equal(f"inputs ({what})", got_inputs, want_inputs)
        checks.expect_array(f"targets ({what})", got_targets, shape=want_targets.shape, dtype=np.int64)
        checks.expect_equal(f"targets ({what})", got_targets, want_targets)


@exercise("instruction_batch")
@pytest.mark.parametrize("mask_prompt", [False, True])
def test_instruction_batch_matches_minigpts_collate(ex, mask_prompt):
    examples = random_examples(5, 5, 40)
    encoded = [(list(p) + list(r) + [40], len(p)) for p, r in examples]  # instruct_data.encode_example's layout
    want_inputs, want_targets = collate(encoded, 40, mask_prompt=mask_prompt)
    got_inputs, got_targets = ex.instruction_batch(examples, 40, mask_prompt=mask_prompt)
    what = f"5 examples, mask_prompt={mask_prompt}, against minigpt.finetune.instruct_data.collate"
    checks.expect_array(f"inputs ({what})", got_inputs, shape=want_inputs.shape, dtype=np.int64)
    checks.expect_equal(f"inputs ({what})", got_inputs, want_inputs)
    checks.expect_array(f"targets ({what})", got_targets, shape=want_targets.shape, dtype=np.int64)
    checks.expect_equal(f"targets ({what})", got_targets, want_targets)


@exercise("instruction_batch")
def test_instruction_batch_leaves_the_examples_alone(ex):
    examples = random_examples(4, 3, 20)
    given = [(list(p), list(r)) for p, r in examples]
    ex.instruction_batch(given, 20, mask_prompt=True)
    checks.expect(given == examples, "instruction_batch changed the examples' lists (e.g. appended the "
                  "end-of-text to them): build new lists")


# --- 5.8 padding_shift --------------------------------------------------------------------


def measured_shifts(model, ids, n_pad, pad_id):
    """(right, left) as a measurement: the three rows of the exercise, each fed alone, the
    last real token read at its position by index arithmetic of its own."""
    T0 = len(ids)
    rows = {"alone": list(ids), "right": list(ids) + [pad_id] * n_pad, "left": [pad_id] * n_pad + list(ids)}
    last = {"alone": T0 - 1, "right": T0 - 1, "left": n_pad + T0 - 1}
    h = {name: model.forward_hidden(np.array([row], dtype=np.int64))[0, last[name]] for name, row in rows.items()}
    return tuple(float(np.abs(h[name] - h["alone"]).max()) for name in ("right", "left"))


def padding_model(n_layer, block_size, seed):
    """A float64 GPT in eval mode, as the exercise says; with dropout, so that an answer that
    switches it to training mode measures something else (and is told so)."""
    config = GPTConfig(vocab_size=37, block_size=block_size, n_layer=n_layer, n_head=2, n_embd=12, dropout=0.1)
    return GPT(config, seed=seed, dtype=np.float64).eval()


def watch_rows(model, offset=0.0):
    """Make model.forward_hidden record each row it is fed (a batch row by row) in the list it
    returns, and add offset x T to every hidden state of a (B, T) batch."""
    fed, real_forward_hidden = [], model.forward_hidden

    def watched(idx, *rest, **options):
        rows = np.atleast_2d(np.asarray(idx))
        fed.extend(row.tolist() for row in rows)
        return real_forward_hidden(idx, *rest, **options) + offset * rows.shape[-1]

    model.forward_hidden = watched
    return fed


def expect_shift(what, side, got, want, bar):
    """One of padding_shift's two values against the measurement, to a relative error of bar."""
    error = abs(float(got) - want) / max(1.0, want)
    checks.expect(error <= bar, f"{what}: {side} = {float(got)!r}, measured {want!r} (difference {error:.1e}, "
                  f"bar {bar:g})")


@exercise("padding_shift")
@pytest.mark.parametrize("n_layer, block_size, T0, n_pad, seed", [(1, 8, 1, 3, 0), (2, 24, 11, 6, 1), (3, 40, 30, 10, 2)])
def test_padding_shift_matches_a_measurement(ex, n_layer, block_size, T0, n_pad, seed):
    model = padding_model(n_layer, block_size, seed)
    ids = np.random.default_rng(seed).integers(0, 36, T0)
    want_right, want_left = measured_shifts(model, ids, n_pad, 36)
    given = ids.copy()
    fed = watch_rows(model)  # which rows were measured: right is 0 only if it was
    got = ex.padding_shift(model, given, n_pad, 36)
    what = f"padding_shift for a {T0}-token message and {n_pad} padding tokens ({n_layer} layers)"
    checks.expect(not model.training, f"{what} left the model in training mode (dropout on): it was given in eval "
                  f"mode, and a measurement must leave it as it found it")
    checks.expect(isinstance(got, tuple) and len(got) == 2, f"{what}: return (right, left), got {got!r:.80}")
    checks.expect(np.array_equal(ids, given), f"{what} changed ids: build the padded rows as new arrays")
    rows = {"the message alone (the reference of both differences)": list(ids),
            "the message padded on the right": list(ids) + [36] * n_pad,
            "the message padded on the left": [36] * n_pad + list(ids)}
    for name, row in rows.items():
        checks.expect(row in fed, f"{what}: {name} was never fed to model.forward_hidden")
    right, left = got
    checks.expect(abs(float(right) - want_right) <= 1e-12, f"{what}: right = {float(right)!r}, measured "
                  f"{want_right!r} (read the message's last real token, not the row's last position)")
    expect_shift(what, "left", left, want_left, bar=1e-9)


@exercise("padding_shift")
def test_padding_shift_measures_the_right_padding(ex):
    # on a model whose hidden states all move by 0.001 x T, right padding moves the last real
    # token's state by exactly 0.001 x n_pad: an answer that knows right is 0 without reading
    # the right-padded row's output shows here
    model = padding_model(2, 24, 3)
    ids = np.random.default_rng(3).integers(0, 36, 9)
    watch_rows(model, offset=1e-3)
    want_right, want_left = measured_shifts(model, ids, 5, 36)
    right, left = ex.padding_shift(model, ids.copy(), 5, 36)
    what = "padding_shift on a model whose forward_hidden adds 0.001 x T to every hidden state of a (1, T) row"
    checks.expect(abs(float(right) - want_right) <= 1e-12, f"{what}: right = {float(right)!r}, measured "
                  f"{want_right!r} (5 padding tokens: 0.005): measure right from the right-padded row, do not "
                  f"assume it")
    expect_shift(what, "left", left, want_left, bar=1e-9)
