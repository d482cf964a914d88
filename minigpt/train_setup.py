"""Setting up a training run: its configuration, its data and tokenizer, and, to resume,
everything restored from a checkpoint. The loop that uses all this is in train.py."""

from __future__ import annotations

import dataclasses
import math
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
    tokenizer: str = "char"  # "char", "bpe" (trains a 1024-token BPE first) or "bpe:PATH"
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
    sample_tokens: int = 200  # length of the sample printed at the end (0: none)
    progress: bool = True  # the tqdm progress bar

    def validate(self) -> None:
        """Check the training fields; the model's (n_layer, dropout, init_std, ...) are
        checked by GPTConfig when the model is built."""
        positive = ("block_size", "batch_size", "grad_accum", "eval_interval", "eval_iters")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "sample_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.lr_decay_iters is not None and self.lr_decay_iters < self.warmup_iters:
            raise ValueError(f"lr_decay_iters ({self.lr_decay_iters}) must be >= warmup_iters ({self.warmup_iters})")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not (self.tokenizer in ("char", "bpe") or self.tokenizer.startswith("bpe:")):
            raise ValueError(f"tokenizer must be 'char', 'bpe' or 'bpe:PATH', got {self.tokenizer!r}")


PRESETS = {"shakespeare-char": TrainConfig()}

# Fields that may change when a run is resumed: how long to go on and what to report.
# Any other difference between the flags and the checkpoint is an error, since it would
# silently make a different run than the one being continued.
RESUMABLE_FIELDS = {"out_dir", "max_iters", "eval_iters", "eval_interval", "resume",
                    "sample_tokens", "progress"}


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


def make_tokenizer(spec: str, text: str, log=print):
    """The tokenizer named by --tokenizer, trained on the training part of `text` if needed."""
    if spec == "char":
        return data.CharTokenizer.from_text(text)
    from minigpt.tokenizer import Tokenizer  # the BPE package; imported only when used

    if spec == "bpe":
        train_text = text[: int(len(text) * (1 - data.VAL_FRACTION))]  # never peek at val
        log(f"training a {DEFAULT_BPE_VOCAB}-token BPE tokenizer on {len(train_text):,} characters ...")
        return Tokenizer.train(train_text, DEFAULT_BPE_VOCAB)
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


# --- resuming -------------------------------------------------------------------------


def resolve_resume_config(config: TrainConfig, saved: dict) -> TrainConfig:
    """The config to continue with: the checkpoint's, with config's resumable fields.

    Fields left open (data None, lr_decay_iters None) take the checkpoint's values; any
    other field that differs from the checkpoint is an error naming each difference."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {k: v for k, v in saved.items() if k in known}
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
            f"cannot resume from {config.out_dir}: the checkpoint was trained with a different "
            f"configuration ({'; '.join(differing)}). Drop those flags to continue it, or "
            f"train into another --out-dir."
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
    iteration: int = 0  # optimizer steps done
    best_val_loss: float = math.inf
    elapsed_before: float = 0.0  # seconds spent by the runs this one continues
    resumed: bool = False


def prepare_run(config: TrainConfig, log=print) -> RunState:
    """Load the data, build tokenizer, model and optimizer; with config.resume, restore
    all of them (and the random generators) from the checkpoint in config.out_dir."""
    from minigpt.model import GPT, GPTConfig

    out_dir = Path(config.out_dir)
    # a resumed run is the saved model, tokenizer and state, each loaded (and checked) once
    loaded, saved_tokenizer, saved = checkpoint.load_model(out_dir) if config.resume else (None, None, None)
    if saved is not None:
        if not all(key in saved for key in ("train_config", "iteration")) or "batches" not in saved["rng"]:
            raise checkpoint.CheckpointError(
                f"the checkpoint in {out_dir} was not saved by training (it lacks the training "
                f"state): it can be sampled from, but not resumed")
        config = resolve_resume_config(config, saved["train_config"])
    config.validate()

    text, data_name = load_corpus(config.data, log)
    decay_iters = config.max_iters if config.lr_decay_iters is None else config.lr_decay_iters
    config = dataclasses.replace(config, data=data_name, lr_decay_iters=decay_iters)
    tokenizer = saved_tokenizer if saved is not None else make_tokenizer(config.tokenizer, text, log)
    tokens = data.encode_corpus(text, tokenizer)  # (N,) uint16/uint32
    train_tokens, val_tokens = data.split_tokens(tokens)
    data.check_enough_tokens(train_tokens, config.block_size, f"the training split of {data_name}")
    data.check_enough_tokens(val_tokens, config.block_size, f"the validation split of {data_name}")

    gpt_config = GPTConfig(tokenizer.vocab_size, config.block_size, config.n_layer, config.n_head,
                           config.n_embd, dropout=config.dropout, bias=config.bias, init_std=config.init_std)
    if loaded is None:
        model = GPT(gpt_config, seed=config.seed, dtype=np.dtype(config.dtype))
    elif loaded.config != gpt_config:
        raise checkpoint.CheckpointError(f"{out_dir}: the saved model config does not match the run's")
    else:
        model = loaded  # its weights and its dropout generator, where they were
    optimizer = AdamW(model, lr=config.lr, betas=(config.beta1, config.beta2),
                      weight_decay=config.weight_decay)
    run = RunState(config, tokenizer, model, optimizer, np.random.default_rng([config.seed, BATCH_STREAM]),
                   train_tokens, val_tokens)
    if saved is not None:
        checkpoint.load_optimizer_state(out_dir, optimizer, saved)  # m, v and step
        run.batch_rng.bit_generator.state = saved["rng"]["batches"]  # the batches continue too
        run.iteration = int(saved["iteration"])
        run.best_val_loss = saved["best_val_loss"] if saved.get("best_val_loss") is not None else math.inf
        run.elapsed_before = float(saved.get("elapsed_s", 0.0))
        run.resumed = True
    model.train()
    return run


def save_run(run: RunState, elapsed_s: float) -> None:
    checkpoint.save_checkpoint(
        run.config.out_dir, run.model, run.optimizer, run.tokenizer,
        iteration=run.iteration,
        best_val_loss=run.best_val_loss if math.isfinite(run.best_val_loss) else None,
        train_config=dataclasses.asdict(run.config), elapsed_s=elapsed_s,
        rng={"batches": run.batch_rng.bit_generator.state},
    )
