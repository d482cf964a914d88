"""Answering instructions: generate a response until the model emits end-of-text.

    ids, stopped = respond(model, prompt_ids, eot_id, max_new_tokens=128)     # greedy
    records = answer_examples(model, tokenizer, test_examples, max_new_tokens=128)

minigpt.generate.generate always writes max_new_tokens tokens; an instruction-tuned model
instead says when it is done, by emitting <|endoftext|> (the token it was trained to put
after every response). So this loop is generate's, one sequence at a time, with a stop:
the same KV cache (generate.forward_with_cache), the same sampling rules
(generate.sample_next; temperature 0 = greedy, the default), and the same rule at the
context's end (once prompt + response fill block_size, each step rebuilds the cache from
the last block_size tokens).

Every response ends in one of two ways, and says which (`stopped`):

    "end-of-text"    the model emitted <|endoftext|>; it is not part of the response
    "length-limit"   max_new_tokens tokens came without one: the response was cut off
"""

from __future__ import annotations

import numpy as np

from minigpt import kernels
from minigpt.finetune.instruct_data import format_prompt
from minigpt.generate import KVCache, forward_with_cache, sample_next, validate_sampling

END_OF_TEXT = "end-of-text"
LENGTH_LIMIT = "length-limit"


def respond(model, prompt_ids, eot_id: int, max_new_tokens: int, temperature: float = 0.0,
            top_k: int | None = None, top_p: float | None = None, rng=None) -> tuple[list[int], str]:
    """(response ids, stopped): the tokens the model writes after prompt_ids, up to (not
    including) its first end-of-text, or max_new_tokens of them; stopped is END_OF_TEXT or
    LENGTH_LIMIT (see the module docstring)."""
    validate_sampling(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    prompt = [int(i) for i in prompt_ids]
    if not prompt:
        raise ValueError("the prompt is empty")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    block_size = model.config.block_size
    sequence = prompt[-block_size:]  # a longer prompt is read through its last block_size tokens
    response: list[int] = []
    with model.evaluating(), kernels.single_threaded():
        cache = KVCache.for_model(model, 1)
        params = model.effective_params()  # the same for every step (LoRA folded in once)
        logits = forward_with_cache(model, np.array([sequence]), cache, params)  # (1, T, V)
        while True:
            next_id = int(sample_next(logits[:, -1, :], temperature, top_k, top_p, rng)[0])
            if next_id == eot_id:
                return response, END_OF_TEXT
            response.append(next_id)
            sequence.append(next_id)
            if len(response) == max_new_tokens:
                return response, LENGTH_LIMIT
            if cache.length < block_size:
                logits = forward_with_cache(model, np.array([[next_id]]), cache, params)  # (1, 1, V)
            else:  # the context is full: rebuild it from the last block_size tokens
                cache.reset()
                logits = forward_with_cache(model, np.array([sequence[-block_size:]]), cache, params)


def answer_examples(model, tokenizer, examples, max_new_tokens: int, temperature: float = 0.0,
                    top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                    on_answer=None) -> list[dict]:
    """One record per example: {"instruction", "input", "reference", "response", "stopped",
    "response_ids"} (the response as text and as the ids the model wrote). on_answer(record),
    if given, is called after each one (progress)."""
    rng = np.random.default_rng(seed)
    eot_id = int(tokenizer.eot_token)
    records = []
    for example in examples:
        ids, stopped = respond(model, tokenizer.encode(format_prompt(example)), eot_id, max_new_tokens,
                               temperature, top_k, top_p, rng)
        record = {"instruction": example["instruction"], "input": example["input"],
                  "reference": example["output"], "response": tokenizer.decode(ids),
                  "stopped": stopped, "response_ids": ids}
        records.append(record)
        if on_answer is not None:
            on_answer(record)
    return records
