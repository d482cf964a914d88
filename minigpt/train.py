"""The training loop: `python -m minigpt train`, or `train(TrainConfig(...))` from Python.

One obvious loop, nanoGPT-style, with the helpers it needs defined just above it (the
configuration and the setting up of a run, fresh or resumed, are in train_setup.py):

    for it in 0 .. max_iters:
        every eval_interval iterations (and at the end): estimate train/val loss,
            append a line to metrics.jsonl, save a checkpoint
        x, y = a random batch               (grad_accum micro-batches, gradients summed)
        loss = model.forward(x, y); model.backward()
        clip the gradient norm; AdamW step with this iteration's learning rate

Under `mpiexec -n N` the same loop runs in N processes that split every batch between
them (data parallelism, minigpt/distributed.py); the few lines that differ are marked
"MPI:". The result is the single-process run's, to float32 rounding.

The default configuration is nanoGPT's CPU recipe for Tiny Shakespeare at character
level (the preset "shakespeare-char"); every field can be changed by a flag, or in Python:

    from minigpt.train import TrainConfig, train
    result = train(TrainConfig(max_iters=500, out_dir="out/short"))
    result.metrics[-1]["val_loss"], result.sample, result.model

Exact resumption: a checkpoint holds the weights, AdamW's moments and step, and the
states of the two random generators that training consumes (batches and dropout).
Evaluation draws no random numbers during training (its batches are drawn once, from
a generator of their own), so 100 + resume + 100 iterations replay the same arithmetic
as 200 in one go and end with bit-equal weights. The checkpoint also records the size
and sha256 of the training text and of the tokenizer, so resuming on a corpus that has
changed since is an error (--allow-data-change continues anyway, on purpose).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minigpt import checkpoint, data, distributed, launch
from minigpt.optim import clip_grad_norm, lr_at
from minigpt.train_setup import (
    PRESETS,
    SAMPLE_STREAM,
    TrainConfig,
    make_eval_batches,
    prepare_run,
    save_run,
    saved_train_config,
)


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


@dataclass
class TrainResult:
    model: object
    tokenizer: object
    config: TrainConfig
    metrics: list[dict]  # the rows written to metrics.jsonl by this call
    train_losses: list[float]  # the loss of every iteration run by this call
    iterations: int  # optimizer steps done in total (including those before a resume)
    best_val_loss: float
    interrupted: bool = False
    sample: str | None = None
    tokens_per_sec: float = float("nan")  # training tokens per second of optimizer steps
    elapsed_s: float = 0.0
    full_val_loss: float = float("nan")  # over the whole validation split, at the end
    out_dir: Path = field(default_factory=Path)

    @property
    def final_val_loss(self) -> float:
        return self.metrics[-1]["val_loss"] if self.metrics else float("nan")


# --- one step, one evaluation ------------------------------------------------------------


def estimate_loss(model, batches) -> float:
    """Mean loss over the batches, without dropout and without touching gradients."""
    with model.evaluating():
        return float(np.mean([model.forward(x, y)[1] for x, y in batches]))


def split_loss(model, tokens, block_size: int, batch_size: int = 64, max_tokens: int = 2**18) -> float:
    """The mean loss over a whole split (up to its first max_tokens), in non-overlapping
    windows: no sampling noise, unlike the 20-batch estimates made during training.
    Reported once, at the end, as the run's definitive validation loss."""
    T = block_size
    n = (min(len(tokens), max_tokens) - 1) // T  # whole windows
    if n == 0:
        return float("nan")
    x = tokens[: n * T].reshape(n, T).astype(np.int64)  # (n, T)
    y = tokens[1: n * T + 1].reshape(n, T).astype(np.int64)  # (n, T), shifted by one
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]
    with model.evaluating():  # weight each batch by its size: the last one may be short
        return float(sum(model.forward(bx, by)[1] * len(bx) for bx, by in batches) / n)


