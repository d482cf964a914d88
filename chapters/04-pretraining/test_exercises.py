"""The grader of chapter 4: python -m minigpt grade 04 (see solutions.py's docstring).

The oracles are minigpt's own code, never the chapter's solutions: batches against
minigpt.data.get_batch, the loss against minigpt.kernels.reference.cross_entropy_forward,
its gradient against central finite differences of that loss, AdamW against
minigpt.kernels.reference.adamw_update, the schedule against minigpt.optim.lr_at, the
sampling rules against minigpt.generate.sampling_probs (and first principles: exactly k
tokens, the smallest nucleus), and the measurement against a count taken by watching
minigpt.generate.generate call the model."""

import numpy as np
import pytest

import minigpt.generate as generation
from minigpt import data, kernels
from minigpt.course import checks
from minigpt.course.grading import ex, exercise  # noqa: F401  (ex is a fixture)
from minigpt.kernels import reference
from minigpt.model import GPT, GPTConfig
from minigpt.optim import lr_at

# --- 4.1 get_batch_at ------------------------------------------------------------------------


@exercise("get_batch_at")
@pytest.mark.parametrize("N, B, T, seed", [(50, 4, 8, 1), (200, 7, 13, 2), (12, 3, 1, 3)])
def test_get_batch_at_matches_minigpts_batches(ex, N, B, T, seed):
    tokens = np.random.default_rng(seed).integers(0, 60000, N).astype(np.uint16)  # the corpus's compact dtype
    starts = np.random.default_rng(seed + 10).integers(0, N - T, B)  # the starts get_batch draws ...
    want_x, want_y = data.get_batch(tokens, B, T, np.random.default_rng(seed + 10))  # ... from the same generator
    x, y = ex.get_batch_at(tokens, starts, T)
    checks.expect_array("x", x, shape=(B, T), dtype=np.int64)
    checks.expect_array("y", y, shape=(B, T), dtype=np.int64)
    checks.expect_equal(f"x (the inputs; N={N}, B={B}, T={T})", x, want_x)
    checks.expect_equal(f"y (the targets: the inputs shifted one position to the left; N={N}, B={B}, T={T})", y, want_y)


@exercise("get_batch_at")
def test_get_batch_at_reaches_the_last_token(ex):
    tokens = np.arange(100, 110)  # 10 tokens: a window of 4 may start at 0 .. 5
    x, y = ex.get_batch_at(tokens, np.array([5, 0]), 4)
    checks.expect_equal("x for starts [5, 0], block_size 4, tokens 100..109", x,
                        np.array([[105, 106, 107, 108], [100, 101, 102, 103]]))
    checks.expect_equal("y for starts [5, 0] (the last window ends with the corpus's last token)", y,
                        np.array([[106, 107, 108, 109], [101, 102, 103, 104]]))


# --- 4.2 lm_loss -----------------------------------------------------------------------------


def reference_loss(logits, targets):
    """The mean of minigpt's per-row losses over the rows that are not ignored."""
    V = logits.shape[-1]
    flat_targets = targets.reshape(-1)
    losses, _ = reference.cross_entropy_forward(logits.reshape(-1, V), flat_targets)  # ignored rows: 0
    return losses.sum() / max(np.count_nonzero(flat_targets != -100), 1)


def loss_cases():
    rng = np.random.default_rng(42)
    targets = rng.integers(0, 11, (3, 5))
    targets[0, 1] = targets[2, 4] = targets[1, 0] = -100
    yield "logits (3, 5, 11) with 3 ignored targets", rng.standard_normal((3, 5, 11)) * 2, targets
    yield "logits (6, 4), no target ignored", rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    yield "a single position, T = 1", rng.standard_normal((1, 1, 7)), np.array([[3]])
    big = rng.standard_normal((4, 9)) * 300 + 500  # exp(800) overflows float64
    yield "large logits (around 500, spread 300)", big, np.array([0, -100, 8, 2])


