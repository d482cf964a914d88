"""The tokenizer beside the weights: which one a folder holds, and which files to write.

Hugging Face's GPT2Tokenizer reads vocab.json and merges.txt, which are OpenAI's
encoder.json and vocab.bpe under other names (tokens spelled in GPT-2's byte alphabet, see
minigpt/tokenizer/openai.py). They are written only for GPT-2's own tokenizer, which
transformers reproduces; any minigpt tokenizer (characters, a BPE trained by minigpt) is
also written as minigpt-tokenizer.json, which minigpt reads back and transformers ignores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from minigpt.pretrained.config import GPT2_SIZES
from minigpt.pretrained.errors import PretrainedError

VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
MINIGPT_TOKENIZER_FILE = "minigpt-tokenizer.json"
TOKENIZER_FILES = (VOCAB_FILE, MERGES_FILE, MINIGPT_TOKENIZER_FILE)
# sha256 of GPT-2's tokenizer as minigpt describes it (to_dict() of minigpt.tokenizer.gpt2())
GPT2_TOKENIZER_SHA256 = "030863958ae2375245296a6d6820638fde389001661f65c0a41d318d7b83c2bb"


def read_tokenizer(folder: Path, vocab_size: int):
    """The folder's tokenizer: minigpt-tokenizer.json if there, else vocab.json + merges.txt,
    else GPT-2's (minigpt.tokenizer.gpt2()) for a model with GPT-2's 50257-token
    vocabulary, else None (a vocabulary minigpt cannot know)."""
    from minigpt.data import tokenizer_from_dict
    from minigpt.files import DataUnavailable
    from minigpt.tokenizer import Tokenizer, gpt2

    folder = Path(folder)
    if (folder / MINIGPT_TOKENIZER_FILE).is_file():
        path = folder / MINIGPT_TOKENIZER_FILE
        try:
            tokenizer = tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, KeyError, ValueError) as err:  # JSONDecodeError is a ValueError
            raise PretrainedError(f"{path} is not a minigpt tokenizer: {err}") from None
    elif (folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file():
        try:
            tokenizer = Tokenizer.from_gpt2_files(folder / VOCAB_FILE, folder / MERGES_FILE)
        except ValueError as err:
            raise PretrainedError(f"{folder}: {VOCAB_FILE} / {MERGES_FILE}: {err}") from None
    elif vocab_size == GPT2_SIZES["vocab_size"]:
        try:
            tokenizer = gpt2()
        except DataUnavailable as err:
            raise DataUnavailable(f"{folder} has no {VOCAB_FILE} and {MERGES_FILE}, so the model needs GPT-2's "
                                  f"tokenizer files, which could not be had: {err}") from None
    else:
        return None
    if tokenizer.vocab_size > vocab_size:
        raise PretrainedError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens, more than the "
                              f"model's vocab_size {vocab_size}")
    return tokenizer


def is_gpt2_tokenizer(tokenizer) -> bool:
    """Whether tokenizer is GPT-2's own (the one transformers' GPT2Tokenizer reproduces)."""
    if getattr(tokenizer, "vocab_size", None) != GPT2_SIZES["vocab_size"] or not hasattr(tokenizer, "merges"):
        return False
    description = json.dumps(tokenizer.to_dict(), sort_keys=True).encode("utf-8")
    return hashlib.sha256(description).hexdigest() == GPT2_TOKENIZER_SHA256


def gpt2_tokenizer_files(tokenizer) -> tuple[str, str]:
    """(vocab.json, merges.txt) text of a byte-level BPE tokenizer, in GPT-2's byte alphabet:
    the inverse of Tokenizer.from_gpt2_files. For GPT-2's tokenizer these are OpenAI's
    encoder.json and vocab.bpe, byte for byte."""
    from minigpt.tokenizer.openai import bytes_to_unicode

    alphabet = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    vocab = {spell(token): i for i, token in enumerate(tokenizer.token_bytes)}
    vocab.update(tokenizer.special_tokens)
    merges = "".join(f"{spell(tokenizer.token_bytes[a])} {spell(tokenizer.token_bytes[b])}\n"
                     for a, b in tokenizer.merges)
    return json.dumps(vocab), "#version: 0.2\n" + merges


def tokenizer_texts(tokenizer) -> dict[str, str]:
    """{file name: text} of the tokenizer files to write beside the weights."""
    if tokenizer is None:
        return {}
    texts = {MINIGPT_TOKENIZER_FILE: json.dumps(tokenizer.to_dict(), ensure_ascii=False) + "\n"}
    if is_gpt2_tokenizer(tokenizer):
        texts[VOCAB_FILE], texts[MERGES_FILE] = gpt2_tokenizer_files(tokenizer)
    return texts
