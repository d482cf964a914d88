"""python -m minigpt finetune instruct --base RUN_OR_HF_FOLDER_OR_NAME [options]

    python -m minigpt finetune instruct --base out/base-bpe --out-dir out/instruct
    python -m minigpt finetune instruct --base gpt2 --mask-prompt --out-dir out/instruct-gpt2
    python -m minigpt finetune instruct --base out/base-bpe --lora 8 --out-dir out/instruct-lora

Writes into --out-dir: metrics.jsonl (loss of each split, each epoch), loss.png, the tuned
model as a minigpt run (model.safetensors + state.json: `python -m minigpt sample --out-dir`
reads it), test_responses.json (the model's answer to every test instruction, with how it
stopped), results.json, and with LoRA adapters.json + its (small) weights. See
minigpt/finetune/instruct_train.py.
"""

from __future__ import annotations

import sys

from minigpt.finetune.classify_command import _names, is_user_error
from minigpt.finetune.instruct_train import TRAIN_CHOICES, InstructConfig, finetune_instruct

DEFAULTS = InstructConfig(base="")


def add_arguments(parser) -> None:
    d = DEFAULTS
    parser.add_argument("--base", required=True,
                        help="the pretrained model: a minigpt run folder (python -m minigpt train --preset "
                             "base-bpe), a Hugging Face GPT-2 folder, or a hub name such as gpt2")
    parser.add_argument("--out-dir", default=d.out_dir, help=f"where everything is written ({d.out_dir})")
    parser.add_argument("--data", default=None,
                        help="a JSON array of {instruction, input, output} objects (default: instruction-data.json)")
    parser.add_argument("--mask-prompt", action="store_true",
                        help="ignore the prompt's tokens in the loss: learn only the response and its end-of-text")
    parser.add_argument("--train", choices=TRAIN_CHOICES, default=None,
                        help="what trains: everything, the last k blocks + final layernorm, or LoRA adapters "
                             "(default all; lora with --lora)")
    parser.add_argument("--last-k", type=int, default=d.last_k, help=f"blocks trained by --train last-k ({d.last_k})")
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help=f"train LoRA adapters of this rank; default rank {d.lora_rank}")
    parser.add_argument("--lora-alpha", type=float, default=d.lora_alpha,
                        help=f"LoRA scale numerator: W + (alpha/rank) A B ({d.lora_alpha:g})")
    parser.add_argument("--lora-targets", type=_names, default=d.lora_targets,
                        help="comma-separated linear layers to adapt: c_attn, attn.c_proj, c_fc, mlp.c_proj, "
                             f"or one layer such as h.0.mlp.c_fc ({','.join(d.lora_targets)})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"passes over the training split ({d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"examples per step ({d.batch_size})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr:g})")
    parser.add_argument("--min-lr", type=float, default=None, help="final learning rate of the cosine (lr / 10)")
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"linear warm-up ({d.warmup_steps})")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay ({d.weight_decay:g})")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"gradient norm clip, 0 = off ({d.grad_clip:g})")
    parser.add_argument("--dropout", type=float, default=None, help="dropout while tuning (default: the base's)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="longest example in tokens (default: the base's context); longer ones are truncated")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false",
                        help="refuse examples longer than --max-length instead of truncating them")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help=f"longest response to a test instruction, in tokens ({d.max_new_tokens})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"sampling temperature of the test responses, 0 = greedy ({d.temperature:g})")
    parser.add_argument("--top-k", type=int, default=None, help="sample the test responses from the k likeliest tokens")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"batch order, dropout, LoRA init, sampling ({d.seed})")
    parser.add_argument("--split-seed", type=int, default=d.split_seed, help=f"the 85/5/10 split ({d.split_seed})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args) -> InstructConfig:
    train = args.train or ("lora" if args.lora is not None else "all")
    if args.lora is not None and train != "lora":
        raise ValueError(f"--lora trains adapters, but --train is {train}: drop one of them")
    return InstructConfig(
        base=args.base, out_dir=args.out_dir, data=args.data, train=train, last_k=args.last_k,
        lora_rank=args.lora if args.lora is not None else DEFAULTS.lora_rank, lora_alpha=args.lora_alpha,
        lora_targets=args.lora_targets, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        min_lr=args.min_lr, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
        grad_clip=args.grad_clip, dropout=args.dropout, max_length=args.max_length, truncate=args.truncate,
        mask_prompt=args.mask_prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, seed=args.seed, split_seed=args.split_seed, progress=args.progress,
    )


def run(args) -> int:
    try:
        config = config_from_args(args)
        result = finetune_instruct(config)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 130 if result.results["interrupted"] else 0
