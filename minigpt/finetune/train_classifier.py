"""Fine-tuning a GPT to classify text: `python -m minigpt finetune classify`, or from Python:

    from minigpt.finetune.train_classifier import ClassifyConfig, finetune_classifier
    result = finetune_classifier(ClassifyConfig(base="out/base-bpe", train="last-k", out_dir="out/spam"))
    result.results["test_accuracy"]

The loop, with the helpers it needs just above it:

    load the base (a minigpt run, a Hugging Face GPT-2 folder or hub name) and its tokenizer
    read the labelled texts, balance and split them (sms_spam.py), encode them (text_data.py)
    evaluate train / val / test before training (epoch 0)
    for each epoch:
        for each shuffled batch: forward, backward, clip, AdamW step on what trains
        evaluate train / val / test; append to metrics.jsonl; save the checkpoint; plot
    write results.json (test_accuracy, val_accuracy, train_accuracy, wall time, ...)

Everything that can be wrong with the input (the base, its tokenizer, the label file,
texts longer than the context, LoRA targets and rank, the settings) is checked before the
output folder is touched. Ctrl-C finishes the current step, saves, evaluates and writes
results.json marked "interrupted"; a second Ctrl-C stops at once (the last checkpoint,
written atomically, stays whole).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minigpt.finetune import lora as lora_module
from minigpt.finetune.classifier import TRAIN_CHOICES, GPTClassifier, save_classifier
from minigpt.finetune.loop import MetricsLog, Progress, Schedule, run_epochs
from minigpt.finetune.options import FinetuneSettings, check_training_settings
from minigpt.finetune.sms_spam import LABELS, SPLIT_SEED, load_splits
from minigpt.finetune.text_data import batch_indices, check_subword_tokenizer, encode_texts, pad_batch, pad_id_of
from minigpt.optim import AdamW

SPLITS = ("train", "val", "test")
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "accuracy.png"


@dataclass
class ClassifyConfig(FinetuneSettings):
    """Everything that defines a classification fine-tuning run (the shared settings are
    FinetuneSettings'; these are a classifier's, and its defaults)."""

    out_dir: str = "out/classify"
    data: str | None = None  # a label<TAB>text file; None: the SMS Spam Collection
    train: str = "last-k"  # head | last-k | all | lora
    epochs: int = 5
    split_seed: int = SPLIT_SEED
    labels: tuple[str, ...] = LABELS
    init: str = "pretrained"  # or "random": the base's shape and tokenizer, fresh weights (a control)
    extra: dict = field(default_factory=dict)  # more facts for results.json (e.g. a label for a table)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (before anything is loaded)."""
        check_training_settings(self, TRAIN_CHOICES)
        if self.init not in ("pretrained", "random"):
            raise ValueError(f"init must be 'pretrained' or 'random', got {self.init!r}")
        if self.max_length is not None and (isinstance(self.max_length, bool) or self.max_length < 1):
            raise ValueError(f"max_length must be a positive integer, got {self.max_length!r}")
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must name at least two distinct classes, got {list(self.labels)}")


@dataclass
class ClassifyResult:
    classifier: GPTClassifier
    tokenizer: object
    config: ClassifyConfig
    metrics: list[dict]  # one row per evaluation (epoch 0 = before training)
    results: dict  # what results.json holds
    out_dir: Path


# --- evaluation and prediction ----------------------------------------------------------


