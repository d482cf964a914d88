"""`python -m minigpt tokenize train | encode | decode | view`: BPE from the command line.

    python -m minigpt tokenize train --data shakespeare --vocab-size 1024 -o tok.json
    python -m minigpt tokenize encode --tokenizer tok.json --text "To be, or not to be"
    python -m minigpt tokenize decode --tokenizer tok.json 2514 307 11
    python -m minigpt tokenize view --tokenizer gpt2 --file notes.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minigpt.tokenizer.base import Tokenizer, render

COLOURS = [f"\x1b[48;5;{c}m" for c in (153, 223, 194, 218, 230, 189)]  # soft backgrounds
RESET = "\x1b[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="learn a BPE vocabulary from a text")
    train.add_argument("--data", default="shakespeare", help="shakespeare, pydocs, or a text file")
    train.add_argument("--vocab-size", type=int, default=1024, help="256 bytes + merges + specials")
    train.add_argument("--pattern", default="gpt4", help="gpt2, gpt4, a regex, or 'none'")
    train.add_argument("--special", action="append", default=[], metavar="TEXT",
                       help="a special token, e.g. '<|endoftext|>' (repeatable)")
    train.add_argument("--naive", action="store_true", help="use the slow trainer the chapter teaches")
    train.add_argument("-o", "--output", default="tokenizer.json", help="where to save (also writes .vocab)")

    for name, help_text in [("encode", "print the token ids of a text"),
                            ("view", "show a text with its token boundaries marked")]:
        p = sub.add_parser(name, help=help_text)
        _add_tokenizer_argument(p)
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--text", help="the text itself")
        source.add_argument("--file", help="a UTF-8 text file ('-' for stdin)")
        p.add_argument("--allow-special", action="store_true", help="encode special-token text as specials")
        if name == "view":
            p.add_argument("--plain", action="store_true", help="mark boundaries with | instead of colours")

    decode = sub.add_parser("decode", help="print the text of some token ids")
    _add_tokenizer_argument(decode)
    decode.add_argument("ids", nargs="*", type=int, help="token ids (default: read them from stdin)")


def _add_tokenizer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="gpt2, or a file saved by 'tokenize train'")


def load_tokenizer(spec: str) -> Tokenizer:
    """"gpt2" -> OpenAI's GPT-2 tokenizer; "path" or "bpe:path" -> a saved tokenizer."""
    if spec == "gpt2":
        from minigpt.tokenizer import gpt2

        return gpt2()
    path = Path(spec.removeprefix("bpe:"))
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file {path} (train one with 'tokenize train -o {path}')")
    return Tokenizer.load(path)


def run(args: argparse.Namespace) -> int:
    from minigpt.files import DataUnavailable

    try:
        return _run(args)
    except (DataUnavailable, FileNotFoundError, ValueError) as err:
        print(f"tokenize {args.action}: {err}", file=sys.stderr)
        if isinstance(err, DataUnavailable):
            print("(offline? '--data pydocs' trains on the Python docs that ship with CPython)", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.action == "train":
        return _train(args)
    tokenizer = load_tokenizer(args.tokenizer)
    if args.action == "decode":
        ids = args.ids or [int(field) for field in sys.stdin.read().split()]
        sys.stdout.write(tokenizer.decode(ids) + "\n")
        return 0
    text = args.text if args.text is not None else _read(args.file)
    ids = tokenizer.encode(text, allowed_special="all" if args.allow_special else set())
    if args.action == "encode":
        print(" ".join(map(str, ids)))
    else:
        print(view(tokenizer, ids, colour=not args.plain and sys.stdout.isatty()))
        print(f"\n{len(text)} characters, {len(text.encode('utf-8'))} bytes -> {len(ids)} tokens", file=sys.stderr)
    return 0


def _train(args: argparse.Namespace) -> int:
    from minigpt.data import load_text

    text = load_text(args.data)
    pattern = None if args.pattern.lower() == "none" else args.pattern
    start = time.perf_counter()
    tokenizer = Tokenizer.train(text, args.vocab_size, pattern, args.special, naive=args.naive)
    seconds = time.perf_counter() - start
    tokenizer.save(args.output)
    n_tokens = len(tokenizer.encode_ordinary(text))
    print(f"trained {tokenizer} on {len(text):,} characters in {seconds:.2f} s")
    print(f"{args.data}: {len(text.encode('utf-8')):,} bytes -> {n_tokens:,} tokens"
          f" ({len(text.encode('utf-8')) / n_tokens:.2f} bytes per token)")
    print(f"saved {args.output} and {Path(args.output).with_suffix('.vocab')}")
    return 0


def view(tokenizer: Tokenizer, ids: list[int], colour: bool = True) -> str:
    """The text of `ids`, each token on its own coloured background (or separated by |)."""
    pieces = [render(tokenizer.decode_bytes([i])) for i in ids]
    if not colour:
        return "|".join(pieces)
    return "".join(f"{COLOURS[k % len(COLOURS)]}{p}{RESET}" for k, p in enumerate(pieces))


def _read(file: str) -> str:
    return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
