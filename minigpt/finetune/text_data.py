"""From texts to padded batches of token ids, for fine-tuning on examples of varying length.

    ids, truncated = encode_texts(tokenizer, texts, max_length=128)    # one list per text
    idx, lengths = pad_batch([ids[i] for i in batch], pad_id)           # (B, T_max), (B,)

Padding goes on the right, up to the longest sequence of the batch (not of the data set:
short batches cost less). In a causal GPT a token attends only to itself and the tokens
before it, so padding after a sequence can change none of its real positions: whatever
the pad id, the hidden state of its last real token (lengths - 1) is the same as without
padding. The pad id used is the tokenizer's <|endoftext|>, as GPT-2 fine-tuning does.
"""

from __future__ import annotations

import numpy as np


def check_subword_tokenizer(tokenizer, where: str) -> None:
    """Fine-tuning on new text needs a tokenizer that can encode any text: a byte-level BPE.
    A character-level tokenizer knows only the characters of its corpus; refuse it early."""
    from minigpt.data import CharTokenizer

    if isinstance(tokenizer, CharTokenizer) or not hasattr(tokenizer, "special_tokens"):
        raise ValueError(
            f"{where} has a character-level tokenizer ({tokenizer!r}): fine-tuning needs a subword "
            f"(byte-level BPE) tokenizer that can encode any text. Pretrain a base with one "
            f"(python -m minigpt train --preset base-bpe) or use GPT-2 (--base gpt2)")


def pad_id_of(tokenizer) -> int:
    """The id padding uses: <|endoftext|> when the tokenizer has it, else 0 (any id will do;
    see the module docstring)."""
    eot = getattr(tokenizer, "eot_token", None)
    return 0 if eot is None else int(eot)


def encode_texts(tokenizer, texts, max_length: int, truncate: bool = True, what: str = "the data"):
    """(ids, truncated): the token ids of each text, and how many texts were cut to their
    first max_length tokens.

    A text that cannot be encoded, or that has no tokens, is a ValueError naming it. With
    truncate=False a text longer than max_length is one too (naming how many are, and the
    longest), before anything else is done."""
    ids = []
    for i, text in enumerate(texts):
        try:
            encoded = tokenizer.encode(text)
        except ValueError as err:  # e.g. a character a character-level vocabulary lacks
            raise ValueError(f"{what}: the tokenizer cannot encode text {i} ({text[:60]!r}): {err}") from None
        if not encoded:
            raise ValueError(f"{what}: text {i} is empty: there is nothing to classify")
        ids.append(encoded)
    too_long = [i for i, seq in enumerate(ids) if len(seq) > max_length]
    if too_long and not truncate:
        longest = max(too_long, key=lambda i: len(ids[i]))
        raise ValueError(f"{what}: {len(too_long)} text(s) are longer than the context of {max_length} tokens "
                         f"(the longest, text {longest}, has {len(ids[longest])}); allow truncation or use a "
                         f"base with a longer context")
    for i in too_long:
        ids[i] = ids[i][:max_length]
    return ids, len(too_long)


def pad_batch(seqs, pad_id: int):
    """idx (B, T_max) int64, sequences padded on the right with pad_id, and lengths (B,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)  # (B,)
    idx = np.full((len(seqs), int(lengths.max())), pad_id, dtype=np.int64)  # (B, T_max)
    for row, seq in enumerate(seqs):
        idx[row, : len(seq)] = seq
    return idx, lengths


def batch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None, lengths=None):
    """Index arrays covering 0..n-1 in batches: shuffled by rng (training), or, given the
    lengths, sorted by length (evaluation: similar lengths together waste less padding)."""
    if rng is not None:
        order = rng.permutation(n)
    elif lengths is not None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
