"""Setting up a training run: its configuration, its data and tokenizer, and, to resume,
everything restored from a checkpoint. The loop that uses all this is in train.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt import checkpoint, data
from minigpt.optim import AdamW

# Random streams, each its own generator seeded by (seed, stream), so that drawing more
# from one (say, more eval batches) never shifts another. The model's dropout generator
# is made by GPT itself from (seed, 1).
BATCH_STREAM, EVAL_STREAM, SAMPLE_STREAM = 2, 3, 4
DEFAULT_BPE_VOCAB = 1024


@dataclass
class TrainConfig:
    """Everything that defines a training run. The defaults are the shakespeare-char preset."""

    data: str | None = None  # corpus name or text file; None: shakespeare, else pydocs (offline)
    tokenizer: str = "char"  # "char", "bpe" (trains a BPE of bpe_vocab_size tokens first) or "bpe:PATH"
    bpe_vocab_size: int = DEFAULT_BPE_VOCAB  # with tokenizer "bpe"
    out_dir: str = "out/shakespeare-char"
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    init_std: float | None = None  # None: 1/sqrt(n_embd); 0.02 is GPT-2's (and nanoGPT's)
    dtype: str = "float32"
    # optimisation
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per step; each step sees batch_size * grad_accum sequences
    max_iters: int = 2000
    lr_decay_iters: int | None = None  # None: max_iters
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0: no clipping
    # evaluation, output
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    resume: bool = False
    allow_data_change: bool = False  # resume even though the training text or tokenizer file changed
    sample_tokens: int = 200  # length of the sample printed at the end (0: none)
    progress: bool = True  # the tqdm progress bar

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, before any work is done.

        The model's fields (n_layer, n_head, dropout, init_std, ...) are checked by
        GPTConfig itself, here with a stand-in vocabulary of 1 (the real one is known only
        once the corpus is read and the tokenizer built)."""
        from minigpt.model import GPTConfig

        self._check_types()
        positive = ("block_size", "batch_size", "grad_accum", "eval_interval", "eval_iters")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr] = [0, {self.lr}], got {self.min_lr}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must not be negative, got {self.weight_decay}")
        if self.grad_clip < 0:  # 0 is the way to turn clipping off; a negative value would do so silently
            raise ValueError(f"grad_clip must not be negative (0 turns clipping off), got {self.grad_clip}")
        if self.lr_decay_iters is not None and self.lr_decay_iters < self.warmup_iters:
            raise ValueError(f"lr_decay_iters ({self.lr_decay_iters}) must be >= warmup_iters ({self.warmup_iters})")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not (self.tokenizer in ("char", "bpe") or self.tokenizer.startswith("bpe:")):
            raise ValueError(f"tokenizer must be 'char', 'bpe' or 'bpe:PATH', got {self.tokenizer!r}")
        if self.bpe_vocab_size < 257:  # the 256 bytes and at least one more (a merge or <|endoftext|>)
            raise ValueError(f"bpe_vocab_size must be at least 257 (256 byte tokens + 1), got {self.bpe_vocab_size}")
        GPTConfig(1, self.block_size, self.n_layer, self.n_head, self.n_embd, self.dropout, self.bias, self.init_std)

    def _check_types(self) -> None:
        """Every field holds a value of its annotated type (read from the annotation, e.g.
        "int | None"), so that a string from a hand-edited file is named, not half-used."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kinds = tuple(_FIELD_KINDS[kind.strip()] for kind in f.type.split("|"))
            # Python counts True as an int; a setting does not
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f"{f.name} must be {f.type}, got {value!r}")


_FIELD_KINDS = {"int": numbers.Integral, "float": numbers.Real, "str": str, "bool": bool, "None": type(None)}


PRESETS = {
    "shakespeare-char": TrainConfig(),
    # The base model that fine-tuning (minigpt.finetune) starts from: a 2048-token BPE
    # trained by minigpt on the training part of Tiny Shakespeare + the Python docs, with
    # <|endoftext|> between documents; recipe and wall time in the README. 2,500 iterations:
    # chosen by validation loss (4.82 after 1,000, 4.70 after 2,500, still falling slowly)
    # as the longest schedule that stays well inside the 15 minutes on 2 cores.
    "base-bpe": TrainConfig(
        data="shakespeare+pydocs", tokenizer="bpe", bpe_vocab_size=2048, out_dir="out/base-bpe",
        n_layer=4, n_head=4, n_embd=192, block_size=128, dropout=0.1, batch_size=16,
        max_iters=2500, lr=1e-3, min_lr=1e-4, warmup_iters=100, eval_interval=250,
    ),
}

# Fields that may change when a run is resumed: how long to go on and what to report.
# Any other difference between the flags and the checkpoint is an error, since it would
# silently make a different run than the one being continued.
RESUMABLE_FIELDS = {"out_dir", "max_iters", "eval_iters", "eval_interval", "resume",
                    "sample_tokens", "progress", "allow_data_change"}


# --- data ----------------------------------------------------------------------------------


def load_corpus(name: str | None, log=print) -> tuple[str, str]:
    """(text, name): name None means Tiny Shakespeare, or the offline pydocs if it cannot be had."""
    from minigpt.files import DataUnavailable

    if name is not None:
        try:
            return data.load_text(name), name
        except DataUnavailable as err:
            raise DataUnavailable(f"cannot get the {name} corpus: {err}") from None
    try:
        return data.load_text("shakespeare"), "shakespeare"
    except DataUnavailable:
        log("Tiny Shakespeare is not available (offline and not cached), so training on the "
            "Python documentation (pydocs) instead.")
        return data.load_text("pydocs"), "pydocs"


def make_tokenizer(spec: str, text: str, log=print, vocab_size: int = DEFAULT_BPE_VOCAB):
    """The tokenizer named by --tokenizer, trained on the training part of `text` if needed
    (with data.END_OF_TEXT as a special token when the text separates documents by it)."""
    if spec == "char":
        return data.CharTokenizer.from_text(text)
    from minigpt.tokenizer import Tokenizer  # the BPE package; imported only when used

    if spec == "bpe":
        train_text = text[: int(len(text) * (1 - data.VAL_FRACTION))]  # never peek at val
        specials = [data.END_OF_TEXT] if data.END_OF_TEXT in text else []
        log(f"training a {vocab_size}-token BPE tokenizer on {len(train_text):,} characters ...")
        return Tokenizer.train(train_text, vocab_size, special_tokens=specials)
    path = Path(spec.removeprefix("bpe:"))
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer file {path} (make one with: python -m minigpt tokenize "
                                f"train -o {path}, or use --tokenizer bpe to train one first)")
    return Tokenizer.load(path)


def make_eval_batches(tokens, config: TrainConfig) -> list:
    """config.eval_iters fixed batches of a split, drawn once from the eval stream.

    The same batches at every evaluation make successive estimates comparable (their
    differences are the model's, not the sample's), and evaluating consumes no random
    numbers of the training streams."""
    rng = np.random.default_rng([config.seed, EVAL_STREAM])
    return [data.get_batch(tokens, config.batch_size, config.block_size, rng) for _ in range(config.eval_iters)]


# --- fingerprints: is this the data the checkpoint was trained on? ----------------------


def text_fingerprint(text: str) -> dict:
    """Size and sha256 of the training text as loaded (its UTF-8 bytes), whatever its source.

    Saved with every checkpoint, so that resuming on a changed corpus is noticed, even
    when the edit kept the file's name, size and characters."""
    raw = text.encode("utf-8")
    return {"text_bytes": len(raw), "text_sha256": hashlib.sha256(raw).hexdigest()}


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's canonical JSON: to_dict() with sorted keys and no spaces."""
    canonical = json.dumps(tokenizer.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_same_data(recorded, now: dict, tokenizer, config: TrainConfig, out_dir: Path, log=print) -> None:
    """Refuse to resume on other data than the checkpoint was trained on.

    recorded: the checkpoint's fingerprint (None in checkpoints older than fingerprints);
    now: this run's text_fingerprint; tokenizer: the checkpoint's. A --tokenizer bpe:PATH
    file is compared too (the run goes on with the checkpoint's copy of the tokenizer, so
    a changed file would otherwise go unnoticed). config.allow_data_change turns a change
    of data into a warning (but not a checkpoint that disagrees with itself)."""
    state_path = out_dir / checkpoint.STATE_FILE
    if recorded is None:
        log(f"note: the checkpoint in {out_dir} predates data fingerprints, so resuming cannot "
            f"check that {config.data} is the text it was trained on")
        return
    keys = {"text_bytes": int, "text_sha256": str, "tokenizer_sha256": str}
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(k), t) for k, t in keys.items()):
        raise checkpoint.CheckpointError(f"{state_path} has a malformed data fingerprint: {recorded!r:.200}")
    if tokenizer_fingerprint(tokenizer) != recorded["tokenizer_sha256"]:
        raise checkpoint.CheckpointError(f"{state_path}: its tokenizer does not match the fingerprint saved "
                                         f"with it (the file was edited or damaged)")
    changes = []
    if (recorded["text_bytes"], recorded["text_sha256"]) != (now["text_bytes"], now["text_sha256"]):
        changes.append(
            f"the training text {config.data} has changed since the checkpoint was saved (then "
            f"{recorded['text_bytes']:,} bytes, sha256 {recorded['text_sha256'][:12]}...; now "
            f"{now['text_bytes']:,} bytes, sha256 {now['text_sha256'][:12]}...)")
    tokenizer_path = Path(config.tokenizer.removeprefix("bpe:")) if config.tokenizer.startswith("bpe:") else None
    if tokenizer_path is not None and tokenizer_path.is_file():
        from minigpt.tokenizer import Tokenizer

        file_digest = tokenizer_fingerprint(Tokenizer.load(tokenizer_path))
        if file_digest != recorded["tokenizer_sha256"]:
            changes.append(
                f"the tokenizer file {tokenizer_path} has changed since the checkpoint was saved "
                f"(sha256 of its JSON then {recorded['tokenizer_sha256'][:12]}..., now {file_digest[:12]}...)")
    if not changes:
        return
    if config.allow_data_change:
        log("WARNING: --allow-data-change: " + "; ".join(changes) + ". Continuing on purpose, with "
            "the checkpoint's tokenizer; the losses before and after this point are measured on different data.")
        return
    raise checkpoint.CheckpointError(
        f"cannot resume from {state_path}: " + "; ".join(changes) + ". Resume on the data it was "
        f"trained on, train into another --out-dir, or pass --allow-data-change to continue on "
        f"the new data on purpose.")


