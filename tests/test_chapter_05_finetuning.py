"""Chapter 5, fine-tuning: its grader catches plausible wrong answers, and its notebook runs
and shows what the reading claims (pooling reads the last real token whatever the padding,
the LoRA backward passes finite differences, a merged model gives the adapted model's
logits, a new adapter changes nothing, the instruction targets are masked as described,
what each training choice costs)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import data_file
from course_helpers import check_wrong_answers_are_caught, execute_notebook, flawed

# Plausible wrong answers, each named <exercise>__<what is wrong>. They are pasted into a
# copy of solutions.py, so they may use only what it imports (np, IGNORE_INDEX, LINEAR_LAYERS):
# no helpers of this file (the test below also checks that each is wrong for its own reason).

IGNORE_INDEX = -100  # as in solutions.py (the default arguments below are evaluated here too)
LINEAR_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")

# --- 5.1 last_token_pool


def last_token_pool__the_last_position_padding_or_not(h, lengths):
    return h[:, -1]  # right for the longest sequence only


def last_token_pool__off_by_one(h, lengths):
    return h[np.arange(h.shape[0]), np.minimum(np.asarray(lengths), h.shape[1] - 1)]  # the first padding position


def last_token_pool__mean_over_real_tokens(h, lengths):
    mask = np.arange(h.shape[1])[None, :] < np.asarray(lengths)[:, None]  # (B, T)
    return ((h * mask[..., None]).sum(axis=1) / np.asarray(lengths)[:, None]).astype(h.dtype)


def last_token_pool__the_first_token(h, lengths):
    return h[:, 0]  # a BERT habit: in a causal model the first token has read nothing else


def last_token_pool__always_float32(h, lengths):
    return h[np.arange(h.shape[0]), np.asarray(lengths) - 1].astype(np.float32)  # "models run in float32"


# --- 5.2 last_token_pool_backward


def last_token_pool_backward__gradient_at_the_last_position(dpooled, lengths, T):
    dh = np.zeros((dpooled.shape[0], T, dpooled.shape[1]), dtype=dpooled.dtype)
    dh[:, -1] = dpooled
    return dh


def last_token_pool_backward__spread_over_every_real_token(dpooled, lengths, T):
    lengths = np.asarray(lengths)
    mask = np.arange(T)[None, :] < lengths[:, None]
    return (mask[..., None] * dpooled[:, None, :]).astype(dpooled.dtype)  # as if every real token were pooled


def last_token_pool_backward__computed_in_float64(dpooled, lengths, T):
    dh = np.zeros((dpooled.shape[0], T, dpooled.shape[1]))  # float64, whatever dpooled is
    dh[np.arange(dpooled.shape[0]), np.asarray(lengths) - 1] = dpooled
    return dh


def last_token_pool_backward__scales_dpooled_in_place(dpooled, lengths, T):
    dpooled *= 0.5  # right values, but the caller's gradient is halved
    dh = np.zeros((dpooled.shape[0], T, dpooled.shape[1]), dtype=dpooled.dtype)
    dh[np.arange(dpooled.shape[0]), np.asarray(lengths) - 1] = 2 * dpooled
    return dh


# --- 5.3 trainable_parameters


def trainable_parameters__last_k_without_ln_f(config, n_classes, train, last_k=1, rank=8, targets=LINEAR_LAYERS):
    C = config.n_embd
    b = int(config.bias)
    layernorm = C + b * C
    block = 2 * layernorm + sum(i * o + b * o for i, o in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)])
    head = C * n_classes + n_classes
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    return {"head": head, "last-k": head + last_k * block,  # forgets the final layernorm
            "all": head + (config.vocab_size + config.block_size) * C + config.n_layer * block + layernorm,
            "lora": head + config.n_layer * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)}[train]


def trainable_parameters__untied_lm_head_counted(config, n_classes, train, last_k=1, rank=8, targets=LINEAR_LAYERS):
    C = config.n_embd
    b = int(config.bias)
    layernorm = C + b * C
    block = 2 * layernorm + sum(i * o + b * o for i, o in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)])
    head = C * n_classes + n_classes
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    everything = (2 * config.vocab_size + config.block_size) * C  # wte twice: but the LM head is tied to it
    return {"head": head, "last-k": head + last_k * block + layernorm,
            "all": head + everything + config.n_layer * block + layernorm,
            "lora": head + config.n_layer * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)}[train]


def trainable_parameters__lora_counts_the_full_product(config, n_classes, train, last_k=1, rank=8,
                                                       targets=LINEAR_LAYERS):
    C = config.n_embd
    b = int(config.bias)
    layernorm = C + b * C
    block = 2 * layernorm + sum(i * o + b * o for i, o in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)])
    head = C * n_classes + n_classes
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    return {"head": head, "last-k": head + last_k * block + layernorm,
            "all": head + (config.vocab_size + config.block_size) * C + config.n_layer * block + layernorm,
            "lora": head + config.n_layer * sum(shapes[t][0] * shapes[t][1] for t in targets)}[train]  # in * out


def trainable_parameters__head_without_bias(config, n_classes, train, last_k=1, rank=8, targets=LINEAR_LAYERS):
    C = config.n_embd
    b = int(config.bias)
    layernorm = C + b * C
    block = 2 * layernorm + sum(i * o + b * o for i, o in [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)])
    head = C * n_classes  # the head's bias trains too
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    return {"head": head, "last-k": head + last_k * block + layernorm,
            "all": head + (config.vocab_size + config.block_size) * C + config.n_layer * block + layernorm,
            "lora": head + config.n_layer * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)}[train]


def trainable_parameters__numpy_int64(config, n_classes, train, last_k=1, rank=8, targets=LINEAR_LAYERS):
    C = config.n_embd
    b = int(config.bias)
    layernorm = C + b * C
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    block = 2 * layernorm + sum(np.prod(shape) + b * shape[1] for shape in shapes.values())
    head = np.prod((C, n_classes)) + n_classes  # np.prod: the right count, as a NumPy int64
    return {"head": head, "last-k": head + last_k * block + layernorm,
            "all": head + (config.vocab_size + config.block_size) * C + config.n_layer * block + layernorm,
            "lora": head + config.n_layer * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)}[train]


# --- 5.4 lora_linear_forward


def lora_linear_forward__alpha_not_divided_by_rank(x, weight, bias, lora_A, lora_B, alpha):
    return x @ weight + bias + alpha * ((x @ lora_A) @ lora_B)


def lora_linear_forward__rank_over_alpha(x, weight, bias, lora_A, lora_B, alpha):
    return x @ weight + bias + (lora_A.shape[1] / alpha) * ((x @ lora_A) @ lora_B)


def lora_linear_forward__adapter_replaces_the_weight(x, weight, bias, lora_A, lora_B, alpha):
    return bias + (alpha / lora_A.shape[1]) * ((x @ lora_A) @ lora_B)  # forgets x W


def lora_linear_forward__forms_the_product_AB(x, weight, bias, lora_A, lora_B, alpha):
    return x @ (weight + (alpha / lora_A.shape[1]) * (lora_A @ lora_B)) + bias  # right values, an (in, out) A B


def lora_linear_forward__scales_A_in_place(x, weight, bias, lora_A, lora_B, alpha):
    lora_A *= alpha / lora_A.shape[1]  # the scale folded into the caller's A: scaled again at each call
    return x @ weight + bias + (x @ lora_A) @ lora_B


def lora_linear_forward__converted_then_forms_the_product(x, weight, bias, lora_A, lora_B, alpha):
    lora_A, lora_B = np.asarray(lora_A), np.asarray(lora_B)  # "to be safe": plain arrays from here on
    return x @ (weight + (alpha / lora_A.shape[1]) * (lora_A @ lora_B)) + bias  # right values, an (in, out) A B


# --- 5.5 lora_linear_backward


def lora_linear_backward__dx_without_the_adapter_path(dout, x, weight, lora_A, lora_B, alpha):
    s = alpha / lora_A.shape[1]
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    du = s * (d2 @ lora_B.T)
    return (d2 @ weight.T).reshape(x.shape), x2.T @ du, s * ((x2 @ lora_A).T @ d2)  # dx: only through W


def lora_linear_backward__scale_applied_twice_in_dA(dout, x, weight, lora_A, lora_B, alpha):
    s = alpha / lora_A.shape[1]
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    du = s * (d2 @ lora_B.T)
    return (d2 @ weight.T + du @ lora_A.T).reshape(x.shape), s * (x2.T @ du), s * ((x2 @ lora_A).T @ d2)


def lora_linear_backward__dB_without_scale(dout, x, weight, lora_A, lora_B, alpha):
    s = alpha / lora_A.shape[1]
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    du = s * (d2 @ lora_B.T)
    return (d2 @ weight.T + du @ lora_A.T).reshape(x.shape), x2.T @ du, (x2 @ lora_A).T @ d2


def lora_linear_backward__dx_adapter_term_without_scale(dout, x, weight, lora_A, lora_B, alpha):
    s = alpha / lora_A.shape[1]
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    du = s * (d2 @ lora_B.T)
    dx = d2 @ weight.T + (d2 @ lora_B.T) @ lora_A.T  # the adapter's path without alpha / r
    return dx.reshape(x.shape), x2.T @ du, s * ((x2 @ lora_A).T @ d2)


def lora_linear_backward__scales_dout_in_place(dout, x, weight, lora_A, lora_B, alpha):
    s = alpha / lora_A.shape[1]
    dout *= s  # right gradients, but the caller's dout is scaled
    x2, d2 = x.reshape(-1, x.shape[-1]), dout.reshape(-1, dout.shape[-1])
    du = d2 @ lora_B.T
    return ((d2 / s) @ weight.T + du @ lora_A.T).reshape(x.shape), x2.T @ du, (x2 @ lora_A).T @ d2


# --- 5.6 merge_lora


def merge_lora__in_place(weight, lora_A, lora_B, alpha):
    weight += (alpha / lora_A.shape[1]) * (lora_A @ lora_B)  # changes the base
    return weight


def merge_lora__alpha_not_divided_by_rank(weight, lora_A, lora_B, alpha):
    return (weight + alpha * (lora_A @ lora_B)).astype(weight.dtype)


def merge_lora__float64_result(weight, lora_A, lora_B, alpha):
    return weight + (alpha / lora_A.shape[1]) * (lora_A.astype(np.float64) @ lora_B)  # float32 in, float64 out


def merge_lora__scales_A_in_place(weight, lora_A, lora_B, alpha):
    lora_A *= alpha / lora_A.shape[1]  # the weight is left alone, but the adapter is changed
    return (weight + lora_A @ lora_B).astype(weight.dtype)


# --- 5.7 instruction_batch


def instruction_batch__first_end_of_text_masked_too(examples, eot_id, mask_prompt=False, ignore_index=IGNORE_INDEX):
    sequences = [list(p) + list(r) + [eot_id] for p, r in examples]
    padded = np.full((len(sequences), max(len(s) for s in sequences)), eot_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        padded[row, : len(s)] = s
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()
    targets[targets == eot_id] = ignore_index  # the model never learns to stop
    if mask_prompt:
        for row, (prompt, _) in enumerate(examples):
            targets[row, : len(prompt) - 1] = ignore_index
    return inputs, targets


def instruction_batch__padding_kept_as_targets(examples, eot_id, mask_prompt=False, ignore_index=IGNORE_INDEX):
    sequences = [list(p) + list(r) + [eot_id] for p, r in examples]
    padded = np.full((len(sequences), max(len(s) for s in sequences)), eot_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        padded[row, : len(s)] = s
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()  # every padding end-of-text is a target
    if mask_prompt:
        for row, (prompt, _) in enumerate(examples):
            targets[row, : len(prompt) - 1] = ignore_index
    return inputs, targets


def instruction_batch__prompt_mask_one_too_far(examples, eot_id, mask_prompt=False, ignore_index=IGNORE_INDEX):
    sequences = [list(p) + list(r) + [eot_id] for p, r in examples]
    padded = np.full((len(sequences), max(len(s) for s in sequences)), eot_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        padded[row, : len(s)] = s
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()
    for row, ((prompt, _), s) in enumerate(zip(examples, sequences)):
        targets[row, len(s) - 1:] = ignore_index
        if mask_prompt:
            targets[row, : len(prompt)] = ignore_index  # also hides the response's first token
    return inputs, targets


def instruction_batch__ignores_ignore_index(examples, eot_id, mask_prompt=False, ignore_index=IGNORE_INDEX):
    sequences = [list(p) + list(r) + [eot_id] for p, r in examples]
    padded = np.full((len(sequences), max(len(s) for s in sequences)), eot_id, dtype=np.int64)
    for row, s in enumerate(sequences):
        padded[row, : len(s)] = s
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()
    for row, ((prompt, _), s) in enumerate(zip(examples, sequences)):
        targets[row, len(s) - 1:] = -100  # always -100, whatever the caller asked for
        if mask_prompt:
            targets[row, : len(prompt) - 1] = -100
    return inputs, targets


def padding_shift__with_flaws(model, ids, n_pad, pad_id, right_read_at="the message's end", left_read_at="the row's end",
                              distance="largest", swapped=False, train_mode=False):
    """The measurement done right, unless one of its flaws is switched on (see `flawed`)."""
    if train_mode:
        model.train()  # "forward_hidden needs training mode": dropout on, and never switched back
    ids = np.asarray(ids, dtype=np.int64)
    pads = np.full(n_pad, pad_id, dtype=np.int64)
    end = len(ids) - 1  # the message's last token, in the unpadded and the right-padded row
    alone = model.forward_hidden(ids[None])[0, -1]
    right_row = model.forward_hidden(np.concatenate([ids, pads])[None])[0]
    left_row = model.forward_hidden(np.concatenate([pads, ids])[None])[0]
    right = right_row[{"the message's end": end, "the row's end": -1}[right_read_at]]  # row's end: a padding token
    left = left_row[{"the row's end": -1, "the message's end": end}[left_read_at]]
    measure = {"largest": lambda d: np.max(np.abs(d)), "mean": lambda d: np.mean(np.abs(d)),
               "euclidean": np.linalg.norm}[distance]
    shifts = float(measure(right - alone)), float(measure(left - alone))
    return shifts[::-1] if swapped else shifts


padding_shift__reads_the_rows_last_position = flawed(padding_shift__with_flaws, "reads_the_rows_last_position",
                                                     right_read_at="the row's end")
padding_shift__left_read_where_the_message_ended_unpadded = flawed(
    padding_shift__with_flaws, "left_read_where_the_message_ended_unpadded", left_read_at="the message's end")
padding_shift__mean_difference = flawed(padding_shift__with_flaws, "mean_difference", distance="mean")
padding_shift__euclidean_distance = flawed(padding_shift__with_flaws, "euclidean_distance", distance="euclidean")
padding_shift__left_and_right_swapped = flawed(padding_shift__with_flaws, "left_and_right_swapped", swapped=True)
padding_shift__leaves_model_in_train_mode = flawed(padding_shift__with_flaws, "leaves_model_in_train_mode",
                                                   train_mode=True)


def padding_shift__right_assumed_zero(model, ids, n_pad, pad_id):
    ids = np.asarray(ids, dtype=np.int64)
    pads = np.full(n_pad, pad_id, dtype=np.int64)
    alone = model.forward_hidden(ids[None])[0, -1]
    left = model.forward_hidden(np.concatenate([pads, ids])[None])[0, -1]
    return 0.0, float(np.max(np.abs(left - alone)))  # "causal, so 0": asserted, not measured


def padding_shift__feeds_right_but_asserts_zero(model, ids, n_pad, pad_id):
    ids = np.asarray(ids, dtype=np.int64)
    pads = np.full(n_pad, pad_id, dtype=np.int64)
    alone = model.forward_hidden(ids[None])[0, -1]
    model.forward_hidden(np.concatenate([ids, pads])[None])  # run, never read: "causal, so 0"
    left = model.forward_hidden(np.concatenate([pads, ids])[None])[0, -1]
    return 0.0, float(np.max(np.abs(left - alone)))


def padding_shift__no_alone_run(model, ids, n_pad, pad_id):
    ids = np.asarray(ids, dtype=np.int64)
    pads = np.full(n_pad, pad_id, dtype=np.int64)
    right = model.forward_hidden(np.concatenate([ids, pads])[None])[0, len(ids) - 1]
    alone = right  # "right padding changes nothing": the right-padded row as reference, right 0 by construction
    left = model.forward_hidden(np.concatenate([pads, ids])[None])[0, -1]
    return float(np.max(np.abs(right - alone))), float(np.max(np.abs(left - alone)))


WRONG_ANSWERS = [
    last_token_pool__the_last_position_padding_or_not, last_token_pool__off_by_one,
    last_token_pool__mean_over_real_tokens, last_token_pool__the_first_token, last_token_pool__always_float32,
    last_token_pool_backward__gradient_at_the_last_position, last_token_pool_backward__spread_over_every_real_token,
    last_token_pool_backward__computed_in_float64, last_token_pool_backward__scales_dpooled_in_place,
    trainable_parameters__last_k_without_ln_f, trainable_parameters__untied_lm_head_counted,
    trainable_parameters__lora_counts_the_full_product, trainable_parameters__head_without_bias,
    trainable_parameters__numpy_int64,
    lora_linear_forward__alpha_not_divided_by_rank, lora_linear_forward__rank_over_alpha,
    lora_linear_forward__adapter_replaces_the_weight, lora_linear_forward__forms_the_product_AB,
    lora_linear_forward__scales_A_in_place, lora_linear_forward__converted_then_forms_the_product,
    lora_linear_backward__dx_without_the_adapter_path, lora_linear_backward__scale_applied_twice_in_dA,
    lora_linear_backward__dB_without_scale, lora_linear_backward__dx_adapter_term_without_scale,
    lora_linear_backward__scales_dout_in_place,
    merge_lora__in_place, merge_lora__alpha_not_divided_by_rank, merge_lora__float64_result,
    merge_lora__scales_A_in_place,
    instruction_batch__first_end_of_text_masked_too, instruction_batch__padding_kept_as_targets,
    instruction_batch__prompt_mask_one_too_far, instruction_batch__ignores_ignore_index,
    padding_shift__reads_the_rows_last_position, padding_shift__left_read_where_the_message_ended_unpadded,
    padding_shift__mean_difference, padding_shift__euclidean_distance, padding_shift__left_and_right_swapped,
    padding_shift__right_assumed_zero, padding_shift__feeds_right_but_asserts_zero, padding_shift__no_alone_run,
    padding_shift__leaves_model_in_train_mode,
]


def names_used(code) -> set[str]:
    """Every global name a function's code (its comprehensions included) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= names_used(const)
    return names


