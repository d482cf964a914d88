"""Command line: python -m minigpt {train, sample, finetune, classify, gradcheck, bench, tokenize, export, grade} ...

Each command lives in its own module, which provides `add_arguments(parser)` and
`run(args)`; modules are imported only when their command runs, so `--help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": ("minigpt.train", "train a GPT (default: the shakespeare-char preset)"),
    "sample": ("minigpt.sample", "generate text from a trained checkpoint"),
    "finetune": ("minigpt.finetune.cli", "fine-tune a pretrained GPT: classify (head, last blocks, all, LoRA), compare"),
    "classify": ("minigpt.finetune.label_command", "label texts with a classifier made by finetune classify"),
    "gradcheck": ("minigpt.gradcheck", "check every backward pass against finite differences"),
    "bench": ("minigpt.bench", "benchmarks: kernels, training and sampling speed, tokenizer"),
    "tokenize": ("minigpt.tokenizer.cli", "train, apply and inspect a byte-level BPE tokenizer"),
    "export": ("minigpt.export", "write a trained checkpoint as a Hugging Face GPT-2 folder (transformers loads it)"),
    "grade": ("minigpt.course.classroom", "grade a chapter's exercises (yours, the solutions, or submissions)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m minigpt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen command's module is imported (the others may pull in Numba or torch).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    args = parser.parse_args(argv)
    return args._run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
