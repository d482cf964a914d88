"""Fuzzing every loader a user can point at a file, with hypothesis.

    file                                       loader                                    documented error
    state.json, model.safetensors,             checkpoint.load_model, and resuming a     checkpoint.CheckpointError
      optimizer.safetensors                      run (train_setup.prepare_run, which
                                                 also calls load_optimizer_state)
    a tokenizer's JSON                         Tokenizer.load                            ValueError
    GPT-2's encoder.json and vocab.bpe         Tokenizer.from_gpt2_files                 ValueError
    a .tiktoken ranks file                     Tokenizer.from_tiktoken_file              ValueError
    a text file                                data.load_text                            ValueError

(The .vocab file that Tokenizer.save writes is a view for people: nothing reads it back.)

Each example damages one good file: it cuts it at a random length, flips one to four random
bytes, or (JSON files) replaces one value anywhere in the tree by a value of another type.
The property: the loader either loads, or raises its documented error with the damaged
file's name in the message; never another exception, never a hang, and the files are left
exactly as they were (loading writes nothing).

Reproducible and bounded: derandomize=True makes every CI run of a commit try the same
examples (Hypothesis also draws a few values from constants in the package's source, so
the examples change when the source does), and max_examples keeps the whole module near
20 s on two cores. The deadline is a hang detector, set far above the few milliseconds an
example takes, not a speed test. The number of examples each fuzzer ran, and how many of
them loaded, is printed at the end of the module (pytest -s).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt import checkpoint
from minigpt.data import load_text, pydocs_text
from minigpt.tokenizer import Tokenizer
from minigpt.tokenizer.openai import bytes_to_unicode
from minigpt.train_setup import TrainConfig, prepare_run


def fuzz_settings(max_examples):
    return settings(max_examples=max_examples, derandomize=True, database=None,
                    deadline=datetime.timedelta(seconds=10),  # a hang detector (examples take ms)
                    suppress_health_check=[HealthCheck.too_slow])  # a loaded machine must not fail it


OUTCOMES = collections.defaultdict(collections.Counter)  # fuzzer -> {"loaded": n, "refused": n}


@pytest.fixture(scope="module", autouse=True)
def report_example_counts():
    yield
    print("\nfuzz examples run: " + "; ".join(
        f"{name} {sum(n.values())} ({n['loaded']} loaded, {n['refused']} refused)" for name, n in OUTCOMES.items()))


# --- damage -----------------------------------------------------------------------------------

OTHER_TYPES = {  # a few values of each JSON type, to put where a value of another type was
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-2, 300),  # small: a wrong type must not become a huge allocation
    "float": st.sampled_from([0.5, -1.5, 1e300, float("nan"), float("inf")]),
    "str": st.sampled_from(["", "x", "float32", "bpe", "1 2"]),
    "list": st.sampled_from([[], [1], ["a", 2], [[0]]]),
    "dict": st.sampled_from([{}, {"a": 1}, {"type": "char"}]),
}


def json_kind(value) -> str:
    for kind, python_type in [("null", type(None)), ("bool", bool), ("int", int), ("float", float),
                              ("str", str), ("list", list), ("dict", dict)]:
        if isinstance(value, python_type):
            return kind
    raise TypeError(value)


def json_paths(tree, path=()):
    """The path (a tuple of keys and indices) of every value in a JSON tree, the root first."""
    yield path
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in items:
        yield from json_paths(child, path + (key,))


def cut(original: bytes):
    """original cut short at a random length (empty included)."""
    return st.integers(0, len(original) - 1).map(lambda n: original[:n])


@st.composite
def flip(draw, original: bytes) -> bytes:
    """original with one to four of its bytes each XORed with a random non-zero byte."""
    flipped = bytearray(original)
    for i in draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=4, unique=True)):
        flipped[i] ^= draw(st.integers(1, 255))
    return bytes(flipped)


@st.composite
def retype(draw, original: bytes) -> bytes:
    """JSON original with one value, anywhere in its tree (the root too), replaced by a value
    of another JSON type."""
    tree = json.loads(original)
    paths = list(json_paths(tree))
    path = paths[draw(st.integers(0, len(paths) - 1))]
    parent, key = None, None
    value = tree
    for key in path:
        parent, value = value, value[key]
    new = draw(st.one_of(*[s for kind, s in OTHER_TYPES.items() if kind != json_kind(value)]))
    if parent is None:
        return json.dumps(new).encode()
    parent[key] = new
    return json.dumps(tree).encode()


def damaged(original: bytes, is_json: bool = False):
    return st.one_of(cut(original), flip(original), *([retype(original)] if is_json else []))


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check(fuzzer: str, load, folder: Path, damaged_name: str, error_class):
    """Run load(): it loads, or raises error_class naming damaged_name; the files stay as they were."""
    before = contents(folder)
    try:
        load()
        OUTCOMES[fuzzer]["loaded"] += 1
    except error_class as err:
        assert damaged_name in str(err), f"{type(err).__name__} does not name {damaged_name}: {err}"
        OUTCOMES[fuzzer]["refused"] += 1
    assert contents(folder) == before, "loading changed the files"


# --- checkpoints ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A real (tiny) training run: its corpus, its config and its three checkpoint files."""
    from minigpt.train import train

    folder = tmp_path_factory.mktemp("fuzz-run")
    corpus = folder / "corpus.txt"
    corpus.write_text(pydocs_text()[:6000], encoding="utf-8")
    config = TrainConfig(data=str(corpus), out_dir=str(folder / "run"), n_layer=1, n_head=2, n_embd=8,
                         block_size=8, batch_size=2, max_iters=2, warmup_iters=1, eval_interval=1,
                         eval_iters=1, sample_tokens=0, progress=False)
    train(config, log=lambda *args: None)
    return config, {name: (folder / "run" / name).read_bytes() for name in checkpoint.FILES}


