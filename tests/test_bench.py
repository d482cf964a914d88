"""The benchmarks must keep running (their numbers are never asserted: timing is noisy)."""

import re

import pytest
from conftest import require

from minigpt.__main__ import main


def test_train_bench_compares_with_pytorch(capsys):
    require("torch")
    assert main(["bench", "train", "--iters", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^minigpt\s+[\d.]+\s+[\d,]+", out, re.M), out
    assert re.search(r"^torch\s+[\d.]+\s+[\d,]+", out, re.M), out
    assert "ratio minigpt/torch" in out


def test_sample_bench_runs(capsys):
    assert main(["bench", "sample", "--iters", "1", "--warmup", "0", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^within block \(\d+ tokens\)\s+[\d,]+\s+[\d,]+\s+[\d.]+x", out, re.M), out


def test_unknown_suite_is_a_clear_error(capsys):
    assert main(["bench", "nonsense"]) == 2
    assert "unknown suite" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, least", [("--iters", "0", 1), ("--warmup", "-1", 0),
                                                ("--threads", "0", 1)])
def test_bad_counts_are_a_clear_error(capsys, flag, value, least):
    assert main(["bench", "sample", flag, value]) == 2  # before any benchmark runs
    captured = capsys.readouterr()
    assert captured.err == f"error: {flag} must be >= {least}, got {value}\n"
    assert captured.out == ""
