"""Fine-tuning data: the SMS Spam Collection read without quoting, balanced and split;
label files with problems; texts to padded batches; the base corpus for pretraining."""

import numpy as np
import pytest

from conftest import data_file
from minigpt import data
from minigpt.finetune.sms_spam import balanced_split, load_splits, read_labelled_tsv
from minigpt.finetune.text_data import check_subword_tokenizer, encode_texts, pad_batch, pad_id_of
from minigpt.tokenizer import Tokenizer


def test_the_sms_file_reads_as_5574_messages_quotes_and_all():
    texts, labels = read_labelled_tsv(data_file("sms-spam"))
    assert len(texts) == 5574 and labels.sum() == 747  # a CSV reader with quoting finds 5,572
    assert sum('"' in t for t in texts) == 145
    assert any(t.endswith(" ") for t in texts)  # trailing whitespace kept as it is


def test_the_balanced_split_is_70_10_20_of_twice_the_spam_count():
    data_file("sms-spam")  # first: skips (locally) or fails (CI) without the file, never downloads
    splits = load_splits()  # the SMS file, via files.locate (MINIGPT_DATA_DIR in the tests)
    assert {name: len(s) for name, s in splits.items()} == {"train": 1045, "val": 149, "test": 300}
    assert sum(int(s.labels.sum()) for s in splits.values()) == 747  # every spam, and as many ham
    again = load_splits()
    assert all(again[n].texts == splits[n].texts for n in splits)  # a fixed seed: the same split
    other = load_splits(seed=1)
    assert other["test"].texts != splits["test"].texts


def test_balanced_split_undersamples_to_the_rarest_class_and_loses_nothing():
    texts = [f"text {i}" for i in range(40)]
    labels = np.array([0] * 30 + [1] * 10)
    splits = balanced_split(texts, labels, seed=0)
    rows = [t for s in splits.values() for t in s.texts]
    assert len(rows) == 20 and len(set(rows)) == 20  # 10 + 10, no duplicates
    assert sum(int(s.labels.sum()) for s in splits.values()) == 10
    assert [len(s) for s in splits.values()] == [14, 2, 4]


@pytest.mark.parametrize("content, message", [
    ("ham\thello\nspma\tbuy now\n", "line 2: unknown label 'spma'"),
    ("ham\thello\nham\tagain\n", "only 'ham'"),
    ("", "no labelled lines"),
    ("ham\thello\nspam buy now\n", "line 2: expected label<TAB>text"),
    ("ham\thello\nspam\t  \n", "line 2: the text is empty"),
])
def test_bad_label_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "labels.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_labelled_tsv(path)


def test_padding_and_truncation():
    tok = Tokenizer.train("hello world, hello there " * 20, 270, special_tokens=["<|endoftext|>"])
    ids, cut = encode_texts(tok, ["hello", "hello world, hello there, hello world"], max_length=4)
    assert cut == 1 and len(ids[1]) == 4 and ids[1] == tok.encode("hello world, hello there, hello world")[:4]
    with pytest.raises(ValueError, match="1 text\\(s\\) are longer than the context of 4 tokens"):
        encode_texts(tok, ["hello", "hello world, hello there, hello world"], max_length=4, truncate=False)
    with pytest.raises(ValueError, match="text 1 is empty"):
        encode_texts(tok, ["hello", ""], max_length=4)
    idx, lengths = pad_batch([[5, 6, 7], [8]], pad_id_of(tok))
    np.testing.assert_array_equal(idx, [[5, 6, 7], [8, tok.eot_token, tok.eot_token]])
    np.testing.assert_array_equal(lengths, [3, 1])


def test_a_character_level_tokenizer_is_refused():
    with pytest.raises(ValueError, match="character-level tokenizer"):
        check_subword_tokenizer(data.CharTokenizer.from_text("abc"), "the base out/x")
    check_subword_tokenizer(Tokenizer.train("abcabc", 258), "fine")  # a BPE passes


def test_the_base_corpus_separates_documents_with_end_of_text():
    data_file("shakespeare")
    text = data.load_text("shakespeare+pydocs")
    assert text.count(data.END_OF_TEXT) == 79  # 80 documents: 79 pydocs topics, then Shakespeare
    assert text.endswith(data.load_text("shakespeare"))
    tok = Tokenizer.train(text[:20000], 300, special_tokens=[data.END_OF_TEXT])
    tokens = data.encode_corpus(text[:200000], tok)
    assert (tokens == tok.eot_token).sum() == text[:200000].count(data.END_OF_TEXT) > 0
    sms, _ = read_labelled_tsv(data_file("sms-spam"))
    assert not any(message in text for message in sms if len(message) > 40)  # no SMS text in pretraining
