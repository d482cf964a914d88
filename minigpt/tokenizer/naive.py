"""Training BPE the way the chapter teaches it: count every pair, merge the best, repeat.

Byte-level BPE starts from the 256 bytes as tokens 0..255. Each round it counts how often
every pair of neighbouring tokens occurs, takes the most frequent pair (a, b), gives it
the next free id, and replaces every occurrence of (a, b) by that id. After k rounds the
vocabulary has 256 + k tokens and the text is shorter.

This version recounts all pairs in the whole text after every merge: O(merges x text).
It is the specification; `fast.py` computes exactly the same merges, much faster.

Both trainers break ties the same way, so their answers are identical: between equally
frequent pairs the smallest pair of ids wins, (a, b) < (c, d).
"""

from __future__ import annotations

from minigpt.tokenizer.patterns import resolve_pattern, split_text


def get_stats(ids: list[int], counts: dict | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Count each pair of neighbours in `ids`, adding to `counts` if given.

    Each occurrence counts `weight` (fast.py counts a word seen 900 times with weight=900,
    and uncounts it with weight=-900).

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def count_merges(text: str, vocab_size: int, special_tokens) -> int:
    """How many merges give `vocab_size` tokens (256 bytes + merges + specials), checking the inputs."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"training text must be a non-empty string, got {text!r:.40}")
    smallest = 256 + len(special_tokens)
    if not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ValueError(
            f"vocab_size must be at least 256 bytes + {len(special_tokens)} special tokens"
            f" = {smallest}, got {vocab_size!r}"
        )
    return vocab_size - smallest


def train_naive(text: str, vocab_size: int, pattern="gpt4", special_tokens=()) -> list[tuple[int, int]]:
    """The list of merges: merges[i] = (a, b) means token 256 + i is a followed by b."""
    num_merges = count_merges(text, vocab_size, special_tokens)
    # cut the text into pieces; BPE never merges across two pieces
    pieces = split_text(text, resolve_pattern(pattern), special_tokens)
    chunks = [list(piece.encode("utf-8")) for piece in pieces]
    merges = []
    for _ in range(num_merges):
        # count every pair of neighbours, in every piece; stop when no pairs are left
        counts = {}
        for chunk in chunks:
            get_stats(chunk, counts)
        if not counts:
            break
        # the most frequent pair wins; ties go to the smallest pair of ids
        pair = min(counts, key=lambda p: (-counts[p], p))
        new_id = 256 + len(merges)
        # replace it everywhere by a new token
        chunks = [merge(chunk, pair, new_id) for chunk in chunks]
        merges.append(pair)
    return merges
