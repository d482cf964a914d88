"""Instruction data for fine-tuning: the Alpaca prompt, the split, and batches with a loss mask.

    examples = read_instructions()                       # 1,100 {"instruction", "input", "output"}
    splits = split_instructions(examples)                # train / val / test: 935 / 55 / 110
    encoded, cut = encode_examples(tokenizer, splits["train"], max_length=128)
    inputs, targets = collate([encoded[i] for i in rows], pad_id, mask_prompt=True)

One example becomes one text in the Alpaca format (Taori et al., 2023), which the model
learns to continue:

    Below is an instruction that describes a task. Write a response that appropriately
    completes the request.

    ### Instruction:
    Rewrite the sentence in passive voice.

    ### Input:                      <- only when the example has an input
    The chef cooked the meal.

    ### Response:
    The meal was cooked by the chef.<|endoftext|>

The prompt is everything up to and including "### Response:\\n"; the response follows it,
then one end-of-text token, so that the model learns to stop. The prompt and the response
are encoded apart and their ids joined, so the prompt's length in tokens is exact (the mask
needs it) and the prompt ids are the very ids the model sees when it answers a test
instruction. (Encoding the whole text at once could merge tokens across the boundary.)

A batch is padded on the right with end-of-text to its longest example, and shifted by one:
inputs = ids[:-1], targets = ids[1:]. The targets are -100 (ignored by the loss) on the
padding, but the first end-of-text, right after the response, stays a target: it is the
token that teaches the model to stop. With mask_prompt, the targets that are prompt tokens
are -100 too, so the loss counts only the response (and its end-of-text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

IGNORE_INDEX = -100  # the target value cross_entropy_forward skips
KEYS = ("instruction", "input", "output")
SPLIT_FRACTIONS = (0.85, 0.05, 0.10)  # train, validation, test
SPLIT_SEED = 123
PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")


# --- the prompt format ----------------------------------------------------------------------


def format_prompt(example: dict) -> str:
    """The Alpaca prompt of one example: preamble, instruction, the input if it is not
    empty, and the "### Response:" header the model's answer follows."""
    text = f"{PREAMBLE}\n\n### Instruction:\n{example['instruction']}"
    if example["input"]:
        text += f"\n\n### Input:\n{example['input']}"
    return text + "\n\n### Response:\n"


def format_example(example: dict) -> str:
    """The whole training text: the prompt followed by the reference response."""
    return format_prompt(example) + example["output"]


# --- reading and splitting ------------------------------------------------------------------


def read_instructions(path=None) -> list[dict]:
    """The examples of an instruction file: a JSON array of objects, each with the string
    keys "instruction", "input" (may be empty) and "output". Default: instruction-data.json
    (files.KNOWN_FILES["instructions"], 1,100 examples). Every problem is a ValueError that
    names the file, the example and the key."""
    if path is None:
        from minigpt.files import locate

        path = locate("instructions")
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such instruction file: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason})") from None
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON array of examples, found {type(data).__name__}"
                         + (" (empty)" if isinstance(data, list) else ""))
    for i, example in enumerate(data):
        if not isinstance(example, dict):
            raise ValueError(f"{path}, example {i}: expected an object with keys {', '.join(KEYS)}, "
                             f"found {type(example).__name__}")
        for key in KEYS:
            if key not in example:
                raise ValueError(f"{path}, example {i}: the key {key!r} is missing "
                                 f"(each example needs {', '.join(KEYS)})")
            if not isinstance(example[key], str):
                raise ValueError(f"{path}, example {i}: {key!r} must be a string, found "
                                 f"{type(example[key]).__name__}")
        for key in ("instruction", "output"):
            if not example[key].strip():
                raise ValueError(f"{path}, example {i}: {key!r} is empty")
    return [{key: example[key] for key in KEYS} for example in data]


