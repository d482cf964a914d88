"""How `python -m minigpt train` lays itself out on the cores (minigpt/launch.py): the rule
that picks the number of MPI ranks, the errors, and the re-launch under mpiexec for real
(a tiny model, a few seconds): N ranks run, the result is the one-process run's to float32
rounding, a run resumes across layouts, and Ctrl-C at the terminal stops and saves with
exit code 130.

conftest.py sets MINIGPT_RANKS=1 for every other test; the tests here remove it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import data_file, require
from test_distributed import assert_same_weights, mpiexec

from minigpt import checkpoint, distributed, launch, runtime, train
from minigpt.__main__ import main

REPO = Path(__file__).resolve().parents[1]
MPIEXEC = "/opt/mpich/bin/mpiexec"  # any path: the rule only asks whether one was found


@pytest.fixture(autouse=True)
def no_layout_default(monkeypatch):
    """Neither the tests' MINIGPT_RANKS=1, nor thread counts set by hand, nor an MPI launcher."""
    for name in (launch.ENVIRONMENT_DEFAULT, "PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                 *runtime.THREAD_VARIABLES):
        monkeypatch.delenv(name, raising=False)


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("requested, cores, mpi4py, found, batch, ranks, why", [
    # auto: one rank per core when mpi4py and mpiexec are both there...
    ("auto", 2, True, MPIEXEC, 12, 2, "mpi4py and mpiexec found; --ranks 1 for one process"),
    ("auto", 4, True, MPIEXEC, 12, 4, "mpi4py and mpiexec found; --ranks 1 for one process"),
    # ...or the most ranks, up to the cores, that split the batch
    ("auto", 5, True, MPIEXEC, 12, 4, "batch_size 12 splits over 4 of the 5 cores"),
    ("auto", 3, True, MPIEXEC, 8, 2, "batch_size 8 splits over 2 of the 3 cores"),
    ("auto", 2, True, MPIEXEC, 5, 1, "batch_size 5 does not split over 2 to 2 ranks"),
    ("auto", 3, True, MPIEXEC, 7, 1, "batch_size 7 does not split over 2 to 3 ranks"),
    # ...else one process
    ("auto", 1, True, MPIEXEC, 12, 1, "one core"),
    ("auto", 2, False, MPIEXEC, 12, 1, "mpi4py is not installed; pip install mpi4py mpich"),
    ("auto", 2, True, None, 12, 1, "no mpiexec found; pip install mpich"),
    ("auto", 2, False, None, 12, 1, "mpi4py is not installed"),
    # explicit: as asked, even beyond the cores; 1 needs no MPI at all
    (1, 2, True, MPIEXEC, 12, 1, "--ranks 1"),
    (1, 4, False, None, 5, 1, "--ranks 1"),
    (2, 2, True, MPIEXEC, 12, 2, "--ranks 2"),
    (3, 2, True, MPIEXEC, 12, 3, "--ranks 3"),
    (2, 1, True, MPIEXEC, 4, 2, "--ranks 2"),
])
def test_the_rule_chooses_ranks_from_the_facts(requested, cores, mpi4py, found, batch, ranks, why):
    layout = launch.choose_ranks(requested, cores, mpi4py, found, batch)
    assert layout.ranks == ranks
    assert why in layout.reason, layout.reason


@pytest.mark.parametrize("requested, mpi4py, found, batch, message", [
    (2, False, MPIEXEC, 12, "--ranks 2 needs MPI, but mpi4py cannot be imported: install both with pip install "
                            "mpi4py mpich (or use --ranks 1 for one process)"),
    (2, True, None, 12, "--ranks 2 needs MPI, but no mpiexec was found beside this Python or on PATH"),
    (2, True, MPIEXEC, 5, "--ranks 2 cannot split batch_size 5 evenly: choose a --batch-size divisible by 2"),
    (5, True, MPIEXEC, 12, "--ranks 5 cannot split batch_size 12 evenly"),
])
def test_ranks_that_cannot_run_are_clear_errors(requested, mpi4py, found, batch, message):
    with pytest.raises(launch.LayoutError) as caught:
        launch.choose_ranks(requested, 2, mpi4py, found, batch)
    assert message in str(caught.value)


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("1", 1), ("8", 8)])
def test_ranks_parse(text, value):
    assert launch.parse_ranks(text) == value


