"""A GPT-2-style transformer with every gradient written by hand.

    idx (B, T) -> token + position embedding -> n_layer x Block -> ln_f -> x @ wte^T -> logits

    Block(x):  x = x + dropout(attention(ln_1(x)))      (pre-LayerNorm, as GPT-2)
               x = x + dropout(mlp(ln_2(x)))

All parameters live in one flat buffer (`flat_params`) and every gradient in its twin
(`flat_grads`); `params` and `grads` name views into them with Hugging Face GPT-2's names
and layouts, so an optimizer step is one pass over one array, zeroing the gradients is one
`fill(0)`, and a checkpoint is one array. The language-model head is tied to the token
embedding: it is `wte` itself, not a copy.

One body, several heads. The body (embeddings -> blocks -> ln_f) is usable on its own:

    h = model.forward_hidden(idx)           # (B, T, C): the hidden states after ln_f
    model.backward_hidden(dh, n_blocks=k)   # accumulate gradients; only ln_f and the last k
                                            # blocks when k is given (the rest stay frozen)

The language model is that body plus the tied head and cross-entropy (`forward`/`backward`);
a classifier (minigpt.finetune) puts its own head on the same body. LoRA adapters
(minigpt.finetune.lora), once attached as `model.lora`, are read by every path through the
model: the body's forward adds them to their weights (`effective_params`), its backward
gives them their gradients, and the KV-cache decoder reads the same effective weights.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from minigpt import layers
from minigpt.params import FlatParams


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int  # the longest sequence the model reads
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True  # biases in linear layers and layernorms (GPT-2 has them)
    init_std: float | None = None  # std of the initial weights; None: 1/sqrt(n_embd), see GPT._init_weights

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head gets n_embd / n_head channels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.init_std is not None and not self.init_std > 0:  # "not >" also catches nan
            raise ValueError(f"init_std must be positive (or None for 1/sqrt(n_embd)), got {self.init_std!r}")


def parameter_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's Hugging Face GPT-2 name and shape, in buffer order."""
    V, C, L = config.vocab_size, config.n_embd, config.n_layer
    shapes = {"wte.weight": (V, C), "wpe.weight": (config.block_size, C)}

    def add(name, weight_shape):
        shapes[name + ".weight"] = weight_shape
        if config.bias:
            shapes[name + ".bias"] = (weight_shape[-1],)

    for i in range(L):
        add(f"h.{i}.ln_1", (C,))
        add(f"h.{i}.attn.c_attn", (C, 3 * C))
        add(f"h.{i}.attn.c_proj", (C, C))
        add(f"h.{i}.ln_2", (C,))
        add(f"h.{i}.mlp.c_fc", (C, 4 * C))
        add(f"h.{i}.mlp.c_proj", (4 * C, C))
    add("ln_f", (C,))
    return shapes


def count_params(config: GPTConfig) -> int:
    """Number of parameters of a model of this config, without allocating it (so GPT-3's
    175B can be counted): the sum of parameter_shapes. The tied head is counted once, as it
    is stored once (it is wte)."""
    return sum(math.prod(shape) for shape in parameter_shapes(config).values())


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token (forward + backward) of a model of this config, the estimate
    of the PaLM paper: 6 per weight (2 forward, 4 backward: a multiply and an add each) plus
    attention's 12 * n_layer * C * T for the scores and weighted sums, T = seq_len or
    block_size. Position embeddings do no matmul work, so they are left out; wte is counted
    once, for the head's matmul (its lookup does no arithmetic)."""
    T = seq_len or config.block_size
    weights = count_params(config) - config.block_size * config.n_embd  # all but wpe
    return 6 * weights + 12 * config.n_layer * config.n_embd * T