# --- resuming -------------------------------------------------------------------------


def saved_train_config(state: dict, out_dir) -> dict:
    """The training config a checkpoint's state.json recorded (TrainConfig's fields only).

    Raises CheckpointError naming state.json when there is none (a checkpoint saved for
    sampling only) or when a value in it is one TrainConfig rejects."""
    state_path = Path(out_dir) / checkpoint.STATE_FILE
    saved = state.get("train_config")
    if not isinstance(saved, dict):
        raise checkpoint.CheckpointError(
            f"the checkpoint in {out_dir} was not saved by training ({state_path} lacks the "
            f"training state): it can be sampled from, but not resumed")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in saved.items() if k in known}
    # Older versions resolved lr_decay_iters None to max_iters even when that was below
    # warmup_iters (see prepare_run). Such a run was all warm-up, and warmup_iters gives it
    # the same schedule while keeping the checkpoint resumable.
    decay, warmup = saved.get("lr_decay_iters"), saved.get("warmup_iters")
    if type(decay) is int and type(warmup) is int and decay < warmup:
        saved["lr_decay_iters"] = warmup
    try:
        TrainConfig(**saved).validate()
    except ValueError as err:
        raise checkpoint.CheckpointError(f"{state_path} has an invalid training config: {err}") from None
    return saved