def resume_from(files: dict, config: TrainConfig, folder: Path):
    """Write the checkpoint files into folder; return what resuming from them runs."""
    for name, content in files.items():
        (folder / name).write_bytes(content)
    resumed = dataclasses.replace(config, out_dir=str(folder), resume=True)

    def load():
        checkpoint.load_model(folder)  # as `python -m minigpt sample` does
        prepare_run(resumed, log=lambda *args: None)  # as `train --resume` does

    return load


@given(st.data())
@fuzz_settings(max_examples=250)
def test_fuzz_state_json(run_files, data):
    config, files = run_files
    state = data.draw(damaged(files[checkpoint.STATE_FILE], is_json=True))
    with tempfile.TemporaryDirectory() as folder:
        load = resume_from({**files, checkpoint.STATE_FILE: state}, config, Path(folder))
        check("state.json", load, Path(folder), checkpoint.STATE_FILE, checkpoint.CheckpointError)


@given(st.data())
@fuzz_settings(max_examples=150)
def test_fuzz_tensor_files(run_files, data):
    """Damaged safetensors files. With the hash in state.json left alone the damage is caught
    by it; with the hash updated (a file made or edited by hand) the parser must cope."""
    config, files = run_files
    name = data.draw(st.sampled_from([checkpoint.MODEL_FILE, checkpoint.OPTIMIZER_FILE]))
    tensors = data.draw(damaged(files[name]))
    state = json.loads(files[checkpoint.STATE_FILE])
    if data.draw(st.booleans()):
        state["sha256"][name] = hashlib.sha256(tensors).hexdigest()
    with tempfile.TemporaryDirectory() as folder:
        load = resume_from({**files, name: tensors, checkpoint.STATE_FILE: json.dumps(state).encode()},
                           config, Path(folder))
        check("safetensors", load, Path(folder), name, checkpoint.CheckpointError)


# --- tokenizer files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_tokenizer():
    return Tokenizer.train(pydocs_text()[:5000], 300, special_tokens=["<|endoftext|>"])


def write_and_check(fuzzer: str, files: dict, damaged_name: str, load_from_folder):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        check(fuzzer, lambda: load_from_folder(folder), folder, damaged_name, ValueError)


