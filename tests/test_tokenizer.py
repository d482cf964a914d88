"""Byte-level BPE: training (naive == fast), encode/decode, special tokens, files, errors, CLI."""

from __future__ import annotations

import json
import re

import pytest
from conftest import data_file

from minigpt.tokenizer import Tokenizer
from minigpt.tokenizer.fast import train_fast
from minigpt.tokenizer.naive import get_stats, merge, train_naive

SAMPLE = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20


@pytest.fixture(scope="module")
def shakespeare():
    return data_file("shakespeare").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(shakespeare):
    return Tokenizer.train(shakespeare[:200_000], 512, special_tokens=["<|endoftext|>"])


# --- the chapter's helpers ---------------------------------------------------------------


def test_get_stats_counts_overlapping_pairs():
    assert get_stats([5, 5, 5, 7]) == {(5, 5): 2, (5, 7): 1}


def test_merge_scans_left_to_right():
    assert merge([5, 5, 5, 7, 5, 5], (5, 5), 300) == [300, 5, 7, 300]
    assert merge([1, 2], (2, 1), 300) == [1, 2]


def test_first_merge_is_the_most_frequent_pair():
    assert train_naive("aaabdaaabac", 257, pattern=None) == [(97, 97)]  # "aa" occurs 4 times


def test_ties_go_to_the_smallest_pair():
    # "dcba": (100, 99), (99, 98), (98, 97) all occur once; the smallest pair wins
    assert train_naive("dcba", 257, pattern=None) == [(98, 97)]
    assert train_fast("dcba", 257, pattern=None) == [(98, 97)]


def test_pre_split_keeps_merges_inside_pieces():
    merges = train_fast("ab ab ab", 300, pattern=r"\S+|\s+")  # pieces: "ab", " ", "ab", ...
    assert merges == [(97, 98)]  # " a" never forms: space and letters are in different pieces


# --- naive and fast trainers agree --------------------------------------------------------


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_fast_trainer_matches_naive_on_shakespeare(shakespeare, pattern):
    text = shakespeare[:30_000]
    assert train_fast(text, 256 + 60, pattern) == train_naive(text, 256 + 60, pattern)


def test_fast_trainer_matches_naive_without_pre_split_and_with_specials():
    text = ("abab<|endoftext|>ba aaaa, é日本語日本 😀😀" * 7)[:-3]
    kwargs = dict(pattern=None, special_tokens=["<|endoftext|>"])
    assert train_fast(text, 256 + 1 + 40, **kwargs) == train_naive(text, 256 + 1 + 40, **kwargs)


def test_fast_trainer_stops_when_no_pairs_are_left():
    merges = train_fast("abc", 1000, pattern=None)
    assert merges == train_naive("abc", 1000, pattern=None) == [(97, 98), (256, 99)]


def test_trained_tokens_spell_frequent_words(shakespeare):
    tok = Tokenizer.train(shakespeare, 1024)
    assert tok.n_vocab == 1024
    assert len(set(tok.token_bytes)) == 1024  # every token is distinct bytes
    for word in [b" the", b" and", b"KING"]:
        assert word in tok.ranks
    # compression: Shakespeare takes well under half as many tokens as bytes
    assert len(tok.encode(shakespeare)) < 0.5 * len(shakespeare.encode())


# --- encode and decode ---------------------------------------------------------------------


def test_round_trip_and_merge_order(trained):
    for text in [SAMPLE, "", "  \n\n\t x", "naïve café 日本 👩‍👩‍👧 \x00\x7f"]:
        assert trained.decode(trained.encode(text)) == text
    ids = trained.encode("the")
    assert all(0 <= i < trained.n_vocab for i in ids)
    assert trained.decode_bytes(ids) == b"the"


def test_encode_matches_replaying_the_merges(trained):
    # tiktoken-style encoding (lowest-ranked join first) agrees with applying the merges in order
    for word in ["question", " nobler", "Whether", "suffering", "abracadabra"]:
        ids = list(word.encode())
        for i, pair in enumerate(trained.merges):
            ids = merge(ids, pair, 256 + i)
        assert trained.encode_ordinary(word) == ids


def test_decode_replaces_invalid_utf8(trained):
    euro = trained.encode("€")  # three bytes, split over byte tokens
    assert trained.decode_bytes(euro[:1]) == "€".encode()[:1]
    assert trained.decode(euro[:1]) == "\ufffd"


def test_lone_surrogates_become_replacement_characters(trained):
    assert trained.decode(trained.encode("a\ud800b")) == "a\ufffdb"