def resolve_resume_config(config: TrainConfig, saved: dict) -> TrainConfig:
    """The config to continue with: the checkpoint's (saved, from saved_train_config), with
    config's resumable fields.

    Fields left open (data None, lr_decay_iters None) take the checkpoint's values; any
    other field that differs from the checkpoint is an error naming each difference."""
    wanted = dataclasses.asdict(config)
    for open_field in ("data", "lr_decay_iters"):
        if wanted[open_field] is None:
            wanted[open_field] = saved.get(open_field)
    differing = [
        f"{name}: checkpoint {saved[name]!r}, now {wanted[name]!r}"
        for name in sorted(saved)
        if name not in RESUMABLE_FIELDS and wanted[name] != saved[name]
    ]
    if differing:
        raise checkpoint.CheckpointError(
            f"cannot resume from {Path(config.out_dir) / checkpoint.STATE_FILE}: the checkpoint was trained "
            f"with a different configuration ({'; '.join(differing)}). Drop those flags to continue it, "
            f"or train into another --out-dir."
        )
    return TrainConfig(**{**saved, **{k: wanted[k] for k in RESUMABLE_FIELDS}})


# --- setting up a run --------------------------------------------------------------------


@dataclass
class RunState:
    """What the loop works on: built fresh, or restored from a checkpoint to continue."""

    config: TrainConfig  # with data and lr_decay_iters resolved
    tokenizer: object
    model: object
    optimizer: AdamW
    batch_rng: np.random.Generator  # draws the training batches
    train_tokens: np.ndarray  # (N_train,)
    val_tokens: np.ndarray  # (N_val,)
    fingerprint: dict  # the data trained on (see check_same_data), saved with every checkpoint
    iteration: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    elapsed_before: float = 0.0  # seconds spent by the runs this one continues
    resumed: bool = False


