"""Helpers for the tests of Hugging Face GPT-2 loading and export (minigpt/pretrained/).

    hf = random_transformers_gpt2(torch, transformers, vocab_size=97)   # a GPT2LMHeadModel
    hf.save_pretrained(folder)                                          # as transformers writes it
    write_hf_folder(folder, config_dict, {name: array})                 # any layout, for bad inputs
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def random_transformers_gpt2(torch, transformers, vocab_size=97, n_positions=32, n_embd=16, n_layer=2,
                             n_head=2, seed=0):
    """A GPT2LMHeadModel built by transformers with random weights, in eval mode.

    transformers' own init (std 0.02, layernorms at 1 and 0) gives logits near zero, where
    a wrong bias or layernorm could hide; the weights are drawn wider instead (std 0.3,
    layernorm gains around 1, biases around 0) so every tensor moves the logits."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                                     n_layer=n_layer, n_head=n_head, bos_token_id=None, eos_token_id=None)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def transformers_logits(torch, hf_model, idx) -> np.ndarray:
    with torch.no_grad():
        return hf_model(torch.from_numpy(np.asarray(idx))).logits.numpy()


def state_dict_numpy(hf_model) -> dict[str, np.ndarray]:
    """The model's tensors by the names save_pretrained writes ("transformer.h.0...")."""
    return {name: t.detach().cpu().numpy().copy() for name, t in hf_model.state_dict().items()
            if name != "lm_head.weight"}  # tied: transformers writes it once, as wte


def write_hf_folder(folder, config: dict, tensors: dict[str, np.ndarray], metadata=None) -> Path:
    """A Hugging Face-style folder with this config.json and these tensors (any names)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(folder / "model.safetensors"),
              metadata=metadata or {"format": "pt"})
    return folder
