"""The SMS Spam Collection, and any labelled text file like it, split for classification.

The file (`files.KNOWN_FILES["sms-spam"]`) has one message per line, `label<TAB>text`,
5,574 lines: 4,827 ham and 747 spam. Read it by splitting each line on its first TAB,
never with a CSV reader's quoting: 145 messages contain a `"`, and a default CSV reader
takes those for quotes, merges lines and returns 5,572 rows.

The split, as in "LLMs from scratch" chapter 6: undersample every class to the size of
the rarest (ham to 747, so that always answering "ham" scores 50%), shuffle with a fixed
seed, then cut 70% / 10% / 20% into train / validation / test: 1,045 / 149 / 300 messages.
The test split is looked at only to report the final numbers.

The collection repeats itself: 403 lines are copies of earlier ones, spam templates
especially, so a few test messages also occur in the training split. results.json
reports the accuracy on the test messages that do not, beside the plain one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = ("ham", "spam")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test
SPLIT_SEED = 123


@dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # (N,) int64 class ids, indices into the label names

    def __len__(self) -> int:
        return len(self.texts)


def read_labelled_tsv(path, labels=LABELS) -> tuple[list[str], np.ndarray]:
    """(texts, label ids) of a file of lines `label<TAB>text` (UTF-8), each line split on its
    first TAB, no quoting. Every problem is a ValueError naming the file and line: a line
    without a TAB, a label not in `labels`, an empty text, or fewer than two classes present."""
    path = Path(path)
    labels = list(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels must name at least two distinct classes, got {labels}")
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no such label file: {path}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason})") from None
    ids = {name: i for i, name in enumerate(labels)}
    texts, y = [], []
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (the final newline) carry nothing
        label, tab, text = line.partition("\t")
        if not tab:
            raise ValueError(f"{path}, line {number}: expected label<TAB>text, found no TAB: {line[:60]!r}")
        if label not in ids:
            raise ValueError(f"{path}, line {number}: unknown label {label!r} (expected one of {', '.join(labels)})")
        if not text.strip():
            raise ValueError(f"{path}, line {number}: the text is empty")
        texts.append(text)
        y.append(ids[label])
    present = sorted(set(y))
    if len(present) < 2:
        found = f"only {labels[present[0]]!r}" if present else "no labelled lines at all"
        raise ValueError(f"{path}: a classifier needs examples of at least two classes; found {found}")
    return texts, np.asarray(y, dtype=np.int64)


def balanced_split(texts, labels, seed: int = SPLIT_SEED, fractions=SPLIT_FRACTIONS) -> dict[str, Split]:
    """{"train", "val", "test"}: every class undersampled to the rarest class's count (a
    seeded choice), the rest shuffled and cut by `fractions` (the test split takes what is
    left after the first two, so nothing is lost to rounding)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=counts.min(), replace=False)
                           for c in classes])
    keep = rng.permutation(keep)
    n = len(keep)
    n_train, n_val = int(n * fractions[0]), int(n * fractions[1])
    parts = {"train": keep[:n_train], "val": keep[n_train:n_train + n_val], "test": keep[n_train + n_val:]}
    return {name: Split([texts[i] for i in rows], labels[rows]) for name, rows in parts.items()}


def load_splits(path=None, labels=LABELS, seed: int = SPLIT_SEED) -> dict[str, Split]:
    """The balanced train/val/test splits of a labelled file (default: the SMS Spam
    Collection, found by files.locate)."""
    if path is None:
        from minigpt.files import locate

        path = locate("sms-spam")
    texts, y = read_labelled_tsv(path, labels)
    return balanced_split(texts, y, seed)