def expect_logits_unchanged(function, logits, given):
    checks.expect(np.array_equal(given, logits), f"{function} changed its input logits in place (e.g. logits -= "
                  f"logits.max(...)): work on a copy, the caller still needs them")


@exercise("lm_loss")
def test_lm_loss_matches_minigpt(ex):
    for what, logits, targets in loss_cases():
        given = logits.copy()
        got = ex.lm_loss(given, targets)
        expect_logits_unchanged("lm_loss", logits, given)
        checks.expect(np.ndim(got) == 0, f"lm_loss returned {type(got).__name__} of shape {np.shape(got)}, expected one number")
        checks.expect_close(f"lm_loss, {what}", float(got), reference_loss(logits, targets), bar=1e-9)


@exercise("lm_loss")
def test_lm_loss_of_uniform_logits_is_log_v(ex):
    got = ex.lm_loss(np.zeros((2, 3, 17)), np.array([[1, 5, -100], [0, 16, 9]]))
    checks.expect_close("lm_loss of all-zero logits (uniform over V = 17: log 17)", float(got), np.log(17), bar=1e-12)


@exercise("lm_loss")
def test_lm_loss_honours_another_ignore_index(ex):
    rng = np.random.default_rng(43)
    logits, targets = rng.standard_normal((2, 5, 6)), rng.integers(0, 6, (2, 5))
    targets[0, 2] = targets[1, 4] = -1  # -1 marks the ignored positions here, not -100
    got = ex.lm_loss(logits, targets, ignore_index=-1)
    want = reference_loss(logits, np.where(targets == -1, -100, targets))
    checks.expect_close("lm_loss with ignore_index=-1 (two targets are -1)", float(got), want, bar=1e-9)


@exercise("lm_loss")
def test_lm_loss_with_every_target_ignored_is_zero(ex):
    got = ex.lm_loss(np.random.default_rng(0).standard_normal((2, 3, 5)), np.full((2, 3), -100))
    checks.expect(float(got) == 0.0, f"lm_loss with every target ignored: got {got}, expected 0.0")


# --- 4.3 lm_loss_backward ---------------------------------------------------------------------


@exercise("lm_loss_backward")
def test_lm_loss_backward_leaves_the_logits_alone(ex):
    logits = np.random.default_rng(44).standard_normal((3, 4, 5)) * 3
    given = logits.copy()
    ex.lm_loss_backward(given, np.array([[1, 0, 4, -100], [2, 2, 3, 1], [-100, 0, 0, 4]]))
    expect_logits_unchanged("lm_loss_backward", logits, given)


@exercise("lm_loss_backward")
def test_lm_loss_backward_matches_finite_differences(ex):
    for what, logits, targets in list(loss_cases())[:3]:
        checks.expect_gradients(lambda z: (np.float64(reference_loss(z, targets)), z),
                                lambda dout, z: dout * ex.lm_loss_backward(z, targets),
                                (logits,), (f"dlogits, {what}",))


@exercise("lm_loss_backward")
def test_lm_loss_backward_is_zero_where_the_target_is_ignored(ex):
    logits = np.random.default_rng(3).standard_normal((2, 4, 6))
    targets = np.array([[1, -100, 5, 0], [-100, -100, 2, 3]])
    dlogits = checks.expect_array("dlogits", ex.lm_loss_backward(logits, targets), shape=logits.shape)
    checks.expect(np.all(dlogits[targets == -100] == 0.0), "dlogits: rows whose target is ignored must be exactly 0")
    every_ignored = ex.lm_loss_backward(logits, np.full((2, 4), -100))
    checks.expect_array("dlogits with every target ignored", every_ignored, shape=logits.shape)
    checks.expect(np.all(every_ignored == 0.0), "dlogits with every target ignored must be all zeros")