def train_step(model, optimizer, batches, lr: float, grad_clip: float,
               world=distributed.SINGLE_PROCESS) -> tuple[float, float]:
    """One optimizer step on a list of micro-batches; returns (mean loss, gradient norm).

    backward() adds into the gradients, so the micro-batches accumulate for free; each is
    scaled by 1/len(batches) (dloss), making the sum the gradient of the mean loss over
    all of them, the same as one big batch. Nothing is updated if a loss or the gradient
    norm is not finite: the caller sees it and stops.

    MPI: with world.size N ranks, `batches` are this rank's rows of each micro-batch;
    dloss 1/N and the sum over ranks (one Allreduce) make the gradient of the whole batch."""
    model.zero_grad()
    losses = []
    for x, y in batches:
        _, loss = model.forward(x, y)
        losses.append(loss)
        if not math.isfinite(loss) and world.size == 1:  # (under MPI every rank must reach the Allreduce)
            return float(loss), float("nan")
        model.backward(1.0 / (len(batches) * world.size))
    world.sum_gradients(model.flat_grads)  # MPI: every rank now holds the global batch's gradient
    loss = world.mean(float(np.mean(losses)))  # MPI: the global batch's loss, the same on every rank
    if not math.isfinite(loss):
        return loss, float("nan")
    norm = clip_grad_norm(model.flat_grads, grad_clip)
    if math.isfinite(norm):
        optimizer.step(lr)
    return loss, norm


# --- Ctrl-C ------------------------------------------------------------------------------


