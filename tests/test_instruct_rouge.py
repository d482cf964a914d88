"""ROUGE-L against cases worked out by hand."""

import pytest

from minigpt.finetune.rouge import lcs_length, mean_rouge_l_f1, rouge_l, words


def test_lcs_of_the_textbook_example():
    # CLRS's example: ABCBDAB and BDCABA share BCBA (and others) of length 4, not 5
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length(list("ABC"), list("ABC")) == 3
    assert lcs_length(list("ABC"), list("CBA")) == 1  # order matters
    assert lcs_length([], list("ABC")) == 0


def test_words_are_lowercased_and_split_on_any_whitespace():
    assert words("  The CAT\tsat\n\non  the mat. ") == ["the", "cat", "sat", "on", "the", "mat."]


@pytest.mark.parametrize("response, reference, precision, recall", [
    # LCS "cat sat on mat" = 4 of 6 words each way
    ("a cat sat on a mat", "the cat sat on the mat", 4 / 6, 4 / 6),
    # Lin (2004): "police kill the gunman" vs "police killed the gunman": LCS 3 of 4
    ("police kill the gunman", "police killed the gunman", 3 / 4, 3 / 4),
    # ... and "the gunman kill police": only "the gunman" in order, 2 of 4
    ("the gunman kill police", "police killed the gunman", 2 / 4, 2 / 4),
    # different lengths: "is paris." of 3 response words and of 4 reference words
    ("It is Paris.", "The capital is Paris.", 2 / 3, 2 / 4),
    # case is ignored, punctuation is not: "paris" is not "paris."
    ("Paris", "The capital is Paris.", 0.0, 0.0),
    ("HELLO world", "hello World", 1.0, 1.0),
])
def test_rouge_l_by_hand(response, reference, precision, recall):
    score = rouge_l(response, reference)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    assert score["precision"] == pytest.approx(precision)
    assert score["recall"] == pytest.approx(recall)
    assert score["f1"] == pytest.approx(f1)


def test_the_worked_numbers():
    assert rouge_l("It is Paris.", "The capital is Paris.")["f1"] == pytest.approx(4 / 7)  # 2 (2/3)(1/2) / (7/6)
    assert rouge_l("a cat sat on a mat", "the cat sat on the mat")["f1"] == pytest.approx(2 / 3)


def test_empty_texts():
    assert rouge_l("", "")["f1"] == 1.0
    assert rouge_l("", "something")["f1"] == 0.0 and rouge_l("something", " ")["f1"] == 0.0


def test_the_mean_over_pairs():
    assert mean_rouge_l_f1(["a b", "x"], ["a b", "y"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="as many responses as references"):
        mean_rouge_l_f1(["a"], ["a", "b"])