@exercise("lm_loss_backward")
def test_lm_loss_backward_honours_another_ignore_index(ex):
    rng = np.random.default_rng(45)
    logits, targets = rng.standard_normal((2, 5, 6)), rng.integers(0, 6, (2, 5))
    targets[0, 2] = targets[1, 4] = -1  # -1 marks the ignored positions here, not -100
    as_minigpt = np.where(targets == -1, -100, targets)
    checks.expect_gradients(lambda z: (np.float64(reference_loss(z, as_minigpt)), z),
                            lambda dout, z: dout * ex.lm_loss_backward(z, targets, ignore_index=-1),
                            (logits,), ("dlogits with ignore_index=-1 (two targets are -1)",))


@exercise("lm_loss_backward")
def test_lm_loss_backward_keeps_float32(ex):
    rng = np.random.default_rng(46)
    logits, targets = (rng.standard_normal((3, 4, 7)) * 2).astype(np.float32), rng.integers(0, 7, (3, 4))
    targets[1, 1] = -100
    dlogits = checks.expect_array("dlogits for float32 logits", ex.lm_loss_backward(logits, targets),
                                  shape=logits.shape, dtype=np.float32)
    _, probs = reference.cross_entropy_forward(logits.reshape(-1, 7), targets.reshape(-1))
    want = reference.cross_entropy_backward(np.full(12, 1 / 11), probs, targets.reshape(-1))  # 11 rows count
    want = want.reshape(logits.shape)
    checks.expect_close("dlogits for float32 logits", dlogits, want, bar=1e-5)


# --- 4.4 adamw_step -------------------------------------------------------------------------


