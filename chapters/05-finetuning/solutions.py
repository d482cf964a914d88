"""Chapter 5 exercises: fine-tuning a pretrained GPT.

Eight exercises, in the order of the reading (chapters/05-finetuning/README.md) but the
last, which goes back to its section 3:

    5.1  last_token_pool           the hidden state of each sequence's last real token
    5.2  last_token_pool_backward  its gradient: a scatter back into (B, T, C)
    5.3  trainable_parameters      measure what each fine-tuning choice trains
    5.4  lora_linear_forward       a linear layer with a LoRA adapter, x W + b + (alpha/r) (x A) B
    5.5  lora_linear_backward      its gradients for x, A and B (W is frozen)
    5.6  merge_lora                fold the adapter into the weight: W + (alpha/r) A B
    5.7  instruction_batch         inputs and targets of instruction data: padding, -100, the prompt mask
    5.8  padding_shift             measure what padding on the right, and on the left, does to the last real token

Fill in the functions of exercises.py (this chapter's folder), replacing each
`raise NotImplementedError(...)`, and keep their names and signatures. Grade them with

    python -m minigpt grade 05

The grader checks each answer on inputs this file does not show you (other shapes, other
seeds, T = 1, sequences without padding) against minigpt's own code (minigpt.layers,
minigpt.finetune.classifier.GPTClassifier) or first principles. The backward passes (5.2,
5.5) are graded against central finite differences of a reference forward in float64
(relative error below 1e-7). Write the maths with NumPy yourself: calling the minigpt
function an exercise is graded against teaches nothing.
"""

import numpy as np

IGNORE_INDEX = -100  # a target equal to this is not predicted: no loss, no gradient
LINEAR_LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # the linear layers of every block


def last_token_pool(h, lengths):
    """Exercise 5.1: pool a batch of hidden states on each sequence's last real token.

    h (B, T, C) floats: the GPT body's output for B sequences padded on the right to T
    tokens; lengths (B,) integers in [1, T]: sequence b holds lengths[b] real tokens, then
    padding. Return pooled (B, C), of h's dtype, with pooled[b] = h[b, lengths[b] - 1]:
    the only position of a causal model that has read the whole text (and no padding)."""
    # BEGIN SOLUTION
    # HINT: fancy indexing with two index arrays, rows np.arange(B) and positions lengths - 1
    rows = np.arange(h.shape[0])  # (B,)
    return h[rows, np.asarray(lengths) - 1]  # (B, C): one row per sequence
    # END SOLUTION


def last_token_pool_backward(dpooled, lengths, T):
    """Exercise 5.2: the gradient of last_token_pool (5.1) with respect to h.

    dpooled (B, C) = dLoss/dpooled, lengths (B,) as in 5.1, T the padded length. Return
    dh (B, T, C), of dpooled's dtype: dLoss/dh for the h that 5.1 pooled."""
    # BEGIN SOLUTION
    # HINT: a gather's gradient is a scatter: zeros everywhere, dpooled[b] at position lengths[b] - 1 of row b
    B, C = dpooled.shape
    dh = np.zeros((B, T, C), dtype=dpooled.dtype)  # positions that were not read get no gradient
    dh[np.arange(B), np.asarray(lengths) - 1] = dpooled  # one position per row: no two writes collide
    return dh
    # END SOLUTION


