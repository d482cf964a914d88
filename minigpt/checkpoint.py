"""Checkpoints: everything needed to sample from a model or to continue training it exactly.

A checkpoint is three files in OUT_DIR, none of them a pickle:

    model.safetensors       the weights, under Hugging Face GPT-2 names (wte stored once:
                            the LM head is tied to it)
    optimizer.safetensors   AdamW's moments m and v (flat, like the parameter buffer)
    state.json              the rest, readable by eye: model config and dtype, tokenizer,
                            iteration, best val loss, training config, optimizer numbers,
                            RNG states, and the sha256 of the two tensor files

Saving must never leave a broken checkpoint, even if the process is killed half-way.
Three files cannot be renamed at once, so a save is written ahead and committed by one
rename, as databases do:

    1. write the three files into OUT_DIR/.checkpoint-saving/     (the old ones untouched)
    2. rename that folder to OUT_DIR/.checkpoint-commit/          (the commit: atomic)
    3. move each file into OUT_DIR (os.replace, atomic per file), remove the folder

A kill before step 2 leaves the old checkpoint as it was (the half-written folder is
ignored and cleared by the next save). A kill during step 3 leaves a complete new set
split between the commit folder and OUT_DIR; loading prefers the commit folder's files,
and the next save finishes the move first. Either way one complete checkpoint loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from minigpt.files import sha256_of

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FILES = (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)
SAVING_DIR = ".checkpoint-saving"
COMMIT_DIR = ".checkpoint-commit"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt or does not fit what it is loaded into."""


# --- saving ------------------------------------------------------------------------------


def save_checkpoint(out_dir, model, optimizer=None, tokenizer=None, **state) -> None:
    """Save model (and optimizer, tokenizer) plus JSON-able `state` into out_dir, atomically.

    state: whatever else the caller needs back, e.g. iteration=, best_val_loss=,
    train_config=, rng={"data": generator.bit_generator.state, ...}. The model's dropout
    generator is saved too, as state["rng"]["model"]."""
    from safetensors.numpy import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _finish_commit(out_dir)  # a save killed during step 3 is completed first
    saving = out_dir / SAVING_DIR
    shutil.rmtree(saving, ignore_errors=True)  # a save killed before its commit: discard it
    saving.mkdir()

    # 1. write ahead
    weights = {name: np.ascontiguousarray(p) for name, p in model.params.items()}
    save_file(weights, str(saving / MODEL_FILE), metadata={"format": "minigpt-gpt2"})
    optimizer_numbers = None
    if optimizer is not None:
        arrays, optimizer_numbers = optimizer.state_dict()
        save_file({k: np.ascontiguousarray(a) for k, a in arrays.items()}, str(saving / OPTIMIZER_FILE))
    rng = dict(state.pop("rng", {}) or {})
    rng["model"] = model.rng.bit_generator.state
    record = {
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(model.config),
        "dtype": model.dtype.name,
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "optimizer": optimizer_numbers,
        "rng": rng,
        **state,
        "sha256": {name: sha256_of(saving / name) for name in (MODEL_FILE, OPTIMIZER_FILE)
                   if (saving / name).exists()},
    }
    _write_json(saving / STATE_FILE, record)
    for name in os.listdir(saving):
        _give_default_permissions(saving / name)
        _fsync_file(saving / name)
    _fsync_dir(saving)

    # 2. commit, 3. move into place
    os.replace(saving, out_dir / COMMIT_DIR)
    _fsync_dir(out_dir)
    _finish_commit(out_dir)
    if optimizer is None:  # a stale optimizer file from an older save must not be paired with this one
        (out_dir / OPTIMIZER_FILE).unlink(missing_ok=True)


def _finish_commit(out_dir: Path) -> None:
    commit = out_dir / COMMIT_DIR
    if not commit.is_dir():
        return
    for name in FILES:
        if (commit / name).exists():
            os.replace(commit / name, out_dir / name)
    _fsync_dir(out_dir)
    shutil.rmtree(commit)


def _write_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, allow_nan=True)
        f.write("\n")


