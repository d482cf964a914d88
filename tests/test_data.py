"""Corpora, the character tokenizer, the split and the batches (minigpt/data.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import data_file

from minigpt import data


@pytest.fixture(scope="module")
def shakespeare_text():
    return data_file("shakespeare").read_text(encoding="utf-8")


def test_shakespeare_is_the_full_tiny_shakespeare(shakespeare_text):
    assert data.load_text("shakespeare") == shakespeare_text
    assert len(shakespeare_text) == 1_115_394  # all ASCII: characters == bytes
    assert shakespeare_text.startswith("First Citizen:")


def test_pydocs_is_offline_deterministic_and_large():
    from pydoc_data.topics import topics

    text = data.load_text("pydocs")
    assert text == data.load_text("pydocs")
    assert len(text) > 100_000
    # every topic is in it, one after the other in sorted key order
    position = 0
    for key in sorted(topics):
        position = text.index(topics[key], position) + len(topics[key])
    assert position > len(text) - 100


def test_a_text_file_by_path(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("héllo wörld\n", encoding="utf-8")
    assert data.load_text(path) == "héllo wörld\n"
    assert data.load_text(str(path)) == "héllo wörld\n"


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        data.load_text(empty)
    with pytest.raises(FileNotFoundError, match="no such text file"):
        data.load_text(tmp_path / "nope.txt")


def test_char_tokenizer_round_trip(shakespeare_text):
    text = shakespeare_text[:50_000]
    tok = data.CharTokenizer.from_text(text)
    assert tok.vocab_size == len(set(text))
    assert list(tok.chars) == sorted(set(text))  # ids in sorted character order
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("a") == [sorted(set(text)).index("a")]
    again = data.tokenizer_from_dict(tok.to_dict())
    assert isinstance(again, data.CharTokenizer)
    assert again.encode(text[:1000]) == ids[:1000]


def test_unknown_characters_are_named():
    tok = data.CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError, match=r"2 character.*'Z'.*'é'"):
        tok.encode("a Zé b")


def test_tokenizer_from_dict_rejects_unknown_types():
    with pytest.raises(ValueError, match="unknown tokenizer type 'morse'"):
        data.tokenizer_from_dict({"type": "morse"})


def test_tokenizer_from_dict_builds_bpe(shakespeare_text):
    from minigpt.tokenizer import Tokenizer

    bpe = Tokenizer.train(shakespeare_text[:5000], 300)
    again = data.tokenizer_from_dict(bpe.to_dict())
    assert isinstance(again, Tokenizer)
    assert again.encode(shakespeare_text[:300]) == bpe.encode(shakespeare_text[:300])


def test_tokens_are_stored_compactly():
    tok = data.CharTokenizer.from_text("hello world")
    tokens = data.encode_corpus("hello world", tok)
    assert tokens.dtype == np.uint16
    assert tok.decode(tokens) == "hello world"
    assert data.token_dtype(65_536) == np.uint16  # ids 0..65535 fit
    assert data.token_dtype(65_537) == np.uint32


def test_split_is_90_10_and_contiguous():
    tokens = np.arange(1000, dtype=np.uint16)
    train, val = data.split_tokens(tokens)
    assert len(train) == 900 and len(val) == 100
    np.testing.assert_array_equal(np.concatenate([train, val]), tokens)


def test_batches_are_windows_with_shifted_targets():
    tokens = np.arange(500, dtype=np.uint16) * 3  # value tells position: tokens[i] = 3 i
    rng = np.random.default_rng(0)
    x, y = data.get_batch(tokens, 16, 10, rng)
    assert x.shape == y.shape == (16, 10)
    assert np.issubdtype(x.dtype, np.integer)
    starts = x[:, 0] // 3
    np.testing.assert_array_equal(x, 3 * (starts[:, None] + np.arange(10)))
    np.testing.assert_array_equal(y, x + 3)  # the next token at every position
    assert y.max() <= tokens[-1]


def test_batches_come_from_the_seeded_generator():
    tokens = np.arange(10_000, dtype=np.uint16)
    a = data.get_batch(tokens, 4, 8, np.random.default_rng(7))
    b = data.get_batch(tokens, 4, 8, np.random.default_rng(7))
    c = data.get_batch(tokens, 4, 8, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_batches_cover_every_window_including_the_last():
    tokens = np.arange(12, dtype=np.uint16)
    x, y = data.get_batch(tokens, 2000, 8, np.random.default_rng(0))
    assert set(x[:, 0].tolist()) == {0, 1, 2, 3}  # 12 - 8 possible starts
    assert y[:, -1].max() == 11


def test_a_corpus_just_long_enough_and_one_too_short():
    tokens = np.arange(9, dtype=np.uint16)  # block_size + 1 for block_size 8
    x, y = data.get_batch(tokens, 3, 8, np.random.default_rng(0))
    np.testing.assert_array_equal(x[0], np.arange(8))
    with pytest.raises(ValueError, match=r"8 tokens, fewer than block_size \+ 1 = 9"):
        data.get_batch(tokens[:8], 3, 8, np.random.default_rng(0))
