"""Regenerate the figures of chapter 2's reading: `python chapters/02-attention/figures.py`.

The same measurements as notebooks/02-attention.ipynb (with random draws of their own) and the
same training run (same seeds and settings, so the same model), drawn by minigpt.plots into
PNGs beside the README. About half a minute, most of it training the tiny GPT.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # tiny matrices: one BLAS thread is faster than two

import numpy as np  # noqa: E402  (after the thread setting, which numpy reads when it loads)

from minigpt import plots, tasks  # noqa: E402
from minigpt.kernels import reference  # noqa: E402
from minigpt.model import GPT, GPTConfig  # noqa: E402
from minigpt.optim import AdamW  # noqa: E402
from minigpt.train import train_step  # noqa: E402

HERE = Path(__file__).resolve().parent


def softmax_saturation(rng):
    """Largest softmax weight and gradient size against d, with and without 1/sqrt(d)."""
    dims, n_rows, n_keys = [4, 16, 64, 256, 1024], 256, 16
    max_prob = {"q.k / sqrt(d)": [], "q.k, not scaled": []}
    grad_size = {"q.k / sqrt(d)": [], "q.k, not scaled": []}
    for d in dims:
        qs = rng.standard_normal((n_rows, 1, d))
        ks = rng.standard_normal((n_rows, n_keys, d))
        raw = (qs @ ks.transpose(0, 2, 1))[:, 0]  # (n_rows, n_keys)
        upstream = rng.standard_normal(raw.shape)
        for label, scores in (("q.k / sqrt(d)", raw / math.sqrt(d)), ("q.k, not scaled", raw)):
            weights = reference.softmax_forward(scores)
            max_prob[label].append(weights.max(axis=1).mean())
            grad_size[label].append(np.abs(reference.softmax_backward(upstream, weights)).mean())
    plots.plot_softmax_saturation(dims, max_prob, grad_size, n_keys=n_keys, out_png=HERE / "softmax-saturation.png")


def causal_mask(rng):
    q, k = rng.standard_normal((2, 8, 16))
    scores = np.where(np.triu(np.ones((8, 8), dtype=bool), k=1), -np.inf, q @ k.T / 4.0)
    plots.plot_attention_maps({"scores, future masked (grey)": scores,
                               "attention weights": reference.softmax_forward(scores)},
                              out_png=HERE / "causal-attention.png")


def induction_heads():
    """The notebook's run: 2 layers, 2 heads, n_embd 32, 2000 steps on the repeated-segment task."""
    V, T, steps, lr = 32, 24, 2000, 3e-3
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=32), seed=0)
    eval_idx, eval_targets = tasks.repeated_segments(np.random.default_rng(99), 128, T, V)
    optimizer = AdamW(model, lr=lr, weight_decay=0.0)
    data_rng = np.random.default_rng(0)
    rows, train_losses = [], []
    for step in range(steps + 1):
        if step % 100 == 0:
            with model.evaluating():
                held_out = float(model.forward(eval_idx, eval_targets)[1])
            rows.append({"iter": step, "val_loss": held_out,
                         "train_loss": float(np.mean(train_losses[-100:])) if train_losses else held_out})
        if step < steps:
            loss, _ = train_step(model, optimizer, [tasks.repeated_segments(data_rng, 32, T, V)], lr, grad_clip=1.0)
            train_losses.append(loss)
    plots.plot_losses(rows, out_png=HERE / "task-loss.png",
                      title="the repeated-segment task: loss on the predictable positions")
    with model.evaluating():
        model.forward(eval_idx)
    plots.plot_attention_heads(model.attention_weights(), tokens=eval_idx[0], row=0,
                               out_png=HERE / "induction-heads.png")


if __name__ == "__main__":
    softmax_saturation(np.random.default_rng(1))
    causal_mask(np.random.default_rng(2))
    induction_heads()
    for png in sorted(HERE.glob("*.png")):
        print(f"{png.name}: {png.stat().st_size / 1000:.0f} KB")