@contextlib.contextmanager
def stop_at_iteration_end():
    """Turn the first Ctrl-C into a request to stop once the current iteration is done.

    A KeyboardInterrupt in the middle of an update would leave the parameters half
    updated; a flag checked between iterations lets the loop save a consistent
    checkpoint. A second Ctrl-C interrupts at once. (Signals can only be handled on the
    main thread; elsewhere Ctrl-C behaves as usual.)"""
    requested = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested["stop"]:
            raise KeyboardInterrupt
        requested["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


# --- the loop ----------------------------------------------------------------------------


def train(config: TrainConfig, on_step=None, on_eval=None, log=print) -> TrainResult:
    """Train (or, with config.resume, continue) a GPT as `config` says; see the module docstring.

    on_step(it, loss, model) is called after every iteration and on_eval(row) after every
    evaluation (e.g. to draw a live plot in a notebook). Raises TrainingDiverged on a
    NaN/inf loss, after keeping the last good checkpoint as it was."""
    from tqdm.auto import tqdm

    world = distributed.world()  # MPI: this process's rank of N (without mpiexec: one rank)
    if not world.is_root:  # MPI: rank 0 alone prints, evaluates and writes files
        log = _quiet
    run = prepare_run(config, log)
    config, model = run.config, run.model
    world.check_divides(config.batch_size)
    if world.size > 1:  # MPI: dropout masks as a single process draws them for the global batch
        model.rng = distributed.RowsOfGlobalDraws(model.rng, world)
    out_dir = Path(config.out_dir)
    metrics_path = out_dir / "metrics.jsonl"
    evaluated_at = None
    if world.is_root:
        out_dir.mkdir(parents=True, exist_ok=True)
        evaluated_at = _restart_metrics(metrics_path, keep_until=run.iteration if run.resumed else None)
    eval_batches = {"train": make_eval_batches(run.train_tokens, config),
                    "val": make_eval_batches(run.val_tokens, config)}
    if run.resumed:
        log(f"resuming {out_dir} at iteration {run.iteration} of {config.max_iters}")
    else:
        log(f"training a {model.num_params():,}-parameter GPT on {config.data} ({len(run.train_tokens):,} "
            f"training tokens, vocabulary {run.tokenizer.vocab_size}) into {out_dir}")

    def lr_of(it):
        return lr_at(it, config.warmup_iters, config.lr_decay_iters, config.lr, config.min_lr)

    tokens_per_iter = config.batch_size * config.block_size * config.grad_accum
    start_iter = run.iteration
    last_saved = start_iter if run.resumed else None
    metrics, train_losses = [], []
    t_start = time.perf_counter()
    train_time = window_time = 0.0  # seconds in optimizer steps: in total, since the last eval
    window_iters = 0
    interrupted = False
    show_progress = config.progress and world.is_root
    bar = tqdm(total=config.max_iters, initial=start_iter, disable=not show_progress, unit="it",
               dynamic_ncols=True)
    say = bar.write if show_progress else log  # printing through tqdm keeps the bar intact

    def elapsed():
        return run.elapsed_before + time.perf_counter() - t_start

    def diverged(what, value):
        kept = (f"the last good checkpoint (iteration {last_saved}) in {out_dir} was kept"
                if last_saved is not None else "no checkpoint had been saved yet")
        return TrainingDiverged(f"{what} became {value} at iteration {run.iteration}; training stopped "
                                f"and {kept}. Try a lower --lr or a smaller --grad-clip.")

    try:
        with stop_at_iteration_end() as stop:
            while True:
                it = run.iteration
                # evaluate and save: every eval_interval iterations and at the end, unless the
                # run being resumed did so already (a Ctrl-C saves without evaluating); MPI: rank 0 only
                due = (it % config.eval_interval == 0 or it >= config.max_iters) and it != evaluated_at
                if due and world.is_root:
                    losses = {split: estimate_loss(model, b) for split, b in eval_batches.items()}
                    for split, value in losses.items():
                        if not math.isfinite(value):
                            raise diverged(f"the {split} loss", value)
                    row = {"iter": it, "train_loss": losses["train"], "val_loss": losses["val"],
                           "lr": lr_of(it),
                           "tokens_per_sec": window_iters * tokens_per_iter / window_time if window_iters else None,
                           "elapsed_s": elapsed()}
                    window_time, window_iters = 0.0, 0
                    metrics.append(row)
                    with open(metrics_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    say(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                    run.best_val_loss = min(run.best_val_loss, losses["val"])
                    save_run(run, elapsed())
                    last_saved = it
                    if on_eval is not None:
                        on_eval(row)
                if it >= config.max_iters:
                    break

                # one optimizer step on grad_accum fresh batches
                t0 = time.perf_counter()
                lr = lr_of(it)
                batches = [data.get_batch(run.train_tokens, config.batch_size, config.block_size, run.batch_rng)
                           for _ in range(config.grad_accum)]
                # MPI: every rank drew the same global batch (same generator); each keeps its rows
                batches = [(world.local_rows(x), world.local_rows(y)) for x, y in batches]
                loss, norm = train_step(model, run.optimizer, batches, lr, config.grad_clip, world)
                if not math.isfinite(loss):
                    raise diverged("the training loss", loss)
                if not math.isfinite(norm):
                    raise diverged("the gradient norm", norm)
                step_time = time.perf_counter() - t0
                train_time += step_time
                window_time += step_time
                window_iters += 1
                run.iteration += 1
                train_losses.append(loss)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                                tok_s=f"{window_iters * tokens_per_iter / window_time:,.0f}", refresh=False)
                bar.update(1)
                if on_step is not None:
                    on_step(run.iteration, loss, model)
                # Ctrl-C was pressed during this iteration: save and leave (MPI: rank 0's decides)
                if world.root_decides(stop["stop"]):
                    if world.is_root:
                        save_run(run, elapsed())
                    interrupted = True
                    break
    except KeyboardInterrupt:  # a second Ctrl-C, mid-iteration: the state may be half updated
        bar.close()
        log(f"\ninterrupted during iteration {run.iteration}; not saved (the last checkpoint, "
            f"iteration {last_saved}, is in {out_dir})")
        raise
    finally:
        bar.close()
        if world.size > 1:
            model.rng = model.rng.generator

    from minigpt import plots

    if world.is_root and metrics_path.exists() and metrics_path.stat().st_size:
        plots.plot_losses(metrics_path, out_dir / "loss.png")
    steps = run.iteration - start_iter
    result = TrainResult(model, run.tokenizer, config, metrics, train_losses, run.iteration, run.best_val_loss,
                         interrupted=interrupted, elapsed_s=time.perf_counter() - t_start, out_dir=out_dir,
                         tokens_per_sec=steps * tokens_per_iter / train_time if steps else float("nan"))
    if interrupted:
        log(f"interrupted: saved a checkpoint at iteration {run.iteration} in {out_dir}; "
            f"continue with: python -m minigpt train --resume --out-dir {out_dir}")
        return result
    if not world.is_root:  # MPI: the other ranks are done; rank 0 reports and samples
        return result
    result.full_val_loss = split_loss(model, run.val_tokens, config.block_size, config.batch_size)
    if metrics:
        log(f"done: val loss {result.final_val_loss:.4f} at iteration {run.iteration} (best "
            f"{run.best_val_loss:.4f}; over the whole validation split {result.full_val_loss:.4f}); "
            f"{result.elapsed_s:.1f} s, {result.tokens_per_sec:,.0f} tokens/s")
    if config.sample_tokens > 0:
        result.sample = sample_text(model, run.tokenizer, config.sample_tokens, config.seed)
        log("sample:\n" + result.sample)
    return result


def _quiet(*args, **kwargs):
    pass


def _restart_metrics(path: Path, keep_until: int | None) -> int | None:
    """A fresh run starts an empty metrics.jsonl; a resumed one keeps the rows up to its
    start. Returns the iteration of the last row kept: the last evaluation already done."""
    rows = []
    if keep_until is not None and path.exists():
        from minigpt import plots  # (here, not at the top: matplotlib costs a fresh run 0.4 s of start-up)

        rows = [row for row in plots.read_metrics(path) if row["iter"] <= keep_until]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return rows[-1]["iter"] if rows else None


def sample_text(model, tokenizer, max_new_tokens: int, seed: int) -> str:
    """A short sample from the trained model (temperature 1, top-k 40), starting at a newline."""
    from minigpt.generate import generate

    try:
        prompt = tokenizer.encode("\n")
    except ValueError:  # a character vocabulary without newlines
        prompt = [0]
    idx = np.asarray([prompt], dtype=np.int64)  # (1, T)
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    out = generate(model, idx, max_new_tokens, temperature=1.0, top_k=40, top_p=None, rng=rng)
    return tokenizer.decode(out[0, idx.shape[1]:].tolist())


# --- command line ------------------------------------------------------------------------

# (field, type, help) for every flag that sets a TrainConfig field. Defaults are None so
# that run() can tell a flag given on the command line from one left alone (on --resume,
# only the flags given are compared with the checkpoint).
FLAGS = [
    ("data", str, "corpus: shakespeare, pydocs, shakespeare+pydocs or a path to a text file (default: shakespeare, "
                  "or pydocs when offline)"),
    ("tokenizer", str, "char, bpe (train a BPE on the training text) or bpe:PATH"),
    ("bpe_vocab_size", int, "with --tokenizer bpe: vocabulary size, special tokens included (1024)"),
    ("out_dir", str, "where checkpoints, metrics.jsonl and loss.png go (default out/shakespeare-char)"),
    ("n_layer", int, "transformer blocks (4)"),
    ("n_head", int, "attention heads (4)"),
    ("n_embd", int, "embedding width (128)"),
    ("block_size", int, "context length in tokens (64)"),
    ("dropout", float, "dropout probability (0.0)"),
    ("init_std", float, "std of the initial weights (default 1/sqrt(n_embd); 0.02 is GPT-2's and nanoGPT's)"),
    ("dtype", str, "float32 or float64"),
    ("batch_size", int, "sequences per micro-batch (12)"),
    ("grad_accum", int, "micro-batches per optimizer step (1)"),
    ("max_iters", int, "optimizer steps in total (2000)"),
    ("lr_decay_iters", int, "iteration at which the cosine reaches min_lr (default max_iters)"),
    ("lr", float, "peak learning rate (1e-3)"),
    ("min_lr", float, "final learning rate (1e-4)"),
    ("warmup_iters", int, "linear warm-up steps (100)"),
    ("weight_decay", float, "AdamW decoupled weight decay on 2-D parameters (0.1)"),
    ("beta1", float, "AdamW beta1 (0.9)"),
    ("beta2", float, "AdamW beta2 (0.99)"),
    ("grad_clip", float, "clip the global gradient norm to this (1.0; 0 = off)"),
    ("eval_interval", int, "evaluate and save every this many steps (250)"),
    ("eval_iters", int, "batches per loss estimate (20)"),
    ("seed", int, "random seed (1337)"),
    ("sample_tokens", int, "tokens to sample at the end (200; 0 = none)"),
]


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shakespeare-char",
                        help="starting configuration that the flags below change (shakespeare-char)")
    for name, kind, help_text in FLAGS:
        extra = {"choices": ["float32", "float64"]} if name == "dtype" else {}
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                            help=help_text, **extra)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --out-dir exactly where it stopped")
    parser.add_argument("--allow-data-change", action="store_true",
                        help="with --resume: continue even though the training text (or the "
                             "--tokenizer bpe:PATH file) changed since the checkpoint was saved")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (e.g. in logs)")
    launch.add_ranks_argument(parser)


