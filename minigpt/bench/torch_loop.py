"""The README's main command written as a plain PyTorch loop, for `bench main` to time.

    python -m minigpt.bench.torch_loop --out-dir /tmp/torch-run [--max-iters N] [--threads K]

The same recipe as `python -m minigpt train` (TrainConfig's defaults: the corpus, the
character tokenizer and its 90/10 split, the model, AdamW with decay on matrices only,
warm-up + cosine, clipping, an evaluation of eval_iters batches of each split every
eval_interval steps with a checkpoint after it, and a 200-token sample with top-k 40 at the
end), written the way a PyTorch user would write it in nanoGPT's style: autograd, torch.optim,
and sampling by running the whole context again for each new token (no KV cache). Only the
starting weights come from minigpt, so both systems start from the same point, and it draws the same batches from the same random streams, so
with dropout 0 it takes the same steps (tests/test_bench.py compares the weights).

This is a benchmark, not part of the package's training path; torch must be installed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--max-iters", type=int, default=None, help="default: the main command's")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from minigpt import data
    from minigpt.model import GPT, GPTConfig
    from minigpt.torch_reference import from_minigpt
    from minigpt.train_setup import BATCH_STREAM, TrainConfig, load_corpus, make_eval_batches, make_tokenizer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    c = TrainConfig()
    max_iters = args.max_iters if args.max_iters is not None else c.max_iters
    torch.manual_seed(c.seed)
    batch_rng = np.random.default_rng([c.seed, BATCH_STREAM])

    text, _ = load_corpus(c.data)
    tokenizer = make_tokenizer(c.tokenizer, text)
    train_tokens, val_tokens = data.split_tokens(data.encode_corpus(text, tokenizer))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=c.block_size, n_layer=c.n_layer,
                       n_head=c.n_head, n_embd=c.n_embd, dropout=c.dropout, bias=c.bias, init_std=c.init_std)
    model = from_minigpt(GPT(config, seed=c.seed))

    def as_torch(x, y):
        return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))

    eval_batches = {name: [as_torch(*b) for b in make_eval_batches(tokens, c)]
                    for name, tokens in (("train", train_tokens), ("val", val_tokens))}

    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": c.weight_decay},
                                   {"params": vectors, "weight_decay": 0.0}],
                                  lr=c.lr, betas=(c.beta1, c.beta2))

    def lr_at(it):
        if it < c.warmup_iters:
            return c.lr * (it + 1) / (c.warmup_iters + 1)
        progress = min(1.0, (it - c.warmup_iters) / max(1, max_iters - c.warmup_iters))
        return c.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (c.lr - c.min_lr)

    @torch.no_grad()
    def evaluate():
        model.eval()
        losses = {name: float(np.mean([model(x, y)[1].item() for x, y in batches]))
                  for name, batches in eval_batches.items()}
        model.train()
        return losses

    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    model.train()
    for it in range(max_iters + 1):
        if it % c.eval_interval == 0 or it == max_iters:
            losses = evaluate()
            print(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(Path(args.out_dir) / "model.safetensors"))
        if it == max_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        _, loss = model(*as_torch(*data.get_batch(train_tokens, c.batch_size, c.block_size, batch_rng)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        optimizer.step()

    model.eval()
    idx = torch.tensor([tokenizer.encode("\n")], dtype=torch.int64)
    with torch.no_grad():
        for _ in range(c.sample_tokens):
            logits, _ = model(idx[:, -c.block_size:])
            logits = logits[:, -1, :]
            kth = torch.topk(logits, 40).values[:, -1:]
            probs = F.softmax(logits.masked_fill(logits < kth, -float("inf")), dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1)], dim=1)
    print("sample:\n" + tokenizer.decode(idx[0, 1:].tolist()))
    print(f"done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
