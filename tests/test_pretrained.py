"""Hugging Face GPT-2 checkpoints in and out of minigpt, checked against transformers itself.

Every model here is a small random GPT-2 built by transformers inside the test (no download):
minigpt must compute the same logits, gradients and greedy continuations from its files, and
transformers must compute the same logits from minigpt's export.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import data_file, require
from pretrained_helpers import (random_transformers_gpt2, state_dict_numpy, transformers_logits,
                                write_hf_folder)
from minigpt import GPT, GPTConfig, pretrained
from minigpt.checkpoint import save_checkpoint
from minigpt.data import CharTokenizer
from minigpt.generate import generate

TEXT = "to be, or not to be: that is the question.\nWhether 'tis nobler in the mind\n"


@pytest.fixture(scope="module")
def transformers(torch):
    return require("transformers")


@pytest.fixture(scope="module")
def hf_model(torch, transformers):
    return random_transformers_gpt2(torch, transformers, vocab_size=97)


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(folder)  # the layout and names transformers writes today
    return folder


def some_ids(vocab_size, shape=(2, 23), seed=1):
    return np.random.default_rng(seed).integers(0, vocab_size, shape)


# --- loading -----------------------------------------------------------------------------


def test_logits_equal_transformers_in_float32(hf_model, hf_folder, torch):
    model = GPT.from_pretrained(hf_folder)
    idx = some_ids(97)
    ours, _ = model.forward(idx)
    ref = transformers_logits(torch, hf_model, idx)
    assert model.dtype == np.float32 and not model.training
    assert np.abs(ref).max() > 1.0  # logits large enough that a wrong tensor shows
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_logits_equal_transformers_in_float64(hf_model, hf_folder, torch):
    model = GPT.from_pretrained(hf_folder, dtype=np.float64)
    idx = some_ids(97)
    ours, _ = model.forward(idx)
    ref = transformers_logits(torch, hf_model.double(), idx)
    hf_model.float()
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_older_layout_without_prefix_with_mask_buffers_and_stored_head(hf_model, tmp_path, torch):
    """The hub's gpt2 file: names without "transformer.", each layer's causal-mask buffers
    (attn.bias, attn.masked_bias) stored, and an lm_head equal to wte."""
    tensors = {name.removeprefix("transformer."): a for name, a in state_dict_numpy(hf_model).items()}
    n = hf_model.config.n_positions
    for i in range(hf_model.config.n_layer):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((n, n), np.float32))[None, None]
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()
    assert "h.0.attn.c_attn.weight" in tensors  # the prefix is really gone
    folder = write_hf_folder(tmp_path, hf_model.config.to_dict(), tensors)

    model = GPT.from_pretrained(folder)
    idx = some_ids(97)
    np.testing.assert_allclose(model.forward(idx)[0], transformers_logits(torch, hf_model, idx),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_precision_files_are_converted_to_float32_exactly(precision, transformers, torch, tmp_path):
    hf = random_transformers_gpt2(torch, transformers, vocab_size=61, seed=2)
    hf.to(getattr(torch, precision)).save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        stored = {f.get_slice(name).get_dtype() for name in f.keys()}
    assert stored == {"F16" if precision == "float16" else "BF16"}  # the file really is half precision

    model = GPT.from_pretrained(tmp_path)
    assert model.dtype == np.float32
    for name, t in hf.state_dict().items():
        if name != "lm_head.weight":
            # float16/bfloat16 -> float32 is exact: the values must be the same numbers
            np.testing.assert_array_equal(model.params[name.removeprefix("transformer.")], t.float().numpy())
    hf.float()
    idx = some_ids(61)
    np.testing.assert_allclose(model.forward(idx)[0], transformers_logits(torch, hf, idx), rtol=1e-5, atol=1e-5)


def test_one_training_step_gives_pytorch_autograd_gradients(hf_model, hf_folder, torch):
    """Load, then one forward + backward in minigpt and in transformers (loss.backward())."""
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        model = GPT.from_pretrained(hf_folder, dtype=dtype).train()
        idx, targets = some_ids(97, seed=3), some_ids(97, seed=4)
        model.zero_grad()
        _, loss = model.forward(idx, targets)
        model.backward()

        reference = hf_model.to(torch.float64 if dtype == np.float64 else torch.float32)
        reference.zero_grad()
        logits = reference(torch.from_numpy(idx)).logits
        t_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), torch.from_numpy(targets).reshape(-1))
        t_loss.backward()
        assert abs(loss - t_loss.item()) <= tol
        checked = 0
        for name, p in reference.named_parameters():  # wte's gradient includes the tied head's
            ours = model.grads[name.removeprefix("transformer.")]
            ref = p.grad.numpy()
            scale = max(1.0, np.abs(ref).max())
            assert np.abs(ours - ref).max() <= tol * scale, (name, dtype, np.abs(ours - ref).max())
            checked += 1
        assert checked == len(model.params)
    hf_model.float().eval()


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches_transformers_generate(use_cache, hf_model, hf_folder, torch):
    model = GPT.from_pretrained(hf_folder)
    prompt = some_ids(97, shape=(2, 6), seed=5)
    new = 24  # 6 + 24 <= 32 positions
    ours = generate(model, prompt, new, temperature=0.0, use_cache=use_cache)
    with torch.no_grad():
        ref = hf_model.generate(torch.from_numpy(prompt), attention_mask=torch.ones(prompt.shape, dtype=torch.long),
                                max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    assert ref.shape == (2, 30)
    assert len(set(ours[0, 6:].tolist())) > 3  # a real continuation, not one token repeated
    np.testing.assert_array_equal(ours, ref.numpy())


def test_a_gpt2_vocabulary_without_tokenizer_files_gets_gpt2s_tokenizer(transformers, torch, tmp_path):
    data_file("gpt2-encoder"), data_file("gpt2-vocab")
    hf = random_transformers_gpt2(torch, transformers, vocab_size=50257, n_embd=8, n_layer=1, n_positions=16)
    hf.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path)
    assert model.tokenizer is not None
    assert model.tokenizer.encode("Hello world") == [15496, 995]  # GPT-2's ids, as tiktoken gives them


def test_the_folders_vocab_json_and_merges_txt_are_read(transformers, torch, tmp_path):
    encoder, merges = data_file("gpt2-encoder"), data_file("gpt2-vocab")
    hf = random_transformers_gpt2(torch, transformers, vocab_size=50257, n_embd=8, n_layer=1, n_positions=16)
    hf.save_pretrained(tmp_path)
    # a tokenizer reduced to its first 100 merges shows that these files, not GPT-2's, were read
    lines = merges.read_text(encoding="utf-8").splitlines()[:101]
    (tmp_path / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    vocab = json.loads(encoder.read_text(encoding="utf-8"))
    keep = {token: i for token, i in vocab.items() if i < 356}
    keep["<|endoftext|>"] = 50256
    (tmp_path / "vocab.json").write_text(json.dumps(keep), encoding="utf-8")

    model = GPT.from_pretrained(tmp_path)
    assert len(model.tokenizer.merges) == 100
    assert model.tokenizer.encode(" the") == [262]  # merge 6 ("Ġt" + "he"), within the first 100


# --- export ------------------------------------------------------------------------------


def char_checkpoint(out_dir, bias=True, seed=3):
    tokenizer = CharTokenizer.from_text(TEXT)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=bias)
    model = GPT(config, seed=seed)
    model.flat_params[:] = np.random.default_rng(seed).normal(0.0, 0.4, model.flat_params.shape)
    save_checkpoint(out_dir, model, tokenizer=tokenizer, iteration=7)
    return model, tokenizer


@pytest.mark.parametrize("bias", [True, False])
def test_export_command_writes_a_folder_transformers_loads(bias, transformers, torch, tmp_path, capsys):
    from minigpt.__main__ import main

    model, tokenizer = char_checkpoint(tmp_path / "run", bias=bias)
    code = main(["export", "--out-dir", str(tmp_path / "run"), "--to", str(tmp_path / "hf")])
    assert code == 0, capsys.readouterr().err
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    idx = some_ids(tokenizer.vocab_size, shape=(2, 16))
    np.testing.assert_allclose(transformers_logits(torch, hf, idx), model.forward(idx)[0], rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json", "minigpt-tokenizer.json", "model.safetensors"]  # no GPT-2 tokenizer files

    # and back: minigpt reads its export with the character tokenizer
    again, tok, description = pretrained.load_base(tmp_path / "hf")
    np.testing.assert_allclose(again.forward(idx)[0], model.forward(idx)[0], rtol=1e-6, atol=1e-6)
    assert tok.encode("to be") == tokenizer.encode("to be")
    assert "Hugging Face GPT-2 folder" in description


def test_export_of_gpt2s_tokenizer_writes_openais_files_which_transformers_reads(transformers, torch, tmp_path):
    from minigpt.tokenizer import gpt2

    encoder, merges = data_file("gpt2-encoder"), data_file("gpt2-vocab")
    tokenizer = gpt2()
    model = GPT(GPTConfig(vocab_size=50257, block_size=16, n_layer=1, n_head=2, n_embd=8), seed=1)
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert (tmp_path / "vocab.json").read_bytes() == encoder.read_bytes()
    assert (tmp_path / "merges.txt").read_bytes() == merges.read_bytes()

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "Hello world! Ünïcödé, numbers 12345 and   spaces.\n<|endoftext|>"
    assert hf_tokenizer(text)["input_ids"] == tokenizer.encode(text, allowed_special="all")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.eos_token_id == 50256
    idx = np.array([tokenizer.encode("Hello world, this is GPT-2")])
    np.testing.assert_allclose(transformers_logits(torch, hf, idx), model.forward(idx)[0], rtol=1e-5, atol=1e-5)


def test_a_bpe_tokenizer_other_than_gpt2s_gets_no_gpt2_files(tmp_path):
    from minigpt.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(TEXT * 3, vocab_size=280, pattern="gpt2")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert not (tmp_path / "vocab.json").exists() and not (tmp_path / "merges.txt").exists()
    again = GPT.from_pretrained(tmp_path)
    assert again.tokenizer.encode(TEXT) == tokenizer.encode(TEXT)
    np.testing.assert_array_equal(again.flat_params, model.flat_params)  # float32 round trip, exact


def test_saving_again_replaces_an_earlier_tokenizer(tmp_path):
    from minigpt.tokenizer import Tokenizer

    bpe = Tokenizer.train(TEXT * 3, vocab_size=280, pattern="gpt2")
    model = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=8))
    model.save_pretrained(tmp_path, tokenizer=bpe)
    model.save_pretrained(tmp_path)  # no tokenizer this time
    assert not (tmp_path / "minigpt-tokenizer.json").exists()
    assert GPT.from_pretrained(tmp_path).tokenizer is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_load_base_reads_a_minigpt_run(tmp_path):
    model, tokenizer = char_checkpoint(tmp_path)
    loaded, tok, description = pretrained.load_base(tmp_path)
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    assert tok.encode("question") == tokenizer.encode("question")
    assert "minigpt run" in description and "iteration 7" in description


def test_load_base_refuses_a_folder_that_is_neither(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"neither a minigpt run \(no state.json\) nor a Hugging Face"):
        pretrained.load_base(tmp_path)


def test_sample_init_continues_greedily_like_transformers(transformers, torch, tmp_path, capsys):
    from minigpt.__main__ import main

    model, tokenizer = char_checkpoint(tmp_path / "run")
    model.save_pretrained(tmp_path / "hf", tokenizer=tokenizer)
    code = main(["sample", "--init", str(tmp_path / "hf"), "--prompt", "to be", "--temperature", "0",
                 "--max-new-tokens", "11"])
    out = capsys.readouterr().out
    assert code == 0
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.tensor([tokenizer.encode("to be")])
    with torch.no_grad():
        ids = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=11, min_new_tokens=11,
                          do_sample=False, pad_token_id=0)
    assert out == tokenizer.decode(ids[0].tolist()) + "\n"


def test_sample_refuses_both_out_dir_and_init(capsys):
    from minigpt.__main__ import main

    with pytest.raises(SystemExit):
        main(["sample", "--out-dir", "x", "--init", "gpt2"])
    assert "not allowed with argument" in capsys.readouterr().err


# --- memory ------------------------------------------------------------------------------

GPT2_XL = GPTConfig(vocab_size=50257, block_size=1024, n_layer=48, n_head=25, n_embd=1600)


def test_gpt2_xl_memory_is_its_parameter_count_times_four(transformers, torch):
    config = transformers.GPT2Config(n_layer=48, n_head=25, n_embd=1600, vocab_size=50257, n_positions=1024)
    with torch.device("meta"):  # counts parameters without allocating them
        n = transformers.GPT2LMHeadModel(config).num_parameters()
    weights, loading = pretrained.memory_needed(GPT2_XL)
    assert n == 1_557_611_200
    assert weights == 4 * n == 6_230_444_800
    assert loading == 8 * 50257 * 1600  # one float64 copy of wte
    assert pretrained.memory_needed(GPT2_XL, np.float64)[0] == 8 * n


def test_a_model_that_does_not_fit_is_refused_before_allocating(hf_folder, monkeypatch):
    from minigpt.pretrained import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 10_000)

    def no_allocation(*args, **kwargs):
        raise AssertionError("GPT() was called although the model does not fit")

    monkeypatch.setattr(GPT, "__init__", no_allocation)
    with pytest.raises(pretrained.NotEnoughMemory) as err:
        GPT.from_pretrained(hf_folder)
    weights, loading = pretrained.memory_needed(pretrained.load.read_config(hf_folder / "config.json"))
    message = str(err.value)
    assert f"{weights + loading:,} bytes" in message and "10,000 bytes" in message
    assert isinstance(err.value, MemoryError)


def test_available_memory_is_a_plausible_number():
    from minigpt.pretrained.memory import available_memory

    available = available_memory()
    assert available is None or 0 < available < 1 << 50
