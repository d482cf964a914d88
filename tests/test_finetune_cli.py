"""The fine-tuning commands end to end, on a tiny base and a tiny slice of the SMS data:
what they write, the classify command, Ctrl-C, the comparison, and every bad input of the
issue as a clear error that leaves no file behind."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import numpy as np
import pytest

from conftest import data_file
from minigpt.__main__ import main
from minigpt.finetune import compare, train_classifier
from minigpt.finetune.train_classifier import ClassifyConfig, finetune_classifier
from minigpt.train import train
from minigpt.train_setup import PRESETS

TINY_BASE = dict(n_layer=1, n_head=2, n_embd=16, block_size=24, batch_size=4, max_iters=2, eval_iters=1,
                 eval_interval=2, warmup_iters=1, sample_tokens=0, bpe_vocab_size=300, progress=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny base pretrained with the base-bpe preset's corpus and tokenizer (2 steps)."""
    data_file("shakespeare")
    out = tmp_path_factory.mktemp("base")
    train(dataclasses.replace(PRESETS["base-bpe"], out_dir=str(out), **TINY_BASE), log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """60 lines of the SMS file (balanced later to 2 x its spam count)."""
    lines = data_file("sms-spam").read_text(encoding="utf-8").splitlines()
    spam = [line for line in lines if line.startswith("spam\t")][:15]
    ham = [line for line in lines if line.startswith("ham\t")][:45]
    path = tmp_path_factory.mktemp("data") / "small.tsv"
    path.write_text("\n".join(spam + ham) + "\n", encoding="utf-8")
    return path


def run_cli(*argv):
    return main(["finetune", "classify", *map(str, argv), "--no-progress"])


def test_finetune_classify_writes_everything_and_classify_labels_text(base, small_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--base", base, "--data", small_data, "--out-dir", out, "--epochs", "2", "--lr", "1e-3") == 0
    names = {p.name for p in out.iterdir()}
    assert {"metrics.jsonl", "accuracy.png", "classifier.json", "results.json"} <= names
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]
    assert all(f"{s}_{m}" in rows[-1] for s in ("train", "val", "test") for m in ("loss", "accuracy"))
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] == rows[-1]["test_accuracy"] and results["split_sizes"]["train"] == 21
    assert results["wall_time_s"] > 0 and results["train"] == "last-k" and results["interrupted"] is False
    capsys.readouterr()
    assert main(["classify", "--out-dir", str(out), "--text", "WINNER! claim your prize", "--text", "ok"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(line.split("\t")[0] in ("ham", "spam") for line in printed)

    long_text = "Call now to claim your free prize, " * 10  # far more than the base's 24 tokens
    assert main(["classify", "--out-dir", str(out), "--text", long_text]) == 0
    captured = capsys.readouterr()
    assert "1 text(s) are longer than 24 tokens; only their first 24 were read" in captured.err
    assert captured.out.split("\t")[0] in ("ham", "spam")
    assert main(["classify", "--out-dir", str(out), "--text", long_text, "--no-truncate"]) == 1
    captured = capsys.readouterr()
    assert "longer than the context of 24 tokens" in captured.err and captured.out == ""


def test_lora_run_saves_adapters_and_keeps_the_base_bit_identical(base, small_data, tmp_path):
    from minigpt import checkpoint

    before, _, _ = checkpoint.load_model(base)
    result = finetune_classifier(ClassifyConfig(base=str(base), data=str(small_data), out_dir=str(tmp_path / "lora"),
                                                train="lora", lora_rank=2, epochs=1, progress=False), log=lambda *a: None)
    np.testing.assert_array_equal(result.classifier.body.flat_params, before.flat_params)
    assert (tmp_path / "lora" / "adapters.json").exists()
    assert result.results["lora"] == {"rank": 2, "alpha": 16.0, "targets": ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]}


def test_ctrl_c_saves_and_reports_the_interruption(base, small_data, tmp_path, monkeypatch):
    """The first Ctrl-C lets the step finish, then saves, evaluates and writes results.json."""
    real = train_classifier.GPTClassifier.backward
    calls = []

    def backward_then_ctrl_c(self, dloss=1.0):
        real(self, dloss)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_classifier.GPTClassifier, "backward", backward_then_ctrl_c)
    result = finetune_classifier(ClassifyConfig(base=str(base), data=str(small_data), out_dir=str(tmp_path / "c"),
                                                epochs=3, progress=False), log=lambda *a: None)
    assert result.results["interrupted"] is True and result.results["steps"] == 2
    assert json.loads((tmp_path / "c" / "results.json").read_text())["interrupted"] is True
    assert (tmp_path / "c" / "classifier.json").exists()


