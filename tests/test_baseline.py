"""The bag-of-words logistic-regression baseline (minigpt/finetune/baseline.py)."""

import numpy as np
import pytest

from conftest import data_file
from minigpt.finetune import baseline
from minigpt.finetune.sms_spam import Split
from minigpt.gradcheck import numerical_gradient, rel_error


def test_sparse_products_equal_dense_ones():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 9)) * (rng.random((6, 9)) < 0.3)
    sparse = baseline.SparseRows.from_dense(X)
    W, G = rng.standard_normal((9, 3)), rng.standard_normal((6, 3))
    np.testing.assert_allclose(sparse @ W, X @ W, atol=1e-12)
    np.testing.assert_allclose(sparse.t_matmul(G), X.T @ G, atol=1e-12)


def test_logistic_regression_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    X = baseline.SparseRows.from_dense(rng.standard_normal((7, 5)))
    y = rng.integers(0, 3, 7)
    W, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    _, dW, db = baseline.loss_and_gradients(X, y, W, b, l2=0.3)
    assert rel_error(dW, numerical_gradient(lambda: baseline.loss_and_gradients(X, y, W, b, 0.3)[0], W)) < 1e-7
    assert rel_error(db, numerical_gradient(lambda: baseline.loss_and_gradients(X, y, W, b, 0.3)[0], b)) < 1e-7


def test_fitting_reaches_the_minimum():
    """At the minimum of a convex loss the gradient is zero."""
    rng = np.random.default_rng(2)
    dense = rng.standard_normal((30, 6))
    X = baseline.SparseRows.from_dense(dense / np.linalg.norm(dense, axis=1, keepdims=True))
    y = rng.integers(0, 2, 30)
    W, b = baseline.fit_logistic_regression(X, y, 2, l2=0.1)
    _, dW, db = baseline.loss_and_gradients(X, y, W, b, 0.1)
    assert np.abs(dW).max() < 1e-6 and np.abs(db).max() < 1e-6


def test_bag_of_words_separates_words_it_has_seen():
    spam = ["win a free prize now", "free cash prize, call now", "claim your prize"]
    ham = ["see you at lunch", "call me when you are home", "lunch at home?"]
    split = Split(spam + ham, np.array([1, 1, 1, 0, 0, 0]))
    test = Split(["a free prize!", "home for lunch"], np.array([1, 0]))
    result = baseline.bag_of_words_baseline({"train": split, "val": split, "test": test}, log=lambda *a: None)
    assert result["train_accuracy"] == 1.0 and result["test_accuracy"] == 1.0
    assert result["vocabulary"] == len(set(w for t in spam + ham for w in baseline.words(t)))


def test_unseen_words_are_ignored_and_rows_have_unit_length():
    bag = baseline.BagOfWords(["a b b", "c"])
    X = bag.transform(["b b a", "zzz", "c c"])
    dense = np.zeros(X.shape)
    dense[X.rows, X.cols] = X.values
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), [1.0, 0.0, 1.0])
    assert dense[0, bag.vocabulary["b"]] / dense[0, bag.vocabulary["a"]] == pytest.approx(np.log1p(2) / np.log1p(1))


def test_the_sms_baseline_runs_on_the_real_split():
    from minigpt.finetune.sms_spam import load_splits

    data_file("sms-spam")
    result = baseline.bag_of_words_baseline(load_splits(), l2_grid=(1e-3,), log=lambda *a: None)
    assert 0.9 < result["test_accuracy"] <= 1.0 and result["vocabulary"] > 3000
