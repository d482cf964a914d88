"""AdamW, the learning-rate schedule and gradient clipping (minigpt/optim.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minigpt import GPT, GPTConfig
from minigpt.optim import AdamW, clip_grad_norm, decay_mask, lr_at


def tiny_model(dtype=np.float64, bias=True):
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=bias),
               seed=0, dtype=dtype)


# --- weight decay only on 2-D parameters ---------------------------------------------


def test_decay_mask_marks_exactly_the_matrices_and_embeddings():
    model = tiny_model()
    mask = decay_mask(model)
    for name, sl in model.param_slices.items():
        expected = 1.0 if name.endswith(".weight") and ".ln_" not in name and name != "ln_f.weight" else 0.0
        assert np.all(mask[sl] == expected), name
    assert mask[model.param_slices["wte.weight"]].all()  # embeddings are decayed
    assert mask[model.param_slices["wpe.weight"]].all()


def test_weight_decay_shrinks_only_2d_params():
    model = tiny_model()
    rng = np.random.default_rng(1)
    model.flat_params[...] = rng.normal(size=model.flat_params.size)
    before = {name: p.copy() for name, p in model.params.items()}
    opt = AdamW(model, lr=0.1, weight_decay=0.5)
    model.zero_grad()  # no gradient: the only change can be the decay
    opt.step()
    for name, p in model.params.items():
        if p.ndim >= 2:
            np.testing.assert_allclose(p, before[name] * (1 - 0.1 * 0.5), rtol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(p, before[name], err_msg=name)


# --- AdamW against PyTorch -------------------------------------------------------------


def test_adamw_matches_torch(torch):
    model = tiny_model()
    rng = np.random.default_rng(2)
    named = {name: torch.tensor(p.copy(), requires_grad=True) for name, p in model.params.items()}
    groups = [
        {"params": [t for n, t in named.items() if t.ndim >= 2], "weight_decay": 0.1},
        {"params": [t for n, t in named.items() if t.ndim < 2], "weight_decay": 0.0},
    ]
    reference = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    ours = AdamW(model, lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    for step in range(6):
        lr = 1e-2 * (step + 1) / 6  # a changing learning rate, as in training
        grads = rng.normal(size=model.flat_grads.size) * 10 ** rng.uniform(-3, 1)
        model.flat_grads[...] = grads
        for name, t in named.items():
            t.grad = torch.tensor(model.grads[name].copy())
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
        ours.step(lr)
    for name, t in named.items():
        np.testing.assert_allclose(model.params[name], t.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    assert ours.step_count == 6


def test_adamw_state_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(6, tiny_model().flat_grads.size))
    a, b = tiny_model(), tiny_model()
    opt_a = AdamW(a, lr=1e-2)
    for g in grads[:3]:
        a.flat_grads[...] = g
        opt_a.step()
    arrays, numbers = opt_a.state_dict()
    import json

    numbers = json.loads(json.dumps(numbers))  # must survive JSON
    b.flat_params[...] = a.flat_params
    opt_b = AdamW(b, lr=5.0, betas=(0.5, 0.5), weight_decay=0.0)  # wrong on purpose: overwritten
    opt_b.load_state_dict({k: v.copy() for k, v in arrays.items()}, numbers)
    for g in grads[3:]:
        for model, opt in ((a, opt_a), (b, opt_b)):
            model.flat_grads[...] = g
            opt.step()
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert opt_b.step_count == 6


def test_adamw_state_of_the_wrong_size_is_rejected():
    opt = AdamW(tiny_model())
    arrays, numbers = opt.state_dict()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"m": arrays["m"][:-1], "v": arrays["v"]}, numbers)


# --- the learning-rate schedule ---------------------------------------------------------


def test_warmup_is_linear_and_reaches_lr():
    lrs = [lr_at(it, 10, 100, 1e-3, 1e-4) for it in range(11)]
    steps = np.diff(lrs[:10])
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)  # a straight line
    assert steps[0] > 0 and lrs[0] > 0  # the first step already moves
    assert lrs[9] < 1e-3
    assert lrs[10] == pytest.approx(1e-3)  # warm-up done: the peak


def test_cosine_decays_to_min_lr_then_stays():
    lr, min_lr = 1e-3, 1e-4
    cosine = [lr_at(it, 10, 100, lr, min_lr) for it in range(10, 101)]
    assert all(a > b for a, b in zip(cosine[:-1], cosine[1:]))  # strictly decreasing
    assert lr_at(55, 10, 100, lr, min_lr) == pytest.approx((lr + min_lr) / 2)  # half way: the mean
    assert lr_at(100, 10, 100, lr, min_lr) == pytest.approx(min_lr)
    assert all(lr_at(it, 10, 100, lr, min_lr) == min_lr for it in range(100, 300, 7))
    # the shape is a cosine: (lr_t - min_lr) / (lr - min_lr) = (1 + cos(pi r)) / 2
    r = (30 - 10) / 90
    assert lr_at(30, 10, 100, lr, min_lr) == pytest.approx(min_lr + (lr - min_lr) * (1 + math.cos(math.pi * r)) / 2)


def test_schedule_without_warmup_starts_at_lr():
    assert lr_at(0, 0, 100, 1e-3, 1e-4) == pytest.approx(1e-3)
    assert lr_at(5, 5, 5, 1e-3, 1e-4) == pytest.approx(1e-4)  # no decay phase at all


# --- gradient clipping ----------------------------------------------------------------------


def test_clip_grad_norm_scales_to_max_norm():
    g = np.random.default_rng(4).normal(size=1000)
    before = np.linalg.norm(g)
    direction = g / before
    norm = clip_grad_norm(g, 1.0)
    assert before > 1.0 and norm == pytest.approx(before, rel=1e-10)  # returns the norm before clipping
    assert np.linalg.norm(g) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(g / np.linalg.norm(g), direction, rtol=1e-10)  # direction kept


def test_clip_grad_norm_leaves_small_gradients_alone():
    g = np.full(100, 0.01, dtype=np.float32)
    before = g.copy()
    norm = clip_grad_norm(g, 1.0)
    assert norm == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_array_equal(g, before)
    assert g.dtype == np.float32


def test_clip_grad_norm_zero_means_off_but_still_measures():
    g = np.full(4, 10.0)
    assert clip_grad_norm(g, 0.0) == pytest.approx(20.0)
    np.testing.assert_array_equal(g, 10.0)


def test_clip_grad_norm_reports_non_finite():
    g = np.array([1.0, np.inf, 2.0])
    assert not math.isfinite(clip_grad_norm(g, 1.0))


def test_clip_grad_norm_matches_torch(torch):
    g = np.random.default_rng(5).normal(size=300) * 3
    t = torch.tensor(g.copy(), requires_grad=True)
    t.grad = torch.tensor(g.copy())
    expected_norm = torch.nn.utils.clip_grad_norm_([t], 2.0).item()
    norm = clip_grad_norm(g, 2.0)
    assert norm == pytest.approx(expected_norm, rel=1e-12)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


# --- training a subset: parameter groups ------------------------------------------------


def test_frozen_parameters_see_neither_the_step_nor_the_decay():
    """AdamW over the last block + ln_f (a view of the tail of the buffer): everything
    before it stays bit-identical, although its gradients are large and decay is on."""
    from minigpt.optim import ParamGroup, param_group

    model = tiny_model()
    rng = np.random.default_rng(5)
    model.flat_params[...] = rng.normal(size=model.flat_params.size)
    tail = model.block_params_slice(1)
    before = model.flat_params.copy()
    head = GPT(GPTConfig(vocab_size=3, block_size=2, n_layer=1, n_head=1, n_embd=2), dtype=np.float64)
    head_before = head.flat_params.copy()
    opt = AdamW(groups=[param_group(model, tail), ParamGroup.of(head)], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        model.flat_grads[...] = rng.normal(size=model.flat_grads.size)  # frozen ones too
        head.flat_grads[...] = rng.normal(size=head.flat_grads.size)
        opt.step()
    np.testing.assert_array_equal(model.flat_params[: tail.start], before[: tail.start])
    assert np.all(model.flat_params[tail] != before[tail])
    assert np.all(head.flat_params != head_before)
    assert opt.m.shape == (model.flat_params[tail].size + head.flat_params.size,)


def test_adamw_on_a_subset_matches_torch_on_that_subset(torch):
    """The tail group, with its slice of the decay mask, against torch.optim.AdamW given
    only those parameters (its decayed and undecayed groups)."""
    from minigpt.optim import param_group

    model = tiny_model()
    tail = model.block_params_slice(1)
    names = [n for n, sl in model.param_slices.items() if sl.start >= tail.start]
    named = {n: torch.tensor(model.params[n].copy(), requires_grad=True) for n in names}
    reference = torch.optim.AdamW([
        {"params": [t for t in named.values() if t.ndim >= 2], "weight_decay": 0.1},
        {"params": [t for t in named.values() if t.ndim < 2], "weight_decay": 0.0},
    ], lr=1e-2, betas=(0.9, 0.99), eps=1e-8)
    ours = AdamW(groups=[param_group(model, tail)], lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    rng = np.random.default_rng(6)
    for _ in range(4):
        model.flat_grads[...] = rng.normal(size=model.flat_grads.size)
        for n, t in named.items():
            t.grad = torch.tensor(model.grads[n].copy())
        reference.step()
        ours.step()
    for n, t in named.items():
        np.testing.assert_allclose(model.params[n], t.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=n)


def test_groups_state_round_trip_and_clip_over_groups():
    from minigpt.optim import ParamGroup, param_group

    a, b = tiny_model(), tiny_model()
    groups = lambda m: [param_group(m, m.block_params_slice(1)), ParamGroup.of(m)]  # noqa: E731
    opt_a = AdamW(groups=groups(a), lr=1e-2)
    rng = np.random.default_rng(7)
    a.flat_grads[...] = rng.normal(size=a.flat_grads.size)
    opt_a.step()
    arrays, numbers = opt_a.state_dict()
    opt_b = AdamW(groups=groups(b), lr=1.0)
    b.flat_params[...] = a.flat_params
    opt_b.load_state_dict(arrays, numbers)
    for model, opt in ((a, opt_a), (b, opt_b)):
        model.flat_grads[...] = 3.0
        norm = clip_grad_norm([g.grads for g in opt.groups[:1]] + [model.flat_grads[:5]], 1.0)
        opt.step()
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    tail = a.flat_grads[a.block_params_slice(1)]
    assert norm == pytest.approx(3.0 * math.sqrt(tail.size + 5))  # one norm over every array given
    assert np.sqrt(np.sum(tail**2) + np.sum(a.flat_grads[:5] ** 2)) == pytest.approx(1.0, rel=1e-5)


def test_bad_groups_are_clear_errors():
    from minigpt.optim import ParamGroup

    model = tiny_model()
    with pytest.raises(ValueError, match="either a model"):
        AdamW()
    with pytest.raises(ValueError, match="either a model"):
        AdamW(model, groups=[ParamGroup.of(model)])
    with pytest.raises(ValueError, match="same shape"):
        ParamGroup(model.flat_params, model.flat_grads[:-1], np.ones(model.flat_params.size))
    with pytest.raises(ValueError, match="flat"):
        ParamGroup(model.params["wte.weight"], model.grads["wte.weight"], np.ones((11, 8)))
    with pytest.raises(ValueError, match="non-empty list of ParamGroup"):
        AdamW(groups=[])
    with pytest.raises(ValueError, match="2 parameter groups"):
        AdamW(groups=[ParamGroup.of(model), ParamGroup.of(tiny_model())]).params