def test_compare_runs_every_variant_and_the_bag_of_words_baseline(base, small_data, tmp_path):
    variants = {"head": dict(train="head"), "random, all": dict(init="random", train="all")}
    rows = compare.compare_training_choices(str(base), tmp_path, variants, {"epochs": 1, "progress": False},
                                            data=str(small_data), log=lambda *a: None)
    assert [row["name"] for row in rows] == ["head", "random, all", compare.BASELINE]
    assert rows[0]["trainable_params"] == 16 * 2 + 2  # the head alone: n_embd x 2 + 2
    assert "| head |" in (tmp_path / "comparison.md").read_text()


def test_compare_with_seeds_trains_each_variant_once_per_seed_and_reports_the_spread(base, small_data, tmp_path):
    variants = {"head": dict(train="head")}
    rows = compare.compare_training_choices(str(base), tmp_path, variants, {"epochs": 1, "progress": False},
                                            data=str(small_data), seeds=[5, 6, 7], log=lambda *a: None)
    head, baseline = rows
    assert [run["seed"] for run in head["seeds"]] == [5, 6, 7]
    for run, folder in zip(head["seeds"], [tmp_path, tmp_path / "seed-6", tmp_path / "seed-7"]):
        saved = json.loads((folder / "1-head" / "results.json").read_text())
        assert saved["test_accuracy"] == run["test_accuracy"]  # each seed's own run, in its own folder
        assert saved["settings"]["seed"] == run["seed"]
    assert head["test_accuracy"] == head["seeds"][0]["test_accuracy"]  # the row's numbers: the first seed's
    assert head["test_accuracy_mean"] == pytest.approx(np.mean([run["test_accuracy"] for run in head["seeds"]]))
    table = (tmp_path / "comparison.md").read_text()
    assert "3 seeds: mean (min–max)" in table and "(no seed to vary)" in table  # the baseline has no seed
    assert "seeds" not in baseline


def test_compare_refuses_repeated_seeds(base, small_data, tmp_path):
    with pytest.raises(ValueError, match="must differ"):
        compare.compare_training_choices(str(base), tmp_path, {"head": dict(train="head")}, {"epochs": 1},
                                         data=str(small_data), seeds=[3, 3], log=lambda *a: None)
    assert not (tmp_path / "1-head").exists()


