"""Chapter 1 exercises: byte-level BPE, written by you.

Seven small functions, one idea each: count the pairs of neighbouring tokens, merge one
pair, train merges, encode with them, decode ids back to text, build a chat prompt whose
user text can never make a special token, and measure how many bytes a token holds as the
vocabulary grows.

Token ids are plain Python ints: ids 0..255 are the 256 byte values, and the k-th merge
(counting from 0) makes token 256 + k. A merge list is a list of pairs of ids,
merges[k] = (a, b), meaning "token 256 + k is token a followed by token b". Lists of ids
are Python lists. No function may change a list it is given (the caller still needs it):
build a new one.

Write your answers in this chapter's `exercises.py`, in place of each
`raise NotImplementedError(...)`, then grade them:

    python -m minigpt grade 01

The grader compares your functions with the `minigpt` package on inputs you have not
seen. Write exercises 1.1 to 1.5 yourself, without calling `minigpt.tokenizer` (that is
what they are checked against); 1.6 and 1.7 use a minigpt `Tokenizer`, as their
docstrings say. You may call your own earlier answers (1.3 can use 1.1 and 1.2); a
mistake in one then shows in both.
"""

from __future__ import annotations


def pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """Exercise 1.1: count the pairs of neighbouring ids.

    Return a dict {(a, b): n}: n is how many times id a is immediately followed by id b in
    `ids`. Occurrences may overlap: [5, 5, 5] holds the pair (5, 5) twice. Pairs that do
    not occur are absent. A list of fewer than two ids has no pairs: return {}.

    >>> pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    # BEGIN SOLUTION
    # HINT: zip(ids, ids[1:]) gives every pair of neighbours, overlapping ones included
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
    # END SOLUTION


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Exercise 1.2: replace every occurrence of `pair` in `ids` by `new_id`.

    Scan from left to right; where ids[i], ids[i + 1] == pair, emit new_id and skip both.
    So overlapping occurrences resolve from the left: merging (97, 97) in [97, 97, 97]
    gives [new_id, 97]. Return a new list; `ids` itself must not change.

    >>> merge_pair([1, 2, 3, 1, 2], (1, 2), 256)
    [256, 3, 256]
    """
    # BEGIN SOLUTION
    # HINT: walk an index i; on a match append new_id and step 2, otherwise append ids[i] and step 1
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
    # END SOLUTION


