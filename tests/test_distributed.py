"""Data-parallel training (minigpt/distributed.py): N ranks under mpiexec train exactly as
one process does on the same global batch, keep identical weights, and only rank 0
prints or writes. The MPI tests start `mpiexec -n 2` in a subprocess (a few seconds each,
tiny model); mpi4py and mpiexec come from requirements-optional.txt (pip install mpi4py
mpich), which CI installs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REQUIRE_OPTIONAL, data_file, require

from minigpt import GPT, distributed
from minigpt.train import TrainConfig, train

HELPER = Path(__file__).with_name("mpi_train_helper.py")
REPO = Path(__file__).resolve().parents[1]


def mpiexec() -> str:
    """The mpiexec that `pip install mpich` put beside this Python (or one on PATH)."""
    require("mpi4py")
    found = shutil.which("mpiexec", path=os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]))
    if found is None:
        message = "no mpiexec found (pip install mpich puts one beside python)"
        if REQUIRE_OPTIONAL:
            pytest.fail(message)
        pytest.skip(message)
    return found


def quiet(*args, **kwargs):
    pass


@pytest.fixture
def tiny(tmp_path):
    """A tiny model on the first 200,000 characters of Tiny Shakespeare, with dropout and
    two micro-batches per step, so that every random stream and the gradient accumulation
    are exercised. out_dir is relative: each rank of the helper resolves it in its own folder."""
    text = data_file("shakespeare").read_text(encoding="utf-8")[:200_000]
    corpus = tmp_path / "slice.txt"
    corpus.write_text(text, encoding="utf-8")
    return TrainConfig(data=str(corpus), out_dir="run", n_layer=2, n_head=2, n_embd=16, block_size=16,
                       batch_size=4, grad_accum=2, dropout=0.1, max_iters=12, warmup_iters=3, lr=1e-2,
                       min_lr=1e-3, eval_interval=6, eval_iters=2, sample_tokens=0, progress=True)


def run_ranks(config: TrainConfig, results: Path, n: int = 2, timeout: float = 120) -> list[dict]:
    """Train `config` on n ranks under mpiexec; per rank: its saved npz and its folder."""
    results.mkdir(parents=True, exist_ok=True)
    config_path = results / "config.json"
    config_path.write_text(json.dumps(dataclasses.asdict(config)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([mpiexec(), "-n", str(n), sys.executable, str(HELPER), str(config_path), str(results)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)
    folders = [results / f"rank{r}" for r in range(n)]
    printed = "".join(f"\n--- rank {r} {name}:\n" + (f / name).read_text()
                      for r, f in enumerate(folders) for name in ("stdout.txt", "stderr.txt") if (f / name).exists())
    assert done.returncode == 0, done.stdout + done.stderr + printed
    return [{"folder": f, **np.load(results / f"rank{r}.npz")} for r, f in enumerate(folders)]


def assert_same_weights(flat_params, model):
    """flat_params equal model's weights to float32 rounding, except the keys' biases.

    A bias added to every key adds q . b to every score of a row, which the softmax
    ignores: its true gradient is zero and the computed one is rounding noise, which Adam
    (dividing by the noise's own size) turns into steps as large as the learning rate. So
    those entries differ between any two summation orders; everything else must agree."""
    C = model.config.n_embd
    keep = np.ones(flat_params.size, dtype=bool)
    for i in range(model.config.n_layer):
        keep[model.param_slices[f"h.{i}.attn.c_attn.bias"].start + C:][:C] = False  # (q, k, v) biases: the k part
    np.testing.assert_allclose(flat_params[keep], model.flat_params[keep], rtol=1e-4, atol=2e-6)
    start = GPT(model.config, seed=TrainConfig.seed).flat_params  # the tests keep the default seed
    assert np.abs(model.flat_params - start).max() > 1e-3  # training moved the weights


def in_folder(config: TrainConfig, folder: Path) -> TrainConfig:
    return dataclasses.replace(config, out_dir=str(folder / config.out_dir), progress=False)


# --- two ranks under mpiexec ----------------------------------------------------------------


def test_two_ranks_train_as_one_process_does(tiny, tmp_path):
    """Same losses and final weights as one process on the same global batch (to float32
    rounding: the ranks sum their gradients in another order), dropout and gradient
    accumulation included; identical weights on both ranks; only rank 0 prints or writes."""
    ranks = run_ranks(tiny, tmp_path / "mpi")
    single = train(in_folder(tiny, tmp_path / "single"), log=quiet)

    np.testing.assert_array_equal(ranks[0]["flat_params"], ranks[1]["flat_params"])  # bit for bit
    np.testing.assert_array_equal(ranks[0]["train_losses"], ranks[1]["train_losses"])
    assert int(ranks[0]["iterations"]) == single.iterations == 12
    np.testing.assert_allclose(ranks[0]["train_losses"], single.train_losses, rtol=1e-5)
    assert_same_weights(ranks[0]["flat_params"], single.model)

    root, other = ranks[0]["folder"], ranks[1]["folder"]
    rows, single_rows = ([json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
                         for folder in (root, tmp_path / "single"))
    assert [r["iter"] for r in rows] == [0, 6, 12]
    np.testing.assert_allclose([r["val_loss"] for r in rows], [r["val_loss"] for r in single_rows], rtol=1e-5)
    assert {p.name for p in (root / "run").iterdir()} >= {"metrics.jsonl", "loss.png", "state.json"}
    assert "training a" in (root / "stdout.txt").read_text()
    assert "12/12" in (root / "stderr.txt").read_text()  # rank 0's progress bar
    assert sorted(p.name for p in other.iterdir()) == ["stderr.txt", "stdout.txt"]  # no run/ folder
    assert (other / "stdout.txt").read_text() == "" and (other / "stderr.txt").read_text() == ""


def test_a_run_saved_by_two_ranks_resumes_in_one_process(tiny, tmp_path):
    """6 steps on 2 ranks + 6 resumed in one process = 12 steps in one process."""
    half = dataclasses.replace(tiny, max_iters=6, lr_decay_iters=12)
    ranks = run_ranks(half, tmp_path / "mpi")
    saved_run = ranks[0]["folder"] / "run"
    resumed = train(dataclasses.replace(half, out_dir=str(saved_run), max_iters=12, resume=True, progress=False),
                    log=quiet)
    whole = train(in_folder(dataclasses.replace(tiny, lr_decay_iters=12), tmp_path / "single"), log=quiet)
    assert resumed.iterations == 12
    np.testing.assert_allclose(resumed.train_losses, whole.train_losses[6:], rtol=1e-5)
    assert_same_weights(resumed.model.flat_params, whole.model)


def test_ctrl_c_under_mpiexec_stops_every_rank_after_the_same_step(tiny, tmp_path):
    """mpiexec passes Ctrl-C to every rank; rank 0's decision is broadcast at the end of the
    iteration, so all ranks leave the loop together (a rank left behind would wait in the
    next Allreduce forever, and this test would time out) and rank 0 saves."""
    long_run = dataclasses.replace(tiny, max_iters=1_000_000, eval_interval=1_000_000, progress=False)
    results = tmp_path / "mpi"
    results.mkdir()
    (results / "config.json").write_text(json.dumps(dataclasses.asdict(long_run)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, str(HELPER), str(results / "config.json"),
                              str(results)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    metrics = results / "rank0" / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the first evaluation is written: training has started
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the ranks did not all stop after Ctrl-C")
    state = json.loads((results / "rank0" / "run" / "state.json").read_text())
    ranks = [np.load(results / f"rank{r}.npz") for r in range(2)]
    assert int(ranks[0]["iterations"]) == int(ranks[1]["iterations"]) == state["iteration"] > 0
    np.testing.assert_array_equal(ranks[0]["flat_params"], ranks[1]["flat_params"])


# --- without MPI, and the pieces -------------------------------------------------------------


def test_without_mpiexec_there_is_one_rank_and_no_mpi(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # importing it would fail: it must not be needed
    world = distributed.world()
    assert (world.rank, world.size, world.is_root) == (0, 1, True)
    grads = np.arange(4.0)
    world.sum_gradients(grads)
    assert world.mean(2.5) == 2.5 and world.root_decides(True) is True
    np.testing.assert_array_equal(grads, np.arange(4.0))


def test_mpiexec_without_mpi4py_is_a_clear_error(monkeypatch, tiny, tmp_path, capsys):
    """What `mpiexec -n 2 python -m minigpt train` does when mpi4py is missing (the launcher's
    variables set, mpi4py not importable): an error naming the fix, exit code 1, no files."""
    from minigpt.__main__ import main

    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    out_dir = tmp_path / "out"
    assert main(["train", "--data", tiny.data, "--max-iters", "1", "--out-dir", str(out_dir)]) == 1
    err = capsys.readouterr().err
    assert "started by mpiexec as one of 2 ranks" in err and "pip install mpi4py mpich" in err, err
    assert not out_dir.exists()


@pytest.mark.parametrize("batch_size, size, fine", [(12, 2, True), (12, 3, True), (12, 5, False), (5, 2, False)])
def test_the_batch_must_split_evenly(batch_size, size, fine):
    world = distributed.World(rank=0, size=size)
    if fine:
        world.check_divides(batch_size)
    else:
        with pytest.raises(ValueError, match=f"batch_size {batch_size} cannot be split evenly over {size} ranks"):
            world.check_divides(batch_size)


def test_the_ranks_rows_make_the_global_batch():
    batch = np.arange(24).reshape(6, 4)  # (B, T)
    parts = [distributed.World(rank=r, size=3).local_rows(batch) for r in range(3)]
    assert all(p.shape == (2, 4) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_dropout_draws_are_rows_of_the_single_process_draw():
    """Each rank's masks are its rows of the mask one process draws for the global batch,
    and every rank's generator ends in the same state (the one the checkpoint saves)."""
    whole_rng = np.random.default_rng(7)
    whole = [whole_rng.random((4, 3, 5), dtype=np.float32) for _ in range(2)]  # two draws, (B, ...)
    for rank in range(2):
        sliced = distributed.RowsOfGlobalDraws(np.random.default_rng(7), distributed.World(rank=rank, size=2))
        for draw in whole:
            np.testing.assert_array_equal(sliced.random((2, 3, 5), dtype=np.float32), draw[2 * rank:2 * rank + 2])
        assert sliced.bit_generator.state == whole_rng.bit_generator.state


def test_a_waiting_rank_sleeps_between_rare_checks(monkeypatch):
    """broadcast_int, what idle benchmark ranks wait in: MPI's blocking broadcast would
    busy-wait on a core the timed layout needs, and checks every millisecond slowed the
    timed two-thread layouts by a quarter. So: a non-blocking broadcast, tested after sleeps
    of at least 10 ms."""
    class Request:
        def __init__(self, buffer):
            self.buffer, self.tests = buffer, 0

        def Test(self):
            self.tests += 1
            if self.tests < 3:
                return False
            self.buffer[0] = 42  # rank 0's value has arrived
            return True

    class Comm:
        def Ibcast(self, buffer, root):
            assert root == 0
            return Request(buffer)

    sleeps = []
    monkeypatch.setattr(distributed.time, "sleep", sleeps.append)
    assert distributed.World(rank=1, size=2, comm=Comm()).broadcast_int(0) == 42
    assert sleeps == [distributed.IDLE_POLL_S] * 2 and distributed.IDLE_POLL_S >= 0.01
