"""What does the transformer add? Training choices side by side on one split.

    python -m minigpt finetune compare --base out/base-bpe --out-dir out/compare

or, from Python (chapter 5 shows this table):

    from minigpt.finetune.compare import compare_training_choices, format_table
    rows = compare_training_choices("out/base-bpe", "out/compare")
    print(format_table(rows))

Every row is fine-tuned by finetune_classifier on the same balanced split of the same
data (the split depends only on --split-seed), from the same base, with its own
learning rate (VARIANTS); the last row is a bag-of-words logistic regression
(baseline.py) on that split, the bar any transformer has to clear. Each run's folder
keeps its metrics.jsonl, plot and results.json; comparison.json and comparison.md hold
the table.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from minigpt.finetune.baseline import bag_of_words_baseline
from minigpt.finetune.sms_spam import SPLIT_SEED, load_splits
from minigpt.finetune.train_classifier import ClassifyConfig, finetune_classifier

# name -> the ClassifyConfig fields that make the variant (the rest are shared)
VARIANTS = {
    "pretrained, head only": dict(train="head", lr=2e-3, epochs=10),
    "pretrained, last block": dict(train="last-k", last_k=1, lr=5e-4),
    "pretrained, everything": dict(train="all", lr=3e-4),
    "pretrained, LoRA r=8": dict(train="lora", lora_rank=8, lora_alpha=16.0, lr=1e-3),
    "random init, everything": dict(init="random", train="all", lr=3e-4),
}
BASELINE = "bag of words + logistic regression"


def compare_training_choices(base: str, out_dir, variants=None, shared: dict | None = None,
                             data=None, split_seed: int = SPLIT_SEED, log=print) -> list[dict]:
    """Fine-tune each variant ({name: ClassifyConfig fields}, default VARIANTS) into
    out_dir/<n>-<name>, then run the bag-of-words baseline; returns one row per run:
    {"name", "train_accuracy", "val_accuracy", "test_accuracy", "trainable_params",
    "trainable_fraction", "wall_time_s", ...}. shared: settings that override every
    variant's (epochs, seed, ...). Writes out_dir/comparison.json and comparison.md."""
    out_dir = Path(out_dir)
    variants = VARIANTS if variants is None else variants
    shared = dict(shared or {})
    known = {f.name for f in dataclasses.fields(ClassifyConfig)}
    for name, fields in variants.items():  # all settings checked before the first long run
        unknown = (set(fields) | set(shared)) - known
        if unknown:
            raise ValueError(f"variant {name!r}: unknown settings {sorted(unknown)}")
        ClassifyConfig(base=base, **{**fields, **shared}).validate()
    rows = []
    for number, (name, fields) in enumerate(variants.items(), start=1):
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
        config = ClassifyConfig(base=base, out_dir=str(out_dir / f"{number}-{slug}"), data=data,
                                split_seed=split_seed, **{**fields, **shared})
        log(f"\n== {name} ==")
        result = finetune_classifier(config, log=log).results
        if result["interrupted"]:  # Ctrl-C: that run is saved; do not start the next one
            raise KeyboardInterrupt
        rows.append({"name": name, **{k: result[k] for k in (
            "train_accuracy", "val_accuracy", "test_accuracy", "test_accuracy_unseen", "trainable_params",
            "total_params", "trainable_fraction", "wall_time_s", "epochs")}, "settings": fields})
    log(f"\n== {BASELINE} ==")
    baseline = bag_of_words_baseline(load_splits(data, seed=split_seed), log=log)
    rows.append({"name": BASELINE, **{k: baseline[k] for k in (
        "train_accuracy", "val_accuracy", "test_accuracy", "wall_time_s")},
        "trainable_params": 2 * (baseline["vocabulary"] + 1), "settings": {"l2": baseline["l2"]}})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    (out_dir / "comparison.md").write_text(format_table(rows) + "\n", encoding="utf-8")
    return rows


def format_table(rows) -> str:
    """The rows as a Markdown table: accuracy on each split, what trained, the time taken."""
    lines = ["| training | test acc. | val acc. | train acc. | parameters trained | time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        fraction = f" ({row['trainable_fraction']:.1%})" if "trainable_fraction" in row else ""
        lines.append(f"| {row['name']} | {row['test_accuracy']:.2%} | {row['val_accuracy']:.2%} | "
                     f"{row['train_accuracy']:.2%} | {row['trainable_params']:,}{fraction} | "
                     f"{row['wall_time_s']:.0f} s |")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--base", required=True, help="the pretrained model (run folder, HF folder or hub name)")
    parser.add_argument("--out-dir", default="out/compare", help="one sub-folder per run, and the table (out/compare)")
    parser.add_argument("--data", default=None, help="a label<TAB>text file (default: the SMS Spam Collection)")
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    parser.add_argument("--seed", type=int, default=None, help="override the seed of every run")
    parser.add_argument("--split-seed", type=int, default=SPLIT_SEED, help=f"the split ({SPLIT_SEED})")
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS), default=None,
                        help="run only this variant (repeat for more); the baseline always runs")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args) -> int:
    from minigpt.finetune.options import run_reporting_user_errors

    shared = {"progress": args.progress}
    if args.epochs is not None:
        shared["epochs"] = args.epochs
    if args.seed is not None:
        shared["seed"] = args.seed
    variants = {name: VARIANTS[name] for name in args.only} if args.only else None

    def work():
        rows = compare_training_choices(args.base, args.out_dir, variants, shared, args.data, args.split_seed)
        print("\n" + format_table(rows))
        return 0

    return run_reporting_user_errors(work)
