"""Training BPE fast: the same merges as `naive.py`, without recounting the whole text.

Three ideas make it fast, none changes the answer:

1. Real text repeats itself. Tiny Shakespeare's 263k pre-split pieces are only 15k
   distinct strings, so we train on the distinct *words*, each with its frequency:
   a pair inside a word seen 900 times counts 900.
2. A merge only changes the words that contain the merged pair. We remember, for each
   pair, which words contain it, and after a merge we update the counts of just those
   words: subtract their old pairs, add their new ones.
3. The best pair comes from a heap of (-count, a, b), so the smallest entry is the most
   frequent pair and, among equals, the smallest pair of ids: the naive trainer's tie rule.
   Counts change after each merge; rather than fix entries inside the heap we push a fresh
   entry whenever a count grows and, when an entry pops whose count is out of date,
   push it back with its true count ("lazy deletion").
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict

from minigpt.tokenizer.naive import count_merges, get_stats, merge
from minigpt.tokenizer.patterns import resolve_pattern, split_text


def train_fast(text: str, vocab_size: int, pattern="gpt4", special_tokens=()) -> list[tuple[int, int]]:
    """The list of merges, identical to `train_naive(text, vocab_size, pattern, special_tokens)`."""
    num_merges = count_merges(text, vocab_size, special_tokens)
    # 1. distinct pieces with their frequencies
    piece_counts = Counter(split_text(text, resolve_pattern(pattern), special_tokens))
    words = [list(piece.encode("utf-8")) for piece in piece_counts]
    freqs = list(piece_counts.values())

    # 2. count every pair once, and remember which words hold it
    pair_counts: dict[tuple[int, int], int] = {}
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs)):
        get_stats(word, pair_counts, freq)
        for pair in zip(word, word[1:]):
            pair_words[pair].add(w)

    # 3. a heap whose smallest entry is the best pair
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < num_merges and heap:
        neg_count, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count <= 0:  # the pair has vanished from the text
            continue
        if -neg_count != count:  # out of date: re-file under its true count
            heapq.heappush(heap, (-count, a, b))
            continue
        new_id = 256 + len(merges)
        merges.append((a, b))
        grown = _apply_merge(words, freqs, pair_counts, pair_words, (a, b), new_id)
        for pair in grown:
            heapq.heappush(heap, (-pair_counts[pair], *pair))
    return merges


def _apply_merge(words, freqs, pair_counts, pair_words, pair, new_id) -> set[tuple[int, int]]:
    """Merge `pair` in every word that holds it, updating the pair counts.

    Returns the pairs whose count grew: only pairs holding the new token can grow."""
    grown = set()
    for w in pair_words.pop(pair):
        old = words[w]
        new = merge(old, pair, new_id)
        if len(new) == len(old):  # a stale entry: an earlier merge already took this pair
            continue
        freq = freqs[w]
        get_stats(old, pair_counts, -freq)  # take out the word's old pairs
        for p in zip(new, new[1:]):  # put in its new ones, noting those that hold the new token
            pair_counts[p] = pair_counts.get(p, 0) + freq
            if new_id in p:
                pair_words[p].add(w)
                grown.add(p)
        words[w] = new
    pair_counts.pop(pair, None)  # every occurrence is merged: its count is now 0
    return grown
