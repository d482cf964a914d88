"""GPT-2's four sizes and GPT-3's, as GPTConfigs: counted, never allocated.

GPT-3 is GPT-2's architecture made bigger: the same pre-LN blocks, GELU MLP, learned
position embeddings, tied head and byte-level BPE vocabulary of 50,257 tokens. What changed
is depth, width, the context (2048 tokens instead of 1024), and that its attention layers
alternate between dense and locally banded sparse patterns, which changes which scores are
computed but not a single parameter. So `model.count_params` counts all of them with one
formula, from the sizes below.

Sources of the sizes and the published parameter counts:
- GPT-2: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners",
  Table 2 (layers, d_model); vocabulary 50,257 and context 1024 in Section 2.3. The paper
  printed 117M, 345M, 762M and 1542M; OpenAI's release (github.com/openai/gpt-2, whose
  download script names the models 124M, 355M, 774M and 1558M, and the "1.5B" of the
  final release) corrected them to the counts of the checkpoints.
- GPT-3: Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1 (n_layers,
  d_model, n_heads, context 2048) and Section 2.1 (same model as GPT-2 but the alternating
  sparse attention). Table D.1 gives GPT-3 175B's total as 174,600M parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minigpt.model import GPTConfig, parameter_shapes

GPT2_VOCAB_SIZE = 50257  # GPT-2's byte-level BPE, which GPT-3 reuses


@dataclass(frozen=True)
class PublishedModel:
    name: str
    config: GPTConfig
    published: str  # the size as its authors state it, "124M"
    published_params: float  # the same, as a number


def _config(block_size: int, n_layer: int, n_head: int, n_embd: int) -> GPTConfig:
    return GPTConfig(vocab_size=GPT2_VOCAB_SIZE, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)


GPT2_SMALL = PublishedModel("GPT-2 small", _config(1024, 12, 12, 768), "124M", 124e6)
GPT2_MEDIUM = PublishedModel("GPT-2 medium", _config(1024, 24, 16, 1024), "355M", 355e6)
GPT2_LARGE = PublishedModel("GPT-2 large", _config(1024, 36, 20, 1280), "774M", 774e6)
GPT2_XL = PublishedModel("GPT-2 XL", _config(1024, 48, 25, 1600), "1.5B", 1.5e9)
GPT3_SMALL = PublishedModel("GPT-3 Small", _config(2048, 12, 12, 768), "125M", 125e6)
GPT3_175B = PublishedModel("GPT-3 175B", _config(2048, 96, 96, 12288), "175B", 175e9)

# The five sizes the chapter compares, smallest first (GPT-3 Small is GPT-2 small with a
# context of 2048: the extra 1024 x 768 position embeddings are its whole difference).
GPT2_AND_GPT3 = (GPT2_SMALL, GPT2_MEDIUM, GPT2_LARGE, GPT2_XL, GPT3_175B)

GROUPS = ("token embedding (= head)", "position embedding", "attention", "MLP", "layernorms")


def parameter_groups(config: GPTConfig) -> dict[str, int]:
    """Where the parameters are: {group: count} for the groups of GROUPS, by parameter name.
    The tied head has no parameters of its own: it is the token embedding."""
    counts = dict.fromkeys(GROUPS, 0)
    for name, shape in parameter_shapes(config).items():
        size = math.prod(shape)
        if name.startswith("wte."):
            group = GROUPS[0]
        elif name.startswith("wpe."):
            group = GROUPS[1]
        elif ".attn." in name:
            group = GROUPS[2]
        elif ".mlp." in name:
            group = GROUPS[3]
        else:  # h.N.ln_1, h.N.ln_2, ln_f
            group = GROUPS[4]
        counts[group] += size
    return counts
