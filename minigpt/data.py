"""Text in, batches of token ids out: corpora, the character tokenizer, splits, batching.

The path from a text file to what the model sees:

    text = load_text("shakespeare")              # a str: a named corpus or any text file
    tokenizer = CharTokenizer.from_text(text)    # one id per distinct character
    tokens = encode_corpus(text, tokenizer)      # (N,) uint16: compact, 2 bytes a token
    train, val = split_tokens(tokens)            # first 90% / last 10%
    x, y = get_batch(train, 12, 64, rng)         # (B, T) int64 each; y is x shifted by one

Named corpora:
- "shakespeare": Tiny Shakespeare (1,115,394 characters), found by `minigpt.files.locate`
  (MINIGPT_DATA_DIR, the cache, or a checked download).
- "pydocs": the Python documentation that ships inside every CPython
  (`pydoc_data.topics`, about 465 KB of English prose and code): always there, offline.
- "shakespeare+pydocs": both, as 80 documents separated by END_OF_TEXT, GPT-2's
  "<|endoftext|>": the 79 pydocs topics, then Tiny Shakespeare (so the last 10%, the
  validation split, is Shakespeare). The corpus of the base model that fine-tuning starts
  from (the preset base-bpe).
Anything else is taken as the path of a UTF-8 text file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CORPORA = ("shakespeare", "pydocs", "shakespeare+pydocs")
VAL_FRACTION = 0.1
END_OF_TEXT = "<|endoftext|>"  # between documents, as GPT-2: "what follows is unrelated"


# --- corpora -----------------------------------------------------------------------------


def pydocs_text() -> str:
    """The CPython documentation topics, joined in sorted key order (so always the same)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def load_text(source: str | Path) -> str:
    """The text of a named corpus ("shakespeare", "pydocs") or of a text file.

    Raises files.DataUnavailable when Tiny Shakespeare can be neither found nor
    downloaded, FileNotFoundError for a missing file, ValueError for an empty one or one
    that is not UTF-8."""
    if source == "pydocs":
        return pydocs_text()
    if source == "shakespeare+pydocs":
        from pydoc_data.topics import topics

        return END_OF_TEXT.join([*(topics[key] for key in sorted(topics)), load_text("shakespeare")])
    if source == "shakespeare":
        from minigpt.files import locate

        path = locate("shakespeare")
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"no such text file: {path} (named corpora: {', '.join(CORPORA)})"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # its own message would not say which file
        raise ValueError(f"{path} is not UTF-8 text ({err.reason}: {err.object[err.start:err.end]!r})") from None
    if not text:
        raise ValueError(f"the text file {path} is empty: there is nothing to train on")
    return text


# --- the character tokenizer ------------------------------------------------------------


class CharTokenizer:
    """One token per character; the vocabulary is the sorted set of the corpus's characters.

    The simplest tokenizer that works: no merges, no unknown token. Text that uses a
    character the corpus never did cannot be encoded, and `encode` says which."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        self.chars = chars  # id -> character
        self.ids = {ch: i for i, ch in enumerate(chars)}  # character -> id

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.ids.keys())
        if unknown:
            shown = ", ".join(repr(ch) for ch in unknown[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            raise ValueError(
                f"the text has {len(unknown)} character(s) that are not in the "
                f"tokenizer's vocabulary of {self.vocab_size}: {shown}{more}"
            )
        return [self.ids[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        return cls(d["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def tokenizer_from_dict(d: dict):
    """Rebuild a tokenizer saved with `to_dict()` (as checkpoints store it)."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "char":
        return CharTokenizer.from_dict(d)
    if kind == "bpe":
        from minigpt.tokenizer import Tokenizer  # imported only when needed

        return Tokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer type {kind!r}; expected 'char' or 'bpe'")


# --- token arrays, split and batches ---------------------------------------------------


def token_dtype(vocab_size: int):
    """The smallest unsigned integer type that holds every id: uint16 up to 65,536 tokens."""
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def encode_corpus(text: str, tokenizer) -> np.ndarray:
    """The whole corpus as a 1-D array of token ids, stored compactly. A tokenizer's special
    tokens (END_OF_TEXT between documents) are read as themselves, not as plain text."""
    specials = getattr(tokenizer, "special_tokens", None)  # the character tokenizer has none
    ids = tokenizer.encode(text, allowed_special=set(specials)) if specials else tokenizer.encode(text)
    return np.asarray(ids, dtype=token_dtype(tokenizer.vocab_size))


def split_tokens(tokens: np.ndarray, val_fraction: float = VAL_FRACTION):
    """(train, val): the first 1 - val_fraction of the tokens, then the rest.

    A contiguous split, not a shuffled one: the validation text is a part of the corpus
    the model never saw, so val loss measures generalisation, not memory."""
    n_train = int(len(tokens) * (1.0 - val_fraction))
    return tokens[:n_train], tokens[n_train:]


def check_enough_tokens(tokens: np.ndarray, block_size: int, what: str = "the corpus") -> None:
    """A batch needs block_size + 1 consecutive tokens (inputs plus one shifted target)."""
    if len(tokens) < block_size + 1:
        raise ValueError(
            f"{what} has {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}: "
            f"use a longer text or a smaller --block-size"
        )


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator):
    """B random windows of the token array: inputs x and next-token targets y.

    x[b] = tokens[s : s + T] and y[b] = tokens[s + 1 : s + T + 1] for a random start s,
    so at every position t the model learns to predict y[b, t] from x[b, :t + 1]."""
    check_enough_tokens(tokens, block_size)
    starts = rng.integers(0, len(tokens) - block_size, size=batch_size)  # (B,)
    offsets = np.arange(block_size)  # (T,)
    x = tokens[starts[:, None] + offsets].astype(np.int64)  # (B, T)
    y = tokens[starts[:, None] + offsets + 1].astype(np.int64)  # (B, T)
    return x, y
