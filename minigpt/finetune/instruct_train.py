"""Instruction tuning: teach a pretrained GPT to answer Alpaca-style instructions.

    python -m minigpt finetune instruct --base out/base-bpe --out-dir out/instruct
    python -m minigpt sample --out-dir out/instruct --prompt "..."      # the tuned model is a run

or from Python:

    from minigpt.finetune.instruct_train import InstructConfig, finetune_instruct
    result = finetune_instruct(InstructConfig(base="out/base-bpe", out_dir="out/instruct"))
    result.results["test_loss_before"], result.results["test_loss_after"]

The loop, with the helpers it needs just above it:

    load the base (minigpt run, Hugging Face GPT-2 folder or hub name) and its tokenizer
    read instruction-data.json, split it 85/5/10, encode it (instruct_data.py)
    evaluate the language-model loss on train / val / test before training (epoch 0)
    for each epoch:
        for each shuffled batch: forward, backward, clip, AdamW step on what trains
        evaluate; append to metrics.jsonl; save the checkpoint; plot loss.png
    answer every test instruction (instruct_generate.py, greedy by default) into
    test_responses.json; score them with ROUGE-L (rouge.py)
    write results.json: test loss before and after (also on the responses alone), ROUGE-L F1,
    how responses stopped, wall time

It is pretraining's objective, next-token cross-entropy, on the instruction texts: the
tied language-model head stays the head. What trains is a choice, as for classification:
"all" (every weight, the default, as "LLMs from scratch" does), "last-k" (the last k blocks
and the final layernorm; the tied head/embedding stays frozen) or "lora" (adapters only;
the saved checkpoint is the merged model, the adapters are saved on their own too).

The output folder is a minigpt run (model.safetensors + state.json, written atomically by
minigpt.checkpoint): `python -m minigpt sample` and `--base` read it like any other. Every
check on the input (the base, its tokenizer, the data file, examples longer than the
context, the settings) runs before the folder is touched. Ctrl-C finishes the current step,
saves, evaluates, answers and writes results.json marked "interrupted"; a second Ctrl-C
stops at once (the last checkpoint, written atomically, stays whole).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt import layers
from minigpt.finetune import lora as lora_module
from minigpt.finetune.instruct_data import (SPLIT_SEED, collate, encode_examples, read_instructions,
                                            split_instructions)
from minigpt.finetune.instruct_generate import END_OF_TEXT, LENGTH_LIMIT, answer_examples
from minigpt.finetune.loop import MetricsLog, Progress, Schedule, run_epochs
from minigpt.finetune.options import FinetuneSettings, check_training_settings
from minigpt.finetune.rouge import rouge_l
from minigpt.finetune.text_data import batch_indices, check_subword_tokenizer
from minigpt.optim import AdamW, ParamGroup, param_group

TRAIN_CHOICES = ("all", "last-k", "lora")
SPLITS = ("train", "val", "test")
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
RESPONSES_FILE = "test_responses.json"
PLOT_FILE = "loss.png"
TASK = "instruct"  # state.json's "finetune" entry: marks the folder as this command's output


@dataclass
class InstructConfig(FinetuneSettings):
    """Everything that defines an instruction-tuning run (the shared settings are
    FinetuneSettings'; these are instruction tuning's, and its defaults)."""

    out_dir: str = "out/instruct"
    data: str | None = None  # a JSON file like instruction-data.json; None: that file
    train: str = "all"  # all | last-k | lora
    # lr 5e-4 (the shared default) suits a small minigpt base; GPT-2 124M fine-tunes with
    # less ("LLMs from scratch": 5e-5)
    split_seed: int = SPLIT_SEED
    mask_prompt: bool = False  # True: the loss counts only the response (and its end-of-text)
    max_new_tokens: int = 128  # longest response generated for a test instruction
    temperature: float = 0.0  # 0: greedy
    top_k: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (before anything is loaded)."""
        check_training_settings(self, TRAIN_CHOICES, positive_ints=("max_new_tokens",),
                                nonnegative_numbers=("temperature",))
        if self.max_length is not None and (isinstance(self.max_length, bool) or self.max_length < 2):
            raise ValueError(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {self.top_k!r}")


@dataclass
class InstructResult:
    model: object  # the tuned GPT (with its adapters attached, for LoRA)
    tokenizer: object
    config: InstructConfig
    metrics: list[dict]  # one row per evaluation (epoch 0 = before training)
    responses: list[dict]  # what test_responses.json holds
    results: dict  # what results.json holds
    out_dir: Path


# --- the loss: the body, the tied head, cross-entropy ---------------------------------------


def lm_loss(model, inputs, targets):
    """(mean cross-entropy over the targets that are not -100, cache for lm_backward).

    model.forward's language model, but through forward_hidden, so that lm_backward can
    stop after the blocks that train (model.backward always goes back to the embeddings)."""
    h = model.forward_hidden(inputs)  # (B, T, C)
    logits, head_cache = layers.linear_forward(h, model.params["wte.weight"].T)  # (B, T, V), tied head
    loss, loss_cache = layers.cross_entropy_forward(logits, targets)
    return loss, (head_cache, loss_cache)


def lm_backward(model, cache, n_blocks: int | None) -> None:
    """Add the gradients of lm_loss's loss into model.grads (and model.lora's): through the
    last n_blocks blocks, or everything (the tied head/embedding included) when None."""
    head_cache, loss_cache = cache
    (dlogits,) = layers.cross_entropy_backward(1.0, loss_cache)  # (B, T, V)
    dh, dhead, _ = layers.linear_backward(dlogits, head_cache)  # (B, T, C), (C, V)
    if n_blocks is None:
        model.grads["wte.weight"] += dhead.T  # the head is wte transposed
    model.backward_hidden(dh, n_blocks=n_blocks)


def evaluate_loss(model, encoded, batch_size: int, pad_id: int, mask_prompt: bool) -> float:
    """The loss per counted target over a whole split (every target of every example weighs
    the same, whatever batch it falls in), without dropout."""
    lengths = np.array([len(ids) for ids, _ in encoded])
    total, counted = 0.0, 0
    with model.evaluating():
        for rows in batch_indices(len(encoded), batch_size, lengths=lengths):
            inputs, targets = collate([encoded[i] for i in rows], pad_id, mask_prompt)
            loss, _ = lm_loss(model, inputs, targets)
            n = int((targets != -100).sum())
            total, counted = total + float(loss) * n, counted + n
    return total / max(counted, 1)


# --- setting up ---------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, base: str) -> None:
    """Write only into a new folder or an earlier output of this command: never into a
    pretraining run (maybe the base itself) or into the base's folder."""
    from minigpt import checkpoint

    if Path(base).exists() and out_dir.resolve() == Path(base).resolve():
        raise ValueError(f"--out-dir {out_dir} is the base's folder; choose another")
    state_path = out_dir / checkpoint.STATE_FILE
    if state_path.exists():
        try:
            ours = json.loads(state_path.read_text(encoding="utf-8")).get("finetune", {}).get("task") == TASK
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            raise ValueError(f"{out_dir} holds a pretraining run ({checkpoint.STATE_FILE}); fine-tune into "
                             f"another --out-dir, so that the run (maybe the base) is not overwritten")


def _trainable_groups(model, config: InstructConfig) -> tuple[list[ParamGroup], int | None]:
    """(AdamW groups of what trains, n_blocks for the backward)."""
    L = model.config.n_layer
    if config.train == "all":
        return [ParamGroup.of(model)], None
    if config.train == "last-k":
        return [param_group(model, model.block_params_slice(L - config.last_k))], config.last_k
    lora_module.add_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets, seed=config.seed)
    return [ParamGroup.of(model.lora)], L


