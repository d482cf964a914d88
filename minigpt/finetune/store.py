"""Saving what fine-tuning makes (a classifier, LoRA adapters): tensors + readable JSON, atomically.

    folder/NAME.json                     what it is, readable by eye: configs, labels, the
                                         tokenizer, and which tensor file holds the weights
    folder/NAME-<sha256[:16]>.safetensors    the tensors, named by their own hash

A save writes the tensor file under its hash (a new name: the old checkpoint is
untouched), then replaces NAME.json in one atomic rename, then deletes the tensor file
the old JSON pointed to. A kill at any moment leaves a NAME.json whose tensor file exists
and matches its hash, so loading always finds one complete checkpoint. (minigpt.checkpoint
does the same for pretraining runs with a commit folder; a content-addressed name needs
none.) No pickle: safetensors and JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from minigpt.checkpoint import _fsync_dir, _fsync_file, _give_default_permissions  # the same care as checkpoints
from minigpt.files import sha256_of


class StoreError(ValueError):
    """A saved classifier or adapter file is missing, damaged, or not what it claims to be."""


def save(folder, name: str, tensors: dict[str, np.ndarray], record: dict) -> Path:
    """Write tensors and record as folder/name.json + its tensor file; returns the JSON's path."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{name}.json"
    old = _tensor_file_of(json_path)
    part = folder / f".{name}.safetensors.part"
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(part))
    _give_default_permissions(part)
    _fsync_file(part)
    digest = sha256_of(part)
    tensor_file = f"{name}-{digest[:16]}.safetensors"
    os.replace(part, folder / tensor_file)  # a new name (or identical bytes): nothing is lost

    text = json.dumps({**record, "tensors": tensor_file, "sha256": digest}, indent=2) + "\n"
    json_part = folder / f".{name}.json.part"
    json_part.write_text(text, encoding="utf-8")
    _fsync_file(json_part)
    os.replace(json_part, json_path)  # the commit
    _fsync_dir(folder)
    if old is not None and old != tensor_file:
        (folder / old).unlink(missing_ok=True)
    return json_path


def _tensor_file_of(json_path: Path) -> str | None:
    try:
        name = json.loads(json_path.read_text(encoding="utf-8")).get("tensors")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and "/" not in name and "\\" not in name else None


def load(folder, name: str, what: str) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, record) saved by save(); `what` names the thing in errors ("classifier")."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    json_path = folder / f"{name}.json"
    if not json_path.is_file():
        raise StoreError(f"no {what} in {folder}: {json_path.name} is missing")
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise StoreError(f"{json_path} is truncated or corrupt ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) or _tensor_file_of(json_path) is None:
        raise StoreError(f"{json_path} is not a minigpt {what} file (it needs \"tensors\" and \"sha256\")")
    tensor_path = folder / record["tensors"]
    if not tensor_path.is_file():
        raise StoreError(f"{json_path} names {tensor_path.name}, which is missing")
    if sha256_of(tensor_path) != record["sha256"]:
        raise StoreError(f"{tensor_path} is truncated or altered (its sha256 does not match {json_path.name})")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as err:  # safetensors raises its own error types
        raise StoreError(f"{tensor_path} is not a readable safetensors file ({err})") from None
    return tensors, record
