"""AdamW as one fused Numba pass over the flat parameter buffer (twin of
reference.adamw_update, where the maths is).

The reference's whole-array expressions make about a dozen passes over the buffers and
allocate as many temporaries; here each parameter reads its gradient and moments once and
writes them once, and the cores split the buffer between them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from minigpt.kernels.jit import parallel_jit


@parallel_jit
def _adamw_flat(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay,
                inv_bias_correction1, inv_bias_correction2):
    # The arithmetic is done in float64 and rounded once when stored back. The loop is
    # vectorised, but float64 division and square root are slow even in SIMD (on this AMD
    # EPYC the update took 1.35 ms for 810K parameters with three of them per element), so
    # the bias corrections are multiplications by their precomputed reciprocals: one
    # division and one square root per element are left (~1e-16 relative change in float64,
    # far below float32's rounding).
    for i in prange(params.size):
        g = grads[i]
        m_i = beta1 * m[i] + (1.0 - beta1) * g
        v_i = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = m_i
        v[i] = v_i
        m_hat = m_i * inv_bias_correction1
        v_hat = v_i * inv_bias_correction2
        p = params[i]
        params[i] = p - lr * (m_hat / (math.sqrt(v_hat) + eps) + weight_decay * decay_mask[i] * p)


def _flat_view(name, a):
    if not a.flags.c_contiguous:
        raise ValueError(f"adamw_update updates {name} in place and needs it C-contiguous")
    return a.reshape(-1)


def adamw_update(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay, step):
    """One fused AdamW step, in place on params, m and v; maths in reference.adamw_update."""
    if not (params.shape == grads.shape == m.shape == v.shape):
        raise ValueError("adamw_update: params, grads, m and v must have the same shape")
    decay = np.ascontiguousarray(np.broadcast_to(decay_mask, params.shape)).reshape(-1)
    _adamw_flat(_flat_view("params", params), np.ascontiguousarray(grads).reshape(-1),
                _flat_view("m", m), _flat_view("v", v), decay,
                float(lr), float(beta1), float(beta2), float(eps), float(weight_decay),
                1.0 / (1.0 - beta1**step), 1.0 / (1.0 - beta2**step))
