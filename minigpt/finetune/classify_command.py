"""python -m minigpt finetune classify --base RUN_OR_HF_FOLDER_OR_NAME [options]

    python -m minigpt finetune classify --base out/base-bpe --train last-k --out-dir out/spam
    python -m minigpt finetune classify --base out/base-bpe --lora 8 --lora-alpha 16 --out-dir out/spam-lora
    python -m minigpt classify --out-dir out/spam --text "WINNER! Claim your prize now"

Writes into --out-dir: metrics.jsonl (loss and accuracy of each split, each epoch),
accuracy.png, classifier.json + its weights (the checkpoint), results.json, and with LoRA
adapters.json + its (small) weights. See minigpt/finetune/train_classifier.py.
"""

from __future__ import annotations

import sys

from minigpt.finetune.classifier import TRAIN_CHOICES
from minigpt.finetune.train_classifier import ClassifyConfig, finetune_classifier

DEFAULTS = ClassifyConfig(base="")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_arguments(parser) -> None:
    d = DEFAULTS
    parser.add_argument("--base", required=True,
                        help="the pretrained model: a minigpt run folder (python -m minigpt train --preset "
                             "base-bpe), a Hugging Face GPT-2 folder, or a hub name such as gpt2")
    parser.add_argument("--out-dir", default=d.out_dir, help=f"where everything is written ({d.out_dir})")
    parser.add_argument("--data", default=None,
                        help="a UTF-8 file of label<TAB>text lines (default: the SMS Spam Collection)")
    parser.add_argument("--labels", type=_names, default=d.labels,
                        help=f"the class names, comma-separated, in class-id order ({','.join(d.labels)})")
    parser.add_argument("--train", choices=TRAIN_CHOICES, default=None,
                        help="what trains: the head only, the last k blocks + final layernorm + head, "
                             "everything, or LoRA adapters + head (default last-k; lora with --lora)")
    parser.add_argument("--last-k", type=int, default=d.last_k, help=f"blocks trained by --train last-k ({d.last_k})")
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help=f"train LoRA adapters of this rank (and the head); default rank {d.lora_rank}")
    parser.add_argument("--lora-alpha", type=float, default=d.lora_alpha,
                        help=f"LoRA scale numerator: W + (alpha/rank) A B ({d.lora_alpha:g})")
    parser.add_argument("--lora-targets", type=_names, default=d.lora_targets,
                        help="comma-separated linear layers to adapt: c_attn, attn.c_proj, c_fc, mlp.c_proj, "
                             f"or one layer such as h.0.mlp.c_fc ({','.join(d.lora_targets)})")
    parser.add_argument("--random-init", action="store_true",
                        help="start from random weights of the base's shape (a control: what does pretraining add?)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training split ({d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per step ({d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr:g})")
    parser.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (lr / 10)")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"linear warm-up ({d.warmup_steps})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay ({d.weight_decay:g})")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"gradient norm clip, 0 = off ({d.grad_clip:g})")
    parser.add_argument("--dropout", type=float, default=None, help="dropout while fine-tuning (default: the base's)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="longest text in tokens (default: the base's context); longer ones are truncated")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false",
                        help="refuse texts longer than --max-length instead of truncating them")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"head init, batch order, dropout ({d.seed})")
    parser.add_argument("--split-seed", type=int, default=d.split_seed,
                        help=f"the balanced train/val/test split ({d.split_seed})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args) -> ClassifyConfig:
    train = args.train or ("lora" if args.lora is not None else "last-k")
    if args.lora is not None and train != "lora":
        raise ValueError(f"--lora trains adapters, but --train is {train}: drop one of them")
    return ClassifyConfig(
        base=args.base, out_dir=args.out_dir, data=args.data, labels=args.labels,
        init="random" if args.random_init else "pretrained", train=train, last_k=args.last_k,
        lora_rank=args.lora if args.lora is not None else DEFAULTS.lora_rank, lora_alpha=args.lora_alpha,
        lora_targets=args.lora_targets, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        min_lr=args.min_lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        grad_clip=args.grad_clip, dropout=args.dropout, max_length=args.max_length, truncate=args.truncate,
        seed=args.seed, split_seed=args.split_seed, progress=args.progress,
    )


def run(args) -> int:
    try:
        config = config_from_args(args)
        result = finetune_classifier(config)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 130 if result.results["interrupted"] else 0


def is_user_error(err: Exception) -> bool:
    """Errors that describe bad input (print them, exit 1) rather than a bug (show the traceback)."""
    from minigpt.files import DataUnavailable
    from minigpt.hub import HubUnavailable
    from minigpt.pretrained import PretrainedError

    return isinstance(err, (ValueError, FileNotFoundError, DataUnavailable, PretrainedError, HubUnavailable))

