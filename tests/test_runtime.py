"""minigpt.runtime: the training command runs Numba and BLAS on one thread unless the
thread variables were set by hand, and puts both back afterwards."""

from __future__ import annotations

import contextlib

import numba
import pytest

from minigpt import runtime

threadpoolctl = pytest.importorskip("threadpoolctl")  # in requirements.txt: always there in CI


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def no_thread_variables(monkeypatch):
    for name in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "TUNE_RUNTIME", True)


@pytest.fixture
def all_numba_threads():
    """Numba on all its threads for the test (so that going to one is a change), restored after."""
    previous = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    yield numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(previous)


def test_one_thread_per_process_then_back(no_thread_variables, all_numba_threads):
    blas_before = blas_threads()
    assert blas_before, "NumPy's BLAS is not visible to threadpoolctl"
    with runtime.one_thread_per_process():
        assert numba.get_num_threads() == 1
        assert blas_threads() == [1] * len(blas_before)
    assert numba.get_num_threads() == all_numba_threads
    assert blas_threads() == blas_before


def test_thread_counts_set_by_hand_win(no_thread_variables, all_numba_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    blas_before = blas_threads()
    with runtime.one_thread_per_process():
        assert numba.get_num_threads() == all_numba_threads
        assert blas_threads() == blas_before


def test_the_train_command_trains_inside_it(tmp_path, monkeypatch):
    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(runtime, "one_thread_per_process", recording)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 400, encoding="utf-8")
    from minigpt.__main__ import main

    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "out"), "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "2", "--eval-iters", "1",
                 "--sample-tokens", "0", "--no-progress", "--max-iters", "1"]) == 0
    assert entered == [True]