def adamw_case(P, step, seed, weight_decay=0.1, lr=0.05):
    rng = np.random.default_rng(seed)
    fresh = step == 1  # the first step starts from zero moments
    arrays = {
        "params": rng.standard_normal(P) * 2,
        "grads": rng.standard_normal(P) * np.exp(rng.uniform(-4, 2, P)),  # gradients of very different sizes
        "m": np.zeros(P) if fresh else rng.standard_normal(P) * 0.1,
        "v": np.zeros(P) if fresh else rng.uniform(0, 0.05, P),
        "decay_mask": (rng.random(P) < 0.6).astype(np.float64),
    }
    numbers = {"lr": lr, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": weight_decay, "step": step}
    return arrays, numbers


@exercise("adamw_step")
def test_adamw_decay_leaves_unmasked_parameters_alone(ex):
    """With a zero gradient Adam's step is 0, so only the decay moves the parameters: by
    exactly lr * weight_decay * p where the mask is 1, not at all where it is 0."""
    params = np.array([1.0, -2.0, 3.0, 0.5])
    mask = np.array([1.0, 0.0, 1.0, 0.0])
    got, _, _ = ex.adamw_step(params.copy(), np.zeros(4), np.zeros(4), np.zeros(4), mask,
                              lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.5, step=1)
    checks.expect_close("params after a step with zero gradients (decay only, beside the Adam step: "
                        "p - 0.1 * 0.5 * mask * p)", got,
                        params * (1 - 0.05 * mask), bar=1e-12)


@exercise("adamw_step")
@pytest.mark.parametrize("P, step, seed", [(40, 1, 0), (33, 2, 1), (25, 7, 2), (1, 300, 3)])
def test_adamw_step_matches_minigpt(ex, P, step, seed):
    arrays, numbers = adamw_case(P, step, seed)
    want = {name: a.copy() for name, a in arrays.items()}
    reference.adamw_update(want["params"], want["grads"], want["m"], want["v"], want["decay_mask"], **numbers)
    given = {name: a.copy() for name, a in arrays.items()}
    got = ex.adamw_step(*given.values(), **numbers)
    checks.expect(isinstance(got, (tuple, list)) and len(got) == 3, "adamw_step must return (params, m, v)")
    for name, value in zip(("params", "m", "v"), got):
        checks.expect_close(f"{name} after AdamW step {step} (P={P})", value, want[name], bar=1e-9)


# --- 4.5 learning_rate ----------------------------------------------------------------------


@exercise("learning_rate")
@pytest.mark.parametrize("warmup, decay_iters, lr, min_lr", [(10, 50, 1e-3, 1e-4), (7, 7, 3e-4, 3e-5),
                                                              (0, 20, 6e-4, 0.0), (100, 2000, 1e-3, 1e-4)])
def test_learning_rate_matches_minigpt_around_every_boundary(ex, warmup, decay_iters, lr, min_lr):
    middle = (warmup + decay_iters) // 2
    iterations = sorted({0, 1, warmup - 1, warmup, warmup + 1, middle, decay_iters - 1, decay_iters,
                         decay_iters + 1, 3 * decay_iters + 5} - {-1})
    for it in iterations:
        got = ex.learning_rate(it, warmup, decay_iters, lr, min_lr)
        want = lr_at(it, warmup, decay_iters, lr, min_lr)
        checks.expect(np.ndim(got) == 0, f"learning_rate returned shape {np.shape(got)}, expected one number")
        checks.expect_close(f"learning_rate at it={it} (warmup {warmup}, lr_decay_iters {decay_iters}, lr {lr:g}, "
                            f"min_lr {min_lr:g})", float(got), want, bar=1e-12)


# --- 4.6 sampling_distribution --------------------------------------------------------------


def expect_distribution(what, got, want):
    checks.expect_array(what, got, shape=want.shape)
    checks.expect_close(f"the sum of {what}", float(np.sum(got)), 1.0, bar=1e-9)
    checks.expect(np.array_equal(got > 0, want > 0), f"{what}: keeps tokens {np.flatnonzero(got > 0).tolist()}, "
                  f"expected {np.flatnonzero(want > 0).tolist()}")
    checks.expect_close(what, got, want, bar=1e-9)


def minigpt_probs(logits, temperature=1.0, top_k=None, top_p=None):
    with kernels.using("numpy"):
        return generation.sampling_probs(logits[None, :], temperature, top_k, top_p)[0]


@exercise("sampling_distribution")
@pytest.mark.parametrize("temperature", [1.0, 0.5, 1.7])
def test_temperature_divides_the_logits_before_the_softmax(ex, temperature):
    logits = np.random.default_rng(6).standard_normal(9) * 2
    given = logits.copy()
    got = ex.sampling_distribution(given, temperature=temperature)
    checks.expect(np.array_equal(given, logits), "sampling_distribution changed its input logits in place "
                  "(e.g. logits /= temperature): work on a copy, the caller still needs them")
    expect_distribution(f"probs at temperature {temperature}", got, minigpt_probs(logits, temperature))


@exercise("sampling_distribution")
def test_top_k_keeps_exactly_k_tokens_even_on_ties(ex):
    logits = np.array([0.5, 2.0, 1.0, 2.0, 1.0, -1.0, 1.0])  # ranks: 1, 3 (tie), then 2, 4, 6 (tie)
    for k in (1, 2, 3, 4, 7):
        got = ex.sampling_distribution(logits.copy(), top_k=k)
        expect_distribution(f"probs with top_k={k} for logits {logits.tolist()}", got, minigpt_probs(logits, top_k=k))
    random_logits = np.random.default_rng(8).standard_normal(50)
    got = ex.sampling_distribution(random_logits.copy(), temperature=0.8, top_k=10)
    expect_distribution("probs with temperature 0.8, top_k=10 (V=50)", got, minigpt_probs(random_logits, 0.8, 10))


@exercise("sampling_distribution")
def test_top_p_keeps_the_token_that_crosses_p(ex):
    probs = np.array([0.05, 0.5, 0.15, 0.3])  # ranked: 0.5, 0.3, 0.15, 0.05 -> cumulative 0.5, 0.8, 0.95, 1
    for p, kept in ((0.3, [1]), (0.7, [1, 3]), (0.9, [1, 2, 3]), (0.99, [0, 1, 2, 3])):
        want = np.zeros(4)
        want[kept] = probs[kept] / probs[kept].sum()
        got = ex.sampling_distribution(np.log(probs), top_p=p)
        expect_distribution(f"probs with top_p={p} for probabilities {probs.tolist()}", got, want)


@exercise("sampling_distribution")
@pytest.mark.parametrize("seed, temperature, top_k, top_p", [(1, 1.0, None, 0.9), (2, 0.7, None, 0.5),
                                                              (3, 1.3, 12, 0.8), (4, 1.0, 3, 0.95)])
def test_sampling_distribution_matches_minigpt(ex, seed, temperature, top_k, top_p):
    logits = np.random.default_rng(seed).standard_normal(40) * 1.5
    got = ex.sampling_distribution(logits.copy(), temperature, top_k, top_p)
    expect_distribution(f"probs with temperature {temperature}, top_k={top_k}, top_p={top_p} (V=40, seed {seed})",
                        got, minigpt_probs(logits, temperature, top_k, top_p))


# --- 4.7 positions_processed ----------------------------------------------------------------


REAL_FORWARD_WITH_CACHE, REAL_GPT_FORWARD = generation.forward_with_cache, GPT.forward


def forward_is_real(model):
    """model.forward is GPT.forward, as a model has it: the class's method, or that method
    bound to this model and stored on it (a student's `model.forward = saved` restores it
    so; `del model.forward` removes the stored one)."""
    stored = vars(model).get("forward")
    restored = "forward" not in vars(model) or (getattr(stored, "__func__", None) is REAL_GPT_FORWARD
                                                and getattr(stored, "__self__", None) is model)
    return restored and GPT.forward is REAL_GPT_FORWARD


def tiny_model(block_size):
    config = GPTConfig(vocab_size=11, block_size=block_size, n_layer=1, n_head=2, n_embd=8)
    return GPT(config, seed=block_size, dtype=np.float64).eval()


def watched_count(model, prompt, n_new, use_cache):
    """Positions fed to the network while minigpt generates: a spy on both forward paths."""
    seen = []
    real_cached, real_forward = generation.forward_with_cache, GPT.forward

    def cached(m, idx_new, *rest, **options):
        seen.append(idx_new.size)
        return real_cached(m, idx_new, *rest, **options)

    def full(self, idx, *rest, **options):
        seen.append(np.asarray(idx).size)
        return real_forward(self, idx, *rest, **options)

    generation.forward_with_cache, GPT.forward = cached, full
    try:
        with kernels.using("numpy"):
            generation.generate(model, prompt, n_new, temperature=0.0, use_cache=use_cache)
    finally:
        generation.forward_with_cache, GPT.forward = real_cached, real_forward
    return sum(seen)


@exercise("positions_processed")
@pytest.mark.parametrize("B, T0, n_new, block_size", [(1, 3, 5, 16), (2, 4, 9, 8), (1, 1, 20, 6), (3, 10, 4, 6)])
def test_positions_processed_matches_what_generate_feeds(ex, B, T0, n_new, block_size):
    model = tiny_model(block_size)
    prompt = np.random.default_rng(T0).integers(0, 11, (B, T0))
    for use_cache in (True, False):
        want = watched_count(model, prompt, n_new, use_cache)
        with kernels.using("numpy"):
            got = ex.positions_processed(model, prompt.copy(), n_new, use_cache)
        left_replaced = [name for name, replaced in (
            ("minigpt.generate.forward_with_cache", generation.forward_with_cache is not REAL_FORWARD_WITH_CACHE),
            ("model.forward", not forward_is_real(model))) if replaced]
        generation.forward_with_cache, GPT.forward = REAL_FORWARD_WITH_CACHE, REAL_GPT_FORWARD
        vars(model).pop("forward", None)  # put things back, so the next tests measure the real ones
        checks.expect(not left_replaced, f"positions_processed(use_cache={use_cache}) left "
                      f"{' and '.join(left_replaced)} replaced: restore them (try/finally)")
        checks.expect(isinstance(got, (int, np.integer)), f"positions_processed returned {type(got).__name__}, expected an int")
        checks.expect(got == want, f"positions_processed(use_cache={use_cache}) for B={B}, a prompt of {T0}, "
                                   f"{n_new} new tokens, block_size {block_size}: got {got}, measured {want}")