def test_the_wrong_answers_use_only_what_solutions_py_has():
    # each is pasted into solutions.py: a helper of this file would make it fail with a
    # NameError, "wrong" for a reason that says nothing about the grader
    for function in WRONG_ANSWERS:
        pasted = getattr(function, "func", function)  # a `flawed` variant pastes the answer it switches
        foreign = (names_used(pasted.__code__) & set(globals())) - {"np", "IGNORE_INDEX", "LINEAR_LAYERS"}
        assert not foreign, f"{function.__name__} uses {sorted(foreign)}, which solutions.py does not define"


def test_the_grader_catches_plausible_wrong_answers(tmp_path):
    check_wrong_answers_are_caught("05", tmp_path, WRONG_ANSWERS)


def test_the_figures_draw_what_they_claim():
    from minigpt import plots

    pooling = plots.plot_last_token_pooling([2, 4], 4)
    roles = pooling.axes[0].images[0].get_array()
    assert roles.tolist() == [[0, 2, 1, 1], [0, 0, 0, 2]]  # real, pooled (the last real token), padding
    targets = np.array([[-100, 8, 9, 50], [2, 50, -100, -100]])
    grid = plots.plot_instruction_targets(targets, [2, 1])
    # row 0: a masked prompt target, a response token, a response token, the end-of-text; row 1: response, eot, padding
    assert grid.axes[0].images[0].get_array().tolist() == [[0, 1, 1, 2], [1, 2, 3, 3]]
    rows = [{"name": "a", "test_accuracy": 0.9, "trainable_params": 10, "trainable_fraction": 0.1},
            {"name": "b", "test_accuracy": 0.8, "trainable_params": 20}]
    bars = plots.plot_training_choices(rows).axes[0].patches
    assert [round(bar.get_width(), 6) for bar in bars] == [90.0, 80.0]
    rows[0]["seeds"] = [{"test_accuracy": 0.9}, {"test_accuracy": 0.86}]  # compare --seeds: one dot per seed
    dots = plots.plot_training_choices(rows).axes[0].collections[0].get_offsets()
    assert np.round(np.asarray(dots), 6).tolist() == [[90.0, 1.0], [86.0, 1.0]]  # on row a's bar (the top one)


