"""Pre-splitting: the regex that cuts text into pieces before BPE sees it.

BPE never merges across a piece boundary, so the pattern decides what a token *can* be:
with GPT-2's pattern a token never holds both letters and digits, and a word takes the
space in front of it (" world"), which is why the same word gets the same token
wherever it appears in a sentence.

The two patterns are tiktoken's spellings: `GPT2_PATTERN` is equivalent to the one in
OpenAI's original `encoder.py` (possessive quantifiers `++` only make it faster);
`GPT4_PATTERN` is cl100k_base's, which also matches contractions in any case ('S, 'LL),
caps digit runs at three, and keeps newlines with punctuation.
"""

from __future__ import annotations

import functools

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
NAMED_PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN, "cl100k": GPT4_PATTERN}


def resolve_pattern(pattern: str | None) -> str | None:
    """A pattern name ("gpt2", "gpt4") becomes its regex; a regex is checked; None stays None."""
    if pattern is None:
        return None
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be 'gpt2', 'gpt4', a regex string or None, got {pattern!r}")
    pattern = NAMED_PATTERNS.get(pattern, pattern)
    try:
        compile_pattern(pattern)
    except regex.error as err:
        raise ValueError(f"invalid pre-split regex {pattern!r}: {err}") from None
    return pattern


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str) -> regex.Pattern:
    return regex.compile(pattern)


@functools.lru_cache(maxsize=32)
def special_regex(specials: frozenset[str]) -> regex.Pattern:
    """One regex that finds any of `specials`; longer ones first, so a prefix never wins."""
    ordered = sorted(specials, key=lambda s: (-len(s), s))
    return regex.compile("|".join(regex.escape(s) for s in ordered))


def pre_split(text: str, pattern: str | None) -> list[str]:
    """The pieces of `text`: the pattern's matches, or the whole text as one piece if pattern is None."""
    if pattern is None:
        return [text] if text else []
    return compile_pattern(pattern).findall(text)


def split_text(text: str, pattern: str | None, special_tokens=()) -> list[str]:
    """The pieces BPE trains on: special tokens cut out of the text, the rest pre-split.

    Special tokens are never learned from: they separate pieces and then vanish."""
    parts = special_regex(frozenset(special_tokens)).split(text) if special_tokens else [text]
    return [piece for part in parts for piece in pre_split(part, pattern)]
