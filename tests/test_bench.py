"""The benchmarks must keep running (their numbers are never asserted: timing is noisy)."""

import json
import re

import pytest
from conftest import require

from minigpt import GPTConfig
from minigpt.__main__ import main
from minigpt.bench.profile import Stopwatch, profile_preset
from minigpt.bench.train import Preset, layouts, process_counts, ratios


@pytest.mark.slow
def test_train_bench_times_every_layout_profiles_and_writes_json(capsys, tmp_path):
    """One short run of everything the README's speed section needs: both systems in every
    layout of this machine's cores, the profile, the summary table and the JSON file."""
    require("torch")
    require("mpi4py")
    out_path = tmp_path / "bench.json"
    assert main(["bench", "train", "--iters", "1", "--warmup", "0", "--presets", "shakespeare-char",
                 "--profile", "--json", str(out_path)]) == 0
    out = capsys.readouterr().out
    results = json.loads(out_path.read_text())
    cores = results["machine"]["cores"]
    expected = {(l.system, l.shape) for l in layouts("minigpt", cores, 12) + layouts("torch", cores, 12)}
    rows = results["train"]["presets"]["shakespeare-char"]["rows"]
    assert {(r["system"], r["layout"]) for r in rows} == expected
    assert all(r["tokens_per_s"] > 0 and r["steps_timed"] == 1 and 0 < r["mfu"] for r in rows)
    for system, layout in expected:  # printed as a table row too
        assert re.search(rf"^{system}\s+{re.escape(layout)}.*?\s[\d.]+\s+[\d,]+\s", out, re.M), out
    assert "ratio minigpt/torch, each at its best" in out and "| **each at its best** |" in out
    profile = results["profile"]["shakespeare-char"]
    assert set(profile) == {str(t) for t in {1, cores}}
    one = profile["1"]
    assert set(one["layers"]) >= {"embedding", "layernorm", "attention", "mlp", "linear", "cross_entropy"}
    assert one["layers"]["mlp"]["forward"]["kernels"]["matmul"] > 0
    assert one["kernels_ms"]["matmul"] > 0 and one["fixed_cost_ms"] > 0
    assert "profile of a minigpt step, shakespeare-char" in out


def test_process_counts_divide_the_batch_and_fit_the_cores():
    assert process_counts(1, 12) == [1]
    assert process_counts(2, 12) == [1, 2]
    assert process_counts(6, 12) == [1, 2, 4, 6]  # powers of two and the cores themselves
    assert process_counts(8, 12) == [1, 2, 4]  # 8 does not divide 12
    assert process_counts(3, 8) == [1, 2]


def test_layouts_pair_up_between_systems():
    mine, theirs = layouts("minigpt", 2, 12), layouts("torch", 2, 12)
    assert [l.shape for l in mine] == ["1 process x 1 thread", "1 process x 2 threads", "2 processes x 1 thread"]
    assert [l.shape for l in theirs] == [l.shape for l in mine]
    assert mine[2].label == "2 processes x 1 thread (MPI)" and theirs[2].label == "2 processes x 1 thread (DDP, gloo)"


def test_ratios_compare_the_same_layout_and_each_system_at_its_best():
    rows = [{"system": "minigpt", "layout": "1 process x 1 thread", "tokens_per_s": 100.0},
            {"system": "minigpt", "layout": "2 processes x 1 thread", "tokens_per_s": 180.0},
            {"system": "torch", "layout": "1 process x 1 thread", "tokens_per_s": 80.0},
            {"system": "torch", "layout": "1 process x 2 threads", "tokens_per_s": 120.0}]
    out = ratios({"rows": rows})
    assert out["same_layout"] == {"1 process x 1 thread": 1.25}
    assert out["best"] == {"minigpt_layout": "2 processes x 1 thread", "torch_layout": "1 process x 2 threads",
                           "ratio": 1.5}


def test_the_stopwatch_charges_each_kernel_to_the_layer_model_py_called():
    """A kernel called inside a nested layer counts for the outer layer; a nested layer is
    not counted again; a kernel outside any layer (the optimizer's) counts for none."""
    now = [0.0]  # a clock the test moves: each kernel call takes 2 s, each layer call 1 s of its own

    def work(seconds):
        now[0] += seconds

    watch = Stopwatch(clock=lambda: now[0])
    kernel = watch.wrap("matmul", lambda: work(2), is_layer=False)
    inner = watch.wrap("linear_forward", lambda: (work(1), kernel()), is_layer=True)
    outer = watch.wrap("mlp_forward", lambda: (work(1), inner(), inner()), is_layer=True)
    outer()
    kernel()
    assert watch.take() == {("mlp_forward", None): 7, ("mlp_forward", "matmul"): 4, (None, "matmul"): 2}
    assert dict(watch.calls) == {"layers": 1, "kernels": 3} and watch.take() == {}


def test_the_profile_sees_every_call_once_and_nests_kernels_in_their_layers():
    """On a tiny 2-layer model: the layer calls model.py makes (forward: embedding, its
    dropout, 6 per block, ln_f, head, loss; the same back) and the kernel calls (8 per
    block + 3 forward, 12 per block + 5 backward, 1 AdamW) are each counted once; each
    layer's kernels fit inside its time (glue >= 0) and the layers inside the forward's
    and backward's (model glue >= 0), which double counting would break."""
    L = 2
    preset = Preset("tiny", GPTConfig(vocab_size=11, block_size=8, n_layer=L, n_head=2, n_embd=8), 4, 3, 1)
    result = profile_preset(preset, threads=1, n=1, warmup=1, seed=0)
    assert result["calls_per_step"] == {"layers": 2 * (5 + 6 * L), "kernels": (8 * L + 3) + (12 * L + 5) + 1}
    found = result["layers"]
    assert set(found["attention"]["forward"]["kernels"]) == {"matmul", "qkv_attention_forward"}
    assert set(found["attention"]["backward"]["kernels"]) == {"matmul", "qkv_attention_backward"}
    assert set(found["mlp"]["forward"]["kernels"]) == {"matmul", "bias_gelu_forward"}
    assert set(found["mlp"]["backward"]["kernels"]) == {"matmul", "bias_gelu_backward"}
    assert set(found["layernorm"]["backward"]["kernels"]) == {"layernorm_backward"}  # ln_1, ln_f
    assert set(found["residual_layernorm"]["forward"]["kernels"]) == {"residual_layernorm_forward"}  # ln_2
    assert set(found["residual_layernorm"]["backward"]["kernels"]) == {"residual_layernorm_backward"}
    assert set(found["linear"]["backward"]["kernels"]) == {"matmul"}  # the tied head
    assert all(p["glue_ms"] >= 0 for phases in found.values() for p in phases.values())
    assert min(result["model_glue_ms"].values()) >= 0
    assert result["kernels_ms"]["adamw_update"] <= result["optimizer"]["ms"]


def test_json_into_a_missing_folder_is_a_clear_error(capsys, tmp_path):
    assert main(["bench", "sample", "--json", str(tmp_path / "nowhere" / "out.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


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
