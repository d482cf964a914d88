"""The Tokenizer: a byte-level BPE vocabulary plus the rules to encode and decode with it.

A vocabulary is 256 single-byte tokens, then one token per merge (merge i makes token
256 + i from two earlier tokens), then the special tokens. Encoding follows tiktoken
exactly: split the text with the pattern, then inside each piece repeatedly join the
neighbouring pair whose joined bytes have the lowest rank (id), until no neighbours join.

A tokenizer is stored as readable JSON (`to_dict`): the pattern, the merges as lines
"a b", the special tokens, and, for GPT-2 whose first 256 ids are the bytes in a shuffled
order, that order. `save` also writes a `.vocab` file that shows every token as text.
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

from minigpt.tokenizer.encode import LONG_PIECE, merge_long_piece, merge_piece
from minigpt.tokenizer.patterns import pre_split, resolve_pattern, special_regex

FORMAT_VERSION = 1
CACHE_LIMIT = 200_000  # pre-tokens remembered by encode; plenty for a corpus, bounded for a stream


class Tokenizer:
    """Byte-level BPE with tiktoken's encode/decode semantics.

    merges:         merges[i] = (a, b): token 256 + i is token a followed by token b
    pattern:        "gpt2", "gpt4", a regex string, or None (no pre-split)
    special_tokens: {text: id}; ids must lie above the merged tokens
    byte_order:     the byte each of ids 0..255 stands for (default: id i is byte i)
    """

    def __init__(self, merges, pattern="gpt4", special_tokens=None, byte_order=None):
        self.byte_order = list(range(256)) if byte_order is None else [int(b) for b in byte_order]
        if sorted(self.byte_order) != list(range(256)):
            raise ValueError("byte_order must list each of the 256 byte values exactly once")
        self.merges = [(int(a), int(b)) for a, b in merges]
        # the bytes of every ordinary token, in id order, and the way back (bytes -> id)
        token_bytes = [bytes([b]) for b in self.byte_order]
        ranks = {token: rank for rank, token in enumerate(token_bytes)}
        for i, (a, b) in enumerate(self.merges):
            new_id = 256 + i
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {i} ({a} {b}) uses a token that does not exist before id {new_id}")
            token = token_bytes[a] + token_bytes[b]
            if token in ranks:  # encoding finds tokens by their bytes, so they must be unique
                raise ValueError(f"token {new_id} ({a} {b}) repeats the bytes {token!r} of token {ranks[token]}")
            token_bytes.append(token)
            ranks[token] = new_id
        self.token_bytes = token_bytes
        self.ranks = ranks
        self.pattern = resolve_pattern(pattern)
        self.special_tokens = self._check_specials(special_tokens or {})
        self.decoder = dict(enumerate(token_bytes))  # id -> bytes, specials included
        self.decoder.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        self.n_vocab = max(self.decoder) + 1
        self._cache = _PieceCache(self._encode_piece)

    def _check_specials(self, special_tokens: dict) -> dict[str, int]:
        specials = {}
        for text, i in dict(special_tokens).items():
            if not isinstance(text, str) or not text or isinstance(i, bool) or not isinstance(i, int):
                raise ValueError(f"special token {text!r}: {i!r} must map a non-empty string to an int id")
            if i < len(self.token_bytes):
                raise ValueError(f"special token {text!r} has id {i}, which is already an ordinary token")
            if text.encode("utf-8") in self.ranks:
                raise ValueError(f"special token {text!r} collides with learned token {self.ranks[text.encode()]}")
            if i in specials.values():
                raise ValueError(f"special token {text!r} reuses id {i}")
            specials[text] = i
        return specials

    # ----------------------------------------------------------------- training

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern="gpt4", special_tokens=None, naive: bool = False):
        """Learn vocab_size - 256 - len(special_tokens) merges from `text` (see fast.py, naive.py).

        Special tokens (a list of strings) get the last ids; they are cut out of the
        training text, so none is ever learned. Fewer merges result if the text runs
        out of pairs. pattern=None makes the whole text one piece: fine for a paragraph,
        slow for a corpus (every merge then rewrites the entire text)."""
        from minigpt.tokenizer.fast import train_fast
        from minigpt.tokenizer.naive import train_naive

        specials = list(special_tokens or [])
        for s in specials:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
            if len(s.encode("utf-8")) == 1:
                raise ValueError(f"special token {s!r} collides with the byte token for {s!r}")
        if len(set(specials)) != len(specials):
            raise ValueError(f"special tokens repeat: {specials}")
        trainer = train_naive if naive else train_fast
        merges = trainer(text, vocab_size, pattern, specials)
        first = 256 + len(merges)
        return cls(merges, pattern, {s: first + k for k, s in enumerate(specials)})

    # ----------------------------------------------------------------- encoding

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of `text`, treating special-token text as plain text."""
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:  # lone surrogates: replace them by U+FFFD, as tiktoken does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return self._encode_ordinary(text)

    def _encode_ordinary(self, text: str) -> list[int]:
        pieces = pre_split(text, self.pattern)
        # the cache hands back each piece's ids, running BPE only for pieces it has not seen
        return list(chain.from_iterable(map(self._cache.__getitem__, pieces)))

    def _encode_piece(self, text: str) -> tuple[int, ...]:
        """Token ids of one piece (see encode.py)."""
        piece = text.encode("utf-8")
        rank = self.ranks.get(piece)
        if rank is not None:  # most common pieces are already one token
            return (rank,)
        if len(piece) >= LONG_PIECE:  # the scan is O(n^2); the heap version scales
            return tuple(merge_long_piece(piece, self.ranks))
        return tuple(merge_piece(piece, self.ranks))

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Token ids of `text`, with tiktoken's rules for special tokens.

        allowed_special: specials to encode as their ids ("all" or a set).
        disallowed_special: specials whose text in the input raises ValueError ("all" =
        every special not allowed). Specials in neither set are encoded as plain text."""
        if allowed_special == "all":
            allowed_special = set(self.special_tokens)
        if disallowed_special == "all":
            disallowed_special = set(self.special_tokens) - set(allowed_special)
        if disallowed_special:
            found = special_regex(frozenset(disallowed_special)).search(text)
            if found:
                raise ValueError(
                    f"text contains the special token {found.group()!r}, which is disallowed; pass"
                    f" allowed_special={{{found.group()!r}}} to encode it as a special token, or"
                    f" disallowed_special=() to encode it as plain text"
                )
        if not allowed_special:
            return self.encode_ordinary(text)
        unknown = set(allowed_special) - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special names tokens this tokenizer lacks: {sorted(unknown)}")
        ids, start = [], 0
        for found in special_regex(frozenset(allowed_special)).finditer(text):
            ids.extend(self.encode_ordinary(text[start : found.start()]))
            ids.append(self.special_tokens[found.group()])
            start = found.end()
        ids.extend(self.encode_ordinary(text[start:]))
        return ids

    # ----------------------------------------------------------------- decoding

    def decode_bytes(self, ids) -> bytes:
        """The bytes the ids stand for; a token may hold part of a UTF-8 character."""
        if not hasattr(ids, "__len__"):  # an iterator: keep it, to name a bad id below
            ids = list(ids)
        try:
            return b"".join(map(self.decoder.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not _is_int(i) or i not in self.decoder)
            raise ValueError(f"token id {bad!r} is not in the vocabulary (n_vocab={self.n_vocab})") from None

    def decode(self, ids) -> str:
        """The text the ids stand for; invalid UTF-8 becomes U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @property
    def vocab_size(self) -> int:
        """The same as n_vocab: the name the rest of minigpt (and CharTokenizer) uses."""
        return self.n_vocab

    @property
    def eot_token(self) -> int | None:
        """The id of "<|endoftext|>", or None when this tokenizer has no such special."""
        return self.special_tokens.get("<|endoftext|>")

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, merges={len(self.merges)}, specials={len(self.special_tokens)})"

    # ----------------------------------------------------------------- files

    def to_dict(self) -> dict:
        """A JSON-serialisable description (embedded in checkpoints, written by `save`)."""
        d = {"type": "bpe", "version": FORMAT_VERSION, "pattern": self.pattern,
             "special_tokens": dict(self.special_tokens)}
        if self.byte_order != list(range(256)):
            d["byte_order"] = list(self.byte_order)
        d["merges"] = [f"{a} {b}" for a, b in self.merges]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        """Rebuild a tokenizer from `to_dict()`'s output, checking every field."""
        if not isinstance(d, dict) or d.get("type") != "bpe":
            raise ValueError("not a BPE tokenizer description (expected a dict with \"type\": \"bpe\")")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported tokenizer format version {d.get('version')!r}")
        missing = {"pattern", "special_tokens", "merges"} - set(d)
        if missing:
            raise ValueError(f"tokenizer description lacks {sorted(missing)} (truncated?)")
        if not isinstance(d["merges"], list) or not isinstance(d["special_tokens"], dict):
            raise ValueError("tokenizer description: merges must be a list and special_tokens a dict")
        merges = []
        for i, line in enumerate(d["merges"]):
            fields = line.split() if isinstance(line, str) else []
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise ValueError(f"merge {i} must be two token ids like \"104 101\", got {line!r}")
            merges.append((int(fields[0]), int(fields[1])))
        byte_order = d.get("byte_order")
        if byte_order is not None and (not isinstance(byte_order, list) or not all(_is_int(b) for b in byte_order)):
            raise ValueError("byte_order must be a list of 256 ints")
        return cls(merges, d["pattern"], d["special_tokens"], byte_order)

    def save(self, path) -> None:
        """Write `path` (JSON, see to_dict) and, beside it, a human-readable `.vocab` view."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        path.with_suffix(".vocab").write_text(self.vocab_view(), encoding="utf-8")

    @classmethod
    def load(cls, path) -> Tokenizer:
        """Read a file written by `save`; a malformed or truncated file raises ValueError naming it."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as err:  # not UTF-8 (UnicodeDecodeError), not JSON (JSONDecodeError)
            raise ValueError(f"{path} is not a tokenizer file (malformed or truncated JSON: {err})") from None
        try:
            return cls.from_dict(d)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def vocab_view(self) -> str:
        """One line per token: its id, its bytes as text, and the two tokens it merges."""
        lines = [f"{i:6d} [{render(self.token_bytes[i])}]" for i in range(256)]
        for i, (a, b) in enumerate(self.merges):
            parts = f"[{render(self.token_bytes[a])}] + [{render(self.token_bytes[b])}]"
            lines.append(f"{256 + i:6d} [{render(self.token_bytes[256 + i])}]  <- {parts}")
        lines += [f"{i:6d} {text}  (special)" for text, i in self.special_tokens.items()]
        return "\n".join(lines) + "\n"

    # constructors from OpenAI's files live in openai.py; attached here for one obvious API
    @classmethod
    def from_gpt2_files(cls, encoder_json, vocab_bpe) -> Tokenizer:
        from minigpt.tokenizer.openai import from_gpt2_files

        return from_gpt2_files(cls, encoder_json, vocab_bpe)

    @classmethod
    def from_tiktoken_file(cls, path, pattern="gpt4", special_tokens=None) -> Tokenizer:
        from minigpt.tokenizer.openai import from_tiktoken_file

        return from_tiktoken_file(cls, path, pattern, special_tokens)


class _PieceCache(dict):
    """piece -> its token ids; a missing piece is encoded on first use (and kept, up to a limit).

    Real text repeats its words, so after the first pages nearly every piece is a hit, and
    `map(cache.__getitem__, pieces)` runs at C speed."""

    def __init__(self, encode_piece):
        super().__init__()
        self.encode_piece = encode_piece

    def __missing__(self, piece: str) -> tuple[int, ...]:
        tokens = self.encode_piece(piece)
        if len(self) < CACHE_LIMIT:
            self[piece] = tokens
        return tokens


def render(token: bytes) -> str:
    """Bytes as readable text: valid UTF-8 as itself, control characters and stray bytes escaped."""
    text = token.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _is_int(x) -> bool:
    return hasattr(x, "__index__") and not isinstance(x, bool)
