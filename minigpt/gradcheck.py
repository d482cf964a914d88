"""Gradient checking: is a hand-written backward pass right?

The oracle is the definition of the derivative. For a scalar function f and a tiny h,

    df/dx_i  ~=  (f(x + h e_i) - f(x - h e_i)) / (2h)          (central difference)

whose error shrinks like h^2 (a one-sided difference only like h). In float64 with
h = 1e-6 a correct backward pass agrees with this to a relative error near 1e-9; a
wrong one is off by 1e-2 or worse. For a layer with an array output y = f(x), we check
the scalar L = sum(y * dout) for a random dout, whose gradient is exactly what
backward(dout) returns.

Used by the tests, `python -m minigpt gradcheck`, the notebooks and the exercise graders.
"""

from __future__ import annotations

import numpy as np


def rel_error(a, b) -> float:
    """Relative error of two arrays: max|a - b| / max(1e-8, max(|a| + |b|)).

    The error is measured against the scale of the whole array, not entry by entry: an
    entry whose true gradient is zero (the key bias in attention is one: adding the same
    number to every score of a row leaves its softmax unchanged) carries finite-difference
    noise of ~1e-10 that would look like a 100% error on its own."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar function f() with respect to array x.

    f takes no arguments and reads x, which is nudged in place one entry at a time (and
    always restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views: writing them writes x, grad
    for i in range(flat_x.size):
        old = flat_x[i]
        flat_x[i] = old + h
        f_plus = float(f())
        flat_x[i] = old - h
        f_minus = float(f())
        flat_x[i] = old
        flat_grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def check_layer(forward, backward, *args, seed=0, h=1e-6, **kwargs) -> dict[str, float]:
    """Check a forward/backward pair against finite differences, in float64.

    forward(*args, **kwargs) -> (out, cache); backward(dout, cache) returns one gradient
    per floating-point array in args, in order (None where that argument is None).
    Returns {"arg0": error, "arg1": error, ...}: the worst relative error of each gradient.
    Expect < 1e-7 for a correct layer; larger means a bug (or a float32 input)."""
    def is_float_array(a):
        return isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)

    slots = [i for i, a in enumerate(args) if a is None or is_float_array(a)]  # None: no bias
    for i in slots:
        if args[i] is not None and args[i].dtype != np.float64:
            raise ValueError(f"check_layer needs float64 inputs (argument {i} is {args[i].dtype})")
    out, cache = forward(*args, **kwargs)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    analytic = backward(dout, cache)
    if len(analytic) != len(slots):
        raise ValueError(f"backward returned {len(analytic)} gradients for {len(slots)} float array arguments")

    def scalar_loss():
        return np.sum(forward(*args, **kwargs)[0] * dout)

    errors = {}
    for position, grad in zip(slots, analytic):
        if args[position] is None:
            if grad is not None:
                raise ValueError(f"argument {position} is None but backward returned a gradient for it")
            continue
        numeric = numerical_gradient(scalar_loss, args[position], h)
        errors[f"arg{position}"] = rel_error(grad, numeric)
    return errors


def check_model(model, idx, targets, h=1e-6, names=None) -> dict[str, float]:
    """Check model.backward() against finite differences of model.forward()'s loss, for
    every parameter (or those in `names`), LoRA adapters included when the model has them
    (model.lora). Dropout masks are held fixed by restoring the model's RNG before every
    forward. Returns {parameter name: worst relative error}."""
    if model.dtype != np.float64:
        raise ValueError("check_model needs a float64 model: GPT(config, dtype=np.float64)")
    return _check_parameters(model, lambda: model.forward(idx, targets)[1], model.backward,
                             model.params, model.grads, h, names)


def check_classifier(classifier, idx, lengths, labels, h=1e-6, names=None) -> dict[str, float]:
    """check_model for a finetune.GPTClassifier (body + last-token pooling + head): its
    backward against finite differences of its loss, for the head, the body and any LoRA
    adapters (or the parameters in `names`). Frozen parameters must get exactly the
    gradient they get, so use train="all" (or "lora") to check every one."""
    body = classifier.body
    if body.dtype != np.float64:
        raise ValueError("check_classifier needs a float64 body: GPT(config, dtype=np.float64)")
    return _check_parameters(body, lambda: classifier.forward(idx, lengths, labels)[1], classifier.backward,
                             {**body.params, **classifier.head.params}, {**body.grads, **classifier.head.grads},
                             h, names, zero_grad=classifier.zero_grad)


def _check_parameters(model, loss_fn, backward, params, grads, h, names, zero_grad=None) -> dict[str, float]:
    """The shared core of check_model and check_classifier: one analytic backward, then a
    numerical gradient of every named parameter with dropout masks held fixed."""
    if getattr(model, "lora", None) is not None:
        params, grads = {**params, **model.lora.params}, {**grads, **model.lora.grads}
    rng_state = model.rng.bit_generator.state

    def loss():
        model.rng.bit_generator.state = rng_state
        return loss_fn()

    (zero_grad or model.zero_grad)()
    loss()
    backward()
    errors = {}
    for name in names or params:
        numeric = numerical_gradient(loss, params[name], h)
        errors[name] = rel_error(grads[name], numeric)
    return errors


# --- the command-line report -------------------------------------------------------------


def layer_cases(rng):
    """Small float64 cases for every layer (odd sizes on purpose), as (name, forward,
    backward, args, kwargs). Shared by the CLI and the tests."""
    from minigpt import layers

    B, T, C, H = 2, 5, 12, 3

    def randn(*shape):
        return rng.standard_normal(shape)

    x = randn(B, T, C)
    idx = rng.integers(0, 11, (B, T))  # token ids for the embedding, vocabulary of 11
    targets = rng.integers(0, 11, (B, T))
    targets[0, :2] = -100  # some ignored positions
    att_mask = layers.dropout_mask((B, H, T, T), 0.3, rng, np.dtype(np.float64))
    lengths = np.array([T, 2])  # real tokens per row: the second row is padded after 2

    def linear_lora_forward(x, weight, bias, lora_A, lora_B, scale):
        """A linear layer with a LoRA adapter: x @ (W + scale A B) + b."""
        weight_eff, lora_cache = layers.lora_forward(weight, lora_A, lora_B, scale)
        out, linear_cache = layers.linear_forward(x, weight_eff, bias)
        return out, (lora_cache, linear_cache)

    def linear_lora_backward(dout, cache):
        lora_cache, linear_cache = cache
        dx, dweight_eff, dbias = layers.linear_backward(dout, linear_cache)
        dweight, dA, dB = layers.lora_backward(dweight_eff, lora_cache)
        return dx, dweight, dbias, dA, dB

    return [
        ("linear", layers.linear_forward, layers.linear_backward, (x, randn(C, 7), randn(7)), {}),
        ("layernorm", layers.layernorm_forward, layers.layernorm_backward, (x, randn(C), randn(C)), {}),
        ("gelu", layers.gelu_forward, layers.gelu_backward, (x * 2,), {}),
        ("mlp", layers.mlp_forward, layers.mlp_backward,
         (x, randn(C, 4 * C) * 0.3, randn(4 * C), randn(4 * C, C) * 0.3, randn(C)), {}),
        ("attention", layers.attention_forward, layers.attention_backward,
         (x, randn(C, 3 * C) * 0.3, randn(3 * C), randn(C, C) * 0.3, randn(C)), {"n_head": H}),
        ("attention+dropout", layers.attention_forward, layers.attention_backward,
         (x, randn(C, 3 * C) * 0.3, randn(3 * C), randn(C, C) * 0.3, randn(C)),
         {"n_head": H, "att_mask": att_mask}),
        ("embedding", lambda wte, wpe: layers.embedding_forward(idx, wte, wpe),
         layers.embedding_backward, (randn(11, C), randn(8, C)), {}),
        ("cross-entropy", lambda logits: layers.cross_entropy_forward(logits, targets),
         lambda d, cache: layers.cross_entropy_backward(float(d), cache), (randn(B, T, 11),), {}),
        # LoRA: B random (not LoRA's zero start), or the gradient reaching A would be 0
        ("lora (W + s A B)", layers.lora_forward, layers.lora_backward,
         (randn(C, 7), randn(C, 3), randn(3, 7)), {"scale": 1.7}),
        ("linear + lora", linear_lora_forward, linear_lora_backward,
         (x, randn(C, 7), randn(7), randn(C, 3), randn(3, 7)), {"scale": 1.7}),
        ("last-token pooling", lambda h: layers.last_token_forward(h, lengths),
         layers.last_token_backward, (x,), {}),
        ("classifier head", lambda h, weight, bias: layers.classifier_head_forward(h, lengths, weight, bias),
         layers.classifier_head_backward, (x, randn(C, 3), randn(3)), {}),
    ]  # fmt: skip


def tiny_model_case():
    """The whole-model case of the issue: 2 layers, 2 heads, n_embd 12, vocab 11, T 5,
    dropout on (masks fixed by check_model), some targets -100, tied weights."""
    from minigpt.model import GPT, GPTConfig

    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=12, dropout=0.1)
    model = GPT(config, seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    for p in model.params.values():  # nudge away from GPT-2's zero biases / unit norms
        p += rng.normal(0, 0.05, p.shape)
    idx = rng.integers(0, 11, (3, 5))
    targets = rng.integers(0, 11, (3, 5))
    targets[1, 1:4] = -100
    return model, idx, targets


def tiny_lora_model_case():
    """tiny_model_case with rank-2 LoRA adapters on every linear layer of its blocks, their
    B made random (at LoRA's zero start the gradient reaching A would be exactly 0)."""
    from minigpt.finetune.lora import add_lora

    model, idx, targets = tiny_model_case()
    lora = add_lora(model, rank=2, alpha=3.0, seed=5)
    lora.flat_params[...] = np.random.default_rng(6).normal(0, 0.3, lora.flat_params.shape)
    return model, idx, targets


def tiny_classifier_case():
    """A 3-class classifier on tiny_model_case's body (everything trains), padded rows of
    lengths 5, 2 and 4: (classifier, idx, lengths, labels)."""
    from minigpt.finetune.classifier import GPTClassifier

    model, idx, _ = tiny_model_case()
    classifier = GPTClassifier(model, n_classes=3, train="all", seed=7)
    rng = np.random.default_rng(8)
    classifier.head.flat_params[...] += rng.normal(0, 0.05, classifier.head.flat_params.shape)
    return classifier, idx, np.array([5, 2, 4]), np.array([2, 0, 1])


def add_arguments(parser):
    parser.add_argument("--backend", choices=["numpy", "numba", "both"], default="both")


def run(args):
    from minigpt import kernels

    backends = ["numpy", "numba"] if args.backend == "both" else [args.backend]
    rows: dict[str, dict[str, float]] = {}
    for backend in backends:
        with kernels.using(backend):
            for name, forward, backward, f_args, f_kwargs in layer_cases(np.random.default_rng(0)):
                errors = check_layer(forward, backward, *f_args, **f_kwargs)
                rows.setdefault(name, {})[backend] = max(errors.values())
            model, idx, targets = tiny_model_case()
            rows.setdefault("whole model (2 layers)", {})[backend] = max(check_model(model, idx, targets).values())
            model, idx, targets = tiny_lora_model_case()
            rows.setdefault("whole model + LoRA", {})[backend] = max(check_model(model, idx, targets).values())
            classifier, idx, lengths, labels = tiny_classifier_case()
            rows.setdefault("whole classifier", {})[backend] = max(
                check_classifier(classifier, idx, lengths, labels).values())

    print("worst relative error vs central finite differences (float64, h=1e-6)")
    print(f"{'layer':<24}" + "".join(f"{b:>12}" for b in backends) + "   verdict")
    all_ok = True
    for name, by_backend in rows.items():
        limit = 1e-6 if name.startswith("whole") else 1e-7  # the bars
        ok = all(error < limit for error in by_backend.values())
        all_ok &= ok
        errors = "".join(f"{by_backend[b]:>12.2e}" for b in backends)
        print(f"{name:<24}{errors}   {'ok' if ok else 'FAIL'} (< {limit:g})")
    return 0 if all_ok else 1
