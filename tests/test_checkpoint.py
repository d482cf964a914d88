"""Checkpoints: round trip, atomic saves, clear errors for broken files (minigpt/checkpoint.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from minigpt import GPT, GPTConfig, checkpoint
from minigpt.data import CharTokenizer
from minigpt.optim import AdamW


def trained_pieces(seed=0, steps=3):
    """A tiny model and optimizer that have taken a few real steps (non-zero moments)."""
    tok = CharTokenizer.from_text("abcdefgh ")
    model = GPT(GPTConfig(tok.vocab_size, 8, 2, 2, 8, dropout=0.1), seed=seed)
    opt = AdamW(model, lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, tok.vocab_size, (2, 8))
        model.zero_grad()
        model.forward(idx, np.roll(idx, -1, axis=1))
        model.backward()
        opt.step()
    return model, opt, tok, rng


def test_round_trip_weights_optimizer_rng_tokenizer(tmp_path):
    model, opt, tok, rng = trained_pieces()
    model.rng.random(5)  # move the dropout generator off its seed
    save_rng_state = rng.bit_generator.state
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=3, best_val_loss=2.5,
                               train_config={"lr": 0.01}, rng={"batches": save_rng_state})

    loaded, tok2, state = checkpoint.load_model(tmp_path)
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    assert loaded.config == model.config and loaded.dtype == model.dtype
    assert not loaded.training  # ready to sample
    assert tok2.encode("abc hg") == tok.encode("abc hg")
    assert state["iteration"] == 3 and state["best_val_loss"] == 2.5
    assert state["train_config"] == {"lr": 0.01}
    # both generators continue with the same numbers
    np.testing.assert_array_equal(loaded.rng.random(4), model.rng.random(4))
    restored = np.random.default_rng()
    restored.bit_generator.state = state["rng"]["batches"]
    np.testing.assert_array_equal(restored.integers(0, 100, 10), rng.integers(0, 100, 10))

    opt2 = AdamW(loaded, lr=1.0)
    checkpoint.load_optimizer_state(tmp_path, opt2, state)
    np.testing.assert_array_equal(opt2.m, opt.m)
    np.testing.assert_array_equal(opt2.v, opt.v)
    assert opt2.step_count == 3 and opt2.lr == 1e-2
    assert np.abs(opt.m).sum() > 0  # the test compares something


def test_weights_use_hugging_face_names_with_wte_once(tmp_path):
    from safetensors.numpy import load_file

    model, opt, tok, _ = trained_pieces()
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert set(weights) == set(model.params)
    assert "wte.weight" in weights and not any("lm_head" in k for k in weights)
    assert "h.1.attn.c_attn.weight" in weights
    assert weights["h.0.mlp.c_fc.weight"].shape == (8, 32)  # Conv1D layout: (in, out)
    state = json.loads((tmp_path / "state.json").read_text())  # plain JSON, readable by eye
    assert state["model_config"]["n_embd"] == 8


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    import os

    model, opt, tok, _ = trained_pieces()
    previous = os.umask(0o022)
    try:
        checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "optimizer.safetensors", "state.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_float64_models_round_trip(tmp_path):
    model = GPT(GPTConfig(5, 4, 1, 1, 4), seed=3, dtype=np.float64)
    checkpoint.save_checkpoint(tmp_path, model, None, CharTokenizer("abcde"), iteration=0)
    loaded, _, _ = checkpoint.load_model(tmp_path)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    old_model, opt, tok, _ = trained_pieces(seed=0)
    checkpoint.save_checkpoint(tmp_path, old_model, opt, tok, iteration=1)
    new_model, new_opt, _, _ = trained_pieces(seed=1)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint, "_write_json", crash)  # dies after the tensors are written
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save_checkpoint(tmp_path, new_model, new_opt, tok, iteration=2)
    monkeypatch.undo()

    loaded, _, state = checkpoint.load_model(tmp_path)
    assert state["iteration"] == 1
    np.testing.assert_array_equal(loaded.flat_params, old_model.flat_params)
    # and the next save works and replaces it
    checkpoint.save_checkpoint(tmp_path, new_model, new_opt, tok, iteration=2)
    loaded, _, state = checkpoint.load_model(tmp_path)
    assert state["iteration"] == 2
    np.testing.assert_array_equal(loaded.flat_params, new_model.flat_params)


def test_a_kill_while_moving_files_into_place_still_loads_one_checkpoint(tmp_path, monkeypatch):
    old_model, opt, tok, _ = trained_pieces(seed=0)
    checkpoint.save_checkpoint(tmp_path, old_model, opt, tok, iteration=1)
    new_model, new_opt, _, _ = trained_pieces(seed=1)

    import os

    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # 1: the commit rename, 2: model.safetensors moved, 3: killed
            raise KeyboardInterrupt("killed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(tmp_path, new_model, new_opt, tok, iteration=2)
    monkeypatch.undo()
    # OUT_DIR now holds the new weights beside the old state.json; the commit folder the rest
    assert (tmp_path / checkpoint.COMMIT_DIR).is_dir()

    loaded, _, state = checkpoint.load_model(tmp_path)
    assert state["iteration"] == 2  # the committed save wins, whole
    np.testing.assert_array_equal(loaded.flat_params, new_model.flat_params)
    opt2 = AdamW(loaded)
    checkpoint.load_optimizer_state(tmp_path, opt2, state)
    np.testing.assert_array_equal(opt2.m, new_opt.m)

    checkpoint.save_checkpoint(tmp_path, new_model, new_opt, tok, iteration=3)  # finishes, cleans up
    assert not (tmp_path / checkpoint.COMMIT_DIR).exists()
    assert checkpoint.load_model(tmp_path)[2]["iteration"] == 3


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in .*state.json is missing"):
        checkpoint.load_model(tmp_path)
    assert issubclass(checkpoint.CheckpointError, ValueError)


def _cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _narrow_the_config(path):
    state = json.loads(path.read_text())
    state["model_config"]["n_embd"] = 16
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("name, damage, message", [
    ("model.safetensors", _cut_in_half, "model.safetensors is truncated"),
    ("optimizer.safetensors", _cut_in_half, "optimizer.safetensors is truncated"),
    ("model.safetensors", Path.unlink, "incomplete: model.safetensors is missing"),
    ("state.json", lambda path: path.write_text(path.read_text()[:100]), "truncated or corrupt"),
    ("state.json", lambda path: path.write_text('{"hello": 1}'), "not a minigpt checkpoint"),
    ("state.json", _narrow_the_config, "model.safetensors does not fit the model config in .*state.json"),
], ids=["truncated weights", "truncated optimizer", "missing weights", "truncated state",
        "foreign state", "config does not fit"])  # fmt: skip
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, name, damage, message):
    model, opt, tok, _ = trained_pieces()
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    damage(tmp_path / name)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load_model(tmp_path)


def _set_tokenizer_entry(entry):
    def damage(path):
        state = json.loads(path.read_text())
        state["tokenizer"] = entry
        path.write_text(json.dumps(state))
    return damage


@pytest.mark.parametrize("entry, message", [
    ({"type": "morse"}, "unknown tokenizer type 'morse'"),
    ({"type": "char"}, "KeyError"),  # no characters at all
    ({"type": "char", "chars": 5}, "TypeError"),
    ({"type": "char", "chars": "aab"}, "repeated characters"),
    ({"type": "bpe", "version": 1, "pattern": "gpt4", "special_tokens": {}, "merges": ["1 2 3"]}, "merge 0"),
    ("char", "unknown tokenizer type None"),
    ({"type": "char", "chars": "abc"}, "its tokenizer has 3 tokens, the model's vocabulary 9"),
], ids=["unknown type", "no chars", "chars not a string", "repeated chars", "bad merge", "not a dict",
        "wrong size"])  # fmt: skip
def test_a_corrupt_tokenizer_entry_is_a_checkpoint_error(tmp_path, entry, message):
    model, opt, tok, _ = trained_pieces()
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    _set_tokenizer_entry(entry)(tmp_path / "state.json")
    with pytest.raises(checkpoint.CheckpointError, match=rf"state.json\b.*{message}"):
        checkpoint.load_model(tmp_path)


def test_tensors_of_another_dtype_are_a_checkpoint_error(tmp_path):
    """A hand-made model.safetensors in float16 (its hash updated to match) is refused by name,
    not silently cast into the float32 buffer."""
    from safetensors.numpy import save_file

    model, opt, tok, _ = trained_pieces()
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    save_file({k: v.astype(np.float16) for k, v in model.params.items()}, str(tmp_path / "model.safetensors"))
    state = json.loads((tmp_path / "state.json").read_text())
    state["sha256"]["model.safetensors"] = checkpoint.sha256_of(tmp_path / "model.safetensors")
    (tmp_path / "state.json").write_text(json.dumps(state))
    message = r"model.safetensors: tensor .* is float16, the checkpoint's dtype is float32"
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load_model(tmp_path)


def test_a_failed_optimizer_load_leaves_the_optimizer_untouched(tmp_path):
    model, opt, tok, _ = trained_pieces()
    checkpoint.save_checkpoint(tmp_path, model, opt, tok, iteration=0)
    state = checkpoint.load_state(tmp_path)
    state["optimizer"]["betas"] = 0.9  # not a pair
    fresh = AdamW(model, lr=0.5)
    with pytest.raises(checkpoint.CheckpointError, match="optimizer.safetensors .*does not fit"):
        checkpoint.load_optimizer_state(tmp_path, fresh, state)
    assert fresh.step_count == 0 and fresh.lr == 0.5 and not fresh.m.any() and not fresh.v.any()