def bad_label_file(tmp_path, content):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize("case, message", [
    ("char base", "character-level tokenizer"),
    ("unknown label", "unknown label 'maybe'"),
    ("one class", "only 'ham'"),
    ("too long", "longer than the context of 24 tokens"),
    ("cannot encode", "the tokenizer cannot encode text 0"),
    ("no such target", "'c_atn' names no linear layer"),
    ("rank 0", "rank must be a positive integer"),
    ("rank too big", "larger than the layer"),
    ("lora and train", "--lora trains adapters, but --train is all"),
    ("base is out-dir", "holds a pretraining run"),
])
def test_bad_input_is_a_clear_error_that_changes_no_file(case, message, base, small_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--base", base, "--data", small_data, "--out-dir", out, "--epochs", "1"]
    if case == "char base":
        char_base = tmp_path / "char"
        train(dataclasses.replace(PRESETS["shakespeare-char"], data="pydocs", out_dir=str(char_base),
                                  **{k: v for k, v in TINY_BASE.items() if k != "bpe_vocab_size"}), log=lambda *a: None)
        args[1] = char_base
    elif case == "unknown label":
        args[3] = bad_label_file(tmp_path, "ham\thi\nspam\tbuy\nmaybe\tso\n")
    elif case == "one class":
        args[3] = bad_label_file(tmp_path, "ham\thi\nham\tyo\n")
    elif case == "too long":
        args += ["--no-truncate"]
    elif case == "cannot encode":  # the base's BPE refuses its special token's text, as tiktoken does
        args[3] = bad_label_file(tmp_path, "".join(f"{label}\tsee <|endoftext|> {i}\n"
                                                   for i in range(10) for label in ("ham", "spam")))
    elif case == "no such target":
        args += ["--lora", "2", "--lora-targets", "c_attn,c_atn"]
    elif case == "rank 0":
        args += ["--lora", "0"]
    elif case == "rank too big":
        args += ["--lora", "17"]
    elif case == "lora and train":
        args += ["--lora", "2", "--train", "all"]
    elif case == "base is out-dir":
        args[5] = base
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    assert run_cli(*args) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing was written
    assert {p: p.stat().st_mtime_ns for p in base.rglob("*")} == before  # nor the base touched


def test_texts_longer_than_the_context_are_truncated_with_a_warning(base, tmp_path):
    from minigpt.finetune.sms_spam import load_splits
    from minigpt.pretrained import load_base

    def text(i):  # a few tokens, or far more than 12
        return f"ok {i}" if i % 2 else f"call now to win a prize {i} " * 8

    lines = [f"{label}\t{text(i)}" for i in range(10) for label in ("ham", "spam")]
    path = bad_label_file(tmp_path, "\n".join(lines) + "\n")
    _, tokenizer, _ = load_base(str(base))
    full = [tokenizer.encode(text) for split in load_splits(path).values() for text in split.texts]
    expected = sum(len(ids) > 12 for ids in full)
    assert 0 < expected < len(full)  # some texts are cut, some are not

    logged = []
    config = ClassifyConfig(base=str(base), data=str(path), out_dir=str(tmp_path / "out"), max_length=12)
    _, _, encoded, _, truncated = train_classifier.prepare(config, log=logged.append)
    assert truncated == expected
    assert logged == [f"warning: {expected} text(s) are longer than 12 tokens and were truncated to their "
                      f"first 12 (--no-truncate makes this an error)"]
    cut = [ids for name in ("train", "val", "test") for ids in encoded[name][0]]
    assert cut == [ids[:12] for ids in full]  # the first 12 tokens; shorter texts as they were
    assert not (tmp_path / "out").exists()  # preparing writes nothing


def test_bad_input_leaves_an_existing_out_dir_as_it_was(base, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"test_accuracy": 0.5}\n')
    (out / "metrics.jsonl").write_text('{"epoch": 0}\n')
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    bad = bad_label_file(tmp_path, "ham\thi\nspam\tbuy\nmaybe\tso\n")
    assert run_cli("--base", base, "--data", bad, "--out-dir", out, "--epochs", "1") == 1
    assert "unknown label 'maybe'" in capsys.readouterr().err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before


def test_classify_command_errors(tmp_path, capsys):
    assert main(["classify", "--out-dir", str(tmp_path), "--text", "hi"]) == 1
    assert "classifier.json is missing" in capsys.readouterr().err


def test_the_readme_quotes_the_committed_comparison_and_states_the_bar_as_measured():
    """README's fine-tuning table and its >= 96% statement agree with
    chapters/05-finetuning/results/comparison.json, the output of `finetune compare`."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    rows = json.loads((root / "chapters/05-finetuning/results/comparison.json").read_text())
    readme = root.joinpath("README.md").read_text()
    section = readme[readme.index("## Fine-tuning"):readme.index("## Tour")]
    header = next(line for line in section.splitlines() if line.startswith("| training |"))
    columns = [cell.strip() for cell in header.split("|")[1:-1]]
    wanted = [columns.index(name) for name in ("test acc.", "val acc.", "train acc.")]
    for row in rows:
        line = next(line for line in section.splitlines() if line.startswith(f"| {row['name']} |"))
        cells = [cell.strip().strip("*") for cell in line.split("|")[1:-1]]
        assert [cells[i] for i in wanted] == [f"{row[k]:.2%}" for k in ("test_accuracy", "val_accuracy",
                                                                        "train_accuracy")], row["name"]
        if "seeds" in row:  # compare --seeds: the mean and range over the seeds, as measured
            tests = [run["test_accuracy"] for run in row["seeds"]]
            assert f"{row['test_accuracy_mean']:.2%} ({min(tests):.2%}–{max(tests):.2%})" in line, row["name"]
    best = max(row["test_accuracy"] for row in rows)
    met = "is met" if best >= 0.96 else "is not met"
    assert f"test accuracy ≥ 96%, {met}" in section and f"{best:.2%}" in section


def test_every_step_takes_the_learning_rate_of_its_schedule(base, small_data, tmp_path, monkeypatch):
    """Linear warm-up, then cosine down to lr / 10 at the last step: the rate each AdamW step
    is given, not just the one metrics.jsonl reports (finetune/loop.py, shared with instruct)."""
    from minigpt import optim

    given = []
    real_step = optim.AdamW.step

    def recording_step(self, lr=None):
        given.append(lr)
        return real_step(self, lr)

    monkeypatch.setattr(optim.AdamW, "step", recording_step)
    config = ClassifyConfig(base=str(base), data=str(small_data), out_dir=str(tmp_path / "s"), epochs=3,
                            batch_size=4, lr=1e-3, warmup_steps=2, progress=False)
    finetune_classifier(config, log=lambda *a: None)
    steps = 3 * 6  # 21 training texts in batches of 4
    assert len(given) == steps
    expected = [optim.lr_at(s, 2, steps, 1e-3, 1e-4) for s in range(steps)]
    np.testing.assert_allclose(given, expected, rtol=1e-12)
    assert given[0] < given[1] < given[2] and given[-1] < 2e-4
