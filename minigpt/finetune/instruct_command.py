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

from minigpt.finetune.instruct_train import TRAIN_CHOICES, InstructConfig, finetune_instruct
from minigpt.finetune.options import (add_base_arguments, add_training_arguments, run_reporting_user_errors,
                                      training_fields)

DEFAULTS = InstructConfig(base="")


def add_arguments(parser) -> None:
    d = DEFAULTS
    add_base_arguments(parser, d)
    parser.add_argument("--data", default=None,
                        help="a JSON array of {instruction, input, output} objects (default: instruction-data.json)")
    parser.add_argument("--mask-prompt", action="store_true",
                        help="ignore the prompt's tokens in the loss: learn only the response and its end-of-text")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help=f"longest response to a test instruction, in tokens ({d.max_new_tokens})")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"sampling temperature of the test responses, 0 = greedy ({d.temperature:g})")
    parser.add_argument("--top-k", type=int, default=None, help="sample the test responses from the k likeliest tokens")
    add_training_arguments(
        parser, d, TRAIN_CHOICES,
        train_help="what trains: everything, the last k blocks + final layernorm, or LoRA adapters "
                   "(default all; lora with --lora)",
        seed_help="batch order, dropout, LoRA init, sampling", split_help="the 85/5/10 split", item="examples")


def config_from_args(args) -> InstructConfig:
    return InstructConfig(base=args.base, out_dir=args.out_dir, data=args.data, mask_prompt=args.mask_prompt,
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                          **training_fields(args, default_train="all", default_rank=DEFAULTS.lora_rank))


def run(args) -> int:
    def work():
        result = finetune_instruct(config_from_args(args))
        return 130 if result.results["interrupted"] else 0

    return run_reporting_user_errors(work)
