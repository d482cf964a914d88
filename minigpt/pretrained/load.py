"""Loading: a Hugging Face GPT-2 folder, a hub model name, or (load_base) a minigpt run too."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minigpt.pretrained.config import CONFIG_FILE, read_config
from minigpt.pretrained.errors import PretrainedError
from minigpt.pretrained.memory import check_memory
from minigpt.pretrained.tokenizer_files import read_tokenizer
from minigpt.pretrained.weights import WEIGHTS_FILE, load_weights, plan_weights


def load_folder(folder, dtype=np.float32):
    """A GPT (eval mode, its tokenizer in model.tokenizer) from a Hugging Face GPT-2 folder.

    Everything is checked before the model is allocated: config.json, every tensor's name,
    shape and dtype in model.safetensors, then the memory. float16 and bfloat16 weights are
    converted on load; dtype=np.float64 gives a float64 model (for gradient checks)."""
    from minigpt.model import GPT

    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedError(f"{folder} is not a folder")
    if not (folder / CONFIG_FILE).is_file():
        raise PretrainedError(f"{folder} has no {CONFIG_FILE}: a Hugging Face model folder holds "
                              f"{CONFIG_FILE} and {WEIGHTS_FILE}")
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise PretrainedError(_no_weights_message(folder))
    config = read_config(folder / CONFIG_FILE)
    plan = plan_weights(weights_path, config)
    check_memory(config, dtype, str(folder))
    tokenizer = read_tokenizer(folder, config.vocab_size)

    model = GPT(config, dtype=dtype)
    load_weights(model, weights_path, plan)
    model.tokenizer = tokenizer
    return model.eval()  # as transformers' from_pretrained: ready to generate


def _no_weights_message(folder: Path) -> str:
    if (folder / "model.safetensors.index.json").exists():
        return f"{folder} holds a sharded checkpoint (model.safetensors.index.json); minigpt reads one {WEIGHTS_FILE}"
    if (folder / "pytorch_model.bin").exists():
        return (f"{folder} has pytorch_model.bin, a pickle, which minigpt never loads (a pickle can run code), "
                f"and no {WEIGHTS_FILE}; with transformers, GPT2LMHeadModel.from_pretrained(folder)"
                f".save_pretrained(folder) writes one")
    return f"{folder} has no {WEIGHTS_FILE}"


def from_pretrained(name_or_path, dtype=np.float32):
    """A GPT from a local Hugging Face folder or, when no such path exists, a hub model name
    (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or owner/name) downloaded into the cache
    (minigpt.hub). The memory is checked on config.json, before the weights download."""
    from minigpt import hub

    path = Path(name_or_path)
    if path.exists():
        return load_folder(path, dtype)
    name = str(name_or_path)
    if not hub.is_model_name(name):
        raise PretrainedError(f"no folder {path}, and {name!r} is not a hub model name (like gpt2) either")
    try:
        config_path = hub.download_file(name, CONFIG_FILE)
        check_memory(read_config(config_path), dtype, name)
        hub.download_file(name, WEIGHTS_FILE)
    except hub.HubUnavailable as err:
        raise hub.HubUnavailable(f"there is no folder {name!r} here, so minigpt asked the hub: {err}") from None
    return load_folder(config_path.parent, dtype)


def load_base(spec, dtype=np.float32):
    """(model, tokenizer, description) to fine-tune or sample from, given any of

    - a minigpt run folder (state.json, from `python -m minigpt train`), loaded by
      checkpoint.load_model in the dtype it was saved in;
    - a Hugging Face GPT-2 folder (config.json + model.safetensors);
    - a hub model name ("gpt2", ..., "gpt2-xl"), downloaded into the cache.
    The model is in eval mode: call model.train() to fine-tune it."""
    from minigpt import checkpoint

    path = Path(spec)
    if path.is_dir():
        if any((path / sub / checkpoint.STATE_FILE).exists() for sub in ("", checkpoint.COMMIT_DIR)):
            model, tokenizer, state = checkpoint.load_model(path)
            where = f"minigpt run {path} (iteration {state.get('iteration', '?')})"
        elif (path / CONFIG_FILE).exists():
            model = load_folder(path, dtype)
            tokenizer, where = model.tokenizer, f"Hugging Face GPT-2 folder {path}"
        else:
            raise PretrainedError(f"{path} is neither a minigpt run (no {checkpoint.STATE_FILE}) nor a "
                                  f"Hugging Face model folder (no {CONFIG_FILE})")
    elif path.exists():
        raise PretrainedError(f"{path} is a file; pass the folder that holds it")
    else:
        model = from_pretrained(spec, dtype)
        tokenizer, where = model.tokenizer, f"{spec} from the Hugging Face hub"
    c = model.config
    description = (f"{where}: {model.num_params():,} parameters, {c.n_layer} layers, {c.n_head} heads, "
                   f"n_embd {c.n_embd}, context {c.block_size}, vocabulary {c.vocab_size}")
    return model, tokenizer, description
