"""Bad Hugging Face folders, configs and weight files: each refused with an error naming the problem,
before the model is allocated."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pretrained_helpers import write_hf_folder
from minigpt import GPT, GPTConfig
from minigpt.model import parameter_shapes
from minigpt.pretrained import PretrainedError

# A GPT-2 config as a Hugging Face config.json spells it, written out by hand
CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 11, "n_positions": 8,
          "n_embd": 8, "n_layer": 2, "n_head": 2, "n_inner": None, "activation_function": "gelu_new",
          "layer_norm_epsilon": 1e-05, "tie_word_embeddings": True, "attn_pdrop": 0.1, "embd_pdrop": 0.1,
          "resid_pdrop": 0.1, "initializer_range": 0.02}


def tensors(seed=0, prefix="transformer.", dtype=np.float32):
    shapes = parameter_shapes(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))
    rng = np.random.default_rng(seed)
    return {prefix + name: rng.normal(0, 0.5, shape).astype(dtype) for name, shape in shapes.items()}


@pytest.fixture
def no_allocation(monkeypatch):
    """Fail the test if a GPT is allocated: every check must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("GPT() was called before the input was checked")

    monkeypatch.setattr(GPT, "__init__", refuse)


def test_the_valid_folder_loads(tmp_path):
    weights = tensors()
    model = GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))
    np.testing.assert_array_equal(model.params["h.1.mlp.c_fc.weight"], weights["transformer.h.1.mlp.c_fc.weight"])


def test_training_settings_do_not_change_what_loads(tmp_path):
    """Dropout rates and the init scale describe training, not the weights."""
    weights = tensors()
    plain = GPT.from_pretrained(write_hf_folder(tmp_path / "a", CONFIG, weights))
    other = {**CONFIG, "attn_pdrop": 0.5, "embd_pdrop": 0.3, "resid_pdrop": 0.7, "initializer_range": 3.0}
    model = GPT.from_pretrained(write_hf_folder(tmp_path / "b", other, weights))
    assert model.config.dropout == 0.0 and model.config == plain.config
    np.testing.assert_array_equal(model.flat_params, plain.flat_params)
    idx = np.arange(8)[None] % 11
    np.testing.assert_array_equal(model.train().forward(idx)[0], plain.forward(idx)[0])  # no dropout