def trainable_parameters(config, n_classes, train, last_k=1, rank=8, targets=LINEAR_LAYERS):
    """Exercise 5.3: how many parameters a fine-tuning choice trains (a measurement).

    config: a minigpt.model.GPTConfig (vocab_size, block_size, n_layer, n_embd, bias; the
    language-model head is tied to wte, so it adds nothing); a classification head of
    n_classes (a weight (n_embd, n_classes) and a bias (n_classes,), always present, always
    trained) sits on the body. train is one of
        "head"    the classification head only
        "last-k"  the head, the last last_k blocks and the final layernorm ln_f
        "all"     every parameter of the body (embeddings included) and the head
        "lora"    the head and LoRA adapters of the given rank on the layers named in
                  targets (a subset of LINEAR_LAYERS, in every block): an adapter on a
                  layer whose weight is (in, out) holds A (in, rank) and B (rank, out)
    A block holds ln_1, attn.c_attn (C, 3C), attn.c_proj (C, C), ln_2, mlp.c_fc (C, 4C) and
    mlp.c_proj (4C, C), each with a bias when config.bias (a layernorm: a weight (C,) and,
    with config.bias, a bias (C,)). Return a Python int."""
    # BEGIN SOLUTION
    # HINT: count by layer: a linear (in, out) has in*out + out (bias) weights, a layernorm C + C; the head is C*K + K
    C, b = config.n_embd, int(config.bias)
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    layernorm = C + b * C
    block = 2 * layernorm + sum(n_in * n_out + b * n_out for n_in, n_out in shapes.values())
    head = C * n_classes + n_classes
    if train == "head":
        return head
    if train == "last-k":
        return head + last_k * block + layernorm  # ln_f sits after the last block: it trains too
    if train == "all":
        embeddings = (config.vocab_size + config.block_size) * C  # wte (also the tied LM head) and wpe
        return head + embeddings + config.n_layer * block + layernorm
    adapters = sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)  # A (in, r) + B (r, out)
    return head + config.n_layer * adapters
    # END SOLUTION


def lora_linear_forward(x, weight, bias, lora_A, lora_B, alpha):
    """Exercise 5.4: a linear layer with a LoRA adapter, computed in activation space.

    x (..., in), weight W (in, out), bias b (out,), lora_A (in, r), lora_B (r, out), alpha
    a positive number; r is the adapter's rank (lora_A.shape[1]). Return
        out = x W + b + (alpha / r) (x A) B        of shape (..., out)
    without forming the (in, out) product A B (x A is only (..., r) wide)."""
    # BEGIN SOLUTION
    # HINT: scale = alpha / r with r = lora_A.shape[1]; compute (x @ A) first, then @ B
    scale = alpha / lora_A.shape[1]
    u = x @ lora_A  # (..., r): the input, projected down
    return x @ weight + bias + scale * (u @ lora_B)  # (..., out)
    # END SOLUTION


def lora_linear_backward(dout, x, weight, lora_A, lora_B, alpha):
    """Exercise 5.5: the gradients of lora_linear_forward (5.4).

    dout (..., out) = dLoss/dout; x, weight, lora_A, lora_B, alpha as in 5.4 (x may have
    any number of leading dimensions). W and b are frozen: return only (dx, dA, dB), of
    the shapes of x (..., in), lora_A (in, r) and lora_B (r, out)."""
    # BEGIN SOLUTION
    # HINT: with u = x A and s = alpha/r: dB = s u^T dout, dA = s x^T (dout B^T), dx = dout W^T + s (dout B^T) A^T (rows flattened)
    scale = alpha / lora_A.shape[1]
    x2 = x.reshape(-1, x.shape[-1])  # (N, in): every leading position is a row
    d2 = dout.reshape(-1, dout.shape[-1])  # (N, out)
    du = scale * (d2 @ lora_B.T)  # (N, r): the gradient reaching u = x A
    dB = scale * ((x2 @ lora_A).T @ d2)  # (r, out)
    dA = x2.T @ du  # (in, r)
    dx = d2 @ weight.T + du @ lora_A.T  # (N, in): through W and through the adapter
    return dx.reshape(x.shape), dA, dB
    # END SOLUTION


