"""Chapter 4 exercises: pretraining a GPT, and sampling from it.

Seven exercises, in the order of the reading (chapters/04-pretraining/README.md):

    4.1  get_batch_at           inputs and next-token targets from given start positions
    4.2  lm_loss                the mean cross-entropy over the targets that count
    4.3  lm_loss_backward       its gradient with respect to the logits
    4.4  adamw_step             one AdamW update with decoupled weight decay
    4.5  learning_rate          linear warm-up, cosine decay, then a floor
    4.6  sampling_distribution  what temperature, top-k and top-p leave of the next-token distribution
    4.7  positions_processed    measure the work of generation with and without a KV cache

Fill in the functions of exercises.py (this chapter's folder), replacing each
`raise NotImplementedError(...)`, and keep their names and signatures. Grade them with

    python -m minigpt grade 04

The grader compares each answer with minigpt's own code (minigpt.data.get_batch,
minigpt.kernels.reference, minigpt.optim.lr_at, minigpt.generate) on inputs this file
does not show you: other sizes, other seeds, T = 1, ties, edge iterations. The backward
pass (4.3) is graded against central finite differences of the loss in float64
(relative error below 1e-7). Write the maths with NumPy yourself: calling the minigpt
function an exercise is graded against teaches nothing (4.7 is the exception: it asks
you to measure minigpt's own generate).
"""

import math

import numpy as np

IGNORE_INDEX = -100  # a target equal to this is not predicted (e.g. padding): no loss, no gradient


def get_batch_at(tokens, starts, block_size):
    """Exercise 4.1: a batch of training windows, at given start positions.

    tokens (N,) is the corpus as integer token ids; starts (B,) holds B start positions
    s with 0 <= s <= N - block_size - 1. Return (x, y), both int64 arrays of shape
    (B, block_size):
        x[b] = tokens[s : s + block_size]            the inputs
        y[b] = tokens[s + 1 : s + block_size + 1]    the targets: each input's next token
    so y[b, t] is what the model must predict after reading x[b, :t + 1]."""
    # BEGIN SOLUTION
    # HINT: index tokens with starts[:, None] + np.arange(block_size); the targets are the same windows one position later
    offsets = np.arange(block_size)  # (T,)
    windows = np.asarray(starts)[:, None] + offsets  # (B, T) positions in the corpus
    x = np.asarray(tokens)[windows].astype(np.int64)  # (B, T)
    y = np.asarray(tokens)[windows + 1].astype(np.int64)  # (B, T): shifted by one
    return x, y
    # END SOLUTION


def lm_loss(logits, targets, ignore_index=IGNORE_INDEX):
    """Exercise 4.2: the language-modelling loss.

    logits (..., V) floats, targets (...) integers (the same leading shape). For every
    position whose target is not ignore_index, the loss is -log softmax(logits)[target];
    return their mean, as a Python float. Ignored positions count neither in the sum nor
    in the number divided by; if every target is ignored, return 0.0. ignore_index may be
    any integer (-100 by default). Logits may be large (hundreds): compute log-softmax so
    that exp cannot overflow. Do not change logits."""
    # BEGIN SOLUTION
    # HINT: log softmax = z - max - log(sum(exp(z - max))); average -logp[target] over the positions where target != ignore_index only
    V = logits.shape[-1]
    z = np.asarray(logits, dtype=np.float64).reshape(-1, V)  # (N, V)
    t = np.asarray(targets).reshape(-1)  # (N,)
    counted = t != ignore_index  # (N,)
    if not counted.any():
        return 0.0
    z = z[counted]  # (n, V)
    shifted = z - z.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (n, V)
    return float(-log_probs[np.arange(len(z)), t[counted]].mean())
    # END SOLUTION


def lm_loss_backward(logits, targets, ignore_index=IGNORE_INDEX):
    """Exercise 4.3: the gradient of lm_loss (4.2) with respect to the logits.

    Same inputs as lm_loss. Return dlogits, of the shape and dtype of logits (float32 in,
    float32 out): the derivative of the mean loss. Rows whose target is ignored get zeros
    (and so does everything when every target is ignored). Do not change logits."""
    # BEGIN SOLUTION
    # HINT: for a counted row, (softmax(z) - onehot(target)) / n, with n the number of counted rows; zeros for ignored rows
    V = logits.shape[-1]
    z = np.asarray(logits, dtype=np.float64).reshape(-1, V)  # (N, V)
    t = np.asarray(targets).reshape(-1)  # (N,)
    counted = t != ignore_index  # (N,)
    dz = np.zeros_like(z)
    n = max(int(counted.sum()), 1)  # every target ignored: all rows stay zero
    rows = np.nonzero(counted)[0]
    e = np.exp(z[rows] - z[rows].max(axis=-1, keepdims=True))
    dz[rows] = e / e.sum(axis=-1, keepdims=True)  # softmax of the counted rows
    dz[rows, t[rows]] -= 1.0  # minus the one-hot target
    return (dz / n).reshape(np.shape(logits)).astype(logits.dtype)  # computed in float64, returned as given
    # END SOLUTION