def command_line(args) -> list[str]:
    """The flags that parse back into `args` (add_arguments read backwards): what the
    command passes on when it starts itself again under mpiexec (minigpt/launch.py)."""
    flags = ["--preset", args.preset]
    for name, _, _ in FLAGS:
        if getattr(args, name) is not None:
            flags += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    flags += [flag for flag, on in (("--resume", args.resume), ("--allow-data-change", args.allow_data_change),
                                    ("--no-progress", not args.progress)) if on]
    return flags + ([] if args.ranks is None else ["--ranks", str(args.ranks)])


def run(args) -> int:
    from minigpt.files import DataUnavailable

    given = {name: getattr(args, name) for name, _, _ in FLAGS if getattr(args, name, None) is not None}
    config = dataclasses.replace(PRESETS[args.preset], **given, resume=args.resume, progress=args.progress,
                                 allow_data_change=args.allow_data_change)
    if args.resume:
        # Flags not given take the checkpoint's values (so an interrupted run finishes as
        # planned); the given ones are compared with it by train().
        try:
            saved = saved_train_config(checkpoint.load_state(config.out_dir), config.out_dir)
        except checkpoint.CheckpointError as err:
            print(f"error: {err}", file=sys.stderr)
            return distributed.stop_all_ranks(1)
        for name in saved.keys() - given.keys() - {"out_dir", "resume", "progress", "allow_data_change"}:
            setattr(config, name, saved[name])
    try:  # one process, or N MPI ranks: this command started again under mpiexec (launch.py)
        config.validate()  # first: a bad setting is the one line printed, before any layout or rank starts
        layout = launch.choose_layout(args.ranks, config.batch_size)
    except ValueError as err:  # a bad setting, or a layout that cannot run (launch.LayoutError)
        print(f"error: {err}", file=sys.stderr)
        return distributed.stop_all_ranks(1)
    if layout is not None:  # (None: mpiexec started this process, as one of the ranks)
        print(layout.describe())
        if layout.ranks > 1:
            return launch.run_under_mpiexec(layout.ranks, command_line(args))
    try:
        result = train(config)
    except (TrainingDiverged, DataUnavailable, checkpoint.CheckpointError, ValueError, FileNotFoundError,
            distributed.MPIUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return distributed.stop_all_ranks(1)  # MPI: the others would wait forever
    except KeyboardInterrupt:
        return distributed.stop_all_ranks(130)
    return 130 if result.interrupted else 0
