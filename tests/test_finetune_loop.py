"""The step both fine-tuning commands share (minigpt/finetune/loop.py): zeroed gradients
before each forward and backward pass, clipping, the schedule's learning rate, and no
optimizer step on a loss that is not finite. A stand-in model and optimizer record what
the loop does to them."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from minigpt.finetune.loop import Progress, Schedule, run_epochs
from minigpt.optim import lr_at


class Recorder:
    """A model with one gradient buffer, and the AdamW over it: every call is logged."""

    def __init__(self, gradient):
        self.grads = np.zeros(3)
        self.gradient = np.asarray(gradient, dtype=float)
        self.groups = [SimpleNamespace(grads=self.grads)]
        self.calls = []

    def train(self):
        self.calls.append("train")

    def zero_grad(self):
        self.calls.append("zero_grad")
        self.grads[...] = 0.0

    def loss_and_grads(self, rows, loss=1.0):
        self.calls.append("loss_and_grads")
        self.grads += self.gradient  # adds, as backward passes do: only zero_grad makes it the batch's
        return loss

    def step(self, lr):
        self.calls.append(("step", lr, self.grads.copy()))


def settings(**changes):
    return SimpleNamespace(**{"epochs": 2, "batch_size": 2, "lr": 1e-3, "min_lr": None, "warmup_steps": 2,
                              "seed": 0, "progress": False, "grad_clip": 1.0, **changes})


def test_each_step_zeroes_runs_clips_and_steps_at_the_schedule_rate():
    config, recorder = settings(), Recorder([3.0, 4.0, 0.0])  # norm 5: clipped to 1
    schedule, progress = Schedule.of(config, 5), Progress()  # 3 steps per epoch
    epochs = []
    run_epochs(config, 5, schedule, progress, recorder, recorder, recorder.loss_and_grads,
               lambda epoch, say: epochs.append(epoch), log=lambda *a: None)
    steps = [call for call in recorder.calls if isinstance(call, tuple)]
    assert progress.step == len(steps) == 6 and epochs == [1, 2]
    assert [lr for _, lr, _ in steps] == [lr_at(s, 2, 6, 1e-3, 1e-4) for s in range(6)]
    for _, _, grads in steps:  # this batch's gradient alone, scaled to the clip norm
        np.testing.assert_allclose(grads, [0.6, 0.8, 0.0], rtol=1e-6)  # (clip_grad_norm divides by norm + 1e-6)
    assert recorder.calls[:4] == ["train", "zero_grad", "loss_and_grads", steps[0]]


def test_a_loss_that_is_not_finite_stops_before_the_optimizer_steps():
    config, recorder = settings(), Recorder([1.0, 0.0, 0.0])
    with pytest.raises(FloatingPointError, match="lower --lr"):
        run_epochs(config, 4, Schedule.of(config, 4), Progress(), recorder, recorder,
                   lambda rows: recorder.loss_and_grads(rows, loss=math.nan), lambda *a: None, log=lambda *a: None)
    assert not any(isinstance(call, tuple) for call in recorder.calls)
