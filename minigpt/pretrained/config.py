"""config.json <-> GPTConfig: which Hugging Face configs describe the model minigpt computes.

GPT2Config has many fields; most describe training (dropout rates, initializer_range) or
other heads (summary_*), and do not change what the weights compute. The ones that would
change it are checked, and a config that sets any of them differently from GPT-2 is
refused with the field named: minigpt would otherwise compute a different function with
the same weights, silently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from minigpt.pretrained.errors import PretrainedError

CONFIG_FILE = "config.json"
LAYER_NORM_EPSILON = 1e-5  # GPT-2's, and the one minigpt.layers uses
GELU_TANH_NAMES = ("gelu_new", "gelu_pytorch_tanh")  # transformers' two names for the tanh GELU
# GPT2Config's defaults, used (as transformers does) for sizes a config.json leaves out
GPT2_SIZES = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
# Options that change the maths, with GPT-2's (and minigpt's) value
GPT2_FLAGS = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}


def read_config(path):
    """The GPTConfig of a Hugging Face GPT-2 config.json, or PretrainedError saying why not."""
    path = Path(path)
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedError(f"{path} is not valid JSON ({err})") from None
    return config_from_hf(hf, str(path))


def config_from_hf(hf: dict, where: str = "config.json"):
    """GPTConfig from a config.json dict; refuse anything GPT-2 does not compute as minigpt does.

    Training-only settings (attn_pdrop, resid_pdrop, embd_pdrop, initializer_range) are
    ignored: the model loads with dropout 0, its init is overwritten by the weights."""
    from minigpt.model import GPTConfig

    if not isinstance(hf, dict):
        raise PretrainedError(f"{where}: expected a JSON object")
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise PretrainedError(f"{where}: model_type is {model_type!r}; minigpt loads GPT-2 models only "
                              f"(model_type \"gpt2\")")
    rotary = sorted(k for k, v in hf.items() if v is not None and k.startswith(("rope", "rotary")))
    if rotary or hf.get("position_embedding_type", "absolute") != "absolute":
        raise PretrainedError(f"{where}: rotary position embeddings ({', '.join(rotary) or 'position_embedding_type'})"
                              f" are not GPT-2's; minigpt adds learned absolute positions (wpe)")
    if hf.get("tie_word_embeddings", True) is not True:
        raise PretrainedError(f"{where}: tie_word_embeddings is {hf['tie_word_embeddings']!r}, an untied output "
                              f"head; GPT-2's head, and minigpt's, is the token embedding wte itself")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in GELU_TANH_NAMES:
        raise PretrainedError(f"{where}: activation_function is {activation!r}; minigpt computes GPT-2's "
                              f"tanh GELU (\"gelu_new\")")
    epsilon = hf.get("layer_norm_epsilon", LAYER_NORM_EPSILON)
    if epsilon != LAYER_NORM_EPSILON:
        raise PretrainedError(f"{where}: layer_norm_epsilon is {epsilon!r}; minigpt's layernorm uses GPT-2's 1e-5")
    for flag, gpt2_value in GPT2_FLAGS.items():
        if hf.get(flag, gpt2_value) != gpt2_value:
            raise PretrainedError(f"{where}: {flag} is {hf[flag]!r}; GPT-2 (and minigpt) use {gpt2_value}")
    sizes = {key: hf.get(key, default) for key, default in GPT2_SIZES.items()}
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PretrainedError(f"{where}: {key} must be a positive integer, got {value!r}")
    n_inner = hf.get("n_inner")
    if n_inner is not None and n_inner != 4 * sizes["n_embd"]:
        raise PretrainedError(f"{where}: n_inner is {n_inner!r}; minigpt's MLP is 4 * n_embd = "
                              f"{4 * sizes['n_embd']} wide, as GPT-2's (n_inner null)")
    try:
        return GPTConfig(vocab_size=sizes["vocab_size"], block_size=sizes["n_positions"],
                         n_layer=sizes["n_layer"], n_head=sizes["n_head"], n_embd=sizes["n_embd"])
    except ValueError as err:
        raise PretrainedError(f"{where}: {err}") from None


def config_to_hf(config, tokenizer=None) -> dict:
    """The config.json from which transformers builds the same GPT-2 (GPT2LMHeadModel)."""
    eot = getattr(tokenizer, "eot_token", None)  # GPT-2's <|endoftext|>, if the tokenizer has it
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LAYER_NORM_EPSILON,
        "tie_word_embeddings": True,
        "attn_pdrop": config.dropout, "embd_pdrop": config.dropout, "resid_pdrop": config.dropout,
        "initializer_range": config.init_std or 1.0 / math.sqrt(config.n_embd),  # minigpt's init std
        "bos_token_id": eot,
        "eos_token_id": eot,
        "dtype": "float32",
    }