@given(st.data())
@fuzz_settings(max_examples=250)
def test_fuzz_tokenizer_json(small_tokenizer, data):
    good = json.dumps(small_tokenizer.to_dict(), indent=1, ensure_ascii=False).encode("utf-8")
    assert Tokenizer.from_dict(json.loads(good)).ranks == small_tokenizer.ranks  # the undamaged file loads
    write_and_check("tokenizer JSON", {"tok.json": data.draw(damaged(good, is_json=True))}, "tok.json",
                    lambda folder: Tokenizer.load(folder / "tok.json"))


@pytest.fixture(scope="module")
def gpt2_style_files(small_tokenizer):
    """small_tokenizer written as GPT-2's encoder.json and vocab.bpe (GPT-2's own are 1.5 MB:
    too big to load hundreds of times)."""
    as_text = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(as_text[b] for b in token)

    tok = small_tokenizer
    encoder = {spell(t): i for i, t in enumerate(tok.token_bytes)} | dict(tok.special_tokens)
    merges = [f"{spell(tok.token_bytes[a])} {spell(tok.token_bytes[b])}" for a, b in tok.merges]
    files = {"encoder.json": json.dumps(encoder, ensure_ascii=False).encode("utf-8"),
             "vocab.bpe": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8")}
    with tempfile.TemporaryDirectory() as folder:  # the undamaged files load, as the same vocabulary
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        assert Tokenizer.from_gpt2_files(Path(folder) / "encoder.json", Path(folder) / "vocab.bpe").ranks == tok.ranks
    return files


@given(st.data())
@fuzz_settings(max_examples=250)
def test_fuzz_gpt2_files(gpt2_style_files, data):
    name = data.draw(st.sampled_from(["encoder.json", "vocab.bpe"]))
    bad = data.draw(damaged(gpt2_style_files[name], is_json=name == "encoder.json"))
    write_and_check("GPT-2 files", {**gpt2_style_files, name: bad}, name,
                    lambda folder: Tokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe"))


@given(st.data())
@fuzz_settings(max_examples=200)
def test_fuzz_tiktoken_file(small_tokenizer, data):
    good = "".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(small_tokenizer.token_bytes))
    write_and_check(".tiktoken", {"ranks.tiktoken": data.draw(damaged(good.encode("ascii")))}, "ranks.tiktoken",
                    lambda folder: Tokenizer.from_tiktoken_file(folder / "ranks.tiktoken"))


# --- text files -------------------------------------------------------------------------------

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
        "naïve café, 日本語のテキスト, emoji 😀👍🏽, Ελληνικά, \u00e9 vs e\u0301\r\n").encode("utf-8") * 3


@given(st.data())
@fuzz_settings(max_examples=150)
def test_fuzz_text_file(data):
    write_and_check("text file", {"corpus.txt": data.draw(damaged(TEXT))}, "corpus.txt",
                    lambda folder: load_text(folder / "corpus.txt"))


ORIGINAL = json.dumps({"a": [1, 2.5, "x"], "b": {"c": None, "d": True}}).encode()


@given(cut(ORIGINAL))
@settings(max_examples=50, derandomize=True, database=None)
def test_cut_makes_a_strict_prefix(bad):
    assert len(bad) < len(ORIGINAL) and ORIGINAL.startswith(bad)


@given(flip(ORIGINAL))
@settings(max_examples=50, derandomize=True, database=None)
def test_flip_changes_one_to_four_bytes(bad):
    assert len(bad) == len(ORIGINAL) and 1 <= sum(a != b for a, b in zip(bad, ORIGINAL)) <= 4


@given(retype(ORIGINAL))
@settings(max_examples=100, derandomize=True, database=None)
def test_retype_gives_exactly_one_value_another_type(bad):
    before, after = json.loads(ORIGINAL), json.loads(bad)
    kinds_before = {path: json_kind(value_at(before, path)) for path in json_paths(before)}
    kinds_after = {path: json_kind(value_at(after, path)) for path in json_paths(after)}
    common = kinds_before.keys() & kinds_after.keys()  # what it held went with it
    assert sum(kinds_before[path] != kinds_after[path] for path in common) == 1


def value_at(tree, path):
    for key in path:
        tree = tree[key]
    return tree