@pytest.mark.slow
def test_the_notebook_runs_and_shows_what_the_chapter_claims():
    data_file("sms-spam"), data_file("instructions")  # without them the notebook skips its training (CI has them)
    values, _ = execute_notebook("05-finetuning", [
        "max_pooling_error", "max_lora_error", "pooling_change", "last_position_change", "new_adapter_change",
        "preset_lora_fraction", "HAVE_SMS", "globals().get('merge_error')", "globals().get('base_unchanged')",
        "globals().get('head_accuracy')", "globals().get('lora_accuracy')", "HAVE_INSTRUCTIONS",
        "[row['name'] for row in rows] if rows else None"])
    assert values["max_pooling_error"] < 1e-7 and values["max_lora_error"] < 1e-7
    assert values["pooling_change"] < 1e-5 < 0.1 < values["last_position_change"]  # padding changes no real position
    assert values["new_adapter_change"] == 0.0  # B = 0: a new adapter is the base
    assert values["preset_lora_fraction"] <= 0.05  # rank 8 on the preset's shape
    assert values["HAVE_SMS"] and values["HAVE_INSTRUCTIONS"], "the data files were found, but not by the notebook"
    assert values["globals().get('merge_error')"] < 1e-6  # merged logits = adapted logits, float32
    assert values["globals().get('base_unchanged')"] is True  # LoRA training leaves the base bit-identical
    head, lora = values["globals().get('head_accuracy')"], values["globals().get('lora_accuracy')"]
    assert 0.6 < head < lora  # both learn in a short run; LoRA, adapting the features, learns more
    shown = values["[row['name'] for row in rows] if rows else None"]  # the committed table, loaded and drawn
    assert shown and shown[-1] == "bag of words + logistic regression" and len(shown) == 6, shown


def test_the_reading_quotes_the_committed_comparison():
    # section 7 copies the table of results/comparison.json (H-classify's measurement); if the
    # measurement is re-made, the reading (and the notebook's output) must follow
    import json
    from pathlib import Path

    from minigpt.finetune.compare import format_table

    chapter = Path(__file__).resolve().parents[1] / "chapters" / "05-finetuning"
    rows = json.loads((chapter / "results" / "comparison.json").read_text())
    assert format_table(rows) in (chapter / "README.md").read_text(), "section 7 quotes another table"
