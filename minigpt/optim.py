"""Optimisation: AdamW on the flat parameter buffer, the learning-rate schedule, clipping.

Because every parameter of the model is a view into one flat array (and every gradient
a view into a twin array), the optimizer never loops over parameters: one fused kernel
call, `kernels.adamw_update`, updates all of them. Which of them are weight-decayed is
a flat 0/1 mask built once from the parameters' shapes.
"""

from __future__ import annotations

import math

import numpy as np

from minigpt import kernels


def decay_mask(model) -> np.ndarray:
    """1.0 where a parameter is weight-decayed, 0.0 where not; same layout as flat_params.

    nanoGPT's rule: every parameter with 2 or more dimensions (the weight matrices and
    the embeddings) is decayed; 1-D ones (biases, layernorm gains and shifts) are not.
    Decay pulls weights towards zero; a layernorm gain pulled to zero would switch its
    feature off and a bias has no scale to regularise, so they are left alone."""
    mask = np.zeros_like(model.flat_params)
    for name, param in model.params.items():
        if param.ndim >= 2:
            mask[model.param_slices[name]] = 1.0
    return mask


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), on flat buffers.

    For each parameter p with gradient g, at step t = 1, 2, ...:

        m = beta1 m + (1 - beta1) g            running mean of the gradient
        v = beta2 v + (1 - beta2) g^2          running mean of its square
        p = p - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) - lr wd mask p

    The divisions by (1 - beta^t) undo the bias of m and v towards their zero start.
    The state (m, v, step) is everything needed to continue exactly after a restart."""

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1):
        self.params = model.flat_params  # (P,) updated in place
        self.grads = model.flat_grads  # (P,)
        self.decay_mask = decay_mask(model)  # (P,)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)
        self.step_count = 0

    def step(self, lr: float | None = None) -> None:
        """Apply one update from the current gradients (lr: this step's learning rate)."""
        self.step_count += 1
        kernels.adamw_update(
            self.params, self.grads, self.m, self.v, self.decay_mask,
            self.lr if lr is None else lr, self.beta1, self.beta2, self.eps,
            self.weight_decay, self.step_count,
        )

    def state_dict(self) -> tuple[dict, dict]:
        """(arrays, numbers): the moments as arrays, the rest as JSON-able numbers."""
        arrays = {"m": self.m, "v": self.v}
        numbers = {
            "step": self.step_count, "lr": self.lr, "betas": [self.beta1, self.beta2],
            "eps": self.eps, "weight_decay": self.weight_decay,
        }
        return arrays, numbers

    def load_state_dict(self, arrays: dict, numbers: dict) -> None:
        """The inverse of state_dict. Everything is checked before anything is changed, so
        a state that does not fit (ValueError, KeyError, TypeError) leaves the optimizer as it was."""
        for name in ("m", "v"):
            if arrays[name].shape != self.params.shape:
                raise ValueError(
                    f"optimizer state {name!r} has shape {arrays[name].shape}, "
                    f"the model has {self.params.shape} parameters"
                )
        step = numbers["step"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"optimizer step must be a count >= 0, got {step!r}")
        beta1, beta2 = (float(b) for b in numbers["betas"])
        lr, eps, weight_decay = float(numbers["lr"]), float(numbers["eps"]), float(numbers["weight_decay"])
        if not all(map(math.isfinite, (lr, beta1, beta2, eps, weight_decay))):
            raise ValueError(f"optimizer numbers must be finite, got {numbers!r}")
        self.m[...] = arrays["m"]
        self.v[...] = arrays["v"]
        self.step_count = step
        self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = lr, beta1, beta2, eps, weight_decay


def lr_at(it: int, warmup: int, lr_decay_iters: int, lr: float, min_lr: float) -> float:
    """The learning rate at iteration `it` (counting from 0): warm up, then cosine down.

        it <  warmup:                lr * (it + 1) / (warmup + 1)      linear ramp
        warmup <= it <= decay_iters: min_lr + (lr - min_lr) * (1 + cos(pi * r)) / 2,
                                     r = (it - warmup) / (decay_iters - warmup)
        it >  decay_iters:           min_lr

    The warm-up keeps the first steps small while Adam's v is still a poor estimate;
    the cosine spends most of the run near lr and then settles slowly into a minimum."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it >= lr_decay_iters:
        return min_lr
    ratio = (it - warmup) / (lr_decay_iters - warmup)  # 0 -> 1
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * ratio))


def clip_grad_norm(flat_grads: np.ndarray, max_norm: float) -> float:
    """Scale the gradients in place so their global L2 norm is at most max_norm.

    Returns the norm before clipping (useful to log; inf or nan means the step is bad).
    One long vector, so the "global" norm over all parameters is just its norm."""
    norm = math.sqrt(float(np.dot(flat_grads, flat_grads)))
    if max_norm > 0 and norm > max_norm and math.isfinite(norm):
        flat_grads *= flat_grads.dtype.type(max_norm / (norm + 1e-6))
    return norm
