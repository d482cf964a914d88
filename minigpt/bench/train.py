"""Training speed at the shakespeare-char preset, minigpt against PyTorch on the CPU.

One training step = forward + backward + gradient clipping + AdamW, float32, on random
token ids (the speed does not depend on the text). PyTorch runs the same architecture
(minigpt.torch_reference, started from the same weights) with the same batch, the same
optimizer settings and the same number of threads. The two are timed in alternating
rounds, so a noisy neighbour slows both rather than one. PyTorch runs in a child process
of its own: in one process its OpenMP threads and NumPy's OpenBLAS threads fight over the
cores and PyTorch comes out several times slower than it really is.

Achieved GFLOP/s uses model.flops_per_token() (6 FLOPs per weight per token plus the
attention matmuls); "MFU" here is that rate divided by what BLAS sgemm reaches on this
machine for a large square matmul, the practical ceiling of a CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from minigpt import GPT, GPTConfig
from minigpt.bench import seconds
from minigpt.optim import AdamW, clip_grad_norm

PRESET = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
BATCH_SIZE = 12
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0
DEFAULT_ITERS, DEFAULT_WARMUP, ROUNDS = 60, 10, 4


def random_batches(config, batch_size, n, rng):
    """n (x, y) pairs of random token ids, int64 (B, T) each."""
    shape = (n, batch_size, config.block_size)
    return list(zip(rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)))


def minigpt_trainer(config, seed=0):
    model = GPT(config, seed=seed, dtype=np.float32)
    optimizer = AdamW(model, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)

    def step(x, y):
        model.zero_grad()
        _, loss = model.forward(x, y)
        model.backward()
        clip_grad_norm(model.flat_grads, GRAD_CLIP)
        optimizer.step()
        return float(loss)

    return model, step


def torch_trainer(model, threads):
    """The PyTorch twin of minigpt_trainer, from the same initial weights. Runs in the
    child process (torch_worker), which has imported torch already."""
    import torch

    from minigpt.torch_reference import from_minigpt

    torch.set_num_threads(threads)
    torch_model = from_minigpt(model).train()
    params = [p for p in torch_model.parameters() if p.requires_grad]
    groups = [  # weight decay on matrices and embeddings only, as nanoGPT and minigpt.optim
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS)

    def step(x, y):
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        optimizer.zero_grad(set_to_none=True)
        _, loss = torch_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_model.parameters(), GRAD_CLIP)
        optimizer.step()
        return loss.item()

    return step


def time_steps(step, batches):
    """Seconds taken by each call step(x, y)."""
    return [seconds(lambda: step(x, y)) for x, y in batches]


def sgemm_gflops(n=1024, reps=5):
    """Best float32 BLAS matmul rate (GFLOP/s) on n x n matrices: the machine's ceiling."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up the threads
    best = min(seconds(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


class TorchInChild:
    """A PyTorch trainer living in a child process (see the module docstring).
    `steps(n)` runs the child's next n batches and returns their times."""

    def __init__(self, threads, seed, n_batches):
        # PyTorch as its users run it: its own OpenMP and malloc settings, not minigpt's
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env["MINIGPT_NO_RUNTIME_TUNING"] = "1"
        self.child = subprocess.Popen(
            [sys.executable, "-m", "minigpt.bench.train", "--torch-worker", str(threads), str(seed), str(n_batches)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.done = 0
        if self.child.stdout.readline().strip() != "ready":
            raise RuntimeError("the PyTorch benchmark process did not start (is torch installed?)")

    def steps(self, n):
        self.child.stdin.write(f"{self.done} {n}\n")
        self.child.stdin.flush()
        self.done += n
        return json.loads(self.child.stdout.readline())

    def close(self):
        self.child.stdin.close()
        self.child.wait()


def torch_worker(threads, seed, n_batches):
    """The child's side: build the same model and batches, then time steps on request."""
    import torch  # first, so its OpenMP starts with its own settings

    config, B = PRESET, BATCH_SIZE
    batches = random_batches(config, B, n_batches, np.random.default_rng(seed))
    model, _ = minigpt_trainer(config, seed)
    step = torch_trainer(model, threads)
    torch.manual_seed(seed)
    print("ready", flush=True)
    for line in sys.stdin:
        start, n = map(int, line.split())
        print(json.dumps(time_steps(step, batches[start:start + n])), flush=True)


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run(args) -> int:
    from minigpt.bench import thread_count

    iters = args.iters or DEFAULT_ITERS
    warmup = DEFAULT_WARMUP if args.warmup is None else args.warmup
    threads = thread_count(args)
    config, B = PRESET, BATCH_SIZE
    tokens_per_step = B * config.block_size
    n_batches = warmup + iters
    batches = random_batches(config, B, n_batches, np.random.default_rng(args.seed))

    model, minigpt_step = minigpt_trainer(config, args.seed)
    torch_child = None
    if not args.no_torch:
        if _torch_available():
            torch_child = TorchInChild(threads, args.seed, n_batches)
        else:
            print("(torch is not installed: no PyTorch comparison)")
    print(f"preset shakespeare-char: n_layer {config.n_layer}, n_head {config.n_head}, "
          f"n_embd {config.n_embd}, block {config.block_size}, batch {B}, vocab {config.vocab_size}, "
          f"{model.num_params():,} parameters, float32, {threads} thread(s)")

    start = time.perf_counter()
    time_steps(minigpt_step, batches[:warmup])
    print(f"warm-up: {warmup} minigpt steps in {time.perf_counter() - start:.2f} s "
          f"(includes loading compiled Numba kernels)")
    if torch_child is not None:
        torch_child.steps(warmup)

    # Alternate rounds so both see the same machine conditions.
    times = {"minigpt": [], "torch": []}
    per_round = max(1, iters // ROUNDS)
    for r in range(warmup, n_batches, per_round):
        chunk = batches[r:min(r + per_round, n_batches)]
        times["minigpt"] += time_steps(minigpt_step, chunk)
        if torch_child is not None:
            times["torch"] += torch_child.steps(len(chunk))
    if torch_child is not None:
        torch_child.close()

    flops_per_token = model.flops_per_token()
    peak = sgemm_gflops()
    print(f"BLAS sgemm 1024^3 on this machine: {peak:.1f} GFLOP/s")
    print(f"{'':10s} {'ms/step':>8s} {'tokens/s':>10s} {'GFLOP/s':>8s} {'MFU':>6s}")
    rates = {}
    for name, ts in times.items():
        if not ts:
            continue
        median = float(np.median(ts))
        rates[name] = tokens_per_step / median
        gflops = rates[name] * flops_per_token / 1e9
        print(f"{name:10s} {median * 1e3:8.2f} {rates[name]:10,.0f} {gflops:8.2f} {gflops / peak:6.1%}")
    if "torch" in rates:
        print(f"ratio minigpt/torch: {rates['minigpt'] / rates['torch']:.2f}x "
              f"(> 1 means minigpt is faster; median of {len(times['minigpt'])} steps each)")
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--torch-worker"]:
    torch_worker(*map(int, sys.argv[2:5]))
