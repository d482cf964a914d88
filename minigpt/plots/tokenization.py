"""Figures of chapter 1, tokenization: how a text is cut into tokens, and what a bigger
vocabulary buys."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import StrMethodFormatter

from minigpt.plots.base import finish, new_figure

__all__ = ["plot_segments", "plot_vocab_size_vs_length", "show_segment"]

SEGMENT_COLOURS = ["#cfe2f3", "#fce5cd", "#d9ead3", "#f4cccc", "#fff2cc", "#d9d2e9"]  # soft, told apart


def show_segment(segment: bytes | str) -> str:
    """A token or piece as the figures print it: a space as ␣, a newline as ↵, a tab as →,
    and bytes that are not a whole UTF-8 character as \\xNN."""
    text = segment.decode("utf-8", errors="backslashreplace") if isinstance(segment, bytes) else segment
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "→")


def plot_segments(rows: dict, out_png=None, title: str | None = None) -> Figure:
    """Several ways of cutting one text, one row each, every segment a coloured box.

    rows: {label: segments}, segments a list of str or bytes (tokens, characters, pre-split
    pieces) whose concatenation is the text. Boxes are one character cell wide per printed
    character (see show_segment), so rows of the same text line up where their cuts agree
    only when the printed widths agree: read each row on its own."""
    shown = {label: [show_segment(s) for s in segments] for label, segments in rows.items()}
    widest = max((sum(len(s) for s in segments) for segments in shown.values()), default=1)
    fig, ax = new_figure(max(4.0, 1.6 + 0.125 * widest), 0.3 + 0.42 * len(shown))
    for row, (label, segments) in enumerate(shown.items()):
        y = len(shown) - 1 - row  # first row on top
        x = 0
        for k, text in enumerate(segments):
            width = max(len(text), 1)
            ax.add_patch(Rectangle((x + 0.04, y + 0.12), width - 0.08, 0.76, facecolor=SEGMENT_COLOURS[k % len(SEGMENT_COLOURS)],
                                   edgecolor="#888888", linewidth=0.6))
            ax.text(x + width / 2, y + 0.5, text, ha="center", va="center", family="monospace", fontsize=9)
            x += width
        ax.text(x + 0.6, y + 0.5, f"{len(segments)}", ha="left", va="center", fontsize=8, color="#555555")
    ax.set_xlim(-0.2, widest + 3)
    ax.set_ylim(0, len(shown))
    ax.set_yticks([len(shown) - 0.5 - row for row in range(len(shown))], list(shown))
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, fontsize=10)
    return finish(fig, out_png)


def plot_vocab_size_vs_length(vocab_sizes, n_tokens, n_bytes: int, references: dict | None = None,
                              out_png=None, title: str | None = None) -> Figure:
    """How many tokens one text takes, against the vocabulary size of the tokenizer.

    vocab_sizes, n_tokens: a family of BPE tokenizers (e.g. the first k merges of one
    training run) and the number of tokens each makes of the text, drawn as a line.
    n_bytes: the text's length in UTF-8 bytes (what 256 byte tokens make of it).
    references: {label: (vocab_size, n_tokens)} for other tokenizers on the same text
    (characters, GPT-2, cl100k_base), drawn as separate points.
    Left: the sequence length; right: bytes per token, n_bytes / n_tokens."""
    references = references or {}
    fig, (left, right) = new_figure(9, 3.6, ncols=2)
    for ax, values, ylabel in [(left, list(n_tokens), "tokens in the text"),
                               (right, [n_bytes / n for n in n_tokens], "bytes per token")]:
        ax.plot(vocab_sizes, values, marker="o", label="BPE trained on the corpus")
        for k, (label, (size, count)) in enumerate(references.items()):
            value = count if ax is left else n_bytes / count
            ax.plot([size], [value], marker="s^Dv"[k % 4], linestyle="none", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("vocabulary size (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    left.axhline(n_bytes, color="grey", linestyle=":", label=f"bytes ({n_bytes:,})")
    left.set_ylim(bottom=0)
    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    right.set_ylim(bottom=0)
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return finish(fig, out_png)
