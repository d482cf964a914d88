"""python -m minigpt classify --out-dir RUN --text "..." [--text "..."]: label new texts with a
classifier fine-tuned by `python -m minigpt finetune classify`.

Prints one line per text: the label, its probability, and the text.
"""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", required=True, help="the fine-tuning run (its classifier.json)")
    parser.add_argument("--text", action="append", required=True, help="a text to label (repeat for more)")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false",
                        help="refuse a text longer than the model's context instead of truncating it")


def run(args) -> int:
    from minigpt.finetune.classifier import load_classifier
    from minigpt.finetune.options import run_reporting_user_errors
    from minigpt.finetune.text_data import encode_texts
    from minigpt.finetune.train_classifier import predict_texts

    def work():
        classifier, tokenizer, labels, _ = load_classifier(args.out_dir)
        block_size = classifier.body.config.block_size
        _, truncated = encode_texts(tokenizer, args.text, block_size, args.truncate, what="--text")
        if truncated:
            print(f"warning: {truncated} text(s) are longer than {block_size} tokens; only their first "
                  f"{block_size} were read", file=sys.stderr)
        predicted, probs = predict_texts(classifier, tokenizer, args.text, block_size, args.truncate)
        for text, k, p in zip(args.text, predicted, probs):
            print(f"{labels[k]}\t{p[k]:.3f}\t{text}")
        return 0

    return run_reporting_user_errors(work)
