"""model.safetensors <-> the model's parameters, under GPT-2's names.

Reading is planned before it is done: plan_weights checks every name, shape and dtype in
the file's header against the config (and that a stored lm_head equals wte) without
reading a single weight, so a bad file is refused before the model is allocated.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from minigpt.pretrained.errors import PretrainedError
from minigpt.safetensors_reader import SafetensorsError, TensorEntry, read_bytes, read_header, read_tensor

WEIGHTS_FILE = "model.safetensors"
LOADABLE_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}  # safetensors' names
PREFIX = "transformer."  # GPT2LMHeadModel's name for the GPT2Model inside it
# older transformers stored each attention's causal mask (a constant) with the weights
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias")


def plan_weights(path, config) -> dict[str, TensorEntry]:
    """{minigpt parameter name: its tensor in the file}, every name, shape and dtype checked."""
    from minigpt.model import parameter_shapes

    path = Path(path)
    try:
        entries, _metadata = read_header(path)
    except SafetensorsError as err:  # truncated or corrupt: one error type for every bad input
        raise PretrainedError(str(err)) from None
    found: dict[str, tuple[str, TensorEntry]] = {}  # minigpt name -> (name in the file, entry)
    lm_head = None
    for stored_name, entry in entries.items():
        name = stored_name.removeprefix(PREFIX)
        if _MASK_BUFFER.fullmatch(name):
            continue
        if name == "lm_head.weight":
            lm_head = entry
            continue
        if name in found:
            raise PretrainedError(f"{path} holds {name} twice ({found[name][0]} and {stored_name})")
        found[name] = (stored_name, entry)

    expected = parameter_shapes(config)
    missing = [name for name in expected if name not in found]
    extra = [found[name][0] for name in found if name not in expected]
    if missing or extra:
        raise PretrainedError(f"{path} does not hold the tensors of the GPT-2 its config.json describes "
                              f"({config.n_layer} layers): missing {_some(missing)}; unexpected {_some(extra)}")
    for name, shape in expected.items():
        stored_name, entry = found[name]
        if entry.shape != shape:
            raise PretrainedError(f"{path}: {stored_name} has shape {entry.shape}, but config.json "
                                  f"makes it {shape}")
        if entry.dtype not in LOADABLE_DTYPES:
            raise PretrainedError(f"{path}: {stored_name} has dtype {entry.dtype}; minigpt loads float32 "
                                  f"(F32), float16 (F16) or bfloat16 (BF16) weights")
    if lm_head is not None:
        _check_tied(path, lm_head, found["wte.weight"][1])
    return {name: found[name][1] for name in expected}


def _check_tied(path: Path, lm_head: TensorEntry, wte: TensorEntry) -> None:
    """A file may store the head although it is tied, but then it must be wte, byte for byte."""
    untied = PretrainedError(f"{path}: lm_head.weight differs from wte.weight, an untied output head; "
                             f"GPT-2's head, and minigpt's, is wte itself")
    if lm_head.shape != wte.shape or lm_head.dtype != wte.dtype:
        raise untied
    with open(path, "rb") as head_file, open(path, "rb") as wte_file:  # chunk by chunk, no copies
        if any(a != b for a, b in zip(read_bytes(head_file, lm_head), read_bytes(wte_file, wte))):
            raise untied


def _some(names: list[str], limit: int = 8) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_weights(model, path, plan: dict[str, TensorEntry]) -> None:
    """Read each planned tensor straight into its view of the model's flat buffer (float16
    and bfloat16 converted on the way), refusing NaN or infinite values."""
    with open(path, "rb") as f:
        for name, entry in plan.items():
            try:
                read_tensor(f, entry, out=model.params[name])
            except SafetensorsError as err:  # the file changed since its header was checked
                raise PretrainedError(str(err)) from None
            if not np.isfinite(model.params[name]).all():
                raise PretrainedError(f"{path}: {name} holds NaN or infinite values (a corrupt file?)")


def weights_to_save(model) -> dict[str, np.ndarray]:
    """The tensors GPT2LMHeadModel's save_pretrained writes, float32, by its names. A model
    without biases gets zero ones (GPT-2 always has them; a zero bias adds nothing)."""
    from minigpt.model import parameter_shapes

    weights = {}
    for name, shape in parameter_shapes(dataclasses.replace(model.config, bias=True)).items():
        p = model.params.get(name)
        weights[PREFIX + name] = (np.zeros(shape, np.float32) if p is None
                                  else np.ascontiguousarray(p, dtype=np.float32))  # float32: a view
    return weights
