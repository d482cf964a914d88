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
    raise NotImplementedError('fancy indexing with two index arrays, rows np.arange(B) and positions lengths - 1')


def last_token_pool_backward(dpooled, lengths, T):
    """Exercise 5.2: the gradient of last_token_pool (5.1) with respect to h.

    dpooled (B, C) = dLoss/dpooled, lengths (B,) as in 5.1, T the padded length. Return
    dh (B, T, C), of dpooled's dtype: dLoss/dh for the h that 5.1 pooled."""
    raise NotImplementedError("a gather's gradient is a scatter: zeros everywhere, dpooled[b] at position lengths[b] - 1 of row b")


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
    raise NotImplementedError('count by layer: a linear (in, out) has in*out + out (bias) weights, a layernorm C + C; the head is C*K + K')


def lora_linear_forward(x, weight, bias, lora_A, lora_B, alpha):
    """Exercise 5.4: a linear layer with a LoRA adapter, computed in activation space.

    x (..., in), weight W (in, out), bias b (out,), lora_A (in, r), lora_B (r, out), alpha
    a positive number; r is the adapter's rank (lora_A.shape[1]). Return
        out = x W + b + (alpha / r) (x A) B        of shape (..., out)
    without forming the (in, out) product A B (x A is only (..., r) wide)."""
    raise NotImplementedError('scale = alpha / r with r = lora_A.shape[1]; compute (x @ A) first, then @ B')


def lora_linear_backward(dout, x, weight, lora_A, lora_B, alpha):
    """Exercise 5.5: the gradients of lora_linear_forward (5.4).

    dout (..., out) = dLoss/dout; x, weight, lora_A, lora_B, alpha as in 5.4 (x may have
    any number of leading dimensions). W and b are frozen: return only (dx, dA, dB), of
    the shapes of x (..., in), lora_A (in, r) and lora_B (r, out)."""
    raise NotImplementedError('with u = x A and s = alpha/r: dB = s u^T dout, dA = s x^T (dout B^T), dx = dout W^T + s (dout B^T) A^T (rows flattened)')


def merge_lora(weight, lora_A, lora_B, alpha):
    """Exercise 5.6: fold a LoRA adapter into its layer's weight.

    weight W (in, out), lora_A (in, r), lora_B (r, out), alpha > 0. Return a new array
    W + (alpha / r) A B of W's shape and dtype (do not change weight: the base must stay as
    it was). A linear layer with the merged weight computes what 5.4 computes."""
    raise NotImplementedError('the scale is alpha divided by the rank r = lora_A.shape[1]; W + scale * (A @ B) makes a new array')


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
    raise NotImplementedError('target t predicts s[t + 1]: it is padding when t >= len(s) - 1, and part of the prompt when t + 1 < len(prompt)')


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
    raise NotImplementedError('the last real token sits at position T0 - 1 in the right-padded row and at n_pad + T0 - 1 in the left-padded one')
