"""A flat parameter buffer with named views: GPT's weights, and the small sets of
parameters fine-tuning adds (a classifier head, LoRA adapters).

    head = FlatParams({"score.weight": (C, K), "score.bias": (K,)}, np.float32)
    head.params["score.weight"]   # a (C, K) view into head.flat_params
    head.grads["score.weight"]    # its gradient, a view into head.flat_grads

One buffer per set means one optimizer pass (optim.AdamW; a group per set), (optim.ParamGroup.of(head)), one fill(0) to
zero the gradients, and one safetensors entry per name to save it.
"""

from __future__ import annotations

import math

import numpy as np


class FlatParams:
    """Named parameters as views into one flat buffer, and their gradients into a twin."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype):
        self.dtype = np.dtype(dtype)
        self.param_slices: dict[str, slice] = {}
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            self.param_slices[name] = slice(offset, offset + size)
            offset += size
        self.flat_params = np.zeros(offset, dtype=self.dtype)
        self.flat_grads = np.zeros(offset, dtype=self.dtype)
        self.params = {n: self.flat_params[s].reshape(shapes[n]) for n, s in self.param_slices.items()}
        self.grads = {n: self.flat_grads[s].reshape(shapes[n]) for n, s in self.param_slices.items()}

    def zero_grad(self) -> None:
        self.flat_grads.fill(0.0)

    def num_params(self) -> int:
        return self.flat_params.size

    def load(self, named_arrays: dict, where: str = "the file") -> None:
        """Copy arrays in by name, after checking that names and shapes match (nothing is
        changed if they do not)."""
        missing = sorted(set(self.params) - set(named_arrays))
        unexpected = sorted(set(named_arrays) - set(self.params))
        if missing or unexpected:
            raise ValueError(f"{where}: tensor names do not match: missing {missing}, unexpected {unexpected}")
        for name, array in named_arrays.items():
            if tuple(array.shape) != self.params[name].shape:
                raise ValueError(f"{where}: {name} has shape {tuple(array.shape)}, expected {self.params[name].shape}")
        for name, array in named_arrays.items():
            self.params[name][...] = array