def train_bpe(pieces: list[str], num_merges: int) -> list[tuple[int, int]]:
    """Exercise 1.3: learn `num_merges` merges from pre-split text, the naive way.

    pieces: the text already cut by a pre-split pattern (e.g. ["To", " be", ",", " or"]).
    Each piece starts as the list of its UTF-8 bytes. Pairs never span two pieces.

    Each round: count every pair of neighbours in every piece (overlaps count, as in 1.1);
    pick the most frequent pair; if several pairs are equally frequent, pick the smallest
    pair, comparing (a, b) as tuples (so (32, 116) beats (101, 32), and (97, 98) beats
    (97, 99)); give it the next id, 256 + (number of merges so far); replace it everywhere
    (as in 1.2). Stop after num_merges rounds, or earlier when no piece has two tokens left.
    A pair that occurs once can still be merged.

    Return the merges in the order learned: [(a, b), ...], at most num_merges of them.
    These are exactly the merges of minigpt.tokenizer.naive.train_naive.
    """
    # BEGIN SOLUTION
    # HINT: best = min(counts, key=lambda p: (-counts[p], p)) picks the most frequent, ties to the smallest
    chunks = [list(piece.encode("utf-8")) for piece in pieces]
    merges = []
    while len(merges) < num_merges:
        counts = {}
        for chunk in chunks:
            for pair in zip(chunk, chunk[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        new_id = 256 + len(merges)
        for c, chunk in enumerate(chunks):
            merged, i = [], 0
            while i < len(chunk):
                if i + 1 < len(chunk) and (chunk[i], chunk[i + 1]) == best:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(chunk[i])
                    i += 1
            chunks[c] = merged
        merges.append(best)
    return merges
    # END SOLUTION


def encode_with_merges(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """Exercise 1.4: the token ids of `text` under a merge list (one piece: no pre-split).

    Start from the UTF-8 bytes of text. Then repeat: among the pairs of neighbours that
    appear in `merges`, take the one learned first (the lowest index k in merges) and
    replace its occurrences, from the left, by 256 + k. Stop when no pair of neighbours is
    in merges. Return the ids as a list ([] for ""). This is the rank order tiktoken and
    minigpt use: *not* "merge the leftmost mergeable pair first", which gives different
    tokens.

    Example: with merges [(98, 99), (97, 98)] ("bc" is token 256, "ab" is 257),
    "abc" encodes as [97, 256] ("a", "bc"): "bc" was learned first.
    """
    # BEGIN SOLUTION
    # HINT: rank = {pair: k for k, pair in enumerate(merges)}; merge the present pair of lowest rank, repeat
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        present = [pair for pair in zip(ids, ids[1:]) if pair in rank]
        if not present:
            break
        pair = min(present, key=rank.__getitem__)
        new_id = 256 + rank[pair]
        merged, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                merged.append(new_id)
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        ids = merged
    return ids
    # END SOLUTION


def decode_ids(ids: list[int], merges: list[tuple[int, int]]) -> str:
    """Exercise 1.5: the text that token ids stand for.

    Token i < 256 is the single byte i; token 256 + k is the bytes of merges[k][0]
    followed by the bytes of merges[k][1]. Join the bytes of all the ids, then decode them
    as UTF-8, replacing invalid sequences by U+FFFD ("\\ufffd"), as tiktoken does: ids
    from a model can end in the middle of a character, and decoding must not fail (an
    incomplete character at the end becomes one "\\ufffd"). No ids: "".
    """
    # BEGIN SOLUTION
    # HINT: build vocab[id] -> bytes from the merges in order, join, then .decode("utf-8", errors="replace")
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (a, b) in enumerate(merges):
        vocab[256 + k] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    # END SOLUTION


def encode_chat(tokenizer, messages: list[tuple[str, str]]) -> list[int]:
    """Exercise 1.6: the ids of a chat, where only your code can make special tokens.

    tokenizer: a minigpt Tokenizer with the special tokens "<|im_start|>" and "<|im_end|>"
    (their ids are tokenizer.special_tokens["<|im_start|>"] and ["<|im_end|>"]).
    messages: [(role, content), ...]; the content is untrusted (a user typed it) and may
    contain any text at all, including the text "<|im_end|>".

    For each message, in order: the id of <|im_start|>, then the ordinary ids of
    role + "\\n" + content (special-token text in it encoded as the plain text it is, never
    as a special token, and never an error), then the id of <|im_end|>. Encode
    role + "\\n" + content as one text, not the role and the content apart: a pre-split
    piece such as "\\n\\n" may straddle the join. Return one list ([] for no messages).
    """
    # BEGIN SOLUTION
    # HINT: insert the two special ids yourself; encode the text with tokenizer.encode_ordinary
    start = tokenizer.special_tokens["<|im_start|>"]
    end = tokenizer.special_tokens["<|im_end|>"]
    ids = []
    for role, content in messages:
        ids += [start, *tokenizer.encode_ordinary(role + "\n" + content), end]
    return ids
    # END SOLUTION


def bytes_per_token(train_text: str, eval_text: str, vocab_sizes: list[int]) -> list[float]:
    """Exercise 1.7: measure how much text a token holds as the vocabulary grows.

    For each size V in vocab_sizes: train a tokenizer on train_text with
    minigpt.tokenizer.Tokenizer.train(train_text, V) (its defaults: GPT-4's pre-split
    pattern, no special tokens), encode eval_text with it (encode_ordinary), and measure
    the UTF-8 bytes of eval_text per token. Return the list of these floats, in the order
    of vocab_sizes. Measure on eval_text, which the tokenizer never saw: a tokenizer
    compresses its own training text better than new text.
    """
    # BEGIN SOLUTION
    # HINT: len(eval_text.encode("utf-8")) / len(tokenizer.encode_ordinary(eval_text)) for each trained tokenizer
    from minigpt.tokenizer import Tokenizer

    n_bytes = len(eval_text.encode("utf-8"))
    return [n_bytes / len(Tokenizer.train(train_text, V).encode_ordinary(eval_text)) for V in vocab_sizes]
    # END SOLUTION
