"""Instruction data: the Alpaca format, the 85/5/10 split (fixed seed, duplicate prompts kept
together), truncation, and the batches' targets: -100 on padding (but not on the first
end-of-text) and, with mask_prompt, on exactly the prompt's targets."""

import json

import numpy as np
import pytest

from conftest import data_file
from minigpt.finetune.instruct_data import (IGNORE_INDEX, collate, encode_example, encode_examples,
                                            format_example, format_prompt, read_instructions,
                                            split_instructions)
from minigpt.tokenizer import Tokenizer

WITH_INPUT = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
WITHOUT_INPUT = {"instruction": "Name a colour.", "input": "", "output": "Blue."}


@pytest.fixture(scope="module")
def tok():
    text = " ".join(format_example(e) for e in (WITH_INPUT, WITHOUT_INPUT)) * 3
    return Tokenizer.train(text, 300, special_tokens=["<|endoftext|>"])


def test_the_alpaca_format_written_out():
    assert format_prompt(WITH_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n")
    assert format_prompt(WITHOUT_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n")  # no empty Input section
    assert format_example(WITH_INPUT) == format_prompt(WITH_INPUT) + "5"


def test_the_file_holds_1100_examples_split_935_55_110_the_same_way_each_time():
    examples = read_instructions(data_file("instructions"))
    assert len(examples) == 1100 and sum(e["input"] == "" for e in examples) == 775
    splits = split_instructions(examples)
    assert {name: len(part) for name, part in splits.items()} == {"train": 935, "val": 55, "test": 110}
    every = [json.dumps(e, sort_keys=True) for part in splits.values() for e in part]
    assert sorted(every) == sorted(json.dumps(e, sort_keys=True) for e in examples)  # nothing lost or doubled
    assert split_instructions(examples) == splits  # fixed seed
    assert split_instructions(examples, seed=7)["test"] != splits["test"]
    # repeated (instruction, input) pairs never straddle two splits
    keys = {name: {(e["instruction"], e["input"]) for e in part} for name, part in splits.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"]) and not (keys["val"] & keys["test"])
    pairs = {}
    for e in examples:
        pairs[(e["instruction"], e["input"])] = pairs.get((e["instruction"], e["input"]), 0) + 1
    repeated = [count for count in pairs.values() if count > 1]
    assert len(pairs) == 1075 and sorted(repeated) == [2] * 16 + [3] * 3 + [4]  # 25 repeats of 20 prompts


def test_duplicates_stay_together_in_a_small_split():
    examples = [{"instruction": f"q{i // 2 if i < 8 else i}", "input": "", "output": f"a{i}"} for i in range(20)]
    for seed in range(10):
        splits = split_instructions(examples, seed=seed)
        assert [len(splits[n]) for n in ("train", "val", "test")] == [17, 1, 2]
        for name, part in splits.items():
            others = [e for n, p in splits.items() if n != name for e in p]
            assert not {e["instruction"] for e in part} & {e["instruction"] for e in others}


@pytest.mark.parametrize("content, message", [
    ('{"instruction": "x"}', "expected a non-empty JSON array"),
    ("[]", "expected a non-empty JSON array"),
    ('[{"instruction": "a", "input": "", "output": "b"}, {"instruction": "a", "output": "b"}]',
     "example 1: the key 'input' is missing"),
    ('[{"instruction": "a", "input": "", "output": 3}]', "example 0: 'output' must be a string"),
    ('[{"instruction": " ", "input": "", "output": "b"}]', "example 0: 'instruction' is empty"),
    ('[["a", "b"]]', "example 0: expected an object"),
    ('[{"instruction": "a",', "not valid JSON"),
])
def test_bad_instruction_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "data.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        read_instructions(path)
    assert str(path) in str(err.value)


def test_an_example_is_prompt_then_response_then_end_of_text(tok):
    ids, prompt_length = encode_example(tok, WITH_INPUT)
    assert ids[:prompt_length] == tok.encode(format_prompt(WITH_INPUT))
    assert ids[prompt_length:-1] == tok.encode("5") and ids[-1] == tok.eot_token
    assert tok.decode(ids) == format_example(WITH_INPUT) + "<|endoftext|>"


def test_padding_targets_are_ignored_except_the_first_end_of_text(tok):
    a, b = encode_example(tok, WITH_INPUT), encode_example(tok, WITHOUT_INPUT)
    inputs, targets = collate([a, b], tok.eot_token)
    T = max(len(a[0]), len(b[0])) - 1
    assert inputs.shape == targets.shape == (2, T) and inputs.dtype == targets.dtype == np.int64
    for row, (ids, _) in enumerate((a, b)):
        n = len(ids) - 1  # real (input, target) pairs of this row
        np.testing.assert_array_equal(inputs[row, :n], ids[:-1])
        np.testing.assert_array_equal(targets[row, :n], ids[1:])  # every real target, the end-of-text last
        assert targets[row, n - 1] == tok.eot_token
        assert (inputs[row, n:] == tok.eot_token).all()  # padded with end-of-text
        assert (targets[row, n:] == IGNORE_INDEX).all()  # and its targets ignored
    assert (targets == IGNORE_INDEX).sum() == abs(len(a[0]) - len(b[0]))


def test_mask_prompt_changes_exactly_the_prompt_targets(tok):
    batch = [encode_example(tok, WITH_INPUT), encode_example(tok, WITHOUT_INPUT)]
    _, plain = collate(batch, tok.eot_token)
    inputs, masked = collate(batch, tok.eot_token, mask_prompt=True)
    np.testing.assert_array_equal(inputs, collate(batch, tok.eot_token)[0])  # inputs never change
    for row, (ids, prompt_length) in enumerate(batch):
        for t in range(plain.shape[1]):
            if t < prompt_length - 1:  # target t is token t + 1, a prompt token
                assert masked[row, t] == IGNORE_INDEX and plain[row, t] == ids[t + 1]
            else:  # the response, its end-of-text and the padding: as without the mask
                assert masked[row, t] == plain[row, t]
        first_response_target = masked[row, prompt_length - 1]
        assert first_response_target == ids[prompt_length] != IGNORE_INDEX


def test_long_examples_are_truncated_or_refused(tok):
    ids, prompt_length = encode_example(tok, WITH_INPUT)
    encoded, cut = encode_examples(tok, [WITH_INPUT, WITHOUT_INPUT], max_length=len(ids) - 2)
    assert cut == 1 + (len(encode_example(tok, WITHOUT_INPUT)[0]) > len(ids) - 1)
    assert encoded[0] == (ids[:-1], prompt_length)  # max_length + 1 ids: the end-of-text is lost
    assert encode_examples(tok, [WITH_INPUT], max_length=len(ids) - 1) == ([(ids, prompt_length)], 0)
    with pytest.raises(ValueError, match=r"1 example\(s\) are longer than the context of 5 tokens"):
        encode_examples(tok, [WITH_INPUT], max_length=5, truncate=False)


def test_a_tokenizer_without_end_of_text_is_refused():
    plain = Tokenizer.train("abc abc", 260)
    with pytest.raises(ValueError, match="no <\\|endoftext\\|> token"):
        encode_examples(plain, [WITH_INPUT], max_length=100)
