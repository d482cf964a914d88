"""Saving a minigpt model as a Hugging Face GPT-2 folder that transformers loads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from minigpt.pretrained.config import CONFIG_FILE, config_to_hf
from minigpt.pretrained.errors import PretrainedError
from minigpt.pretrained.tokenizer_files import TOKENIZER_FILES, tokenizer_texts
from minigpt.pretrained.weights import WEIGHTS_FILE, weights_to_save


def save_pretrained(model, folder, tokenizer=None) -> None:
    """Write config.json, model.safetensors (float32, named as GPT2LMHeadModel names them)
    and the tokenizer's files (see tokenizer_files.py) into folder, so that
    transformers.GPT2LMHeadModel.from_pretrained(folder) loads the same model.
    tokenizer defaults to model.tokenizer, if the model has one.

    The files are written into a hidden folder first and moved into place only once all
    of them are complete, so an error leaves nothing half-written behind."""
    from safetensors.numpy import save_file

    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise PretrainedError(f"the tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                              f"vocab_size {model.config.vocab_size}")
    texts = {CONFIG_FILE: json.dumps(config_to_hf(model.config, tokenizer), indent=2) + "\n",
             **tokenizer_texts(tokenizer)}

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=folder))
    try:
        # transformers refuses a safetensors file without this metadata
        save_file(weights_to_save(model), str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        for name in os.listdir(staging):
            os.chmod(staging / name, 0o666 & ~umask)  # safetensors makes its files owner-only
            os.replace(staging / name, folder / name)
        for name in TOKENIZER_FILES:  # a tokenizer left by an earlier save must not stay
            if name not in texts:
                (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
