"""python -m minigpt finetune TASK ...: fine-tune a pretrained GPT.

Tasks (each a module with add_arguments(parser) and run(args), imported only when chosen):

    classify   a classification head on the last real token (SMS spam by default), training
               the head only, the last k blocks, everything, or LoRA adapters
    compare    the table of training choices on one split: pretrained vs random init, head /
               last block / everything / LoRA, and a bag-of-words logistic regression
    instruct   instruction tuning on Alpaca-style prompts: the language-model loss (optionally on
               the response only), answers to the test instructions, ROUGE-L
"""

from __future__ import annotations

import importlib

TASKS = {
    "classify": ("minigpt.finetune.classify_command", "fine-tune a classifier (default data: SMS spam)"),
    "compare": ("minigpt.finetune.compare", "compare training choices and a bag-of-words baseline on one split"),
    "instruct": ("minigpt.finetune.instruct_command", "instruction-tune a language model (default data: "
                 "instruction-data.json, Alpaca prompts)"),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (module_name, help_text) in TASKS.items():
        task_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(task_parser)
        task_parser.set_defaults(_task_run=module.run)


def run(args) -> int:
    return args._task_run(args) or 0
