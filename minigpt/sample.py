"""python -m minigpt sample --out-dir DIR: generate text from a trained checkpoint.

    python -m minigpt sample --out-dir out/shakespeare-char --prompt "ROMEO:" \\
        --max-new-tokens 300 --temperature 0.8 --top-k 40
    python -m minigpt sample --init gpt2 --prompt "The meaning of life is" --temperature 0

--init loads GPT-2 instead: a hub name (gpt2 ... gpt2-xl) or a Hugging Face folder
(minigpt.pretrained.load_base).

Tokens are printed as they are generated. A BPE token can end in the middle of a
multi-byte UTF-8 character (an emoji is four bytes, often split over tokens), so the
token bytes go through an incremental UTF-8 decoder that holds back an incomplete
character until its last byte arrives.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from pathlib import Path

import numpy as np

DEFAULT_OUT_DIR = "out/shakespeare-char"
DEFAULT_PROMPT = "\n"  # nanoGPT's default start: a new line, as if at a paragraph break
SEPARATOR = "-" * 40 + "\n"  # between samples (each ends with a new line)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--out-dir", default=None,
                        help=f"folder of the checkpoint to sample from (default: {DEFAULT_OUT_DIR})")
    source.add_argument("--init", default=None, metavar="gpt2|PATH",
                        help="sample from GPT-2 instead: a Hugging Face hub name (gpt2, gpt2-medium, "
                             "gpt2-large, gpt2-xl) or a folder in its layout (config.json + model.safetensors)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help="text to continue (default: a new line); FILE:path reads it from a file")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate per sample")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="< 1 sharper, > 1 flatter, 0 = greedy (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None,
                        help="nucleus sampling: only from the most likely tokens whose mass reaches p, in (0, 1]")
    parser.add_argument("--seed", type=int, default=1337, help="random seed (same seed, same text)")
    parser.add_argument("--num-samples", type=int, default=1, help="how many samples to print")
    parser.add_argument("--no-kv-cache", action="store_true",
                        help="recompute the whole context every step (slower; for comparison)")


class StreamDecoder:
    """Turns token ids into text piece by piece, never printing half a character."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.has_bytes = hasattr(tokenizer, "decode_bytes")  # BPE: tokens are byte strings
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids) -> str:
        if not self.has_bytes:
            return self.tokenizer.decode(ids)  # character tokens are whole characters
        return self.utf8.decode(self.tokenizer.decode_bytes(ids), final=False)

    def finish(self) -> str:
        return self.utf8.decode(b"", final=True) if self.has_bytes else ""


def _read_prompt(prompt: str) -> str:
    if prompt.startswith("FILE:"):
        path = Path(prompt[len("FILE:"):])
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read the prompt file {path}: {err}") from None
    return prompt


def _check_args(args) -> None:
    from minigpt.generate import validate_sampling

    validate_sampling(args.temperature, args.top_k, args.top_p)  # --temperature, --top-k, --top-p
    if args.max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")


def run(args) -> int:
    from minigpt.checkpoint import CheckpointError, load_model
    from minigpt.files import DataUnavailable  # the hub or GPT-2's tokenizer files out of reach
    from minigpt.generate import generate

    try:
        _check_args(args)
        prompt = _read_prompt(args.prompt)
        if args.init is not None:
            from minigpt.pretrained import load_base

            model, tokenizer, _description = load_base(args.init)
            source = args.init
        else:
            source = args.out_dir = args.out_dir or DEFAULT_OUT_DIR
            if not Path(args.out_dir).is_dir():
                raise CheckpointError(f"no checkpoint folder {args.out_dir!r}: train one first "
                                      f"(python -m minigpt train --out-dir {args.out_dir})")
            model, tokenizer, _state = load_model(args.out_dir)
        if tokenizer is None:
            raise CheckpointError(f"the model in {source} has no tokenizer to read a prompt with")
        try:
            prompt_ids = tokenizer.encode(prompt)
        except ValueError as err:
            raise ValueError(f"the prompt cannot be encoded: {err}") from None
        if len(prompt_ids) == 0:
            raise ValueError("the prompt is empty: give at least one character to continue from")
    except (ValueError, OSError, DataUnavailable) as err:  # CheckpointError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1

    rng = np.random.default_rng(args.seed)
    out = sys.stdout
    idx = np.array([prompt_ids], dtype=np.int64)  # (1, T)
    try:
        for n in range(args.num_samples):
            if n:
                out.write(SEPARATOR)
            decoder = StreamDecoder(tokenizer)
            out.write(decoder.feed(prompt_ids))

            def stream(ids, decoder=decoder):
                out.write(decoder.feed(ids.tolist()))
                out.flush()

            generate(model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                     top_p=args.top_p, rng=rng, use_cache=not args.no_kv_cache, on_token=stream)
            out.write(decoder.finish() + "\n")
            out.flush()
    except KeyboardInterrupt:
        out.write("\n")
        return 130
    return 0
