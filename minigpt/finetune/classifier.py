"""A GPT turned into a classifier: its body, the last real token's hidden state, a new head.

    idx (B, T) -> GPT body (model.forward_hidden) -> h (B, T, C)
              -> h[b, lengths[b] - 1]               (layers.last_token_forward)  (B, C)
              -> @ score.weight + score.bias         (a new linear head)          (B, K)
              -> cross-entropy against the labels

The language-model head (tied to wte) is not used: the new head maps n_embd to K classes.
What trains is a choice (`train`):

    head     the new head only; the body is a fixed feature extractor (its backward
             stops at ln_f: backward_hidden(dh, n_blocks=0))
    last-k   the head, the last k blocks and the final layernorm (one contiguous tail of
             the parameter buffer); the backward stops after those blocks
    all      every weight of the body, embeddings included, and the head
    lora     the head and LoRA adapters on chosen linear layers (minigpt.finetune.lora);
             the base weights stay bit-identical

GPT has no encoder: "freeze the encoder, tune the decoder" does not apply. The choice is
which of its blocks (or which adapters) learn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

from minigpt import layers
from minigpt.finetune import lora as lora_module
from minigpt.finetune import store
from minigpt.params import FlatParams
from minigpt.optim import ParamGroup, param_group

TRAIN_CHOICES = ("head", "last-k", "all", "lora")
FILE_NAME = "classifier"  # classifier.json + classifier-<hash>.safetensors
FORMAT = "minigpt-classifier"


class GPTClassifier:
    """A GPT body (`body`, a minigpt.model.GPT) with a classification head of n_classes.

    train: "head", "last-k" (with last_k), "all" or "lora" (with lora = {"rank", "alpha",
    "targets"}; the adapters are attached to the body). The head starts as weights
    ~ normal(0, 1/sqrt(n_embd)) and zero biases."""

    def __init__(self, body, n_classes: int, train: str = "last-k", last_k: int = 1,
                 lora: dict | None = None, seed: int = 0):
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes!r}")
        if train not in TRAIN_CHOICES:
            raise ValueError(f"train must be one of {', '.join(TRAIN_CHOICES)}, got {train!r}")
        L = body.config.n_layer
        if train == "last-k" and (isinstance(last_k, bool) or not isinstance(last_k, (int, np.integer))
                                  or not 1 <= last_k <= L):
            raise ValueError(f"last_k must be an integer from 1 to the base's {L} blocks, got {last_k!r}")
        if train == "lora" and not lora:
            raise ValueError("train='lora' needs lora={'rank': ..., 'alpha': ..., 'targets': ...}")
        if train != "lora" and body.lora is not None:
            raise ValueError(f"the body has LoRA adapters, but train={train!r}: merge them first (lora.merge)")
        self.body = body
        self.train_choice = train
        self.last_k = int(last_k) if train == "last-k" else None
        C = body.config.n_embd
        self.head = FlatParams({"score.weight": (C, int(n_classes)), "score.bias": (int(n_classes),)}, body.dtype)
        rng = np.random.default_rng([seed, 5])
        self.head.params["score.weight"][...] = rng.normal(0.0, 1.0 / math.sqrt(C), (C, int(n_classes)))
        if train == "lora" and body.lora is None:
            lora_module.add_lora(body, lora["rank"], lora["alpha"], lora.get("targets", lora_module.DEFAULT_TARGETS),
                                 seed=seed)
        self._cache = None

    @property
    def n_classes(self) -> int:
        return self.head.params["score.bias"].shape[0]

    # --- what trains ---------------------------------------------------------------------

    def body_blocks_to_train(self) -> int | None:
        """n_blocks for body.backward_hidden: how far back the gradient has to go."""
        L = self.body.config.n_layer
        return {"head": 0, "last-k": self.last_k, "all": None, "lora": L}[self.train_choice]

    def parameter_groups(self) -> list[ParamGroup]:
        """The AdamW groups of what trains (everything else is frozen)."""
        head = ParamGroup.of(self.head)
        body = self.body
        if self.train_choice == "head":
            return [head]
        if self.train_choice == "last-k":
            return [param_group(body, body.block_params_slice(body.config.n_layer - self.last_k)), head]
        if self.train_choice == "all":
            return [ParamGroup.of(body), head]
        return [ParamGroup.of(body.lora), head]

    def num_trainable(self) -> int:
        return sum(g.params.size for g in self.parameter_groups())

    def num_params(self) -> int:
        """Every parameter: the body (tied head counted once), the head, the adapters."""
        adapters = self.body.lora.num_params() if self.body.lora is not None else 0
        return self.body.num_params() + self.head.num_params() + adapters

    # --- forward and backward ------------------------------------------------------------

    def forward(self, idx, lengths, labels=None):
        """idx (B, T) token ids padded on the right, lengths (B,) real tokens per row ->
        logits (B, K), and the mean cross-entropy over the batch when labels (B,) are given."""
        h = self.body.forward_hidden(idx)  # (B, T, C)
        p = self.head.params
        logits, head_cache = layers.classifier_head_forward(h, lengths, p["score.weight"], p["score.bias"])  # (B, K)
        loss = loss_cache = None
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (len(logits),) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels must be ({len(logits)},) integers, got {labels.dtype} {labels.shape}")
            if labels.min() < 0 or labels.max() >= self.n_classes:
                raise ValueError(f"labels must be class ids in [0, {self.n_classes}), got {sorted(set(labels.tolist()))}")
            loss, loss_cache = layers.cross_entropy_forward(logits, labels.astype(np.int64))
        self._cache = (head_cache, loss_cache)
        return logits, loss

    def backward(self, dloss: float = 1.0) -> None:
        """Add the gradients of the last forward's loss into the head's and, as far back as
        what trains needs, the body's (and its adapters')."""
        if self._cache is None:
            raise ValueError("backward() needs a forward() first (and each forward allows one backward)")
        head_cache, loss_cache = self._cache
        if loss_cache is None:
            raise ValueError("backward() needs a loss: call forward(idx, lengths, labels) with labels")
        self._cache = None
        (dlogits,) = layers.cross_entropy_backward(dloss, loss_cache)  # (B, K)
        dh, dweight, dbias = layers.classifier_head_backward(dlogits, head_cache)  # (B, T, C), ...
        self.head.grads["score.weight"] += dweight
        self.head.grads["score.bias"] += dbias
        self.body.backward_hidden(dh, n_blocks=self.body_blocks_to_train())

    def zero_grad(self) -> None:
        self.body.zero_grad()  # the adapters' too
        self.head.zero_grad()

    def train(self):
        """Training mode: dropout on in the body, except when only the head trains (a frozen
        feature extractor should give the same features every time)."""
        if self.train_choice == "head":
            self.body.eval()
        else:
            self.body.train()
        return self

    def eval(self):
        self.body.eval()
        return self

    @contextlib.contextmanager
    def evaluating(self):
        with self.body.evaluating():
            yield self

    def predict_proba(self, idx, lengths) -> np.ndarray:
        """Class probabilities (B, K), without dropout and without keeping anything for backward."""
        with self.evaluating():
            logits, _ = self.forward(idx, lengths)
        self._cache = None
        z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    # --- saving and loading --------------------------------------------------------------

    def tensors(self) -> dict[str, np.ndarray]:
        """Every tensor, by name: the body's (GPT-2 names), the head's (score.*), the adapters'."""
        named = dict(self.body.params)
        named.update(self.head.params)
        if self.body.lora is not None:
            named.update(self.body.lora.params)
        return named

    def settings(self) -> dict:
        return {"train": self.train_choice, "last_k": self.last_k,
                "lora": self.body.lora.config() if self.body.lora is not None else None}