def adamw_step(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay, step):
    """Exercise 4.4: one AdamW update on flat float64 arrays (all of shape (P,)).

    step counts from 1 (the first update has step 1). decay_mask is 1.0 where a parameter
    is weight-decayed and 0.0 where not. With g = grads:
        m = beta1 m + (1 - beta1) g,       v = beta2 v + (1 - beta2) g^2
        m_hat = m / (1 - beta1^step),      v_hat = v / (1 - beta2^step)
        params = params - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay decay_mask params)
    where the decay uses the parameters from before this update. Return (params, m, v),
    the new arrays; you may update the inputs in place or not."""
    # BEGIN SOLUTION
    # HINT: the decay term lr * weight_decay * decay_mask * params is subtracted beside the Adam step, never added to g
    m = beta1 * m + (1.0 - beta1) * grads
    v = beta2 * v + (1.0 - beta2) * grads * grads
    m_hat = m / (1.0 - beta1**step)  # undo the pull towards m's zero start
    v_hat = v / (1.0 - beta2**step)
    params = params - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * decay_mask * params)
    return params, m, v
    # END SOLUTION


def learning_rate(it, warmup, lr_decay_iters, lr, min_lr):
    """Exercise 4.5: the learning rate at iteration it (counting from 0).

        it < warmup:                    lr * (it + 1) / (warmup + 1)       a linear ramp
        warmup <= it < lr_decay_iters:  min_lr + (lr - min_lr) * (1 + cos(pi r)) / 2,
                                        r = (it - warmup) / (lr_decay_iters - warmup)
        it >= lr_decay_iters:           min_lr                             the floor
    (warmup >= 0 and lr_decay_iters >= warmup). Return a Python float."""
    # BEGIN SOLUTION
    # HINT: three cases; the ramp uses it + 1 so iteration 0 already moves, and the cosine goes from lr at warmup to min_lr at lr_decay_iters
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= lr_decay_iters:
        return float(min_lr)
    ratio = (it - warmup) / (lr_decay_iters - warmup)  # 0 -> 1
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * ratio))
    # END SOLUTION


def sampling_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """Exercise 4.6: the distribution a sampler draws the next token from.

    logits (V,) floats; temperature > 0; top_k None or an integer >= 1; top_p None or in
    (0, 1]. Return probs (V,), float64, summing to 1, built in this order (do not change
    logits):
      1. temperature: probs = softmax(logits / temperature);
      2. top-k: keep exactly the k most likely tokens (on a tie at the k-th place, the
         lower token ids first), set the others to 0, renormalise;
      3. top-p (nucleus): of the distribution left by 2, keep the smallest set of most
         likely tokens (ties: lower ids first) whose total probability is >= top_p; that
         is, keep tokens in order of decreasing probability up to and including the one
         whose cumulative sum reaches top_p. Set the others to 0 and renormalise.
    None skips a rule."""
    # BEGIN SOLUTION
    # HINT: divide the logits before the softmax; rank with np.argsort(-probs, kind="stable"); keep a token while the mass ranked above it is < top_p
    z = np.asarray(logits, dtype=np.float64) / temperature  # (V,)
    e = np.exp(z - z.max())
    probs = e / e.sum()  # (V,)
    order = np.argsort(-probs, kind="stable")  # most likely first, ties to the lower id
    if top_k is not None:
        probs[order[top_k:]] = 0.0
        probs /= probs.sum()
    if top_p is not None:
        ranked = probs[order]  # (V,) descending
        mass_above = np.cumsum(ranked) - ranked  # probability of the tokens ranked above each
        keep = mass_above < top_p - 1e-12  # still short of top_p before this token: it is needed
        keep[0] = True
        probs[order[~keep]] = 0.0
        probs /= probs.sum()
    return probs
    # END SOLUTION


def positions_processed(model, prompt, max_new_tokens, use_cache):
    """Exercise 4.7 (a measurement): the work of generating, in token positions.

    Measure how many token positions pass through the network while
    minigpt.generate.generate(model, prompt, max_new_tokens, temperature=0.0,
    use_cache=use_cache) runs: the sum, over every forward call it makes
    (model.forward without the cache, minigpt.generate.forward_with_cache with it), of the
    number of positions fed, B * T_fed for ids of shape (B, T_fed). prompt (B, T0) int64.
    generate may pass both functions more arguments than the ids (forward_with_cache
    gets model, ids, cache and possibly more): accept and pass on any (*args, **kwargs).
    Return an int. Leave model and minigpt.generate as you found them: put back what you
    replaced in a `finally:` block, so it is restored even if generate raises."""
    # BEGIN SOLUTION
    # HINT: replace minigpt.generate.forward_with_cache and model.forward by wrappers (*args, **kwargs) that add up the ids' size, then call the real ones; restore both
    import minigpt.generate as generation

    counted = 0
    real_cached, real_forward = generation.forward_with_cache, model.forward

    def cached_forward(m, idx_new, *rest, **options):
        nonlocal counted
        counted += idx_new.size  # B * T_new positions
        return real_cached(m, idx_new, *rest, **options)

    def full_forward(idx, *rest, **options):
        nonlocal counted
        counted += np.asarray(idx).size  # B * T positions
        return real_forward(idx, *rest, **options)

    generation.forward_with_cache, model.forward = cached_forward, full_forward
    try:
        generation.generate(model, prompt, max_new_tokens, temperature=0.0, use_cache=use_cache)
    finally:
        generation.forward_with_cache = real_cached
        del model.forward  # the instance attribute; the class's method shows through again
    return counted
    # END SOLUTION
