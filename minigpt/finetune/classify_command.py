"""python -m minigpt finetune classify --base RUN_OR_HF_FOLDER_OR_NAME [options]

    python -m minigpt finetune classify --base out/base-bpe --train last-k --out-dir out/spam
    python -m minigpt finetune classify --base out/base-bpe --lora 8 --lora-alpha 16 --out-dir out/spam-lora
    python -m minigpt classify --out-dir out/spam --text "WINNER! Claim your prize now"

Writes into --out-dir: metrics.jsonl (loss and accuracy of each split, each epoch),
accuracy.png, classifier.json + its weights (the checkpoint), results.json, and with LoRA
adapters.json + its (small) weights. See minigpt/finetune/train_classifier.py.
"""

from __future__ import annotations

from minigpt.finetune.classifier import TRAIN_CHOICES
from minigpt.finetune.options import (add_base_arguments, add_training_arguments, names,
                                      run_reporting_user_errors, training_fields)
from minigpt.finetune.train_classifier import ClassifyConfig, finetune_classifier

DEFAULTS = ClassifyConfig(base="")


def add_arguments(parser) -> None:
    d = DEFAULTS
    add_base_arguments(parser, d)
    parser.add_argument("--data", default=None,
                        help="a UTF-8 file of label<TAB>text lines (default: the SMS Spam Collection)")
    parser.add_argument("--labels", type=names, default=d.labels,
                        help=f"the class names, comma-separated, in class-id order ({','.join(d.labels)})")
    parser.add_argument("--random-init", action="store_true",
                        help="start from random weights of the base's shape (a control: what does pretraining add?)")
    add_training_arguments(
        parser, d, TRAIN_CHOICES,
        train_help="what trains: the head only, the last k blocks + final layernorm + head, everything, "
                   "or LoRA adapters + head (default last-k; lora with --lora)",
        seed_help="head init, batch order, dropout", split_help="the balanced train/val/test split", item="texts")


def config_from_args(args) -> ClassifyConfig:
    return ClassifyConfig(base=args.base, out_dir=args.out_dir, data=args.data, labels=args.labels,
                          init="random" if args.random_init else "pretrained",
                          **training_fields(args, default_train="last-k", default_rank=DEFAULTS.lora_rank))


def run(args) -> int:
    def work():
        result = finetune_classifier(config_from_args(args))
        return 130 if result.results["interrupted"] else 0

    return run_reporting_user_errors(work)
