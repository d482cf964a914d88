"""The GPT classifier (minigpt/finetune/classifier.py): gradients against finite
differences and PyTorch, padding that cannot matter, exactly what trains for each choice,
and saving."""

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, kernels
from minigpt.finetune.classifier import GPTClassifier, load_classifier, save_classifier
from minigpt.gradcheck import check_classifier, tiny_classifier_case
from minigpt.optim import AdamW, clip_grad_norm
from minigpt.tokenizer import Tokenizer

CONFIG = GPTConfig(vocab_size=19, block_size=10, n_layer=3, n_head=2, n_embd=8)


def body(dtype=np.float64, seed=0):
    model = GPT(CONFIG, seed=seed, dtype=dtype)
    model.flat_params += np.random.default_rng(seed + 1).normal(0, 0.05, model.flat_params.shape).astype(dtype)
    return model


def batch():
    rng = np.random.default_rng(2)
    return rng.integers(0, 19, (4, 7)), np.array([7, 3, 1, 5]), np.array([1, 0, 1, 1])


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_classifier_gradients_match_finite_differences(backend):
    classifier, idx, lengths, labels = tiny_classifier_case()  # dropout on, padded rows
    with kernels.using(backend):
        errors = check_classifier(classifier, idx, lengths, labels)
    assert {"score.weight", "score.bias", "wte.weight", "h.1.mlp.c_fc.weight"} <= set(errors)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_classifier_matches_pytorch(dtype, tol, torch):
    """The same body, pooling and head in PyTorch: logits, loss and every gradient."""
    from minigpt.torch_reference import from_minigpt

    classifier = GPTClassifier(body(dtype), 3, train="all", seed=4)
    idx, lengths, labels = batch()
    labels = np.array([2, 0, 1, 1])
    logits, loss = classifier.forward(idx, lengths, labels)
    classifier.zero_grad()
    classifier.backward()

    torch_body = from_minigpt(classifier.body)
    weight = torch.tensor(classifier.head.params["score.weight"], requires_grad=True)
    bias = torch.tensor(classifier.head.params["score.bias"], requires_grad=True)
    h = torch_body.hidden(torch.from_numpy(idx))  # (B, T, C)
    pooled = h[torch.arange(4), torch.from_numpy(lengths - 1)]  # (B, C)
    t_logits = pooled @ weight + bias
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(labels))
    t_loss.backward()

    def relative(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    assert relative(logits, t_logits.detach().numpy()) < tol
    assert abs(float(loss) - t_loss.item()) < tol
    assert relative(classifier.head.grads["score.weight"], weight.grad.numpy()) < tol
    assert relative(classifier.head.grads["score.bias"], bias.grad.numpy()) < tol
    for name, p in torch_body.named_parameters():
        assert relative(classifier.body.grads[name], p.grad.numpy()) < tol, name


def test_padding_cannot_change_a_prediction():
    """A text alone, or padded in a batch with longer ones, by any pad id: the same logits."""
    classifier = GPTClassifier(body(), 2, train="all")
    seq = [3, 14, 15, 9]
    alone, _ = classifier.forward(np.array([seq]), np.array([4]))
    for pad in (0, 18):
        idx = np.array([seq + [pad] * 3, [1, 2, 3, 4, 5, 6, 7]])
        padded, _ = classifier.forward(idx, np.array([4, 7]))
        np.testing.assert_allclose(padded[0], alone[0], rtol=1e-12, atol=1e-13)
    moved, _ = classifier.forward(np.array([seq + [0] * 3]), np.array([5]))  # pooling a pad instead
    assert np.abs(moved[0] - alone[0]).max() > 1e-6  # lengths matter, so the test could fail


@pytest.mark.parametrize("train, trained", [
    ("head", set()),
    ("last-k", {"h.2.", "ln_f."}),
    ("all", {""}),
    ("lora", set()),
])
def test_each_choice_trains_exactly_its_part(train, trained):
    classifier = GPTClassifier(body(np.float32), 2, train=train, last_k=1,
                               lora={"rank": 2, "alpha": 4.0, "targets": ["c_attn"]})
    before = {n: p.copy() for n, p in classifier.body.params.items()}
    head_before = classifier.head.flat_params.copy()
    optimizer = AdamW(groups=classifier.parameter_groups(), lr=1e-2, weight_decay=0.1)
    idx, lengths, labels = batch()
    for _ in range(3):
        classifier.train()
        classifier.zero_grad()
        classifier.forward(idx, lengths, labels)
        classifier.backward()
        clip_grad_norm([g.grads for g in optimizer.groups], 1.0)
        optimizer.step()
    for name, p in classifier.body.params.items():
        should_move = any(name.startswith(prefix) for prefix in trained)
        assert np.array_equal(p, before[name]) != should_move, name
    assert np.all(classifier.head.flat_params != head_before)  # the head always trains
    if train == "lora":
        assert np.abs(classifier.body.lora.params["h.0.attn.c_attn.lora_B"]).max() > 0
        assert classifier.num_trainable() == classifier.body.lora.num_params() + classifier.head.num_params()


def test_head_only_stops_the_backward_at_ln_f_and_last_k_after_k_blocks():
    idx, lengths, labels = batch()
    for train, k, first_filled in (("head", 0, "ln_f.weight"), ("last-k", 2, "h.1.ln_1.weight")):
        classifier = GPTClassifier(body(), 2, train=train, last_k=max(k, 1))
        classifier.zero_grad()
        classifier.forward(idx, lengths, labels)
        classifier.backward()
        start = classifier.body.param_slices[first_filled].start
        assert not classifier.body.flat_grads[:start].any()  # nothing spent on frozen blocks
        assert classifier.body.flat_grads[start:].any()


def test_saved_classifier_predicts_the_same(tmp_path):
    tok = Tokenizer.train("spam ham " * 10, 258, special_tokens=["<|endoftext|>"])
    config = GPTConfig(vocab_size=258, block_size=10, n_layer=2, n_head=2, n_embd=8)
    for train in ("last-k", "lora"):
        classifier = GPTClassifier(GPT(config, dtype=np.float32), 2, train=train, lora={"rank": 2, "alpha": 2.0})
        if train == "lora":
            classifier.body.lora.flat_params[...] = 0.1
        idx, lengths, _ = batch()
        expected = classifier.predict_proba(idx, lengths)
        save_classifier(tmp_path / train, classifier, tok, ["ham", "spam"], base="a test")
        loaded, loaded_tok, labels, record = load_classifier(tmp_path / train)
        np.testing.assert_array_equal(loaded.predict_proba(idx, lengths), expected)
        assert labels == ["ham", "spam"] and record["train"] == train and loaded_tok.encode("spam") == tok.encode("spam")


def test_bad_classifier_settings_are_clear_errors():
    with pytest.raises(ValueError, match="at least 2 classes"):
        GPTClassifier(body(), 1)
    with pytest.raises(ValueError, match="train must be one of"):
        GPTClassifier(body(), 2, train="decoder")
    with pytest.raises(ValueError, match="last_k must be an integer from 1 to the base's 3 blocks"):
        GPTClassifier(body(), 2, train="last-k", last_k=4)
    with pytest.raises(ValueError, match="needs lora="):
        GPTClassifier(body(), 2, train="lora")