def evaluate(classifier, ids, labels, batch_size: int, pad_id: int) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predicted class ids) over a whole split, without dropout.
    Batches of similar lengths (sorted) waste the least padding; order does not matter here."""
    lengths = np.array([len(s) for s in ids])
    predictions = np.empty(len(ids), dtype=np.int64)
    total_loss = 0.0
    with classifier.evaluating():
        for rows in batch_indices(len(ids), batch_size, lengths=lengths):
            idx, batch_lengths = pad_batch([ids[i] for i in rows], pad_id)
            logits, loss = classifier.forward(idx, batch_lengths, labels[rows])
            total_loss += float(loss) * len(rows)
            predictions[rows] = logits.argmax(axis=1)
    classifier._cache = None  # nothing to backpropagate
    return total_loss / len(ids), float(np.mean(predictions == labels)), predictions


def predict_texts(classifier, tokenizer, texts, max_length: int | None = None, truncate: bool = True):
    """(predicted class ids (N,), probabilities (N, K)) for a list of texts."""
    max_length = max_length or classifier.body.config.block_size
    ids, _ = encode_texts(tokenizer, texts, max_length, truncate, what="the text")
    idx, lengths = pad_batch(ids, pad_id_of(tokenizer))
    probs = classifier.predict_proba(idx, lengths)  # (N, K)
    return probs.argmax(axis=1), probs


# --- setting up ---------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, base: str) -> None:
    """Never write into a pretraining run (it may be the base itself)."""
    from minigpt import checkpoint

    if (out_dir / checkpoint.STATE_FILE).exists():
        raise ValueError(f"{out_dir} holds a pretraining run ({checkpoint.STATE_FILE}); fine-tune into another "
                         f"--out-dir, so that the run (maybe the base) is not overwritten")
    if Path(base).exists() and out_dir.resolve() == Path(base).resolve():
        raise ValueError(f"--out-dir {out_dir} is the base's folder; choose another")


def _make_body(config: ClassifyConfig, base_model):
    from minigpt.model import GPT

    body = base_model
    if config.init == "random":  # the same architecture and tokenizer, weights never trained
        body = GPT(base_model.config, seed=config.seed, dtype=base_model.dtype)
    if config.dropout is not None:
        body.config = dataclasses.replace(body.config, dropout=config.dropout)
    body.rng = np.random.default_rng([config.seed, 1])  # dropout masks of this run
    return body


def prepare(config: ClassifyConfig, log=print):
    """Everything before training, every check included: (classifier, tokenizer, encoded
    splits {name: (ids, labels, texts)}, description of the base). Writes nothing."""
    from minigpt.pretrained import load_base

    config.validate()
    _check_out_dir(Path(config.out_dir), config.base)
    base_model, tokenizer, description = load_base(config.base)
    check_subword_tokenizer(tokenizer, f"the base {config.base}")
    block_size = base_model.config.block_size
    max_length = config.max_length or block_size
    if max_length > block_size:
        raise ValueError(f"max_length {max_length} exceeds the base's context of {block_size} tokens")
    splits = load_splits(config.data, config.labels, config.split_seed)
    encoded, truncated = {}, 0
    for name in SPLITS:
        if not len(splits[name]):
            raise ValueError(f"the {name} split is empty: the label file has too few examples")
        ids, n_cut = encode_texts(tokenizer, splits[name].texts, max_length, config.truncate, what=f"the {name} split")
        encoded[name] = (ids, splits[name].labels, splits[name].texts)
        truncated += n_cut
    if truncated:
        log(f"warning: {truncated} text(s) are longer than {max_length} tokens and were truncated to their "
            f"first {max_length} (--no-truncate makes this an error)")
    body = _make_body(config, base_model)
    lora = ({"rank": config.lora_rank, "alpha": config.lora_alpha, "targets": list(config.lora_targets)}
            if config.train == "lora" else None)
    classifier = GPTClassifier(body, len(config.labels), config.train, config.last_k, lora, seed=config.seed)
    if config.init == "random":
        description = f"random initialisation with the shape and tokenizer of {description}"
    return classifier, tokenizer, encoded, description, truncated


# --- the loop ----------------------------------------------------------------------------


def finetune_classifier(config: ClassifyConfig, log=print, on_epoch=None) -> ClassifyResult:
    """Fine-tune as `config` says (see the module docstring); on_epoch(row) after each evaluation."""
    from minigpt import plots

    t_start = time.perf_counter()
    classifier, tokenizer, data, description, truncated = prepare(config, log)
    out_dir = Path(config.out_dir)
    pad_id = pad_id_of(tokenizer)
    train_ids, train_labels, _ = data["train"]
    optimizer = AdamW(groups=classifier.parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
    schedule, progress = Schedule.of(config, len(train_ids)), Progress()

    trainable, total = classifier.num_trainable(), classifier.num_params()
    log(f"base: {description}")
    log(f"fine-tuning {config.train}{f' (last {config.last_k})' if config.train == 'last-k' else ''}: "
        f"{trainable:,} of {total:,} parameters train ({trainable / total:.2%}); "
        f"{', '.join(f'{n} {len(data[n][0])}' for n in SPLITS)} examples; {config.epochs} epochs into {out_dir}")

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_log = MetricsLog(out_dir / METRICS_FILE, on_epoch)
    metrics = metrics_log.rows

    def record(epoch):
        row = {"epoch": epoch, "step": progress.step}
        for name in SPLITS:
            ids, labels, _ = data[name]
            row[f"{name}_loss"], row[f"{name}_accuracy"], _ = evaluate(classifier, ids, labels,
                                                                       max(config.batch_size, 32), pad_id)
        row.update(lr=schedule.lr(progress.step), train_time_s=progress.train_time_s,
                   elapsed_s=time.perf_counter() - t_start)
        return metrics_log.add(row)

    def loss_and_grads(rows):
        idx, lengths = pad_batch([train_ids[i] for i in rows], pad_id)  # (B, T_max), (B,)
        _, loss = classifier.forward(idx, lengths, train_labels[rows])
        classifier.backward()
        return loss

    def after_epoch(epoch, say):
        row = record(epoch)
        say(f"epoch {row['epoch']}: loss train {row['train_loss']:.4f} val {row['val_loss']:.4f}; "
            f"accuracy train {row['train_accuracy']:.2%} val {row['val_accuracy']:.2%} "
            f"test {row['test_accuracy']:.2%}")
        save_classifier(out_dir, classifier, tokenizer, config.labels, base=description, base_spec=config.base,
                        init=config.init, step=progress.step)
        if classifier.train_choice == "lora":
            lora_module.save_adapters(classifier.body, out_dir)  # the adapters alone, small
        plots.plot_classification(metrics, out_dir / PLOT_FILE)

    first = record(0)
    log(f"before fine-tuning: accuracy train {first['train_accuracy']:.2%}, val {first['val_accuracy']:.2%}")
    run_epochs(config, len(train_ids), schedule, progress, classifier, optimizer, loss_and_grads, after_epoch,
               log)
    step, interrupted, train_time = progress.step, progress.interrupted, progress.train_time_s

    last = metrics[-1]
    _, _, predictions = evaluate(classifier, *data["test"][:2], max(config.batch_size, 32), pad_id)
    results = {
        "test_accuracy": last["test_accuracy"], "val_accuracy": last["val_accuracy"],
        "train_accuracy": last["train_accuracy"],
        "test_loss": last["test_loss"], "val_loss": last["val_loss"], "train_loss": last["train_loss"],
        **_unseen_accuracy(data, predictions),
        "wall_time_s": time.perf_counter() - t_start, "train_time_s": train_time,
        "epochs": last["epoch"], "steps": step, "interrupted": interrupted,
        "train": config.train, "last_k": classifier.last_k, "init": config.init,
        "lora": classifier.settings()["lora"], "trainable_params": trainable, "total_params": total,
        "trainable_fraction": trainable / total, "base": description, "base_spec": config.base,
        "split_sizes": {name: len(data[name][0]) for name in SPLITS}, "truncated_texts": truncated,
        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("extra", "progress")},
        **config.extra,
    }
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log(f"{'interrupted' if interrupted else 'done'}: test accuracy {results['test_accuracy']:.2%} "
        f"(val {results['val_accuracy']:.2%}, train {results['train_accuracy']:.2%}) in "
        f"{results['wall_time_s']:.0f} s; results in {out_dir / RESULTS_FILE}")
    return ClassifyResult(classifier, tokenizer, config, metrics, results, out_dir)


def _unseen_accuracy(data, predictions) -> dict:
    """Accuracy on the test texts that do not also occur in the training split (the
    collection repeats some messages), and how many do."""
    train_texts = set(data["train"][2])
    _, labels, texts = data["test"]
    unseen = np.array([t not in train_texts for t in texts])
    accuracy = float(np.mean(predictions[unseen] == labels[unseen])) if unseen.any() else float("nan")
    return {"test_accuracy_unseen": accuracy, "test_seen_in_train": int((~unseen).sum())}
