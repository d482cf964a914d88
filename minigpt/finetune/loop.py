"""The epoch loop both fine-tuning commands run; what a step and an evaluation do is theirs.

    schedule = Schedule.of(config, n_train)     # steps per epoch, warm-up + cosine
    progress = Progress()                        # step, training time, interrupted
    run_epochs(config, n_train, schedule, progress, model, optimizer, loss_and_grads, after_epoch, log)

Every step is the same: the model in training mode with its gradients zeroed,
loss_and_grads(rows) -> loss (the command's forward and backward pass over one batch of
training rows), then gradient clipping at config.grad_clip and an AdamW step at
schedule.lr(progress.step). after_epoch(epoch, say) evaluates, logs with say(), saves and
plots. A loss that is not finite stops the run before the optimizer can step on it. Ctrl-C
finishes the current step, then after_epoch runs once more with the fraction of the epoch
done as `epoch` (minigpt.train.stop_at_iteration_end; a second Ctrl-C stops at once).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt.finetune.text_data import batch_indices
from minigpt.optim import clip_grad_norm, lr_at
from minigpt.train import stop_at_iteration_end


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    warmup: int
    peak_lr: float
    min_lr: float

    @classmethod
    def of(cls, config, n_train: int) -> "Schedule":
        """config's epochs, batch_size, lr, min_lr (None: lr / 10) and warmup_steps."""
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        total = config.epochs * steps_per_epoch
        min_lr = config.lr / 10 if config.min_lr is None else config.min_lr
        return cls(steps_per_epoch, total, min(config.warmup_steps, total), config.lr, min_lr)

    def lr(self, step: int) -> float:
        """The learning rate of optimizer step `step`: linear warm-up, then cosine to min_lr."""
        return lr_at(step, self.warmup, max(self.total_steps, self.warmup), self.peak_lr, self.min_lr)


@dataclass
class Progress:
    step: int = 0  # optimizer steps taken
    train_time_s: float = 0.0  # in the training steps only (evaluations excluded)
    interrupted: bool = False


def run_epochs(config, n_train: int, schedule: Schedule, progress: Progress, model, optimizer, loss_and_grads,
               after_epoch, log=print) -> None:
    """Train config.epochs epochs of shuffled batches (their order from config.seed alone, so
    a run is repeatable), updating `progress`. model: what trains (train(), zero_grad());
    optimizer: the AdamW over its trainable groups."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng([config.seed, 2])  # batch order
    groups_grads = [group.grads for group in optimizer.groups]
    bar = tqdm(total=schedule.total_steps, disable=not config.progress, unit="step", dynamic_ncols=True)
    say = bar.write if config.progress else log
    try:
        with stop_at_iteration_end() as stop:
            for epoch in range(1, config.epochs + 1):
                model.train()  # dropout on: setting up hands the model over in evaluation mode
                for rows in batch_indices(n_train, config.batch_size, rng):
                    t0 = time.perf_counter()
                    model.zero_grad()
                    loss = loss_and_grads(rows)
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"the training loss became {loss} at step {progress.step}; "
                                                 f"try a lower --lr")
                    clip_grad_norm(groups_grads, config.grad_clip)
                    optimizer.step(schedule.lr(progress.step))
                    progress.step += 1
                    progress.train_time_s += time.perf_counter() - t0
                    bar.set_postfix(loss=f"{float(loss):.4f}", epoch=epoch, refresh=False)
                    bar.update(1)
                    if stop["stop"]:
                        progress.interrupted = True
                        break
                done = round(progress.step / schedule.steps_per_epoch, 3) if progress.interrupted else epoch
                after_epoch(done, say)
                if progress.interrupted:
                    break
    finally:
        bar.close()


class MetricsLog:
    """metrics.jsonl, one row per evaluation, started empty; the rows are kept in `rows`
    too (for results.json and the plots), and on_row(row) is told of each."""

    def __init__(self, path, on_row=None):
        self.path, self.on_row, self.rows = Path(path), on_row, []
        self.path.write_text("", encoding="utf-8")

    def add(self, row: dict) -> dict:
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.on_row is not None:
            self.on_row(row)
        return row
