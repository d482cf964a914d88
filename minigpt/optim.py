"""Optimisation: AdamW on the flat parameter buffer, the learning-rate schedule, clipping.

Because every parameter of the model is a view into one flat array (and every gradient
a view into a twin array), the optimizer never loops over parameters: one fused kernel
call, `kernels.adamw_update`, updates all of them. Which of them are weight-decayed is
a flat 0/1 mask built once from the parameters' shapes.

Fine-tuning trains a subset. AdamW then takes parameter groups: each a flat array of
parameters, its gradients and its decay mask (views included, e.g. the tail of the
model's buffer that holds its last blocks, a classifier head's buffer, LoRA adapters'):

    AdamW(model)                                            # everything, as in pretraining
    AdamW(groups=[param_group(model, model.block_params_slice(L - 1)),   # last block + ln_f
                  ParamGroup.of(head)])                                 # and a head
    clip_grad_norm([g.grads for g in optimizer.groups], 1.0)

A parameter in no group is frozen: it sees neither a gradient step nor weight decay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minigpt import kernels


def decay_mask(model) -> np.ndarray:
    """1.0 where a parameter is weight-decayed, 0.0 where not; same layout as flat_params
    (model: anything with flat_params, params and param_slices, e.g. a GPT).

    nanoGPT's rule: every parameter with 2 or more dimensions (the weight matrices and
    the embeddings) is decayed; 1-D ones (biases, layernorm gains and shifts) are not.
    Decay pulls weights towards zero; a layernorm gain pulled to zero would switch its
    feature off and a bias has no scale to regularise, so they are left alone."""
    mask = np.zeros_like(model.flat_params)
    for name, param in model.params.items():
        if param.ndim >= 2:
            mask[model.param_slices[name]] = 1.0
    return mask


@dataclass
class ParamGroup:
    """Parameters that one AdamW trains: flat, C-contiguous arrays of one length (views of
    a bigger buffer are fine: the update writes through them)."""

    params: np.ndarray  # (P,) updated in place
    grads: np.ndarray  # (P,)
    decay_mask: np.ndarray  # (P,) 1.0 where decayed, 0.0 where not

    def __post_init__(self):
        for name in ("params", "grads", "decay_mask"):
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.ndim != 1 or not a.flags.c_contiguous:
                raise ValueError(f"ParamGroup.{name} must be a flat (1-D) C-contiguous array, got "
                                 f"{type(a).__name__} {getattr(a, 'shape', '')}")
        if not self.params.shape == self.grads.shape == self.decay_mask.shape:
            raise ValueError(f"ParamGroup: params {self.params.shape}, grads {self.grads.shape} and decay_mask "
                             f"{self.decay_mask.shape} must have the same shape")
        if self.params.dtype != self.grads.dtype:
            raise ValueError(f"ParamGroup: params are {self.params.dtype} but grads {self.grads.dtype}")

    @classmethod
    def of(cls, holder) -> ParamGroup:
        """The whole of an object with flat_params, flat_grads and params (a GPT, a
        classifier head, LoRA adapters), with decay_mask's rule."""
        return cls(holder.flat_params, holder.flat_grads, decay_mask(holder))


def param_group(model, part: slice = slice(None)) -> ParamGroup:
    """The parameters of flat_params[part] (e.g. model.block_params_slice(k)) as a group,
    with decay_mask's rule."""
    return ParamGroup(model.flat_params[part], model.flat_grads[part], decay_mask(model)[part])


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), on flat buffers.

    For each parameter p with gradient g, at step t = 1, 2, ...:

        m = beta1 m + (1 - beta1) g            running mean of the gradient
        v = beta2 v + (1 - beta2) g^2          running mean of its square
        p = p - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) - lr wd mask p

    The divisions by (1 - beta^t) undo the bias of m and v towards their zero start.
    The state (m, v, step) is everything needed to continue exactly after a restart.

    AdamW(model) trains every parameter of the model; AdamW(groups=[...]) trains only the
    ParamGroups given (see the module docstring). m and v are each one flat array over
    all the groups, one after the other (with one group: the shape of its parameters)."""

    def __init__(self, model=None, lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, *, groups=None):
        if (model is None) == (groups is None):
            raise ValueError("AdamW needs either a model (to train all of it) or groups=[ParamGroup, ...]")
        self.groups = [ParamGroup.of(model)] if model is not None else list(groups)
        if not self.groups or not all(isinstance(g, ParamGroup) for g in self.groups):
            raise ValueError(f"groups must be a non-empty list of ParamGroup, got {groups!r:.100}")
        if len({g.params.dtype for g in self.groups}) != 1:
            raise ValueError("every parameter group must have the same dtype")
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        size = sum(g.params.size for g in self.groups)
        self.m = np.zeros(size, dtype=self.groups[0].params.dtype)  # (P,) all groups, in order
        self.v = np.zeros_like(self.m)
        self.step_count = 0

    @property
    def params(self) -> np.ndarray:
        """The parameters, when there is one group (AdamW(model): the model's flat_params)."""
        if len(self.groups) != 1:
            raise ValueError(f"this AdamW trains {len(self.groups)} parameter groups; see .groups")
        return self.groups[0].params

    def step(self, lr: float | None = None) -> None:
        """Apply one update from the current gradients (lr: this step's learning rate)."""
        self.step_count += 1
        offset = 0
        for g in self.groups:  # one fused kernel call per group; m and v views of theirs
            moments = slice(offset, offset + g.params.size)
            offset = moments.stop
            kernels.adamw_update(
                g.params, g.grads, self.m[moments], self.v[moments], g.decay_mask,
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
            if arrays[name].shape != self.m.shape:
                raise ValueError(
                    f"optimizer state {name!r} has shape {arrays[name].shape}, "
                    f"the optimizer trains {self.m.shape} parameters"
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


def clip_grad_norm(flat_grads, max_norm: float) -> float:
    """Scale the gradients in place so their global L2 norm is at most max_norm.

    Returns the norm before clipping (useful to log; inf or nan means the step is bad).
    One long vector, so the "global" norm over all parameters is just its norm; a list of
    flat arrays (the gradients of an optimizer's groups) is clipped as one vector."""
    parts = flat_grads if isinstance(flat_grads, (list, tuple)) else [flat_grads]
    norm = math.sqrt(sum(float(np.dot(g, g)) for g in parts))
    if max_norm > 0 and norm > max_norm and math.isfinite(norm):
        for g in parts:
            g *= g.dtype.type(max_norm / (norm + 1e-6))
    return norm
