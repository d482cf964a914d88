"""python -m minigpt export --out-dir RUN --to DIR: a trained minigpt model as a Hugging Face GPT-2.

    python -m minigpt export --out-dir out/shakespeare-char --to export/shakespeare-char

DIR then holds config.json and model.safetensors (and the tokenizer's files), which
transformers loads as it loads GPT-2 itself:

    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("export/shakespeare-char")

and minigpt reads back (`python -m minigpt sample --init export/shakespeare-char`). A
character-level model is a GPT-2 with a small vocabulary; its tokenizer is written as
minigpt-tokenizer.json, which transformers does not read (encode with minigpt). GPT-2's
own BPE tokenizer is written as vocab.json + merges.txt too, which transformers reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default="out/shakespeare-char",
                        help="folder of the minigpt checkpoint to export (default: %(default)s)")
    parser.add_argument("--to", required=True, metavar="DIR",
                        help="folder to write the Hugging Face GPT-2 files into (created if needed)")


def run(args) -> int:
    from minigpt.checkpoint import load_model
    from minigpt.pretrained import save_pretrained

    try:
        if not Path(args.out_dir).is_dir():
            raise ValueError(f"no checkpoint folder {args.out_dir!r}: train one first "
                             f"(python -m minigpt train --out-dir {args.out_dir})")
        if Path(args.to).resolve() == Path(args.out_dir).resolve():
            raise ValueError("--to must be another folder than --out-dir (both hold a model.safetensors)")
        model, tokenizer, _state = load_model(args.out_dir)
        save_pretrained(model, args.to, tokenizer)
    except (ValueError, OSError) as err:  # CheckpointError and PretrainedError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 1
    files = ", ".join(sorted(p.name for p in Path(args.to).iterdir() if not p.name.startswith(".")))
    print(f"wrote {args.to}: {files} ({model.num_params():,} parameters, vocabulary {model.config.vocab_size})")
    return 0
