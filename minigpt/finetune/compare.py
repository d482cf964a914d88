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

One run per row says little about differences of a message or two: with `--seeds 1337 1 2`
every transformer row is also trained with the other seeds (batch order, dropout, the
head's initial weights; the split stays the same), and the table adds the mean and the
range of the test accuracy over the seeds. The row's other numbers are the first seed's.
"""

from __future__ import annotations

import dataclasses
import json
import sys
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
ACCURACIES = ("train_accuracy", "val_accuracy", "test_accuracy")


def compare_training_choices(base: str, out_dir, variants=None, shared: dict | None = None,
                             data=None, split_seed: int = SPLIT_SEED, seeds=None, log=print) -> list[dict]:
    """Fine-tune each variant ({name: ClassifyConfig fields}, default VARIANTS) into
    out_dir/<n>-<name>, then run the bag-of-words baseline; returns one row per run:
    {"name", "train_accuracy", "val_accuracy", "test_accuracy", "trainable_params",
    "trainable_fraction", "wall_time_s", ...}. shared: settings that override every
    variant's (epochs, seed, ...). seeds: with two or more, each variant is also trained
    with seeds[1:] (into out_dir/seed-<S>/<n>-<name>) and its row gets "seeds" (one
    {"seed", "train/val/test_accuracy"} per run, seeds[0] first) and "test_accuracy_mean".
    Writes out_dir/comparison.json and comparison.md."""
    out_dir = Path(out_dir)
    variants = VARIANTS if variants is None else variants
    shared = dict(shared or {})
    if seeds:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"--seeds must differ from each other, got {list(seeds)}")
        shared["seed"] = seeds[0]
    known = {f.name for f in dataclasses.fields(ClassifyConfig)}
    for name, fields in variants.items():  # all settings checked before the first long run
        unknown = (set(fields) | set(shared)) - known
        if unknown:
            raise ValueError(f"variant {name!r}: unknown settings {sorted(unknown)}")
        ClassifyConfig(base=base, **{**fields, **shared}).validate()

    def fine_tune(number, name, fields, folder, seed_settings):
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
        config = ClassifyConfig(base=base, out_dir=str(folder / f"{number}-{slug}"), data=data,
                                split_seed=split_seed, **{**fields, **shared, **seed_settings})
        log(f"\n== {name}{' (seed %d)' % config.seed if seeds else ''} ==")
        result = finetune_classifier(config, log=log).results
        if result["interrupted"]:  # Ctrl-C: that run is saved; do not start the next one
            raise KeyboardInterrupt
        return result

    rows = []
    for number, (name, fields) in enumerate(variants.items(), start=1):
        result = fine_tune(number, name, fields, out_dir, {})
        rows.append({"name": name, **{k: result[k] for k in (
            "train_accuracy", "val_accuracy", "test_accuracy", "test_accuracy_unseen", "trainable_params",
            "total_params", "trainable_fraction", "wall_time_s", "epochs")}, "settings": fields})
    if seeds and len(seeds) > 1:
        for row in rows:
            row["seeds"] = [{"seed": seeds[0], **{k: row[k] for k in ACCURACIES}}]
        for seed in seeds[1:]:  # seed by seed, so an interrupted study still has whole seeds
            for number, (row, fields) in enumerate(zip(rows, variants.values()), start=1):
                result = fine_tune(number, row["name"], fields, out_dir / f"seed-{seed}", {"seed": seed})
                row["seeds"].append({"seed": seed, **{k: result[k] for k in ACCURACIES}})
        for row in rows:
            row["test_accuracy_mean"] = sum(one["test_accuracy"] for one in row["seeds"]) / len(row["seeds"])
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
    n_seeds = max((len(row.get("seeds", ())) for row in rows), default=0)
    seed_column = f" test acc., {n_seeds} seeds: mean (min–max) |" if n_seeds > 1 else ""
    lines = ["| training | test acc. |" + seed_column + " val acc. | train acc. | parameters trained | time |",
             "| --- | --- |" + " --- |" * bool(seed_column) + " --- | --- | --- | --- |"]
    for row in rows:
        fraction = f" ({row['trainable_fraction']:.1%})" if "trainable_fraction" in row else ""
        seed_cell = ""
        if seed_column:
            tests = [one["test_accuracy"] for one in row.get("seeds", ())]
            seed_cell = (f" {row['test_accuracy_mean']:.2%} ({min(tests):.2%}–{max(tests):.2%}) |" if tests
                         else " (no seed to vary) |")
        lines.append(f"| {row['name']} | {row['test_accuracy']:.2%} |{seed_cell} {row['val_accuracy']:.2%} | "
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
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="train every variant once per seed (the first gives the table's numbers) and "
                             "add the mean and range of the test accuracy over them")
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
    if args.seeds and args.seed is not None:
        print("error: give --seed or --seeds, not both", file=sys.stderr)
        return 2

    def work():
        rows = compare_training_choices(args.base, args.out_dir, variants, shared, args.data, args.split_seed,
                                        seeds=args.seeds)
        print("\n" + format_table(rows))
        return 0

    return run_reporting_user_errors(work)