def split_instructions(examples, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> dict[str, list[dict]]:
    """{"train", "val", "test"}: the examples shuffled with a fixed seed and cut by
    `fractions` (1,100 -> 935 / 55 / 110; train takes what rounding leaves).

    Examples that share their (instruction, input) always land in the same split:
    instruction-data.json asks 20 prompts more than once (45 examples, 1,075 distinct
    prompts; the outputs differ), and a test prompt the model was trained on would flatter
    the test loss. So whole groups are
    shuffled, and each goes to the test split if it still fits there, else to validation
    if it fits, else to training."""
    n = len(examples)
    n_test, n_val = round(n * fractions[2]), round(n * fractions[1])
    groups: dict[tuple[str, str], list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault((example["instruction"], example["input"]), []).append(i)
    group_list = list(groups.values())
    order = np.random.default_rng(seed).permutation(len(group_list))
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for g in order:
        rows = group_list[g]
        if len(parts["test"]) + len(rows) <= n_test:
            parts["test"] += rows
        elif len(parts["val"]) + len(rows) <= n_val:
            parts["val"] += rows
        else:
            parts["train"] += rows
    return {name: [examples[i] for i in rows] for name, rows in parts.items()}


# --- token ids, truncation and batches ------------------------------------------------------


def encode_example(tokenizer, example: dict) -> tuple[list[int], int]:
    """(ids, prompt_length): the prompt's ids, the response's, then end-of-text; and how many
    of the ids are the prompt's."""
    prompt = tokenizer.encode(format_prompt(example))
    response = tokenizer.encode(example["output"])
    return prompt + response + [int(tokenizer.eot_token)], len(prompt)


def encode_examples(tokenizer, examples, max_length: int, truncate: bool = True, what: str = "the data"):
    """(encoded, truncated): (ids, prompt_length) for each example, and how many were cut.

    The model reads max_length tokens at most, and a sequence of max_length + 1 ids gives
    max_length (input, target) pairs, so longer sequences keep their first max_length + 1
    ids (the end-of-text and the end of the response are lost: such an example teaches no
    stop). With truncate=False a longer example is a ValueError instead, naming how many
    are too long and the longest, before anything else is done."""
    if getattr(tokenizer, "eot_token", None) is None:
        raise ValueError(f"{what}: the tokenizer has no <|endoftext|> token, which instruction tuning needs "
                         f"to pad and to end each response")
    encoded = []
    for i, example in enumerate(examples):
        try:
            encoded.append(encode_example(tokenizer, example))
        except ValueError as err:  # e.g. "<|endoftext|>" written in the text
            raise ValueError(f"{what}: the tokenizer cannot encode example {i} "
                             f"({example['instruction'][:60]!r}): {err}") from None
    too_long = [i for i, (ids, _) in enumerate(encoded) if len(ids) > max_length + 1]
    if too_long and not truncate:
        longest = max(too_long, key=lambda i: len(encoded[i][0]))
        raise ValueError(f"{what}: {len(too_long)} example(s) are longer than the context of {max_length} tokens "
                         f"(the longest, example {longest}, has {len(encoded[longest][0]) - 1} tokens before its "
                         f"end-of-text); allow truncation or use a base with a longer context")
    for i in too_long:
        ids, prompt_length = encoded[i]
        encoded[i] = (ids[: max_length + 1], min(prompt_length, max_length + 1))
    return encoded, len(too_long)


def collate(batch, pad_id: int, mask_prompt: bool = False, ignore_index: int = IGNORE_INDEX):
    """inputs (B, T) and targets (B, T), int64, from encoded examples [(ids, prompt_length)].

    Each row is padded on the right with pad_id (end-of-text) to the longest sequence, then
    inputs = row[:-1] and targets = row[1:]. Targets are ignore_index after a row's real
    ids (its padding); the row's own last id (its end-of-text) stays a target. With
    mask_prompt, targets[:prompt_length - 1] are ignore_index too: position t predicts
    token t + 1, so those are exactly the targets that are prompt tokens."""
    if not batch:
        raise ValueError("collate needs at least one example")
    lengths = np.array([len(ids) for ids, _ in batch], dtype=np.int64)  # (B,)
    if lengths.min() < 2:
        raise ValueError("every example needs at least 2 ids (one input and one target)")
    rows = np.full((len(batch), int(lengths.max())), pad_id, dtype=np.int64)  # (B, T + 1)
    for r, (ids, _) in enumerate(batch):
        rows[r, : len(ids)] = ids
    inputs = rows[:, :-1].copy()  # (B, T)
    targets = rows[:, 1:].copy()  # (B, T): targets[r, t] = rows[r, t + 1]
    positions = np.arange(targets.shape[1])[None, :]  # (1, T)
    targets[positions >= (lengths - 1)[:, None]] = ignore_index  # padding; row r's last target is t = len - 2
    if mask_prompt:
        prompt_lengths = np.array([p for _, p in batch], dtype=np.int64)  # (B,)
        targets[positions < (prompt_lengths - 1)[:, None]] = ignore_index
    return inputs, targets
