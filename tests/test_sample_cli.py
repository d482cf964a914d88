"""`python -m minigpt sample` end to end on a tiny checkpoint, and its error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigpt import GPT, GPTConfig
from minigpt.__main__ import main
from minigpt.checkpoint import load_model, save_checkpoint
from minigpt.data import CharTokenizer
from minigpt.generate import generate
from minigpt.sample import StreamDecoder

REPO = Path(__file__).resolve().parents[1]
TEXT = "to be, or not to be: that is the question.\nWhether 'tis nobler in the mind\n"


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """A random tiny GPT with a character tokenizer, saved as a real checkpoint."""
    out_dir = tmp_path_factory.mktemp("ckpt")
    tokenizer = CharTokenizer.from_text(TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, seed=3)
    rng = np.random.default_rng(0)
    model.flat_params[:] = rng.normal(0.0, 0.4, model.flat_params.shape)  # varied predictions
    save_checkpoint(out_dir, model, tokenizer=tokenizer, iteration=0)
    return out_dir


def sample(capsys, *argv):
    code = main(["sample", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_sample_matches_generate(checkpoint_dir, capsys):
    code, out, err = sample(capsys, "--out-dir", str(checkpoint_dir), "--prompt", "to be",
                            "--max-new-tokens", "40", "--temperature", "0")
    assert code == 0, err
    model, tokenizer, _ = load_model(checkpoint_dir)
    ids = generate(model, np.array([tokenizer.encode("to be")]), 40, temperature=0.0)
    assert out == tokenizer.decode(ids[0]) + "\n"  # 40 tokens past block_size 16: cropping too


def test_kv_cache_and_no_cache_print_the_same_sample(checkpoint_dir, capsys):
    common = ["--out-dir", str(checkpoint_dir), "--prompt", "the", "--max-new-tokens", "30",
              "--seed", "5", "--top-k", "5", "--top-p", "0.9"]
    code1, with_cache, _ = sample(capsys, *common)
    code2, without, _ = sample(capsys, *common, "--no-kv-cache")
    assert code1 == code2 == 0
    assert with_cache == without
    assert with_cache.startswith("the") and len(with_cache) == len("the") + 30 + 1


def test_seed_decides_the_sample_and_num_samples_prints_each(checkpoint_dir, capsys):
    common = ["--out-dir", str(checkpoint_dir), "--max-new-tokens", "30", "--temperature", "1.0"]
    _, a, _ = sample(capsys, *common, "--seed", "1")
    _, b, _ = sample(capsys, *common, "--seed", "1")
    _, c, _ = sample(capsys, *common, "--seed", "2")
    assert a == b and a != c
    _, two, _ = sample(capsys, *common, "--seed", "1", "--num-samples", "2")
    first, second = two.split("-" * 40 + "\n")
    assert first == a  # the first of two samples is the single sample of that seed
    assert second != first


def test_streams_tokens_while_generating(checkpoint_dir, capsys, monkeypatch):
    """Each token reaches stdout (and is flushed) before the next is computed."""
    import minigpt.generate as gen

    events = []
    real_sample_next = gen.sample_next

    def spy(*args, **kwargs):
        events.append(("step", capsys.readouterr().out))
        return real_sample_next(*args, **kwargs)

    monkeypatch.setattr(gen, "sample_next", spy)
    code, _, _ = sample(capsys, "--out-dir", str(checkpoint_dir), "--prompt", "to",
                        "--max-new-tokens", "5", "--temperature", "0")
    assert code == 0
    printed = [out for _, out in events]
    assert printed[0] == "to"  # the prompt is shown before the first token is chosen
    assert all(len(piece) == 1 for piece in printed[1:])  # then one character per step


class ByteTokenizer:
    """A stand-in for BPE: every token is one byte, so characters split across tokens."""

    def decode_bytes(self, ids):
        return bytes(ids)


def test_stream_decoder_never_prints_half_a_character():
    decoder = StreamDecoder(ByteTokenizer())
    encoded = "né🙂!".encode()  # 1 + 2 + 4 + 1 bytes
    pieces = [decoder.feed([b]) for b in encoded]
    assert pieces == ["n", "", "é", "", "", "", "🙂", "!"]
    assert decoder.finish() == ""
    # A sequence cut inside a character is flagged (replacement character) at the end.
    decoder = StreamDecoder(ByteTokenizer())
    assert decoder.feed(list("a🙂".encode())[:3]) == "a"
    assert decoder.finish() == "\ufffd"


# --- errors: a clear message, exit code 1, no traceback ---------------------------------


def assert_clean_error(code, out, err, *fragments):
    assert code != 0
    assert "Traceback" not in err and "Traceback" not in out
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_missing_checkpoint_folder(tmp_path, capsys):
    code, out, err = sample(capsys, "--out-dir", str(tmp_path / "nowhere"))
    assert_clean_error(code, out, err, "nowhere", "train")


def test_folder_without_checkpoint(tmp_path, capsys):
    code, out, err = sample(capsys, "--out-dir", str(tmp_path))
    assert_clean_error(code, out, err, "no checkpoint", "state.json")


def test_truncated_checkpoint(checkpoint_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("state.json", "model.safetensors"):
        (broken / name).write_bytes((checkpoint_dir / name).read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    code, out, err = sample(capsys, "--out-dir", str(broken))
    assert_clean_error(code, out, err, "model.safetensors", "truncated")


@pytest.mark.parametrize("top_p", ["0", "1.5", "-0.1", "nan"])
def test_top_p_outside_zero_one(checkpoint_dir, capsys, top_p):
    code, out, err = sample(capsys, "--out-dir", str(checkpoint_dir), "--top-p", top_p)
    assert_clean_error(code, out, err, "top_p", "(0, 1]")


@pytest.mark.parametrize("flag, value, name", [("--temperature", "-1", "temperature"),
                                               ("--top-k", "0", "top_k"),
                                               ("--num-samples", "0", "num-samples")])
def test_other_bad_settings(checkpoint_dir, capsys, flag, value, name):
    code, out, err = sample(capsys, "--out-dir", str(checkpoint_dir), flag, value)
    assert_clean_error(code, out, err, name)


def test_prompt_outside_the_vocabulary(checkpoint_dir, capsys):
    code, out, err = sample(capsys, "--out-dir", str(checkpoint_dir), "--prompt", "to be? Zebra!")
    assert_clean_error(code, out, err, "prompt", "'Z'", "'?'")
    assert out == ""  # nothing half-printed


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "sample", "--out-dir", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: no checkpoint folder" in result.stderr


def test_bpe_checkpoint_streams_the_same_text_as_a_one_shot_decode(tmp_path, capsys):
    """With byte-level BPE a random model emits arbitrary bytes, often invalid or split
    UTF-8; streamed piece by piece, the text must equal decoding the ids all at once."""
    from minigpt.tokenizer import Tokenizer

    text = "naïve café 🙂 déjà vu 🙂🙂 — ünïcödé " * 20
    tokenizer = Tokenizer.train(text, vocab_size=270)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config, seed=1)
    save_checkpoint(tmp_path, model, tokenizer=tokenizer)
    code, out, err = sample(capsys, "--out-dir", str(tmp_path), "--prompt", "café 🙂",
                            "--max-new-tokens", "60", "--temperature", "1.0", "--seed", "3")
    assert code == 0, err
    model, tokenizer, _ = load_model(tmp_path)
    ids = generate(model, np.array([tokenizer.encode("café 🙂")]), 60, rng=np.random.default_rng(3))
    assert out == tokenizer.decode(ids[0].tolist()) + "\n"