@pytest.mark.parametrize("text", ["0", "-2", "two", "", "2.5"])
def test_ranks_that_are_not_auto_or_positive_are_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected 'auto' or a number of ranks >= 1, got {text!r}"):
        launch.parse_ranks(text)


def test_minigpt_ranks_sets_the_default_and_the_flag_wins(monkeypatch):
    monkeypatch.setattr(launch, "has_mpi4py", lambda: False)  # so that auto means one process anywhere
    monkeypatch.setenv("MINIGPT_RANKS", "1")
    assert launch.choose_layout(None, 12).reason == "MINIGPT_RANKS=1"
    monkeypatch.setenv("MINIGPT_RANKS", "2")
    with pytest.raises(launch.LayoutError, match="MINIGPT_RANKS=2 needs MPI, but mpi4py cannot be imported"):
        launch.choose_layout(None, 12)
    assert launch.choose_layout(1, 12).reason == "--ranks 1"  # the flag wins
    assert launch.choose_layout("auto", 12).reason.startswith("mpi4py is not installed")
    monkeypatch.setenv("MINIGPT_RANKS", "many")
    with pytest.raises(launch.LayoutError, match="MINIGPT_RANKS: expected 'auto' or a number of ranks >= 1, got 'many'"):
        launch.choose_layout(None, 12)


