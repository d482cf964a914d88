"""`python -m minigpt finetune instruct` end to end on a tiny random base and a small
instruction file: what it writes, that every saved response is the model's own greedy answer
ending at its end-of-text or at the limit, LoRA, a Hugging Face GPT-2 folder as the base, and
bad input as clear errors that leave no file behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import data_file
from minigpt import checkpoint
from minigpt.__main__ import main
from minigpt.data import CharTokenizer
from minigpt.finetune.instruct_data import format_example, format_prompt
from minigpt.finetune.instruct_generate import END_OF_TEXT, LENGTH_LIMIT
from minigpt.finetune.instruct_train import InstructConfig, finetune_instruct
from minigpt.model import GPT, GPTConfig
from minigpt.tokenizer import Tokenizer

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "paper", "light", "music", "table"]


def small_examples(n=40):
    """n short examples; the first two share their prompt (kept in one split)."""
    examples = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        if i % 3:
            examples.append({"instruction": f"Repeat the word {word}.", "input": "", "output": word})
        else:
            examples.append({"instruction": "Repeat the word.", "input": f"{word} {i}", "output": f"{word} {i}"})
    examples[1] = dict(examples[0], output="Apple.")
    return examples


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "small.json"
    path.write_text(json.dumps(small_examples()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    text = " ".join(format_example(e) for e in small_examples())
    return Tokenizer.train(text, 400, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer):
    """A tiny random base with a BPE tokenizer, saved as a minigpt run."""
    out = tmp_path_factory.mktemp("base")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32), seed=0)
    checkpoint.save_checkpoint(out, model, None, tokenizer, iteration=0)
    return out


def run_cli(*argv):
    return main(["finetune", "instruct", *map(str, argv), "--no-progress"])


def check_responses(model, tokenizer, responses, max_new_tokens):
    """Each response is the greedy continuation model.forward gives (no KV cache), cut where
    the model chose end-of-text ("end-of-text") or after max_new_tokens ("length-limit")."""
    eot = tokenizer.eot_token
    for item in responses:
        prompt = tokenizer.encode(format_prompt({"instruction": item["instruction"], "input": item["input"]}))
        ids = item["response_ids"]
        assert tokenizer.decode(ids) == item["response"] and eot not in ids
        logits, _ = model.forward(np.array([prompt + ids]))  # (1, T, V)
        chosen = logits[0, len(prompt) - 1:].argmax(axis=-1)  # what the model picks after each prefix
        np.testing.assert_array_equal(chosen[: len(ids)], ids)
        if item["stopped"] == END_OF_TEXT:
            assert chosen[len(ids)] == eot
        else:
            assert item["stopped"] == LENGTH_LIMIT and len(ids) == max_new_tokens


def test_finetune_instruct_writes_everything_and_the_loss_falls(base, data, tokenizer, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--base", base, "--data", data, "--out-dir", out, "--epochs", "3", "--lr", "3e-3",
                   "--batch-size", "4", "--warmup-steps", "2", "--max-new-tokens", "6") == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.jsonl", "loss.png", "model.safetensors", "state.json", "results.json",
            "test_responses.json"} <= names
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2, 3] and [row["iter"] for row in rows] == [0, 9, 18, 27]
    results = json.loads((out / "results.json").read_text())
    assert results["split_sizes"] == {"train": 34, "val": 2, "test": 4}
    assert results["test_loss_before"] == rows[0]["test_loss"] and results["test_loss_after"] == rows[-1]["test_loss"]
    assert results["test_loss_after"] < results["test_loss_before"] - 1.0  # it learned the format
    assert results["wall_time_s"] > 0 and results["interrupted"] is False and results["mask_prompt"] is False
    responses = json.loads((out / "test_responses.json").read_text())
    assert len(responses) == 4
    assert {"instruction", "input", "reference", "response", "stopped", "rouge_l_f1"} <= set(responses[0])
    assert results["rouge_l_f1"] == pytest.approx(np.mean([r["rouge_l_f1"] for r in responses]))
    assert (results["responses_stopped_at_end_of_text"] + results["responses_stopped_at_length_limit"]) == 4
    model, saved_tokenizer, state = checkpoint.load_model(out)  # the tuned model is a minigpt run
    assert state["finetune"]["task"] == "instruct" and saved_tokenizer.to_dict() == tokenizer.to_dict()
    check_responses(model, tokenizer, responses, max_new_tokens=6)
    # a second run into the same folder is allowed (it is this command's output)
    assert run_cli("--base", base, "--data", data, "--out-dir", out, "--epochs", "1", "--max-new-tokens", "2") == 0


def test_mask_prompt_trains_on_the_responses_only(base, data, tmp_path):
    config = dict(base=str(base), data=str(data), epochs=1, batch_size=8, max_new_tokens=2, progress=False)
    plain = finetune_instruct(InstructConfig(out_dir=str(tmp_path / "plain"), **config), log=lambda *a: None)
    masked = finetune_instruct(InstructConfig(out_dir=str(tmp_path / "masked"), mask_prompt=True, **config),
                               log=lambda *a: None)
    assert masked.results["mask_prompt"] is True
    # the response-only loss is reported either way, and is what the masked run trains on
    assert masked.results["test_response_loss_before"] == masked.results["test_loss_before"]
    assert plain.results["test_response_loss_before"] == pytest.approx(masked.results["test_loss_before"], rel=1e-6)
    # the same random base, scored on other targets: the loss before training differs
    assert masked.results["test_loss_before"] != pytest.approx(plain.results["test_loss_before"], rel=1e-3)


def test_lora_saves_adapters_and_a_merged_model_that_answers_alike(base, data, tokenizer, tmp_path):
    out = tmp_path / "lora"
    before, _, _ = checkpoint.load_model(base)
    result = finetune_instruct(InstructConfig(base=str(base), data=str(data), out_dir=str(out), train="lora",
                                              lora_rank=2, epochs=1, lr=3e-3, max_new_tokens=4, progress=False),
                               log=lambda *a: None)
    np.testing.assert_array_equal(result.model.flat_params, before.flat_params)  # the base is untouched
    assert (out / "adapters.json").exists() and result.results["trainable_fraction"] < 0.2
    merged, _, _ = checkpoint.load_model(out)
    idx = np.array([tokenizer.encode("Repeat the word apple.")])
    np.testing.assert_allclose(merged.forward(idx)[0], result.model.forward(idx)[0], atol=1e-5)
    check_responses(merged, tokenizer, result.responses, max_new_tokens=4)


def test_a_hugging_face_gpt2_folder_is_a_base_as_gpt2_will_be(data, tmp_path):
    """--base gpt2 loads a Hugging Face folder with GPT-2's 50,257-token vocabulary and its
    tokenizer; a tiny random model of that vocabulary goes through the same path."""
    data_file("gpt2-encoder")
    data_file("gpt2-vocab")
    hf = tmp_path / "hf"
    GPT(GPTConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=8), seed=0).save_pretrained(hf)
    out = tmp_path / "run"
    assert run_cli("--base", hf, "--data", data, "--out-dir", out, "--epochs", "1", "--max-new-tokens", "2") == 0
    results = json.loads((out / "results.json").read_text())
    assert "Hugging Face GPT-2 folder" in results["base"] and results["split_sizes"]["test"] == 4


def assert_refused(capsys, argv, message, out):
    assert run_cli(*argv, "--out-dir", out) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_bad_input_is_a_clear_error_that_writes_nothing(base, data, tmp_path, capsys):
    out = tmp_path / "never"
    missing = tmp_path / "missing_key.json"
    examples = small_examples()
    del examples[5]["output"]
    missing.write_text(json.dumps(examples), encoding="utf-8")
    assert_refused(capsys, ["--base", base, "--data", missing], "example 5: the key 'output' is missing", out)

    char_base = tmp_path / "char"
    char_tok = CharTokenizer.from_text("abcdefgh ")
    checkpoint.save_checkpoint(char_base, GPT(GPTConfig(vocab_size=char_tok.vocab_size, block_size=16, n_layer=1,
                                                        n_head=1, n_embd=8)), None, char_tok, iteration=0)
    assert_refused(capsys, ["--base", char_base, "--data", data], "character-level tokenizer", out)

    assert_refused(capsys, ["--base", base, "--data", data, "--max-length", "20", "--no-truncate"],
                   "are longer than the context of 20 tokens", out)
    assert_refused(capsys, ["--base", base, "--data", data, "--lora", "2", "--lora-targets", "c_atn"],
                   "LoRA target 'c_atn' names no linear layer", out)
    assert_refused(capsys, ["--base", base, "--data", data, "--lora", "0"], "rank must be a positive integer", out)
    assert_refused(capsys, ["--base", base, "--data", data, "--max-length", "65"],
                   "exceeds the base's context of 64 tokens", out)
    few = tmp_path / "few.json"
    few.write_text(json.dumps(small_examples(5)), encoding="utf-8")
    assert_refused(capsys, ["--base", base, "--data", few], "split is empty", out)

    # never into a pretraining run, such as the base itself
    assert run_cli("--base", base, "--data", data, "--out-dir", base) == 1
    assert "is the base's folder" in capsys.readouterr().err
    state_before = (base / "state.json").read_bytes()
    other = tmp_path / "other-run"
    checkpoint.save_checkpoint(other, GPT(GPTConfig(vocab_size=400, block_size=8, n_layer=1, n_head=1, n_embd=8)))
    assert run_cli("--base", base, "--data", data, "--out-dir", other) == 1
    assert "holds a pretraining run" in capsys.readouterr().err
    assert (base / "state.json").read_bytes() == state_before


def test_examples_longer_than_the_context_are_truncated_with_a_warning(base, data, tmp_path):
    said = []
    result = finetune_instruct(InstructConfig(base=str(base), data=str(data), out_dir=str(tmp_path / "cut"),
                                              max_length=20, epochs=1, max_new_tokens=2, progress=False),
                               log=said.append)
    assert result.results["truncated_examples"] == 40  # every example is longer than 20 tokens
    assert any(line.startswith("warning: 40 example(s) are longer than 20 tokens") for line in said)


def test_ctrl_c_saves_answers_and_reports_the_interruption(base, data, tmp_path, monkeypatch):
    """The first Ctrl-C lets the step finish, then saves, evaluates, answers and writes results.json."""
    import os
    import signal

    from minigpt.finetune import instruct_train

    real = instruct_train.lm_backward
    calls = []

    def backward_then_ctrl_c(model, cache, n_blocks):
        real(model, cache, n_blocks)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(instruct_train, "lm_backward", backward_then_ctrl_c)
    out = tmp_path / "c"
    result = finetune_instruct(InstructConfig(base=str(base), data=str(data), out_dir=str(out), epochs=3,
                                              batch_size=4, max_new_tokens=2, progress=False), log=lambda *a: None)
    assert result.results["interrupted"] is True and result.results["steps"] == 2
    assert json.loads((out / "results.json").read_text())["interrupted"] is True
    assert checkpoint.load_model(out)[2]["iteration"] == 2
    assert len(json.loads((out / "test_responses.json").read_text())) == 4
