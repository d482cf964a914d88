"""Sampling speed at the shakespeare-char preset: tokens/s with and without the KV cache.

Two regimes, because the cache only helps while the sequence fits in the context:
  - within the block: a 1-token prompt grown to block_size tokens. With the cache each
    step feeds one token; without it each step re-runs the whole prefix.
  - past the block: 4 x block_size tokens. Once the window slides, minigpt.generate
    rebuilds the cache from the cropped context every step (absolute position
    embeddings shift), so both paths cost a full forward per token there.
Batch 1, float32, temperature 1: what `python -m minigpt sample` does.
"""

from __future__ import annotations

import numpy as np

from minigpt import GPT
from minigpt.bench import seconds
from minigpt.bench.train import PRESET
from minigpt.generate import generate

DEFAULT_REPEATS, DEFAULT_WARMUP = 3, 1


def tokens_per_second(model, n_tokens, use_cache, repeats, warmup):
    prompt = np.zeros((1, 1), dtype=np.int64)
    for seed in range(warmup):
        generate(model, prompt, min(n_tokens, 8), rng=seed, use_cache=use_cache)
    times = [seconds(lambda: generate(model, prompt, n_tokens, rng=seed, use_cache=use_cache))
             for seed in range(repeats)]
    return n_tokens / float(np.median(times))


def run(args) -> int:
    repeats = args.iters or DEFAULT_REPEATS
    warmup = DEFAULT_WARMUP if args.warmup is None else args.warmup
    model = GPT(PRESET, seed=args.seed, dtype=np.float32).eval()
    block = PRESET.block_size
    print(f"preset shakespeare-char model, batch 1, float32, median of {repeats} run(s)")
    print(f"{'':26s} {'KV cache':>10s} {'no cache':>10s} {'speed-up':>9s}")
    for label, n_tokens in ((f"within block ({block - 1} tokens)", block - 1),
                            (f"past block ({4 * block} tokens)", 4 * block)):
        cached = tokens_per_second(model, n_tokens, True, repeats, warmup)
        uncached = tokens_per_second(model, n_tokens, False, repeats, warmup)
        print(f"{label:26s} {cached:10,.0f} {uncached:10,.0f} {cached / uncached:8.2f}x")
        if n_tokens < block:  # the regime the README quotes
            args.results["sample"] = {"tokens": n_tokens, "cached_tokens_per_s": cached,
                                      "uncached_tokens_per_s": uncached}
    print("(tokens/s; past the block the cache is rebuilt every step, see minigpt/generate.py)")
    return 0
