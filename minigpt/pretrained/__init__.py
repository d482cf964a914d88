"""Real GPT-2 in minigpt: load Hugging Face GPT-2 checkpoints, and write minigpt models as them.

    model = GPT.from_pretrained("gpt2")              # or a folder; model.tokenizer is attached
    model.save_pretrained("export/")                 # transformers.GPT2LMHeadModel loads it
    model, tokenizer, what = load_base("gpt2")       # or an HF folder, or a minigpt run folder

A Hugging Face GPT-2 folder holds

    config.json              the sizes (vocab_size, n_positions, n_embd, n_layer, n_head), options
    model.safetensors        the weights by name (no pickle; read by minigpt.safetensors_reader)
    vocab.json, merges.txt   the tokenizer, if any: OpenAI's encoder.json and vocab.bpe, renamed

minigpt's GPT was built with GPT-2's parameter names, layouts, tanh GELU, layernorm epsilon
(1e-5) and tied head, so loading is renaming. transformers' GPT2LMHeadModel writes its
weights as "transformer.<name>"; older files (GPT2Model's, such as the hub's gpt2) write
"<name>". Both are read. transformers' GPT-2 computes its linear layers as x @ W + b with W
stored (in, out) (its "Conv1D"), exactly as minigpt does, so no weight is transposed.

    name (without "transformer.")   shape in gpt2 (124M)  role
    wte.weight                      (50257, 768)   token embedding; also the output head (tied)
    wpe.weight                      (1024, 768)    position embedding, learned
    h.N.ln_1.weight, .bias          (768,)         layernorm before attention, block N of 12
    h.N.attn.c_attn.weight, .bias   (768, 2304)    query, key and value projections side by side
    h.N.attn.c_proj.weight, .bias   (768, 768)     attention output projection into the residual
    h.N.ln_2.weight, .bias          (768,)         layernorm before the MLP
    h.N.mlp.c_fc.weight, .bias      (768, 3072)    MLP up-projection (then GELU)
    h.N.mlp.c_proj.weight, .bias    (3072, 768)    MLP down-projection into the residual
    ln_f.weight, .bias              (768,)         final layernorm, before the head
    h.N.attn.bias, .masked_bias     (1, 1, 1024, 1024)  older files only: the causal mask, a
                                                   constant buffer, not a weight; ignored
    lm_head.weight                  (50257, 768)   if stored at all, equal to wte (tied)

Memory, float32: gpt2 has 124,439,808 parameters (0.50 GB of weights); gpt2-xl (48 layers,
25 heads, n_embd 1600) has 1,557,611,200: 6,230,444,800 bytes (6.23 GB, 5.80 GiB) of
weights, and loading it peaks at 6.87 GB (memory.memory_needed). A model that does not fit
is refused, with both numbers, before anything is allocated or downloaded.

The package: config.py (config.json <-> GPTConfig), weights.py (model.safetensors <->
parameters), tokenizer_files.py, memory.py, and load.py / save.py that put them together.
"""

from minigpt.pretrained.errors import NotEnoughMemory, PretrainedError
from minigpt.pretrained.load import from_pretrained, load_base, load_folder
from minigpt.pretrained.memory import memory_needed
from minigpt.pretrained.save import save_pretrained

__all__ = ["from_pretrained", "load_base", "load_folder", "save_pretrained", "memory_needed",
           "PretrainedError", "NotEnoughMemory"]
