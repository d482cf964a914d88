"""The four dropout sites of GPT.forward, each guarded on its own: the embeddings, the
attention weights, the attention output and the MLP output. Each must draw its mask, apply
it in the forward pass and again in the backward pass; removing any of the three steps at
any site fails a test here.

The model asks layers.dropout_mask for every mask, in a fixed order per forward: the
embeddings (B, T, C), then for each block the attention weights (B, H, T, T), the
attention output and the MLP output (B, T, C). The tests wrap that function to watch
the calls, and to keep one site's masks while switching the other sites off.
"""

from __future__ import annotations

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, layers
from minigpt.gradcheck import check_model

SITES = ["embeddings", "attention weights", "attention output", "mlp output"]


def site_of(call: int, n_layer: int) -> str:
    """Which site the call-th mask of a run of forwards is for (the order above)."""
    i = call % (1 + 3 * n_layer)  # masks per forward
    return "embeddings" if i == 0 else SITES[1 + (i - 1) % 3]


def only_at(site, monkeypatch, n_layer):
    """Make the model use its masks at `site` only (None, no dropout, elsewhere); return
    the list of (site, shape) of every mask asked for. Every mask is still drawn, so the
    random stream, and so each site's masks, are those of an unpatched model."""
    real = layers.dropout_mask
    calls = []

    def dropout_mask(shape, p, rng, dtype):
        mask = real(shape, p, rng, dtype)
        where = site_of(len(calls), n_layer)
        calls.append((where, tuple(shape)))
        return mask if site in (where, "all") else None

    monkeypatch.setattr(layers, "dropout_mask", dropout_mask)
    return calls


def tiny(n_layer=1, seed=0):
    """A float64 GPT with heavy dropout (half of every mask is zero) and a batch for it."""
    config = GPTConfig(vocab_size=7, block_size=6, n_layer=n_layer, n_head=2, n_embd=4, dropout=0.5)
    model = GPT(config, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 10)
    for p in model.params.values():  # away from zero biases and unit gains, so every path matters
        p += rng.normal(0, 0.1, p.shape)
    return model, rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))


def test_every_site_draws_one_mask_of_its_shape_per_forward(monkeypatch):
    model, idx, targets = tiny(n_layer=2)
    calls = only_at("all", monkeypatch, n_layer=2)
    model.forward(idx, targets)
    B, T, C, H = 2, 5, 4, 2
    block = [("attention weights", (B, H, T, T)), ("attention output", (B, T, C)), ("mlp output", (B, T, C))]
    assert calls == [("embeddings", (B, T, C))] + block + block


@pytest.mark.parametrize("site", SITES)
def test_each_site_changes_the_loss_when_its_mask_changes(site, monkeypatch):
    only_at(site, monkeypatch, n_layer=1)
    losses = []
    for seed in (0, 1):  # the same weights and batch, another dropout stream
        model, idx, targets = tiny()
        model.rng = np.random.default_rng([seed, 99])
        losses.append(float(model.forward(idx, targets)[1]))
    without = float(model.eval().forward(idx, targets)[1])  # no dropout anywhere
    assert losses[0] != losses[1]  # another mask at this site alone: another loss
    assert without not in losses


@pytest.mark.parametrize("site", SITES)
def test_each_site_backward_matches_finite_differences_with_its_masks_fixed(site, monkeypatch):
    """check_model replays the same masks in every forward it differentiates, so a site whose
    backward forgot its mask (or used another) shows up as a wrong gradient."""
    only_at(site, monkeypatch, n_layer=1)
    model, idx, targets = tiny()
    errors = check_model(model, idx, targets)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < 1e-6, sorted(errors.items(), key=lambda kv: -kv[1])[:3]
