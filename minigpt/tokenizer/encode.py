"""BPE inside one pre-split piece, exactly as tiktoken does it.

Start from the piece's single bytes. Among all neighbouring pairs whose joined bytes are a
token, join the one with the lowest rank (the leftmost, if several share it); repeat until
no neighbours join. Ranks are token ids, and an earlier merge has a lower id, so this
replays the training merges in the order they were learned.

`merge_piece` is that rule written out: each step scans all joins, O(n^2) for n bytes,
which is also fastest for the short pieces of real text. A piece can be long (ten thousand
spaces, a text with no pre-split), where O(n^2) hurts: `merge_long_piece` gives the same
answer in O(n log n), keeping the joins in a heap and the parts in a linked list.
`Tokenizer._encode_piece` uses it for pieces of LONG_PIECE bytes or more.
"""

from __future__ import annotations

import heapq

LONG_PIECE = 64  # bytes; from about here on the heap version is faster


def merge_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Token ids of `piece` (which is not itself a token), with an O(n^2) scan."""
    never = len(ranks)  # ranks after every real token: "cannot join"
    parts = [piece[i : i + 1] for i in range(len(piece))]
    # join_ranks[i] = rank of parts[i] + parts[i + 1]
    join_ranks = [ranks.get(parts[i] + parts[i + 1], never) for i in range(len(parts) - 1)]
    while join_ranks:
        best = min(join_ranks)
        if best == never:
            break
        i = join_ranks.index(best)  # the leftmost of equally ranked joins
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del join_ranks[i]
        # only the joins touching the new part change
        if i > 0:
            join_ranks[i - 1] = ranks.get(parts[i - 1] + parts[i], never)
        if i < len(join_ranks):
            join_ranks[i] = ranks.get(parts[i] + parts[i + 1], never)
    return [ranks[part] for part in parts]


def merge_long_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """The same ids as `merge_piece`, in O(n log n): a heap of joins, parts as a linked list.

    A part is a byte range piece[start:end[start]]; the part after it starts at end[start].
    The heap holds (rank, start, stop): "join the part at start with the next part, which
    ends at stop". Parts only grow, so an entry is out of date exactly when its start is no
    longer a part or the next part no longer ends at stop; such entries are skipped."""
    n = len(piece)
    end = list(range(1, n + 1))  # end[start] for each live part
    prev = list(range(-1, n - 1))  # prev[start]: start of the part before it, -1 for none
    alive = [True] * n
    heap: list[tuple[int, int, int]] = []

    def push_join(start: int) -> None:
        nxt = end[start]
        if nxt < n:
            rank = ranks.get(piece[start : end[nxt]])
            if rank is not None:
                heapq.heappush(heap, (rank, start, end[nxt]))

    for start in range(n - 1):
        push_join(start)
    while heap:
        _, start, stop = heapq.heappop(heap)
        if not alive[start] or end[start] >= n or end[end[start]] != stop:
            continue  # out of date
        alive[end[start]] = False  # the next part is absorbed
        end[start] = stop
        if stop < n:
            prev[stop] = start
        if prev[start] >= 0:
            push_join(prev[start])
        push_join(start)
    ids, start = [], 0
    while start < n:
        ids.append(ranks[piece[start : end[start]]])
        start = end[start]
    return ids
