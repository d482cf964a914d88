"""The baseline a transformer has to beat: bag-of-words logistic regression, by hand in NumPy.

A text becomes a vector with one entry per word of the training vocabulary, log(1 + count)
of that word in the text, scaled to unit length; word order is thrown away. A message
has a dozen words out of thousands, so the vectors are stored sparse: the (row, column,
value) of each nonzero entry. A linear classifier on them, softmax(x W + b), is fitted by
gradient descent on the mean cross-entropy plus an L2 penalty (l2 / 2) ||W||^2:

    P = softmax(X W + b)                  (N, K)
    dlogits = (P - onehot(y)) / N         the softmax cross-entropy gradient
    dW = X^T dlogits + l2 W,   db = sum of dlogits over the rows

The loss is convex, so gradient descent finds its minimum; with unit-length rows the
curvature is at most 1/2 + l2, so the step 1 / (1/2 + l2) is safe. Nesterov's momentum
(each step taken from a point pushed further along the last move, by (t - 1) / (t + 2))
gets as close in 500 steps as plain descent in 20,000. The penalty is chosen among a
few values by validation accuracy; the test split is used once, at the end.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np

WORD = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks ("£", "!" say a lot in SMS)
L2_GRID = (1e-4, 1e-3, 1e-2)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


class SparseRows:
    """An (N, D) matrix kept as its nonzero entries: X[rows[i], cols[i]] = values[i]."""

    def __init__(self, rows, cols, values, shape):
        self.rows, self.cols, self.values, self.shape = rows, cols, values, shape

    @classmethod
    def from_dense(cls, X) -> SparseRows:
        rows, cols = np.nonzero(X)
        return cls(rows, cols, X[rows, cols], X.shape)

    def __matmul__(self, W):
        """X @ W, (N, K): each row sums value * W[col] over its nonzeros."""
        return np.stack([np.bincount(self.rows, self.values * W[self.cols, k], minlength=self.shape[0])
                         for k in range(W.shape[1])], axis=1)

    def t_matmul(self, G):
        """X^T @ G, (D, K): each column gathers value * G[row] over its nonzeros."""
        return np.stack([np.bincount(self.cols, self.values * G[self.rows, k], minlength=self.shape[1])
                         for k in range(G.shape[1])], axis=1)


class BagOfWords:
    """The vocabulary of the training texts (words seen at least min_count times) and the
    text -> vector map. Words never seen in training are ignored."""

    def __init__(self, texts, min_count: int = 1):
        counts = Counter(w for text in texts for w in words(text))
        self.vocabulary = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}

    def transform(self, texts) -> SparseRows:
        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            entries = {self.vocabulary[w]: np.log1p(c) for w, c in Counter(words(text)).items() if w in self.vocabulary}
            norm = np.sqrt(sum(v * v for v in entries.values())) or 1.0  # unit length (a text of unseen words stays 0)
            for col, value in sorted(entries.items()):
                rows.append(row)
                cols.append(col)
                values.append(value / norm)
        return SparseRows(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(values),
                          (len(texts), len(self.vocabulary)))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_gradients(X, y, W, b, l2: float):
    """(loss, dW, db) of the mean cross-entropy of softmax(X W + b) plus l2/2 ||W||^2."""
    N, K = X.shape[0], W.shape[1]
    P = softmax(X @ W + b)  # (N, K)
    loss = -np.mean(np.log(np.maximum(P[np.arange(N), y], 1e-300))) + 0.5 * l2 * np.sum(W * W)
    dlogits = (P - np.eye(K)[y]) / N  # (N, K)
    return float(loss), X.t_matmul(dlogits) + l2 * W, dlogits.sum(axis=0)


def fit_logistic_regression(X, y, n_classes: int, l2: float, steps: int = 500):
    """(W (D, K), b (K,)) minimising mean cross-entropy + l2/2 ||W||^2 by gradient descent
    with Nesterov momentum."""
    W, b = np.zeros((X.shape[1], n_classes)), np.zeros(n_classes)
    W_before, b_before = W, b
    step_size = 1.0 / (0.5 + l2)
    for t in range(1, steps + 1):
        momentum = (t - 1) / (t + 2)
        W_ahead, b_ahead = W + momentum * (W - W_before), b + momentum * (b - b_before)
        _, dW, db = loss_and_gradients(X, y, W_ahead, b_ahead, l2)
        W_before, b_before = W, b
        W, b = W_ahead - step_size * dW, b_ahead - step_size * db
    return W, b


def cross_entropy(X, y, W, b) -> float:
    """The mean cross-entropy alone (no penalty)."""
    return loss_and_gradients(X, y, W, b, 0.0)[0]


def bag_of_words_baseline(splits: dict, n_classes: int = 2, l2_grid=L2_GRID, log=print) -> dict:
    """Fit on splits["train"], pick l2 by splits["val"] accuracy, report every split.

    splits: {"train" | "val" | "test": object with .texts and .labels} (sms_spam.Split).
    Returns {"train_accuracy", "val_accuracy", "test_accuracy", losses, "l2", "vocabulary",
    "wall_time_s"}."""
    start = time.perf_counter()
    bag = BagOfWords(splits["train"].texts)
    X = {name: bag.transform(split.texts) for name, split in splits.items()}
    y = {name: np.asarray(split.labels) for name, split in splits.items()}

    def accuracy(name, W, b):
        return float(np.mean((X[name] @ W + b).argmax(axis=1) == y[name]))

    fits = {l2: fit_logistic_regression(X["train"], y["train"], n_classes, l2) for l2 in l2_grid}
    best = max(l2_grid, key=lambda l2: (accuracy("val", *fits[l2]), -l2))  # ties: the smallest penalty
    W, b = fits[best]
    result = {f"{name}_accuracy": accuracy(name, W, b) for name in ("train", "val", "test")}
    result.update({f"{name}_loss": cross_entropy(X[name], y[name], W, b) for name in ("train", "val", "test")})
    result.update(l2=best, vocabulary=len(bag.vocabulary), wall_time_s=time.perf_counter() - start)
    log(f"bag of words ({len(bag.vocabulary):,} words) + logistic regression, l2 {best:g} chosen on val: "
        f"test accuracy {result['test_accuracy']:.2%}")
    return result