class GPT:
    def __init__(self, config: GPTConfig, seed: int = 0, dtype=np.float32):
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")

        self._buffer = FlatParams(parameter_shapes(config), self.dtype)
        # named views into one flat buffer of weights and one of gradients (minigpt.params)
        self.param_slices, self.params, self.grads = self._buffer.param_slices, self._buffer.params, self._buffer.grads
        self.flat_params, self.flat_grads = self._buffer.flat_params, self._buffer.flat_grads

        self._init_weights(np.random.default_rng(seed))
        self.rng = np.random.default_rng([seed, 1])  # dropout masks; its own stream
        self.training = True
        self.lora = None  # LoRA adapters (minigpt.finetune.lora.LoRA) when attached, else None
        self._body_cache = None  # what backward_hidden() needs from the last body forward
        self._head_cache = None  # what backward() needs from the last forward(): head and loss
        self._lora_caches = {}  # during backward_hidden: the adapted weights' lora caches

    def _init_weights(self, rng):
        """Weights ~ normal(0, std), biases 0, layernorms (1, 0); the two projections that
        write into the residual stream get std / sqrt(2 n_layer), so the stream's variance
        does not grow with depth (GPT-2's rule).

        std is config.init_std, by default 1/sqrt(n_embd): a weight matrix reading the
        n_embd-wide, unit-variance output of a layernorm then gives outputs of variance
        n_embd * std^2 = 1, so signals keep their size from the first step. GPT-2 uses a fixed
        0.02, about 0.55/sqrt(768) at its width of 768; at n_embd 128 that shrinks every
        signal to a quarter of its size and the model learns markedly slower (on the
        shakespeare-char preset, val loss 1.90 instead of 1.75 after 2000 iterations).
        GPTConfig(init_std=0.02) gives GPT-2's (and nanoGPT's) initialisation exactly."""
        std = self.config.init_std or 1.0 / math.sqrt(self.config.n_embd)  # init_std > 0 if set
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for name, p in self.params.items():
            if name.endswith(".bias"):
                p[...] = 0.0
            elif ".ln_" in name or name.startswith("ln_f"):
                p[...] = 1.0
            elif name.endswith("c_proj.weight"):
                p[...] = rng.normal(0.0, residual_std, p.shape)
            else:
                p[...] = rng.normal(0.0, std, p.shape)

    # --- bookkeeping ---------------------------------------------------------------------

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    @contextlib.contextmanager
    def evaluating(self):
        """with model.evaluating(): ...  runs the block without dropout, then puts the model
        back in the mode it was in (evaluation and sampling must not change training)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.training = was_training

    def zero_grad(self):
        """Zero every gradient backward() adds into: the weights' and the LoRA adapters'."""
        self.flat_grads.fill(0.0)
        if self.lora is not None:
            self.lora.zero_grad()

    def num_params(self) -> int:
        """Number of parameters (the tied head counted once, as it is stored once)."""
        return count_params(self.config)

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token: the module-level flops_per_token of this model's config."""
        return flops_per_token(self.config, seq_len)

    @classmethod
    def from_pretrained(cls, name_or_path, dtype=np.float32) -> GPT:
        """GPT-2 from a Hugging Face folder (config.json + model.safetensors) or the hub
        ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"; downloaded into the cache), in eval
        mode, with its tokenizer in `model.tokenizer`. gpt2-xl takes 6.23 GB of float32
        weights (1,557,611,200 parameters) and 6.87 GB while loading; a model that does not
        fit is refused before allocating. See minigpt/pretrained/."""
        from minigpt import pretrained

        return pretrained.from_pretrained(name_or_path, dtype=dtype)

    def save_pretrained(self, folder, tokenizer=None) -> None:
        """Write this model as a Hugging Face GPT-2 folder that transformers'
        GPT2LMHeadModel.from_pretrained loads (tokenizer: default self.tokenizer, if any)."""
        from minigpt import pretrained

        pretrained.save_pretrained(self, folder, tokenizer)

    def load_params(self, named_arrays) -> None:
        """Copy arrays into the parameter buffer, after checking that names and shapes match
        (nothing is changed if they do not)."""
        self._buffer.load(named_arrays, where="the model's parameters")

    # --- forward and backward: the language model --------------------------------------

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> logits (B, T, V), and the mean cross-entropy loss over the
        targets that are not -100 (None without targets). Keeps what backward() needs.

        The language model is the body (forward_hidden) followed by the tied head."""
        idx, targets = self._check_inputs(idx, targets)
        h = self._body_forward(idx)  # (B, T, C)
        logits, head = layers.linear_forward(h, self.params["wte.weight"].T)  # (B, T, V), tied head
        loss = loss_cache = None
        if targets is not None:
            loss, loss_cache = layers.cross_entropy_forward(logits, targets)
        self._head_cache = (head, loss_cache)
        return logits, loss

    def attention_weights(self) -> list[np.ndarray]:
        """The attention weights of the last forward(), to look inside the model: one
        (B, H, T, T) array per layer, where [b, h, t] is how query position t of head h
        shares its attention over positions 0..t (zero after t; each row sums to 1; before
        attention dropout). Copies, so the caller may keep or change them. backward() frees
        the activations, so ask before it (or run a forward without targets)."""
        if self._body_cache is None:
            raise ValueError("attention_weights() needs a forward() first (backward() frees what it kept)")
        weights = []
        for _ln1, attention_cache, *_ in self._body_cache[2]:  # one cache per block
            _qkv_cache, _qkv, att, *_ = attention_cache  # as layers.attention_forward keeps it
            weights.append(att.copy())  # (B, H, T, T)
        return weights

    def backward(self, dloss: float = 1.0):
        """Add d(loss)/d(params) of the last forward() into self.grads (+=, never =), so
        gradients of several micro-batches accumulate. Call zero_grad() to start afresh."""
        if self._head_cache is None:
            raise ValueError("backward() needs a forward() first (and each forward allows one backward)")
        head, loss_cache = self._head_cache
        if loss_cache is None:
            raise ValueError("backward() needs a loss: call forward(idx, targets) with targets")
        self._head_cache = None  # a second backward would be a bug
        (dlogits,) = layers.cross_entropy_backward(dloss, loss_cache)
        dh, dhead, _ = layers.linear_backward(dlogits, head)
        self.grads["wte.weight"] += dhead.T  # the head is wte transposed
        self.backward_hidden(dh)

    # --- forward and backward: the body --------------------------------------------------

    def forward_hidden(self, idx):
        """idx (B, T) token ids -> h (B, T, C): the hidden states after the final layernorm,
        the input of any head (the tied LM head, a classifier's). Keeps what
        backward_hidden() needs; dropout follows the model's train/eval mode."""
        idx, _ = self._check_inputs(idx, None)
        self._head_cache = None  # a later backward() must not pair an old head with this body
        return self._body_forward(idx)

    def _body_forward(self, idx):
        """embeddings -> n_layer blocks -> ln_f, on checked ids; keeps self._body_cache."""
        cfg = self.config
        B, T = idx.shape
        drop = cfg.dropout if self.training else 0.0
        p, lora_caches = self._forward_weights()  # self.params, or with LoRA's effective weights

        def mask(shape):
            return layers.dropout_mask(shape, drop, self.rng, self.dtype)

        x, emb_cache = layers.embedding_forward(idx, p["wte.weight"], p["wpe.weight"])  # (B, T, C)
        x, emb_drop = layers.dropout_forward(x, mask(x.shape))
        block_caches = []
        for i in range(cfg.n_layer):
            h = f"h.{i}."
            a, ln1 = layers.layernorm_forward(x, p[h + "ln_1.weight"], p.get(h + "ln_1.bias"))
            a, attn = layers.attention_forward(
                a, p[h + "attn.c_attn.weight"], p.get(h + "attn.c_attn.bias"),
                p[h + "attn.c_proj.weight"], p.get(h + "attn.c_proj.bias"),
                cfg.n_head, mask((B, cfg.n_head, T, T)),
            )  # fmt: skip
            a, attn_drop = layers.dropout_forward(a, mask(a.shape))
            # x = x + a (residual), then m = ln_2(x): one pass (layers.residual_layernorm_forward)
            x, m, ln2 = layers.residual_layernorm_forward(x, a, p[h + "ln_2.weight"], p.get(h + "ln_2.bias"))
            m, mlp = layers.mlp_forward(
                m, p[h + "mlp.c_fc.weight"], p.get(h + "mlp.c_fc.bias"),
                p[h + "mlp.c_proj.weight"], p.get(h + "mlp.c_proj.bias"),
            )  # fmt: skip
            m, mlp_drop = layers.dropout_forward(m, mask(m.shape))
            x = x + m  # (B, T, C) residual
            block_caches.append((ln1, attn, attn_drop, ln2, mlp, mlp_drop))
        x, lnf = layers.layernorm_forward(x, p["ln_f.weight"], p.get("ln_f.bias"))  # (B, T, C)
        self._body_cache = (emb_cache, emb_drop, block_caches, lnf, lora_caches)
        return x

    def backward_hidden(self, dh, n_blocks: int | None = None):
        """Add the gradients of the last body forward into self.grads (+=), given dh =
        dLoss/dh (B, T, C) for the hidden states it returned; with LoRA adapters attached,
        into theirs too (model.lora.grads).

        n_blocks None: back through everything, embeddings included. n_blocks = k (0 to
        n_layer): through ln_f and the last k blocks only, then stop; the earlier blocks
        and the embeddings get no gradient (they are frozen) and cost nothing. Head-only
        training needs no body backward at all, training the last block costs one block's
        backward, and LoRA (adapters in every block, frozen embeddings) takes k = n_layer.
        The gradients filled are exactly flat_grads[block_params_slice(n_layer - k)]."""
        if self._body_cache is None:
            raise ValueError("backward_hidden() needs a forward_hidden() or forward() first "
                             "(and each forward allows one backward)")
        L = self.config.n_layer
        if n_blocks is not None and not (_is_count(n_blocks) and n_blocks <= L):
            raise ValueError(f"n_blocks must be None (all) or an integer from 0 to n_layer={L}, got {n_blocks!r}")
        emb_cache, emb_drop, block_caches, lnf, lora_caches = self._body_cache
        expected = (*emb_cache[0].shape, self.config.n_embd)  # (B, T, C), from the ids' shape
        if np.shape(dh) != expected:
            raise ValueError(f"dh must have the shape of the hidden states {expected}, got {np.shape(dh)}")
        self._body_cache = None  # free the activations; a second backward would be a bug
        self._lora_caches = lora_caches
        try:
            dx = self._accumulate(layers.layernorm_backward(dh, lnf), "ln_f")
            first = 0 if n_blocks is None else L - n_blocks
            for i in reversed(range(first, L)):
                h = f"h.{i}."
                ln1, attn, attn_drop, ln2, mlp, mlp_drop = block_caches[i]
                # x = x + mlp(...): the residual passes dx straight through and adds the branch's
                (dm,) = layers.dropout_backward(dx, mlp_drop)
                dm = self._accumulate(layers.mlp_backward(dm, mlp), h + "mlp.c_fc", h + "mlp.c_proj")
                dx = self._accumulate(layers.residual_layernorm_backward(dm, dx, ln2), h + "ln_2")  # dx + ln_2's
                (da,) = layers.dropout_backward(dx, attn_drop)
                da = self._accumulate(layers.attention_backward(da, attn), h + "attn.c_attn", h + "attn.c_proj")
                dx = dx + self._accumulate(layers.layernorm_backward(da, ln1), h + "ln_1")
        finally:
            self._lora_caches = {}
        if n_blocks is not None:
            return  # the earlier blocks and the embeddings are frozen
        (dx,) = layers.dropout_backward(dx, emb_drop)
        dwte, dwpe = layers.embedding_backward(dx, emb_cache)
        self.grads["wte.weight"] += dwte
        self.grads["wpe.weight"] += dwpe

    def block_params_slice(self, first_block: int) -> slice:
        """The part of flat_params (and flat_grads) holding blocks first_block .. n_layer-1
        and ln_f: one contiguous slice, as parameter_shapes lists them last. It is what
        backward_hidden(dh, n_blocks=n_layer - first_block) fills, so an optimizer over
        it trains "the last k blocks" (optim.param_group(model, this slice))."""
        L = self.config.n_layer
        if not (_is_count(first_block) and first_block <= L):
            raise ValueError(f"first_block must be an integer from 0 to n_layer={L}, got {first_block!r}")
        first_name = f"h.{first_block}.ln_1.weight" if first_block < L else "ln_f.weight"
        return slice(self.param_slices[first_name].start, self.flat_params.size)

    # --- LoRA: the weights the forward passes read ---------------------------------------

    def effective_params(self) -> dict:
        """The weights every forward pass computes with: self.params, except that each
        weight with a LoRA adapter reads W + (alpha / r) A B (layers.lora_forward). The
        KV-cache decoder (generate.forward_with_cache) reads these too: one model, both paths."""
        return self._forward_weights()[0]

    def _forward_weights(self):
        """(params, lora_caches): the parameters to compute with, and for each adapted weight
        the cache its lora_backward needs (none without adapters)."""
        if self.lora is None:
            return self.params, {}
        p, caches = dict(self.params), {}
        for layer in self.lora.layers:  # e.g. "h.0.attn.c_attn"
            p[layer + ".weight"], caches[layer + ".weight"] = layers.lora_forward(
                self.params[layer + ".weight"], self.lora.params[layer + ".lora_A"],
                self.lora.params[layer + ".lora_B"], self.lora.scale)
        return p, caches

    def _accumulate(self, gradients, *prefixes):
        """gradients = (dx, dweight, dbias, dweight, dbias, ...) from a layer backward: add
        each parameter gradient into self.grads under its prefix (a None bias gradient means
        the model has no biases); return dx."""
        dx, *dparams = gradients
        names = [prefix + suffix for prefix in prefixes for suffix in (".weight", ".bias")]
        for name, grad in zip(names, dparams, strict=True):
            if grad is not None:
                self.grads[name] += grad
                if name in self._lora_caches:  # W_eff = W + s A B: its gradient reaches A and B too
                    _, dA, dB = layers.lora_backward(grad, self._lora_caches[name])
                    layer = name.removesuffix(".weight")
                    self.lora.grads[layer + ".lora_A"] += dA
                    self.lora.grads[layer + ".lora_B"] += dB
        return dx

    def _check_inputs(self, idx, targets):
        """Turn bad input into a ValueError that names the problem, before any maths runs."""
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
        if idx.ndim != 2:
            raise ValueError(f"idx must have shape (B, T), got shape {idx.shape}")
        B, T = idx.shape
        if T == 0 or B == 0:
            raise ValueError(f"idx must not be empty, got shape {idx.shape}")
        if T > self.config.block_size:
            raise ValueError(f"sequence length T={T} exceeds block_size={self.config.block_size}")
        V = self.config.vocab_size
        if idx.min() < 0 or idx.max() >= V:
            bad = idx[(idx < 0) | (idx >= V)]
            raise ValueError(f"token ids must be in [0, {V}); found {bad[:5].tolist()}")
        if targets is None:
            return idx, None
        targets = np.asarray(targets)
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must hold integer token ids, got dtype {targets.dtype}")
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} must equal idx shape {idx.shape}")
        counted = targets[targets != -100]
        if counted.size and (counted.min() < 0 or counted.max() >= V):
            bad = counted[(counted < 0) | (counted >= V)]
            raise ValueError(f"targets must be in [0, {V}) or -100 (ignored); found {bad[:5].tolist()}")
        return idx, targets.astype(np.int64, copy=False)


def _is_count(value) -> bool:
    """An integer >= 0 (and not a bool, which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0
