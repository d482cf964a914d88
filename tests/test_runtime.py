"""minigpt.runtime.limit_threads: what each data-parallel rank (and the profiler) runs on."""

from __future__ import annotations

import numba
import pytest
from conftest import require

from minigpt import runtime

threadpoolctl = require("threadpoolctl")  # in requirements.txt: CI fails rather than skips without it


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def restore_threads():
    numba_before, blas_before = numba.get_num_threads(), blas_threads()
    yield
    numba.set_num_threads(numba_before)
    threadpoolctl.threadpool_limits(limits=max(blas_before), user_api="blas")


def test_limit_threads_sets_numba_and_blas(restore_threads):
    assert blas_threads(), "NumPy's BLAS is not visible to threadpoolctl"
    runtime.limit_threads(1)
    assert numba.get_num_threads() == 1
    assert blas_threads() == [1] * len(blas_threads())


def test_the_train_command_keeps_the_libraries_thread_counts(tmp_path, restore_threads):
    """Measured on an idle 2-core machine, one process trains fastest on both cores (the
    README's speed section), so the command leaves the thread counts as it found them."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 400, encoding="utf-8")
    from minigpt.__main__ import main

    numba_before, blas_before = numba.get_num_threads(), blas_threads()
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "out"), "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "8", "--block-size", "8", "--batch-size", "2", "--eval-iters", "1",
                 "--sample-tokens", "0", "--no-progress", "--max-iters", "1"]) == 0
    # (training may load another BLAS library, a second pool: each keeps its own default)
    assert numba.get_num_threads() == numba_before
    assert set(blas_threads()) == set(blas_before), "the train command changed BLAS's thread count"
