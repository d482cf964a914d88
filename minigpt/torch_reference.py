"""The same GPT in PyTorch, as an oracle: autograd checks our hand-written gradients, and
the benchmark times it against minigpt. Parameter names and layouts are Hugging Face
GPT-2's, as in minigpt.model, so weights move between the two by name.

torch is an optional dependency: import this module only where torch is installed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored (in, out), y = x @ weight + bias.

    With a LoRA adapter (add_lora), y = x @ weight + bias + scale * (x @ lora_A) @ lora_B:
    the activation-space reading, where minigpt folds the adapter into the weight first
    (layers.lora_forward). The two agree, which is what the parity tests check."""

    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.lora_A = self.lora_B = None
        self.lora_scale = 0.0

    def add_lora(self, rank, scale):
        self.lora_A = nn.Parameter(torch.zeros(self.weight.shape[0], rank, dtype=self.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(rank, self.weight.shape[1], dtype=self.weight.dtype))
        self.lora_scale = scale

    def forward(self, x):
        y = x @ self.weight
        if self.lora_A is not None:
            y = y + self.lora_scale * ((x @ self.lora_A) @ self.lora_B)
        return y if self.bias is None else y + self.bias


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd, config.bias)
        self.c_proj = Conv1D(config.n_embd, config.n_embd, config.bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dropout = config.dropout
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd, config.bias)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd, config.bias)

    def forward(self, x):
        h = F.gelu(self.c_fc(x), approximate="tanh")
        return F.dropout(self.c_proj(h), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = Attention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    """Built by from_minigpt, which copies every weight in: it has no initialisation of its own."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)

    def hidden(self, idx):
        """The body alone: the hidden states after ln_f, (B, T, C) (minigpt's forward_hidden)."""
        T = idx.shape[1]
        x = F.dropout(self.wte(idx) + self.wpe.weight[:T], self.config.dropout, self.training)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx, targets=None):
        logits = self.hidden(idx) @ self.wte.weight.T  # tied head
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss


def from_minigpt(model) -> TorchGPT:
    """A TorchGPT with the same config, dtype and weights as a minigpt GPT, and the same
    LoRA adapters when it has them (parameters named like minigpt's: h.0.attn.c_attn.lora_A)."""
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    torch_model = TorchGPT(model.config).to(dtype)
    lora = getattr(model, "lora", None)
    if lora is not None:
        for layer in lora.layers:
            torch_model.get_submodule(layer).add_lora(lora.rank, lora.scale)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            source = lora.params[name] if ".lora_" in name else model.params[name]
            p.copy_(torch.from_numpy(source))
    return torch_model