def _give_default_permissions(path: Path) -> None:
    """safetensors creates its files readable by their owner only; give every checkpoint
    file the permissions open() would (0o666 less the umask), so it can be shared."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the renames themselves durable on POSIX; Windows cannot open a folder.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- loading -----------------------------------------------------------------------------


def _path(out_dir: Path, name: str) -> Path:
    """Where the newest committed copy of a file is (see the module docstring)."""
    committed = out_dir / COMMIT_DIR / name
    return committed if committed.exists() else out_dir / name


def load_state(out_dir) -> dict:
    """The checked contents of state.json (tensor files verified against their sha256).

    Any damage (a truncated or edited file, a missing or altered tensor file) raises
    CheckpointError naming the file; loading never writes anything."""
    out_dir = Path(out_dir)
    path = _path(out_dir, STATE_FILE)
    if not path.exists():
        raise CheckpointError(f"no checkpoint in {out_dir}: {STATE_FILE} is missing")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:  # not UTF-8, not JSON (both are ValueErrors)
        raise CheckpointError(f"{path} is truncated or corrupt ({err})") from None
    required = ("format_version", "model_config", "dtype", "tokenizer", "sha256")
    if not isinstance(state, dict) or any(key not in state for key in required):
        raise CheckpointError(f"{path} is not a minigpt checkpoint (needs keys {', '.join(required)})")
    if state["format_version"] != FORMAT_VERSION or isinstance(state["format_version"], bool):
        raise CheckpointError(f"{path} has format version {state['format_version']!r}, expected {FORMAT_VERSION}")
    digests = state["sha256"]
    if (not isinstance(digests, dict) or MODEL_FILE not in digests
            or not all(name in FILES and isinstance(d, str) for name, d in digests.items())):
        raise CheckpointError(f"{path}: its sha256 entry must map {MODEL_FILE} (and {OPTIMIZER_FILE}) "
                              f"to hex digests, got {digests!r:.200}")
    if not isinstance(state.get("rng", {}), dict):
        raise CheckpointError(f"{path}: its rng entry must be a dict of generator states")
    for name, digest in digests.items():
        tensor_path = _path(out_dir, name)
        if not tensor_path.exists():
            raise CheckpointError(f"checkpoint in {out_dir} is incomplete: {name} is missing")
        if sha256_of(tensor_path) != digest:
            raise CheckpointError(
                f"{tensor_path} is truncated, corrupt or from another save (its sha256 does not "
                f"match the one recorded in {STATE_FILE})"
            )
    return state


def _read_tensors(path: Path, dtype) -> dict:
    """The arrays of a safetensors file, each checked to have `dtype` (the checkpoint's)."""
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    for name, array in arrays.items():
        if array.dtype != dtype:
            raise CheckpointError(f"{path}: tensor {name!r} is {array.dtype}, the checkpoint's dtype is {dtype}")
    return arrays


def load_model(out_dir):
    """(model, tokenizer, state) from the checkpoint in out_dir, ready to sample from.

    The model is in eval mode with its saved dropout generator; state is state.json's dict.
    A damaged checkpoint raises CheckpointError naming the file at fault."""
    from minigpt.data import tokenizer_from_dict
    from minigpt.model import GPT, GPTConfig

    out_dir = Path(out_dir)
    state = load_state(out_dir)
    state_path = _path(out_dir, STATE_FILE)
    try:
        config = GPTConfig(**state["model_config"])
        model = GPT(config, dtype=np.dtype(state["dtype"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{state_path} has an invalid model config ({err})") from None
    weights = _read_tensors(_path(out_dir, MODEL_FILE), model.dtype)
    try:
        model.load_params(weights)
    except ValueError as err:
        raise CheckpointError(f"{_path(out_dir, MODEL_FILE)} does not fit the model config in {state_path}: "
                              f"{err}") from None
    if "model" in state.get("rng", {}):
        try:
            model.rng.bit_generator.state = state["rng"]["model"]
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise CheckpointError(f"{state_path}: the saved dropout generator state is unusable ({err!r})") from None
    tokenizer = None
    if state["tokenizer"] is not None:
        try:
            tokenizer = tokenizer_from_dict(state["tokenizer"])
        except (KeyError, TypeError, ValueError) as err:  # whatever a damaged entry makes the parser trip on
            raise CheckpointError(f"{state_path} has a corrupt tokenizer entry ({err!r})") from None
        if tokenizer.vocab_size != config.vocab_size:
            raise CheckpointError(f"{state_path}: its tokenizer has {tokenizer.vocab_size} tokens, "
                                  f"the model's vocabulary {config.vocab_size}")
    return model.eval(), tokenizer, state


def load_optimizer_state(out_dir, optimizer, state: dict) -> None:
    """Restore AdamW's moments and numbers saved next to the model (the optimizer is left
    untouched if they do not fit)."""
    out_dir = Path(out_dir)
    if state.get("optimizer") is None or OPTIMIZER_FILE not in state["sha256"]:
        raise CheckpointError(f"{_path(out_dir, STATE_FILE)} has no optimizer state to resume from")
    optimizer_path = _path(out_dir, OPTIMIZER_FILE)
    arrays = _read_tensors(optimizer_path, optimizer.params.dtype)
    try:
        optimizer.load_state_dict(arrays, state["optimizer"])
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise CheckpointError(f"{optimizer_path} (with the optimizer numbers in {STATE_FILE}) does "
                              f"not fit the model: {err!r}") from None