def prepare(config: InstructConfig, log=print):
    """Everything before training, every check included: (model, tokenizer, examples by split,
    encoded examples by split, description of the base, examples truncated). Writes nothing."""
    from minigpt.pretrained import load_base

    config.validate()
    out_dir = Path(config.out_dir)
    _check_out_dir(out_dir, config.base)
    examples = read_instructions(config.data)  # the data file's errors first: no base to load for them
    model, tokenizer, description = load_base(config.base)
    check_subword_tokenizer(tokenizer, f"the base {config.base}")
    L, block_size = model.config.n_layer, model.config.block_size
    if config.train == "last-k" and config.last_k > L:
        raise ValueError(f"last_k must be from 1 to the base's {L} blocks, got {config.last_k}")
    max_length = config.max_length or block_size
    if max_length > block_size:
        raise ValueError(f"max_length {max_length} exceeds the base's context of {block_size} tokens")
    splits = split_instructions(examples, config.split_seed)
    encoded, truncated = {}, 0
    for name in SPLITS:
        if not splits[name]:
            raise ValueError(f"the {name} split is empty: the instruction file has too few examples "
                             f"({len(examples)}; at least 20 are needed)")
        encoded[name], n_cut = encode_examples(tokenizer, splits[name], max_length, config.truncate,
                                               what=f"the {name} split")
        truncated += n_cut
    if truncated:
        log(f"warning: {truncated} example(s) are longer than {max_length} tokens and were cut to their first "
            f"{max_length + 1} (they lose the end of their response and its end-of-text; --no-truncate makes "
            f"this an error)")
    if config.dropout is not None:
        model.config = dataclasses.replace(model.config, dropout=config.dropout)
    model.rng = np.random.default_rng([config.seed, 1])  # dropout masks of this run
    return model, tokenizer, splits, encoded, description, truncated


