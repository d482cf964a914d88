"""LoRA: fine-tune a GPT by training small low-rank changes of its linear weights.

Hu et al. (2021) noticed that the change fine-tuning makes to a weight matrix has a low
"intrinsic rank". So freeze W (in, out) and learn the change as a product of two thin
matrices, A (in, r) and B (r, out) with r much smaller than in and out:

    W_eff = W + (alpha / r) A @ B          A ~ normal(0, 1/in), B = 0 at the start

B = 0 makes the adapted model start exactly equal to the base; alpha / r keeps the size of
the change comparable when r changes. The forward and backward passes are
`layers.lora_forward` / `layers.lora_backward`, next to the linear layer's; the GPT reads
its adapters (`model.lora`) on every path: training forward, backward, and the KV-cache
decoder (`model.effective_params()`).

    lora = add_lora(model, rank=8, alpha=16, targets=("c_attn", "c_fc"))  # attaches model.lora
    optimizer = AdamW(groups=[ParamGroup.of(lora)])   # only the adapters train
    ... model.forward / backward as usual (backward_hidden(dh, n_blocks=n_layer) suffices)
    save_adapters(model, "run/")                      # adapters.json + a small safetensors file
    merged = merge(model)                             # a plain GPT with W + (alpha/r) A B folded in
    load_adapters(base_model, "run/")                 # checks it is the same base

Targets name linear layers the way Hugging Face PEFT does, by the end of their names:
"c_attn" (query/key/value), "attn.c_proj" (attention output), "c_fc" (MLP up),
"mlp.c_proj" (MLP down), in every block; "c_proj" means both projections; a full name
such as "h.3.mlp.c_fc" picks one layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from minigpt.finetune import store
from minigpt.params import FlatParams

LINEAR_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # in each block h.N
DEFAULT_TARGETS = ("c_attn", "attn.c_proj", "c_fc", "mlp.c_proj")  # every linear layer of the blocks
FILE_NAME = "adapters"  # adapters.json + adapters-<hash>.safetensors
FORMAT = "minigpt-lora"


def resolve_targets(config, targets) -> list[str]:
    """The linear layers ("h.N.attn.c_attn", ...) the target names pick, in model order.

    A name that picks no layer is a ValueError naming it and the valid names."""
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise ValueError("LoRA needs at least one target layer (e.g. c_attn)")
    every_layer = [f"h.{i}.{name}" for i in range(config.n_layer) for name in LINEAR_LAYERS]
    chosen = set()
    for target in targets:
        picked = [layer for layer in every_layer
                  if isinstance(target, str) and (layer == target or layer.endswith("." + target))]
        if not picked:
            raise ValueError(f"LoRA target {target!r} names no linear layer of this model: choose from "
                             f"c_attn, attn.c_proj, c_fc, mlp.c_proj (every block), c_proj (both "
                             f"projections), or one layer such as h.0.mlp.c_fc (blocks h.0 to "
                             f"h.{config.n_layer - 1})")
        chosen.update(picked)
    return [layer for layer in every_layer if layer in chosen]


class LoRA(FlatParams):
    """The adapters of one model: for each adapted layer L (e.g. "h.0.attn.c_attn"),
    params[L + ".lora_A"] (in, r) and params[L + ".lora_B"] (r, out), all in one flat
    buffer (so one AdamW group trains them), with scale = alpha / rank."""

    def __init__(self, model, rank: int, alpha: float, targets=DEFAULT_TARGETS, seed: int = 0):
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"LoRA alpha must be a positive number, got {alpha!r}")
        self.layers = resolve_targets(model.config, targets)
        shapes = {}
        for layer in self.layers:
            n_in, n_out = model.params[layer + ".weight"].shape
            if rank > min(n_in, n_out):
                raise ValueError(f"LoRA rank {rank} is larger than the layer {layer} ({n_in} x {n_out}) allows: "
                                 f"a rank-r change needs r <= min(in, out) = {min(n_in, n_out)}")
            shapes[layer + ".lora_A"] = (n_in, int(rank))
            shapes[layer + ".lora_B"] = (int(rank), n_out)
        super().__init__(shapes, model.dtype)
        self.targets = [str(t) for t in ([targets] if isinstance(targets, str) else targets)]
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank
        rng = np.random.default_rng([seed, 7])  # a stream of its own
        for layer in self.layers:
            A = self.params[layer + ".lora_A"]
            A[...] = rng.normal(0.0, 1.0 / math.sqrt(A.shape[0]), A.shape)  # B stays 0: W_eff = W

    def config(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "targets": self.targets}


def add_lora(model, rank: int, alpha: float, targets=DEFAULT_TARGETS, seed: int = 0) -> LoRA:
    """Attach new adapters to model (model.lora) and return them. The base weights are not
    touched: they stay bit-identical however long the adapters train."""
    if model.lora is not None:
        raise ValueError("this model has LoRA adapters already (model.lora); merge or remove them first")
    model.lora = LoRA(model, rank, alpha, targets, seed)
    return model.lora


def merge(model):
    """A new GPT whose weights are the adapted model's effective weights, W + (alpha/r) A B,
    and which has no adapters: it computes the same logits, at the cost of the base model.
    model itself is left as it was (adapters attached, base weights unchanged)."""
    from minigpt.model import GPT

    merged = GPT(model.config, dtype=model.dtype)
    effective = model.effective_params()
    for name, param in merged.params.items():
        param[...] = effective[name]
    merged.rng.bit_generator.state = model.rng.bit_generator.state
    merged.training = model.training
    if hasattr(model, "tokenizer"):
        merged.tokenizer = model.tokenizer
    return merged


def trainable_fraction(model) -> float:
    """Adapter parameters / base parameters (the tied head counted once)."""
    if model.lora is None:
        raise ValueError("the model has no LoRA adapters")
    return model.lora.num_params() / model.num_params()


def base_fingerprint(model) -> str:
    """sha256 of the base weights (not the adapters): adapters fit only the base they were
    trained on, and loading them checks this."""
    digest = hashlib.sha256(model.dtype.name.encode())
    digest.update(np.ascontiguousarray(model.flat_params).view(np.uint8))
    return digest.hexdigest()


def save_adapters(model, folder):
    """Write model.lora, on its own, as folder/adapters.json (rank, alpha, targets, the base's
    config and fingerprint) + folder/adapters-<hash>.safetensors: small next to the base."""
    lora = model.lora
    if lora is None:
        raise ValueError("the model has no LoRA adapters to save")
    record = {"format": FORMAT, "version": 1, **lora.config(), "layers": lora.layers,
              "base": {"config": dataclasses.asdict(model.config), "dtype": model.dtype.name,
                       "sha256": base_fingerprint(model)}}
    return store.save(folder, FILE_NAME, lora.params, record)


def load_adapters(model, folder) -> LoRA:
    """Read adapters saved by save_adapters and attach them to model (model.lora).

    Checked before anything changes: the file, that model is the base they were trained
    on (same config, dtype and weights: its fingerprint), the names and shapes."""
    tensors, record = store.load(folder, FILE_NAME, "LoRA adapters")
    where = f"{folder}/{FILE_NAME}.json"
    if record.get("format") != FORMAT or record.get("version") != 1:
        raise store.StoreError(f"{where} is not a minigpt LoRA adapter file (format {record.get('format')!r})")
    base = record.get("base")
    if not isinstance(base, dict) or base.get("config") != dataclasses.asdict(model.config) \
            or base.get("dtype") != model.dtype.name:
        raise store.StoreError(f"{where}: these adapters were trained on another model "
                               f"({base.get('config') if isinstance(base, dict) else base!r}), not this "
                               f"{model.dtype.name} one ({dataclasses.asdict(model.config)})")
    if base.get("sha256") != base_fingerprint(model):
        raise store.StoreError(f"{where}: these adapters were trained on a base with other weights "
                               f"(fingerprint {str(base.get('sha256'))[:12]}..., this model's is "
                               f"{base_fingerprint(model)[:12]}...)")
    if model.lora is not None:
        raise ValueError("this model has LoRA adapters already (model.lora); load into the bare base")
    try:
        lora = LoRA(model, record["rank"], record["alpha"], record["targets"])
        for name, array in tensors.items():
            if array.dtype != model.dtype:
                raise ValueError(f"tensor {name} is {array.dtype}, the model {model.dtype}")
        lora.load(tensors, where)
    except (KeyError, TypeError, ValueError) as err:
        raise store.StoreError(f"{where}: the adapters do not fit the model: {err}") from None
    model.lora = lora
    return lora