def test_the_line_says_processes_threads_and_why(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    monkeypatch.setattr(launch, "has_mpi4py", lambda: True)
    monkeypatch.setattr(distributed, "mpiexec_path", lambda: MPIEXEC)
    assert launch.choose_layout(None, 12).describe() == \
        "using 2 MPI ranks x 1 thread (mpi4py and mpiexec found; --ranks 1 for one process)"
    assert launch.choose_layout(1, 12).describe() == "using 1 process x 2 threads (--ranks 1)"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.choose_layout(2, 12).describe() == "using 2 MPI ranks x threads as OMP_NUM_THREADS=3 (--ranks 2)"


def test_a_process_started_by_mpiexec_never_starts_ranks_itself(monkeypatch):
    """The launcher chose (mpiexec -n 1 included); only a --ranks that contradicts it is an error."""
    monkeypatch.setattr(launch, "has_mpi4py", lambda: True)
    monkeypatch.setattr(distributed, "mpiexec_path", lambda: MPIEXEC)
    monkeypatch.setenv("PMI_SIZE", "1")
    assert launch.choose_layout(None, 12) is None and launch.choose_layout(1, 12) is None
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    assert launch.choose_layout("auto", 12) is None and launch.choose_layout(2, 12) is None
    with pytest.raises(launch.LayoutError, match=r"--ranks 3, but mpiexec started 2 rank\(s\)"):
        launch.choose_layout(3, 12)


def test_the_ranks_get_one_thread_each_unless_counts_were_set_by_hand():
    alone = launch.children_environment({"PATH": "/bin"})
    assert alone == {"PATH": "/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}
    by_hand = {"PATH": "/bin", "OPENBLAS_NUM_THREADS": "2"}
    assert launch.children_environment(by_hand) == by_hand  # all four left alone: the user chose


def test_the_flags_passed_on_parse_back_into_the_same_arguments():
    """The re-launched ranks must run the very command typed: every flag, the switches too."""
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    typed = ["--preset", "base-bpe", "--resume", "--allow-data-change", "--no-progress", "--ranks", "2"]
    for name, kind, _ in train.FLAGS:
        value = {"dtype": "float64", "tokenizer": "bpe:some file.json"}.get(name, {int: "7", float: "3e-4", str: "x y"}[kind])
        typed += ["--" + name.replace("_", "-"), value]
    args = parser.parse_args(typed)
    assert vars(parser.parse_args(train.command_line(args))) == vars(args)
    plain = parser.parse_args(["--lr", "0.001"])
    assert vars(parser.parse_args(train.command_line(plain))) == vars(plain)
    assert "--ranks" not in train.command_line(plain)  # not given: the ranks see the same default


# --- the command: errors before any work ----------------------------------------------------------


def tiny_flags(corpus: Path, out_dir: Path, *more: str) -> list[str]:
    """A tiny model with dropout and two micro-batches per step (every random stream and the
    gradient accumulation take part)."""
    return ["--data", str(corpus), "--out-dir", str(out_dir), "--n-layer", "2", "--n-head", "2", "--n-embd", "16",
            "--block-size", "16", "--batch-size", "4", "--grad-accum", "2", "--dropout", "0.1", "--max-iters", "12",
            "--lr-decay-iters", "12", "--warmup-iters", "3", "--lr", "1e-2", "--min-lr", "1e-3",
            "--eval-interval", "6", "--eval-iters", "2", "--sample-tokens", "0", "--no-progress", *more]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "slice.txt"
    path.write_text(data_file("shakespeare").read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    return path


@pytest.mark.parametrize("flags, breaks, message", [
    (["--ranks", "2", "--batch-size", "5"], None, "--ranks 2 cannot split batch_size 5 evenly"),
    (["--ranks", "2"], "mpi4py", "--ranks 2 needs MPI, but mpi4py cannot be imported"),
    (["--ranks", "2"], "mpiexec", "--ranks 2 needs MPI, but no mpiexec was found"),
])
def test_the_command_refuses_ranks_that_cannot_run_before_any_work(flags, breaks, message, corpus, tmp_path,
                                                                   monkeypatch, capsys):
    if breaks == "mpi4py":
        monkeypatch.setitem(sys.modules, "mpi4py", None)  # importing it fails
    else:
        require("mpi4py")  # the command looks for mpi4py first: the other two errors need it installed
    if breaks == "mpiexec":
        monkeypatch.setattr(distributed, "mpiexec_path", lambda: None)
    out_dir = tmp_path / "out"
    assert main(["train", *tiny_flags(corpus, out_dir), *flags]) == 1  # (the last of a repeated flag wins)
    assert message in capsys.readouterr().err
    assert not out_dir.exists()


def test_an_unreadable_ranks_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--ranks", "0"])
    assert exited.value.code == 2
    assert "argument --ranks: expected 'auto' or a number of ranks >= 1, got '0'" in capsys.readouterr().err


# --- the command under mpiexec, for real -----------------------------------------------------------

RECORDER = """\
import json, os, sys
if os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE"):
    names = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMP_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    seen = {name: os.environ[name] for name in names if name in os.environ}
    with open(os.path.join(os.environ["RANKS_SEEN"], f"{os.getpid()}.json"), "w") as f:
        json.dump({**seen, "argv": sys.argv, "pid": os.getpid()}, f)
"""


def command(tmp_path: Path, flags: list[str], **popen) -> tuple[list[str], dict]:
    """`python -m minigpt train flags` in a fresh process, and its environment: no
    MINIGPT_RANKS, no thread counts, and a sitecustomize that makes every process started
    by mpiexec write down its rank, its world's size, its thread variables and its argv."""
    recorder = tmp_path / "recorder"
    seen = tmp_path / "seen"
    recorder.mkdir(exist_ok=True), seen.mkdir(exist_ok=True)
    (recorder / "sitecustomize.py").write_text(RECORDER)
    env = {name: value for name, value in os.environ.items()
           if name != launch.ENVIRONMENT_DEFAULT and name not in runtime.THREAD_VARIABLES}
    env.update(RANKS_SEEN=str(seen), PYTHONPATH=os.pathsep.join([str(recorder), str(REPO), env.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", "minigpt", "train", *flags], env


def ranks_seen(tmp_path: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in (tmp_path / "seen").glob("*.json")),
                  key=lambda seen: int(seen.get("PMI_RANK", seen.get("OMPI_COMM_WORLD_RANK", -1))))


def val_losses(out_dir: Path) -> list[float]:
    return [json.loads(line)["val_loss"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_by_default_the_command_trains_on_one_rank_per_core_as_one_process_would(corpus, tmp_path, capsys):
    """`python -m minigpt train` (no --ranks): with mpi4py and mpiexec here, it starts itself
    again under mpiexec as one rank per core (batch 4: up to 4), one thread each, with the
    flags typed, and ends where one process (--ranks 1) ends, to float32 rounding."""
    mpiexec()  # mpi4py and mpiexec are here (CI: must be)
    cores = runtime.available_cores()
    expected = max(n for n in (1, 2, 4) if n <= cores)  # batch 4 splits over 1, 2 or 4 ranks
    argv, env = command(tmp_path, tiny_flags(corpus, tmp_path / "ranks"))
    done = subprocess.run(argv, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert main(["train", *tiny_flags(corpus, tmp_path / "single"), "--ranks", "1"]) == 0
    one_process = capsys.readouterr().out

    assert done.stdout.splitlines()[0].startswith(
        f"using {expected} MPI ranks x 1 thread (mpi4py and mpiexec found" if expected > 1 else "using 1 process")
    assert one_process.splitlines()[0] == f"using 1 process x {cores} threads (--ranks 1)"
    seen = ranks_seen(tmp_path)
    assert [(int(s["PMI_RANK"]), int(s["PMI_SIZE"])) for s in seen] == [(r, expected) for r in range(expected)]
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    typed = vars(parser.parse_args(tiny_flags(corpus, tmp_path / "ranks")))
    for rank in seen:  # each ran `python -m minigpt train` with the flags typed, on one thread
        assert rank["argv"][1] == "train" and vars(parser.parse_args(rank["argv"][2:])) == typed, rank["argv"]
        assert all(rank[name] == "1" for name in runtime.THREAD_VARIABLES), rank
    assert done.stdout.count("done: val loss") == 1  # rank 0 alone reports
    np.testing.assert_allclose(val_losses(tmp_path / "ranks"), val_losses(tmp_path / "single"), rtol=1e-5)
    assert_same_weights(checkpoint.load_model(tmp_path / "ranks")[0].flat_params,
                        checkpoint.load_model(tmp_path / "single")[0])


def test_a_run_of_two_ranks_resumes_in_one_process(corpus, tmp_path, capsys):
    """6 steps as `--ranks 2`, then `--resume --ranks 1` to 12 = 12 steps in one process."""
    mpiexec()
    argv, env = command(tmp_path, [*tiny_flags(corpus, tmp_path / "run"), "--max-iters", "6", "--ranks", "2"])
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(ranks_seen(tmp_path)) == 2
    assert main(["train", "--resume", "--out-dir", str(tmp_path / "run"), "--max-iters", "12", "--ranks", "1",
                 "--no-progress"]) == 0
    assert main(["train", *tiny_flags(corpus, tmp_path / "single"), "--ranks", "1"]) == 0
    assert "resuming" in capsys.readouterr().out
    np.testing.assert_allclose(val_losses(tmp_path / "run"), val_losses(tmp_path / "single"), rtol=1e-5)
    assert_same_weights(checkpoint.load_model(tmp_path / "run")[0].flat_params,
                        checkpoint.load_model(tmp_path / "single")[0])


@pytest.mark.parametrize("sent_to", ["the terminal's group", "the command alone"])
def test_ctrl_c_stops_the_ranks_saves_and_exits_130(sent_to, corpus, tmp_path):
    """A terminal sends Ctrl-C's SIGINT to its foreground process group: here the command's
    own, in a session of its own (mpiexec and the ranks run in groups of their own); `kill
    -INT` sends it to the command alone. Either way each rank must get it once, through
    mpiexec, finish its iteration and let rank 0 save (a second SIGINT would make mpiexec
    abort the ranks unsaved), and the command must exit with 130."""
    mpiexec()
    flags = tiny_flags(corpus, tmp_path / "run", "--max-iters", "1000000", "--eval-interval", "1000000",
                       "--ranks", "2")
    argv, env = command(tmp_path, flags)
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)  # the first evaluation is written: the ranks are training
    time.sleep(0.5)
    if sent_to == "the terminal's group":
        os.killpg(child.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    else:
        child.send_signal(signal.SIGINT)
    try:
        out, _ = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        for rank in ranks_seen(tmp_path):  # (mpiexec, in a group of its own, ends with its ranks)
            with contextlib.suppress(ProcessLookupError):
                os.kill(rank["pid"], signal.SIGKILL)
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail("the command did not stop after Ctrl-C")
    assert child.returncode == 130, out
    iteration = json.loads((tmp_path / "run" / "state.json").read_text())["iteration"]
    assert iteration > 0 and f"interrupted: saved a checkpoint at iteration {iteration}" in out, out
