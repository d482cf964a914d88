"""`bench main`: the main command end to end against a plain PyTorch loop of the same recipe.

Its timings are never asserted; what is tested is that the comparison is fair (the PyTorch
loop trains the same recipe) and that the suite runs every command it promises."""

import json

import numpy as np
import pytest
from conftest import data_file, require

from minigpt.__main__ import main
from minigpt.model import GPT
from minigpt.train import train
from minigpt.train_setup import TrainConfig


def test_the_pytorch_loop_takes_the_same_steps_as_minigpt(tmp_path):
    """Same data, batches, init, AdamW, schedule and clipping: after a few steps the two
    moved every weight the same way. Were the loop's batches, learning rate, decay mask or
    clipping different, the updates would differ by far more than float32 rounding."""
    require("torch")
    from safetensors.numpy import load_file

    from minigpt.bench import torch_loop

    data_file("shakespeare")
    steps = 4
    assert torch_loop.main(["--out-dir", str(tmp_path / "torch"), "--max-iters", str(steps)]) == 0
    torch_weights = load_file(str(tmp_path / "torch" / "model.safetensors"))
    config = TrainConfig(max_iters=steps, out_dir=str(tmp_path / "minigpt"), sample_tokens=0, progress=False)
    ours = train(config, log=lambda *a: None).model
    start = GPT(ours.config, seed=config.seed)  # where both began
    assert set(torch_weights) == set(ours.params), "the two models name their weights alike"
    for name, theirs in torch_weights.items():
        moved_ours = ours.params[name] - start.params[name]
        moved_theirs = theirs - start.params[name]
        scale = np.abs(moved_ours).max()
        assert scale > 0, f"{name} did not move in minigpt"
        error = np.abs(moved_ours - moved_theirs).max() / scale
        assert error < 2e-2, f"{name}: the PyTorch loop moved it differently (relative error {error:.2e})"


@pytest.mark.slow
def test_the_main_suite_times_every_command_and_writes_json(tmp_path, capsys):
    require("torch")
    require("mpi4py")
    data_file("shakespeare")
    out_path = tmp_path / "bench.json"
    assert main(["bench", "main", "--iters", "2", "--json", str(out_path)]) == 0
    main_results = json.loads(out_path.read_text())["main"]
    seconds, cores = main_results["seconds"], json.loads(out_path.read_text())["machine"]["cores"]
    expected = {"minigpt", "minigpt, 1 process", "PyTorch", "PyTorch, 1 thread"}
    assert set(seconds) == expected and all(s > 0 for s in seconds.values())
    # the default command is timed as it runs by default (MPI ranks here), not as the tests' MINIGPT_RANKS=1 says
    assert " MPI ranks x 1 thread " in main_results["layouts"]["minigpt"] or cores == 1, main_results["layouts"]
    assert main_results["layouts"]["minigpt, 1 process"].startswith("using 1 process")
    assert "PyTorch's best / this" in capsys.readouterr().out