def test_special_tokens_follow_tiktoken_rules(trained):
    eot = trained.eot_token
    assert eot == 511 and trained.special_tokens == {"<|endoftext|>": 511}
    text = "Hello<|endoftext|>World"
    with pytest.raises(ValueError, match="disallowed"):
        trained.encode(text)
    ids = trained.encode(text, allowed_special={"<|endoftext|>"})
    assert ids.count(eot) == 1 and trained.encode(text, allowed_special="all") == ids
    assert trained.decode(ids) == text
    as_text = trained.encode(text, disallowed_special=())
    assert eot not in as_text and as_text == trained.encode_ordinary(text)
    assert trained.decode(as_text) == text
    with pytest.raises(ValueError, match="disallowed"):
        trained.encode("say STOP", disallowed_special={"STOP"})


def test_eot_token_is_none_without_the_special():
    assert Tokenizer.train(SAMPLE, 260).eot_token is None


# --- files -----------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, trained):
    path = tmp_path / "tok.json"
    trained.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.merges == trained.merges and loaded.special_tokens == trained.special_tokens
    assert loaded.pattern == trained.pattern
    assert loaded.encode(SAMPLE) == trained.encode(SAMPLE)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "bpe"
    view = (tmp_path / "tok.vocab").read_text(encoding="utf-8")
    assert f"{256:6d} [{trained.decode([256])}]" in view and "<|endoftext|>" in view
    assert len(view.splitlines()) == trained.n_vocab


def test_custom_pattern_and_no_pattern_round_trip(tmp_path):
    for pattern in [r"\w+|\W", None]:
        tok = Tokenizer.train(SAMPLE, 300, pattern=pattern)
        tok.save(tmp_path / "t.json")
        again = Tokenizer.load(tmp_path / "t.json")
        assert again.pattern == pattern and again.encode(SAMPLE) == tok.encode(SAMPLE)
        assert again.decode(again.encode(SAMPLE)) == SAMPLE


# --- errors ------------------------------------------------------------------------------------


def test_bad_training_input():
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(SAMPLE, 255)
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(SAMPLE, 257, special_tokens=["<|a|>", "<|b|>"])
    with pytest.raises(ValueError, match="non-empty"):
        Tokenizer.train("", 300)
    with pytest.raises(ValueError, match="collides"):
        Tokenizer.train(SAMPLE, 300, special_tokens=["a"])
    with pytest.raises(ValueError, match="regex"):
        Tokenizer.train(SAMPLE, 300, pattern="(unclosed")


def test_special_token_colliding_with_a_learned_token():
    tok = Tokenizer.train(SAMPLE, 300)
    learned = tok.decode([299])
    with pytest.raises(ValueError, match="collides"):
        Tokenizer(tok.merges, tok.pattern, {learned: 300})
    with pytest.raises(ValueError, match="already an ordinary token"):
        Tokenizer(tok.merges, tok.pattern, {"<|x|>": 299})


def test_two_merges_spelling_the_same_bytes_are_rejected():
    # 256 = "he", 257 = "he" + "l", 258 = "el", 259 = "h" + "el": "hel" twice
    with pytest.raises(ValueError, match=r"token 259 \(104 258\) repeats the bytes b'hel' of token 257"):
        Tokenizer([(104, 101), (256, 108), (101, 108), (104, 258)])


def test_decode_rejects_ids_outside_the_vocabulary(trained):
    for bad in [[trained.n_vocab], [-1], [1, 2, 10**9]]:
        with pytest.raises(ValueError, match="not in the vocabulary"):
            trained.decode(bad)


