"""What the fine-tuning commands share: their training flags, the checks on those settings,
and how a command reports bad input.

`finetune classify` and `finetune instruct` train different heads on different data, but
the choice of what trains (the last k blocks, everything, LoRA adapters), the optimiser's
settings, the context limit and the seeds mean the same in both, so they are declared,
parsed and checked once, here.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from minigpt.finetune.lora import DEFAULT_TARGETS


@dataclass
class FinetuneSettings:
    """The settings both fine-tuning commands share (ClassifyConfig and InstructConfig add
    theirs and their own defaults); add_training_arguments gives each a flag."""

    base: str  # a minigpt run folder, a Hugging Face GPT-2 folder, or a hub name (gpt2)
    out_dir: str = "out/finetune"
    data: str | None = None  # None: the command's data set
    train: str = "all"  # what trains: the command's TRAIN_CHOICES
    last_k: int = 1
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    epochs: int = 2
    batch_size: int = 8
    lr: float = 5e-4
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    dropout: float | None = None  # None: the base's
    max_length: int | None = None  # None: the base's context (block_size)
    truncate: bool = True  # False: an example longer than max_length is an error
    seed: int = 1337  # batch order, dropout, new weights' init
    split_seed: int = 123  # the train/val/test split
    progress: bool = True


def names(text: str) -> tuple[str, ...]:
    """"c_attn, c_fc" -> ("c_attn", "c_fc"): a comma-separated flag value."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_base_arguments(parser, defaults) -> None:
    """--base (the pretrained model) and --out-dir, first in both commands' help."""
    parser.add_argument("--base", required=True,
                        help="the pretrained model: a minigpt run folder (python -m minigpt train --preset "
                             "base-bpe), a Hugging Face GPT-2 folder, or a hub name such as gpt2")
    parser.add_argument("--out-dir", default=defaults.out_dir, help=f"where everything is written ({defaults.out_dir})")


def add_training_arguments(parser, defaults, train_choices, train_help: str, seed_help: str,
                           split_help: str, item: str) -> None:
    """The flags both commands take; `defaults` is the command's config with its defaults,
    `item` what one example is ("texts", "examples") for the truncation flags' help."""
    d = defaults
    parser.add_argument("--train", choices=train_choices, default=None, help=train_help)
    parser.add_argument("--last-k", type=int, default=d.last_k, help=f"blocks trained by --train last-k ({d.last_k})")
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help=f"train LoRA adapters of this rank; default rank {d.lora_rank}")
    parser.add_argument("--lora-alpha", type=float, default=d.lora_alpha,
                        help=f"LoRA scale numerator: W + (alpha/rank) A B ({d.lora_alpha:g})")
    parser.add_argument("--lora-targets", type=names, default=d.lora_targets,
                        help="comma-separated linear layers to adapt: c_attn, attn.c_proj, c_fc, mlp.c_proj, "
                             f"or one layer such as h.0.mlp.c_fc ({','.join(d.lora_targets)})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training split ({d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per step ({d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr:g})")
    parser.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (lr / 10)")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"linear warm-up ({d.warmup_steps})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay,
                        help=f"AdamW weight decay ({d.weight_decay:g})")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip,
                        help=f"gradient norm clip, 0 = off ({d.grad_clip:g})")
    parser.add_argument("--dropout", type=float, default=None, help="dropout while fine-tuning (default: the base's)")
    parser.add_argument("--max-length", type=int, default=None,
                        help=f"longest {item[:-1]} in tokens (default: the base's context); longer ones are truncated")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false",
                        help=f"refuse {item} longer than --max-length instead of truncating them")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"{seed_help} ({d.seed})")
    parser.add_argument("--split-seed", type=int, default=d.split_seed, help=f"{split_help} ({d.split_seed})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def training_fields(args, default_train: str, default_rank: int) -> dict:
    """The config fields the shared flags set. --lora RANK implies --train lora."""
    train = args.train or ("lora" if args.lora is not None else default_train)
    if args.lora is not None and train != "lora":
        raise ValueError(f"--lora trains adapters, but --train is {train}: drop one of them")
    return dict(train=train, last_k=args.last_k, lora_rank=args.lora if args.lora is not None else default_rank,
                lora_alpha=args.lora_alpha, lora_targets=args.lora_targets, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup_steps,
                weight_decay=args.weight_decay, grad_clip=args.grad_clip, dropout=args.dropout,
                max_length=args.max_length, truncate=args.truncate, seed=args.seed,
                split_seed=args.split_seed, progress=args.progress)


def check_training_settings(config, train_choices, positive_ints=(), nonnegative_numbers=()) -> None:
    """Raise ValueError naming the first bad shared setting (before anything is loaded);
    the command's own positive integers and non-negative numbers are checked alike."""
    if config.train not in train_choices:
        raise ValueError(f"train must be one of {', '.join(train_choices)}, got {config.train!r}")
    for name in ("epochs", "batch_size", "last_k", *positive_ints):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(config.warmup_steps, bool) or not isinstance(config.warmup_steps, int) or config.warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {config.warmup_steps!r}")
    for name in ("lr", "weight_decay", "grad_clip", "lora_alpha", *nonnegative_numbers):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.lr <= 0:
        raise ValueError(f"lr must be positive, got {config.lr}")
    if config.min_lr is not None and not 0 <= config.min_lr <= config.lr:
        raise ValueError(f"min_lr must be in [0, lr] = [0, {config.lr}], got {config.min_lr}")
    if config.dropout is not None and not 0 <= config.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    if config.train == "lora":
        rank = config.lora_rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"the LoRA rank must be a positive integer, got {rank!r}")
        if not config.lora_alpha > 0:
            raise ValueError(f"the LoRA alpha must be positive, got {config.lora_alpha}")


def run_reporting_user_errors(work) -> int:
    """Run a command's work(): bad input is printed as one line (exit 1), a bug keeps its
    traceback, Ctrl-C exits 130. work() returns the exit code."""
    try:
        return work()
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


def is_user_error(err: Exception) -> bool:
    """Errors that describe bad input (print them, exit 1) rather than a bug (show the traceback)."""
    from minigpt.files import DataUnavailable
    from minigpt.hub import HubUnavailable
    from minigpt.pretrained import PretrainedError

    return isinstance(err, (ValueError, FileNotFoundError, DataUnavailable, PretrainedError, HubUnavailable))