@pytest.mark.parametrize("change, message", [
    ({"model_type": "llama"}, "model_type is 'llama'; minigpt loads GPT-2 models only"),
    ({"model_type": None}, "model_type is None"),
    ({"rotary_dim": 4}, r"rotary position embeddings \(rotary_dim\)"),
    ({"rope_theta": 10000.0}, r"rotary position embeddings \(rope_theta\)"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings is False, an untied output head"),
    ({"activation_function": "relu"}, "activation_function is 'relu'"),
    ({"activation_function": "gelu"}, "activation_function is 'gelu'"),  # erf GELU: not GPT-2's tanh one
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon is 1e-06"),
    ({"n_inner": 24}, r"n_inner is 24; minigpt's MLP is 4 \* n_embd = 32"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx is True"),
    ({"add_cross_attention": True}, "add_cross_attention is True"),
    ({"n_head": 3}, r"n_embd \(8\) must be divisible by n_head \(3\)"),
    ({"n_layer": "2"}, "n_layer must be a positive integer, got '2'"),
])
def test_configs_that_are_not_gpt2_are_refused(change, message, tmp_path, no_allocation):
    folder = write_hf_folder(tmp_path, {**CONFIG, **change}, tensors())
    with pytest.raises(PretrainedError, match=message) as err:
        GPT.from_pretrained(folder)
    assert "config.json" in str(err.value)  # names the file


def test_gelu_pytorch_tanh_is_the_same_gelu_and_loads(tmp_path):
    model = GPT.from_pretrained(write_hf_folder(tmp_path, {**CONFIG, "activation_function": "gelu_pytorch_tanh"},
                                                tensors()))
    assert model.config.n_layer == 2


def test_a_folder_without_config_json(tmp_path, no_allocation):
    write_hf_folder(tmp_path, CONFIG, tensors())
    (tmp_path / "config.json").unlink()
    with pytest.raises(PretrainedError, match="has no config.json"):
        GPT.from_pretrained(tmp_path)


def test_a_config_json_that_is_not_json(tmp_path, no_allocation):
    write_hf_folder(tmp_path, CONFIG, tensors())
    (tmp_path / "config.json").write_text('{"model_type": "gpt2",')
    with pytest.raises(PretrainedError, match="config.json is not valid JSON"):
        GPT.from_pretrained(tmp_path)


def test_a_pickle_only_folder_is_refused_with_the_reason(tmp_path, no_allocation):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(PretrainedError, match="pytorch_model.bin, a pickle, which minigpt never loads"):
        GPT.from_pretrained(tmp_path)


def test_a_missing_tensor_is_named(tmp_path, no_allocation):
    weights = tensors()
    del weights["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(PretrainedError, match=r"missing h.1.mlp.c_fc.bias; unexpected none"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_extra_tensors_are_named(tmp_path, no_allocation):
    weights = tensors()
    weights["transformer.h.2.ln_1.weight"] = np.ones(8, np.float32)  # a third layer the config lacks
    weights["score.weight"] = np.ones((2, 8), np.float32)  # a classification head
    with pytest.raises(PretrainedError, match=r"missing none; unexpected score.weight, transformer.h.2.ln_1.weight"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_a_mis_shaped_tensor_is_named_with_both_shapes(tmp_path, no_allocation):
    weights = tensors()
    weights["transformer.h.0.attn.c_attn.weight"] = np.ones((8, 25), np.float32)
    with pytest.raises(PretrainedError, match=r"transformer.h.0.attn.c_attn.weight has shape \(8, 25\), "
                                              r"but config.json makes it \(8, 24\)"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_a_tensor_stored_twice_is_refused(tmp_path, no_allocation):
    weights = tensors()
    weights["wpe.weight"] = weights["transformer.wpe.weight"]
    with pytest.raises(PretrainedError, match=r"holds wpe.weight twice"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_an_lm_head_that_differs_from_wte_is_an_untied_model(tmp_path, no_allocation):
    weights = tensors()
    weights["lm_head.weight"] = weights["transformer.wte.weight"].copy()
    weights["lm_head.weight"][3, 4] += 1e-3
    with pytest.raises(PretrainedError, match="lm_head.weight differs from wte.weight, an untied output head"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


@pytest.mark.parametrize("dtype, name", [(np.float64, "F64"), (np.int32, "I32")])
def test_a_dtype_other_than_float32_float16_bfloat16_is_refused(dtype, name, tmp_path, no_allocation):
    weights = tensors()
    weights["transformer.ln_f.bias"] = weights["transformer.ln_f.bias"].astype(dtype)
    with pytest.raises(PretrainedError, match=f"transformer.ln_f.bias has dtype {name}; minigpt loads float32"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_float16_weights_load_as_float32(tmp_path):
    weights = tensors(dtype=np.float16)
    model = GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))
    assert model.dtype == np.float32
    np.testing.assert_array_equal(model.params["wte.weight"], weights["transformer.wte.weight"].astype(np.float32))


def test_a_truncated_file_is_refused(tmp_path, no_allocation):
    write_hf_folder(tmp_path, CONFIG, tensors())
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-100])  # the download stopped early
    with pytest.raises(PretrainedError, match=r"model.safetensors is truncated: tensor '.*' ends at byte"):
        GPT.from_pretrained(tmp_path)
    path.write_bytes(data[:5])
    with pytest.raises(PretrainedError, match="is truncated: 5 bytes"):
        GPT.from_pretrained(tmp_path)


def test_a_corrupt_header_is_refused(tmp_path, no_allocation):
    write_hf_folder(tmp_path, CONFIG, tensors())
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[10:20] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="is corrupt: its header is not valid JSON"):
        GPT.from_pretrained(tmp_path)
    data[:8] = (1 << 40).to_bytes(8, "little")  # a header length no real file has
    path.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="truncated or not a safetensors file"):
        GPT.from_pretrained(tmp_path)


def test_a_header_whose_sizes_disagree_is_corrupt(tmp_path, no_allocation):
    write_hf_folder(tmp_path, CONFIG, tensors())
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["transformer.ln_f.bias"]["shape"] = [7]  # 7 floats claimed, 8 floats of bytes
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    assert len(text) == n  # the same length, so only the shape changed
    path.write_bytes(data[:8] + text + data[8 + n:])
    with pytest.raises(PretrainedError, match=r"'transformer.ln_f.bias' is corrupt: 32 bytes for shape \[7\]"):
        GPT.from_pretrained(tmp_path)


def test_nan_weights_are_refused(tmp_path):
    weights = tensors()
    weights["transformer.h.1.attn.c_proj.weight"][2, 3] = np.nan
    with pytest.raises(PretrainedError, match="h.1.attn.c_proj.weight holds NaN or infinite values"):
        GPT.from_pretrained(write_hf_folder(tmp_path, CONFIG, weights))


def test_a_path_that_is_neither_folder_nor_hub_name(tmp_path):
    with pytest.raises(PretrainedError, match="is not a hub model name"):
        GPT.from_pretrained(str(tmp_path / "no" / "such" / "folder"))


def test_saving_with_a_tokenizer_too_large_for_the_model_writes_nothing(tmp_path):
    from minigpt.data import CharTokenizer

    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(PretrainedError, match="the tokenizer has 26 tokens, more than the model's vocab_size 5"):
        model.save_pretrained(tmp_path / "out", tokenizer=CharTokenizer("abcdefghijklmnopqrstuvwxyz"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_export_and_sample_report_bad_folders(tmp_path, capsys):
    from minigpt.__main__ import main

    assert main(["export", "--out-dir", str(tmp_path / "missing"), "--to", str(tmp_path / "hf")]) == 1
    assert "no checkpoint folder" in capsys.readouterr().err
    assert main(["export", "--out-dir", str(tmp_path), "--to", str(tmp_path)]) == 1
    assert "--to must be another folder" in capsys.readouterr().err

    folder = write_hf_folder(tmp_path / "hf", CONFIG, tensors())  # vocabulary of 11: no tokenizer known
    assert main(["sample", "--init", str(folder), "--prompt", "a"]) == 1
    assert "has no tokenizer to read a prompt with" in capsys.readouterr().err
    (folder / "config.json").write_text(json.dumps({**CONFIG, "model_type": "bert"}))
    assert main(["sample", "--init", str(folder)]) == 1
    assert "model_type is 'bert'" in capsys.readouterr().err


def test_the_gpt2_xl_figure_in_the_docs_is_its_real_size():
    """The README and docstrings state gpt2-xl's float32 size; recount it from GPT-2's architecture."""
    L, C, V, P = 48, 1600, 50257, 1024
    per_block = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C)
    n = V * C + P * C + L * per_block + 2 * C
    assert n == 1_557_611_200 and 4 * n == 6_230_444_800
    assert math.isclose(4 * n / 2**30, 5.80, abs_tol=0.005)
    from minigpt import pretrained

    assert "6,230,444,800 bytes" in pretrained.__doc__ and "1,557,611,200" in pretrained.__doc__