# --- the loop ----------------------------------------------------------------------------


def finetune_instruct(config: InstructConfig, log=print, on_epoch=None) -> InstructResult:
    """Instruction-tune as `config` says (see the module docstring); on_epoch(row) after each
    evaluation."""
    from tqdm.auto import tqdm

    from minigpt import checkpoint, plots

    t_start = time.perf_counter()
    model, tokenizer, splits, data, description, truncated = prepare(config, log)
    out_dir = Path(config.out_dir)
    pad_id = int(tokenizer.eot_token)
    groups, n_blocks = _trainable_groups(model, config)
    optimizer = AdamW(groups=groups, lr=config.lr, weight_decay=config.weight_decay)
    train_data = data["train"]
    schedule, progress = Schedule.of(config, len(train_data)), Progress()

    trainable = sum(g.params.size for g in groups)
    total = model.num_params() + (model.lora.num_params() if model.lora is not None else 0)
    log(f"base: {description}")
    log(f"instruction tuning ({config.train}{f', last {config.last_k}' if config.train == 'last-k' else ''}"
        f"{', prompt masked' if config.mask_prompt else ''}): {trainable:,} of {total:,} parameters train "
        f"({trainable / total:.2%}); {', '.join(f'{n} {len(data[n])}' for n in SPLITS)} examples; "
        f"{config.epochs} epochs into {out_dir}")

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_log = MetricsLog(out_dir / METRICS_FILE, on_epoch)
    metrics = metrics_log.rows
    eval_batch = config.batch_size  # logits are (B, T, V): with GPT-2 (V = 50,257) a big batch is gigabytes

    def record(epoch):
        row = {"epoch": epoch, "iter": progress.step}
        for name in SPLITS:
            row[f"{name}_loss"] = evaluate_loss(model, data[name], eval_batch, pad_id, config.mask_prompt)
        # the loss on the responses alone, whichever targets train: the prompt's template is
        # the same in every example and easy to learn, so it flatters the unmasked loss
        row["test_response_loss"] = (row["test_loss"] if config.mask_prompt else
                                     evaluate_loss(model, data["test"], eval_batch, pad_id, mask_prompt=True))
        row.update(lr=schedule.lr(progress.step), train_time_s=progress.train_time_s,
                   elapsed_s=time.perf_counter() - t_start)
        return metrics_log.add(row)

    def loss_and_grads(rows):
        inputs, targets = collate([train_data[i] for i in rows], pad_id, config.mask_prompt)  # (B, T)
        loss, cache = lm_loss(model, inputs, targets)
        lm_backward(model, cache, n_blocks)
        return loss

    def after_epoch(epoch, say):
        row = record(epoch)
        say(f"epoch {row['epoch']}: loss train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
            f"test {row['test_loss']:.4f}")
        tuned = lora_module.merge(model) if model.lora is not None else model  # a plain GPT: any command reads it
        checkpoint.save_checkpoint(out_dir, tuned, None, tokenizer, iteration=progress.step,
                                   finetune={"task": TASK, "base": description, "base_spec": config.base,
                                             "train": config.train, "mask_prompt": config.mask_prompt})
        if model.lora is not None:
            lora_module.save_adapters(model, out_dir)  # the adapters alone, small
        plots.plot_losses(metrics, out_dir / PLOT_FILE, title="instruction tuning: loss per target token")

    first = record(0)
    log(f"before tuning: loss train {first['train_loss']:.4f} val {first['val_loss']:.4f} "
        f"test {first['test_loss']:.4f}")
    run_epochs(config, len(train_data), schedule, progress, model, optimizer, loss_and_grads, after_epoch,
               log)
    step, interrupted, train_time = progress.step, progress.interrupted, progress.train_time_s

    t_answer = time.perf_counter()
    answers = tqdm(total=len(splits["test"]), disable=not config.progress, unit="answer", dynamic_ncols=True)
    try:
        responses = answer_examples(model, tokenizer, splits["test"], config.max_new_tokens, config.temperature,
                                    config.top_k, seed=config.seed, on_answer=lambda _: answers.update(1))
    finally:
        answers.close()
    for item in responses:
        item["rouge_l_f1"] = rouge_l(item["response"], item["reference"])["f1"]
    _write_json(out_dir / RESPONSES_FILE, responses)
    answer_time = time.perf_counter() - t_answer

    last = metrics[-1]
    stopped = [item["stopped"] for item in responses]
    results = {
        "test_loss_before": first["test_loss"], "test_loss_after": last["test_loss"],
        "test_response_loss_before": first["test_response_loss"],
        "test_response_loss_after": last["test_response_loss"],
        "val_loss_before": first["val_loss"], "val_loss_after": last["val_loss"],
        "train_loss_before": first["train_loss"], "train_loss_after": last["train_loss"],
        "rouge_l_f1": float(np.mean([item["rouge_l_f1"] for item in responses])),
        "responses_stopped_at_end_of_text": stopped.count(END_OF_TEXT),
        "responses_stopped_at_length_limit": stopped.count(LENGTH_LIMIT),
        "wall_time_s": time.perf_counter() - t_start, "train_time_s": train_time, "answer_time_s": answer_time,
        "epochs": last["epoch"], "steps": step, "interrupted": interrupted,
        "train": config.train, "last_k": config.last_k if config.train == "last-k" else None,
        "lora": model.lora.config() if model.lora is not None else None, "mask_prompt": config.mask_prompt,
        "trainable_params": trainable, "total_params": total, "trainable_fraction": trainable / total,
        "base": description, "base_spec": config.base,
        "split_sizes": {name: len(data[name]) for name in SPLITS}, "truncated_examples": truncated,
        "decoding": {"temperature": config.temperature, "top_k": config.top_k,
                     "max_new_tokens": config.max_new_tokens},
        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k != "progress"},
    }
    _write_json(out_dir / RESULTS_FILE, results)
    log(f"{'interrupted' if interrupted else 'done'}: test loss {results['test_loss_before']:.4f} -> "
        f"{results['test_loss_after']:.4f} (on the responses alone {results['test_response_loss_before']:.4f} -> "
        f"{results['test_response_loss_after']:.4f}); ROUGE-L F1 {results['rouge_l_f1']:.3f}; "
        f"{results['responses_stopped_at_end_of_text']} of {len(responses)} responses ended with end-of-text; "
        f"{results['wall_time_s']:.0f} s; results in {out_dir / RESULTS_FILE}, responses in {out_dir / RESPONSES_FILE}")
    return InstructResult(model, tokenizer, config, metrics, responses, results, out_dir)


def _write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file and one rename: a reader never sees half a file."""
    import os

    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(part, path)