def test_malformed_and_truncated_files(tmp_path, trained):
    path = tmp_path / "tok.json"
    trained.save(path)
    good = path.read_text(encoding="utf-8")
    bad_files = {  # content: the error it must give (each message also names the file)
        "truncated": (good[: len(good) // 2], "not a tokenizer file .*Unterminated string"),
        "not json": ("merges:\n1 2\n", "not a tokenizer file .*Expecting value"),
        "wrong type": (json.dumps({**trained.to_dict(), "type": "char"}), "not a BPE tokenizer description"),
        "missing merges": (json.dumps({k: v for k, v in trained.to_dict().items() if k != "merges"}),
                           r"lacks \['merges'\]"),
        "bad merge line": (json.dumps({**trained.to_dict(), "merges": ["104 101", "oops"]}),
                           "merge 1 must be two token ids like \"104 101\", got 'oops'"),
        "future id": (json.dumps({**trained.to_dict(), "merges": ["104 999"]}),
                      r"merge 0 \(104 999\) uses a token that does not exist before id 256"),
        "repeated merge": (json.dumps({**trained.to_dict(), "merges": ["104 101", "104 101"]}),
                           r"token 257 \(104 101\) repeats the bytes b'he' of token 256"),
        "bad byte order": (json.dumps({**trained.to_dict(), "byte_order": [0] * 256}),
                           "byte_order must list each of the 256 byte values exactly once"),
    }
    for name, (content, message) in bad_files.items():
        path.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}\b.*{message}"):
            Tokenizer.load(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokenizer.load(path)


def test_gpt2_files_load_and_reject_truncation(tmp_path):
    encoder, vocab = data_file("gpt2-encoder"), data_file("gpt2-vocab")
    tok = Tokenizer.from_gpt2_files(encoder, vocab)
    assert tok.n_vocab == 50257 and tok.eot_token == 50256
    assert tok.decode_bytes([tok.encode(" the")[0]]) == b" the"
    lines = vocab.read_text(encoding="utf-8").splitlines()
    short_vocab = tmp_path / "vocab.bpe"
    short_vocab.write_text("\n".join(lines[:1000]), encoding="utf-8")
    unmade = rf"of {re.escape(str(encoder))} .* are made by no merge in {re.escape(str(short_vocab))}"
    with pytest.raises(ValueError, match=unmade):
        Tokenizer.from_gpt2_files(encoder, short_vocab)
    short_encoder = tmp_path / "encoder.json"
    short_encoder.write_text(encoder.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(short_encoder))} is malformed or truncated JSON"):
        Tokenizer.from_gpt2_files(short_encoder, vocab)


def test_tiktoken_file_round_trip_and_errors(tmp_path, trained):
    import base64

    def line(token: bytes, rank: int) -> str:
        return f"{base64.b64encode(token).decode()} {rank}"

    lines = [line(t, r) for r, t in enumerate(trained.token_bytes)]
    path = tmp_path / "ours.tiktoken"
    path.write_text("\n".join(lines) + "\n")
    again = Tokenizer.from_tiktoken_file(path, trained.pattern, trained.special_tokens)
    assert again.ranks == trained.ranks and again.encode(SAMPLE) == trained.encode(SAMPLE)
    broken = {  # content: the error it must give
        "skipped rank": (lines[:300] + lines[301:], r"line 301: rank 301, expected 300"),
        "bad base64": (lines[:300] + ["@@@ 300"] + lines[301:], "line 301: expected 'base64 rank', got b'@@@ 300'"),
        "truncated line": (lines[:300] + [lines[300].split()[0]], "line 301: expected 'base64 rank'"),
        "fewer than 256": (lines[:100], "has only 100 tokens: the first 256 ranks must be the 256 single bytes"),
        "no single bytes": ([line(b"ab", 0)] + lines[1:], r"rank 0 is b'ab', not a single byte"),
        "a byte twice": ([lines[0], line(trained.token_bytes[0], 1)] + lines[2:],
                         r"line 2: token b'\\x00' is already rank 0"),
        "a token twice": (lines + [line(trained.token_bytes[300], len(lines))], r"is already rank 300"),
        "an unmade token": (lines[:300] + [line(b"\x00\x01\x02", 300)],
                            r"token 300 \(b'\\x00\\x01\\x02'\) cannot be made from two earlier tokens"),
    }
    for name, (content, message) in broken.items():
        path.write_text("\n".join(content) + "\n")
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}\b.*{message}"):
            Tokenizer.from_tiktoken_file(path)


# --- command line ------------------------------------------------------------------------------


def test_cli_train_encode_decode_view(tmp_path, capsys):
    from minigpt.__main__ import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SAMPLE, encoding="utf-8")
    out = tmp_path / "tok.json"
    assert main(["tokenize", "train", "--data", str(corpus), "--vocab-size", "300", "-o", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".vocab").is_file()
    capsys.readouterr()
    assert main(["tokenize", "encode", "--tokenizer", f"bpe:{out}", "--text", "To be, or not"]) == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert ids == Tokenizer.load(out).encode("To be, or not")
    assert main(["tokenize", "decode", "--tokenizer", str(out), *map(str, ids)]) == 0
    assert capsys.readouterr().out == "To be, or not\n"
    assert main(["tokenize", "view", "--tokenizer", str(out), "--plain", "--text", "To be"]) == 0
    shown = capsys.readouterr().out.strip()
    assert shown.replace("|", "") == "To be" and shown.count("|") == len(Tokenizer.load(out).encode("To be")) - 1


def test_cli_reports_bad_input(tmp_path, capsys):
    from minigpt.__main__ import main

    assert main(["tokenize", "encode", "--tokenizer", str(tmp_path / "missing.json"), "--text", "x"]) == 1
    assert "no tokenizer file" in capsys.readouterr().err