def prepare_run(config: TrainConfig, log=print) -> RunState:
    """Load the data, build tokenizer, model and optimizer; with config.resume, restore
    all of them (and the random generators) from the checkpoint in config.out_dir."""
    from minigpt.model import GPT, GPTConfig

    out_dir = Path(config.out_dir)
    state_path = out_dir / checkpoint.STATE_FILE
    # a resumed run is the saved model, tokenizer and state, each loaded (and checked) once
    loaded, saved_tokenizer, saved = checkpoint.load_model(out_dir) if config.resume else (None, None, None)
    if saved is not None:
        config = resolve_resume_config(config, saved_train_config(saved, out_dir))
    config.validate()

    text, data_name = load_corpus(config.data, log)
    # lr_decay_iters None (the default) means "decay over the whole run": max_iters, but
    # never less than warmup_iters. A run shorter than its warm-up (--max-iters 20 with the
    # default 100 warm-up steps) is all warm-up either way, and the value saved in its
    # checkpoint stays valid (>= warmup_iters) when the run is resumed for longer.
    decay_iters = max(config.max_iters, config.warmup_iters) if config.lr_decay_iters is None else config.lr_decay_iters
    config = dataclasses.replace(config, data=data_name, lr_decay_iters=decay_iters)
    fingerprint = {"data": data_name, **text_fingerprint(text)}
    if saved is None:
        tokenizer = make_tokenizer(config.tokenizer, text, log, config.bpe_vocab_size)
    elif saved_tokenizer is None:
        raise checkpoint.CheckpointError(f"{state_path} has no tokenizer to resume with")
    else:
        tokenizer = saved_tokenizer
        check_same_data(saved.get("fingerprint"), fingerprint, tokenizer, config, out_dir, log)
    fingerprint["tokenizer_sha256"] = tokenizer_fingerprint(tokenizer)
    try:
        tokens = data.encode_corpus(text, tokenizer)  # (N,) uint16/uint32
    except ValueError as err:  # e.g. a character the tokenizer has never seen
        if saved is None:
            raise
        raise checkpoint.CheckpointError(
            f"the tokenizer saved in {state_path} cannot encode {data_name}: {err}") from None
    train_tokens, val_tokens = data.split_tokens(tokens)
    data.check_enough_tokens(train_tokens, config.block_size, f"the training split of {data_name}")
    data.check_enough_tokens(val_tokens, config.block_size, f"the validation split of {data_name}")

    gpt_config = GPTConfig(tokenizer.vocab_size, config.block_size, config.n_layer, config.n_head,
                           config.n_embd, dropout=config.dropout, bias=config.bias, init_std=config.init_std)
    if loaded is None:
        model = GPT(gpt_config, seed=config.seed, dtype=np.dtype(config.dtype))
    elif loaded.config != gpt_config or loaded.dtype != np.dtype(config.dtype):
        raise checkpoint.CheckpointError(f"{state_path}: the saved model ({loaded.config}, {loaded.dtype}) does "
                                         f"not match its training config ({gpt_config}, {config.dtype})")
    else:
        model = loaded  # its weights and its dropout generator, where they were
    optimizer = AdamW(model, lr=config.lr, betas=(config.beta1, config.beta2),
                      weight_decay=config.weight_decay)
    run = RunState(config, tokenizer, model, optimizer, np.random.default_rng([config.seed, BATCH_STREAM]),
                   train_tokens, val_tokens, fingerprint)
    if saved is not None:
        checkpoint.load_optimizer_state(out_dir, optimizer, saved)  # m, v and step
        _restore_counters_and_batches(run, saved, state_path)
    model.train()
    return run


def _restore_counters_and_batches(run: RunState, saved: dict, state_path: Path) -> None:
    """The iteration, best val loss, time spent and batch generator saved in state.json."""
    iteration, best, elapsed = saved.get("iteration"), saved.get("best_val_loss"), saved.get("elapsed_s", 0.0)

    def is_number(x):
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

    if not (isinstance(iteration, numbers.Integral) and not isinstance(iteration, bool) and iteration >= 0):
        raise checkpoint.CheckpointError(f"{state_path}: iteration must be a count >= 0, got {iteration!r}")
    if not (best is None or is_number(best)) or not (is_number(elapsed) and elapsed >= 0):
        raise checkpoint.CheckpointError(
            f"{state_path}: best_val_loss must be a number or null and elapsed_s a number >= 0, "
            f"got {best!r} and {elapsed!r}")
    rng = saved.get("rng")
    try:
        run.batch_rng.bit_generator.state = rng["batches"]  # the batches continue too
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise checkpoint.CheckpointError(
            f"{state_path}: the saved state of the batch generator is unusable ({err!r})") from None
    run.iteration = int(iteration)
    run.best_val_loss = math.inf if best is None else float(best)
    run.elapsed_before = float(elapsed)
    run.resumed = True


def save_run(run: RunState, elapsed_s: float) -> None:
    checkpoint.save_checkpoint(
        run.config.out_dir, run.model, run.optimizer, run.tokenizer,
        iteration=run.iteration,
        best_val_loss=run.best_val_loss if math.isfinite(run.best_val_loss) else None,
        train_config=dataclasses.asdict(run.config), elapsed_s=elapsed_s,
        rng={"batches": run.batch_rng.bit_generator.state},
        fingerprint=run.fingerprint,
    )