def merge_lora(weight, lora_A, lora_B, alpha):
    """Exercise 5.6: fold a LoRA adapter into its layer's weight.

    weight W (in, out), lora_A (in, r), lora_B (r, out), alpha > 0. Return a new array
    W + (alpha / r) A B of W's shape and dtype (do not change weight: the base must stay as
    it was). A linear layer with the merged weight computes what 5.4 computes."""
    # BEGIN SOLUTION
    # HINT: the scale is alpha divided by the rank r = lora_A.shape[1]; W + scale * (A @ B) makes a new array
    scale = alpha / lora_A.shape[1]
    return (weight + scale * (lora_A @ lora_B)).astype(weight.dtype)  # (in, out), a new array
    # END SOLUTION


def instruction_batch(examples, eot_id, mask_prompt=False, ignore_index=IGNORE_INDEX):
    """Exercise 5.7: the inputs and targets of a batch of instruction examples.

    examples: a list of (prompt_ids, response_ids) pairs, lists of token ids (the prompt
    is the Alpaca-formatted instruction, ending with "### Response:"; both non-empty).
    Each example becomes the sequence s = prompt + response + [eot_id]; every sequence is
    padded on the right with eot_id to L = the longest len(s). Then, as in pretraining,
        inputs[b]  = padded[b][:-1]          shape (B, L - 1)
        targets[b] = padded[b][1:]           shape (B, L - 1)
    except that a target is set to ignore_index
      - where it is padding: every position after the first eot_id of s (that one stays a
        target: it teaches the model to stop), and
      - with mask_prompt, where the target is a token of the prompt (prompt[1:]).
    Return (inputs, targets), two int64 arrays."""
    # BEGIN SOLUTION
    # HINT: target t predicts s[t + 1]: it is padding when t >= len(s) - 1, and part of the prompt when t + 1 < len(prompt)
    sequences = [list(prompt) + list(response) + [eot_id] for prompt, response in examples]
    L = max(len(s) for s in sequences)
    padded = np.full((len(sequences), L), eot_id, dtype=np.int64)  # (B, L)
    for row, s in enumerate(sequences):
        padded[row, : len(s)] = s
    inputs, targets = padded[:, :-1].copy(), padded[:, 1:].copy()  # (B, L - 1) each
    positions = np.arange(L - 1)  # target t is the token s[t + 1]
    for row, ((prompt, _), s) in enumerate(zip(examples, sequences)):
        targets[row, positions >= len(s) - 1] = ignore_index  # padding after the first end-of-text
        if mask_prompt:
            targets[row, positions < len(prompt) - 1] = ignore_index  # the targets that are prompt tokens
    return inputs, targets
    # END SOLUTION


def padding_shift(model, ids, n_pad, pad_id):
    """Exercise 5.8 (a measurement): what padding does to the last real token's hidden state.

    model: a minigpt GPT in eval mode; ids (T0,) int64, a message's token ids; n_pad >= 1
    padding tokens pad_id, with T0 + n_pad <= model.config.block_size. Run the body,
    model.forward_hidden(ids (1, T) ...) -> h (1, T, C), on three sequences: the message
    alone, the message followed by n_pad pad_id (padded on the right, as minigpt pads), and
    n_pad pad_id followed by the message (padded on the left). For each padded one, find
    the hidden state of the message's last real token and measure its largest absolute
    difference from the unpadded message's last hidden state. Return (right, left), two
    floats. Which one is 0 (up to rounding), and why is the other not?"""
    # BEGIN SOLUTION
    # HINT: the last real token sits at position T0 - 1 in the right-padded row and at n_pad + T0 - 1 in the left-padded one
    ids = np.asarray(ids, dtype=np.int64)
    pads = np.full(n_pad, pad_id, dtype=np.int64)
    alone = model.forward_hidden(ids[None])[0, -1]  # (C,)
    right = model.forward_hidden(np.concatenate([ids, pads])[None])[0, len(ids) - 1]  # causal: padding comes after
    left = model.forward_hidden(np.concatenate([pads, ids])[None])[0, -1]  # positions shifted, padding attended to
    return float(np.max(np.abs(right - alone))), float(np.max(np.abs(left - alone)))
    # END SOLUTION