def save_classifier(folder, classifier: GPTClassifier, tokenizer, labels, **extra):
    """Write the classifier (weights, config, tokenizer, label names) into folder, atomically
    (see store.py). extra: more JSON-able facts to keep (e.g. the base it came from)."""
    labels = [str(x) for x in labels]
    if len(labels) != classifier.n_classes:
        raise ValueError(f"{len(labels)} label names for {classifier.n_classes} classes")
    record = {"format": FORMAT, "version": 1, "labels": labels,
              "model_config": dataclasses.asdict(classifier.body.config), "dtype": classifier.body.dtype.name,
              **classifier.settings(), "tokenizer": tokenizer.to_dict(), **extra}
    return store.save(folder, FILE_NAME, classifier.tensors(), record)


def load_classifier(folder):
    """(classifier, tokenizer, labels, record) from a folder written by save_classifier, in
    eval mode. A damaged or foreign file raises store.StoreError naming it."""
    from minigpt.data import tokenizer_from_dict
    from minigpt.model import GPT, GPTConfig

    tensors, record = store.load(folder, FILE_NAME, "fine-tuned classifier")
    where = f"{folder}/{FILE_NAME}.json"
    if record.get("format") != FORMAT or record.get("version") != 1:
        raise store.StoreError(f"{where} is not a minigpt classifier (format {record.get('format')!r})")
    try:
        labels = [str(x) for x in record["labels"]]
        body = GPT(GPTConfig(**record["model_config"]), dtype=np.dtype(record["dtype"]))
        classifier = GPTClassifier(body, len(labels), record["train"], record.get("last_k") or 1, record.get("lora"))
        for name, array in tensors.items():
            if array.dtype != body.dtype:
                raise ValueError(f"tensor {name} is {array.dtype}, the classifier {body.dtype}")
        body.load_params({k: v for k, v in tensors.items() if k in body.params})
        classifier.head.load({k: v for k, v in tensors.items() if k.startswith("score.")}, where)
        if body.lora is not None:
            body.lora.load({k: v for k, v in tensors.items() if ".lora_" in k}, where)
        unknown = set(tensors) - set(classifier.tensors())
        if unknown:
            raise ValueError(f"unexpected tensors {sorted(unknown)[:5]}")
        tokenizer = tokenizer_from_dict(record["tokenizer"])
    except (KeyError, TypeError, ValueError) as err:
        raise store.StoreError(f"{where}: does not describe a usable classifier ({err})") from None
    if tokenizer.vocab_size != body.config.vocab_size:
        raise store.StoreError(f"{where}: its tokenizer has {tokenizer.vocab_size} tokens, the model "
                               f"{body.config.vocab_size}")
    return classifier.eval(), tokenizer, labels, record
