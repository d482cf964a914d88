"""Training speed: minigpt against PyTorch on the CPU, every way of using the machine's cores.

One training step = forward + backward + gradient clipping + AdamW, float32, on random
token ids (the speed does not depend on the text), at two model sizes (PRESETS):
shakespeare-char (the main command's model) and 6L-384 (nanoGPT's GPU model for the
same data, at batch 8). Each system runs in every layout of the machine's cores:

    1 process x 1 thread        the one-thread comparison
    1 process x all threads     threads share every matmul and kernel
    K processes x cores/K       data parallelism: minigpt over MPI (mpiexec, the
                                training loop's own step), PyTorch with
                                DistributedDataParallel over gloo

Every layout runs in processes of its own (minigpt/bench/step_worker.py), with its
thread counts set before the libraries load, all started at once and timed in 12
alternating rounds, so that a noisy neighbour slows them all rather than one; the layouts
not being timed sleep, looking for their next request every 20 ms (distributed.IDLE_POLL_S
says why so seldom). The ratios compare the systems in the same layout, and each system
at its best. PyTorch runs with its own OpenMP and malloc settings, as its users run it.

Achieved GFLOP/s uses model.flops_per_token() (6 FLOPs per weight per token plus the
attention matmuls). "MFU" here is that rate divided by the practical ceiling of the cores
the layout uses: what BLAS sgemm reaches on one core for a large square matmul (measured
in a fresh single-threaded process, best of 5), times processes x threads. (The rate with
all threads is shown too; on a shared machine it is the first to suffer.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from minigpt import GPT, GPTConfig
from minigpt.bench import seconds
from minigpt.optim import AdamW, clip_grad_norm
from minigpt.runtime import THREAD_VARIABLES, available_cores


@dataclass(frozen=True)
class Preset:
    name: str
    config: GPTConfig
    batch_size: int  # the global batch, split between the processes of a layout
    iters: int  # timed steps per layout (--iters overrides)
    warmup: int  # untimed steps first (--warmup overrides)

    def describe(self) -> str:
        c = self.config
        return (f"{self.name}: {c.n_layer} layers, {c.n_head} heads, n_embd {c.n_embd}, T {c.block_size}, "
                f"batch {self.batch_size}, vocab {c.vocab_size}")


PRESETS = {
    # the main command's model (python -m minigpt train)
    "shakespeare-char": Preset("shakespeare-char", GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
                                                             n_embd=128), 12, iters=60, warmup=10),
    # nanoGPT's GPU model for Tiny Shakespeare (its batch is 64; 8 here, for a CPU)
    "6L-384": Preset("6L-384", GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384), 8,
                     iters=12, warmup=2),
}
PRESET, BATCH_SIZE = PRESETS["shakespeare-char"].config, PRESETS["shakespeare-char"].batch_size  # (other suites)
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0
ROUNDS = 12  # short rounds: a slow spell of the machine (tens of seconds) spreads over every layout


def random_batches(config, batch_size, n, rng):
    """n (x, y) pairs of random token ids, int64 (B, T) each."""
    shape = (n, batch_size, config.block_size)
    return list(zip(rng.integers(0, config.vocab_size, shape), rng.integers(0, config.vocab_size, shape)))


def minigpt_trainer(config, seed=0):
    """(model, optimizer) as the training loop builds them."""
    model = GPT(config, seed=seed, dtype=np.float32)
    return model, AdamW(model, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)


def minigpt_step(model, optimizer):
    """One plain minigpt training step, step(x, y) -> loss (the profile times its parts)."""
    def step(x, y):
        model.zero_grad()
        _, loss = model.forward(x, y)
        model.backward()
        clip_grad_norm(model.flat_grads, GRAD_CLIP)
        optimizer.step()
        return float(loss)

    return step


def torch_trainer(model, threads, distributed=False):
    """The PyTorch twin of minigpt's step, from the same initial weights; with
    distributed, wrapped in DistributedDataParallel (the process group is set up)."""
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
    if distributed:  # averages the gradients over the processes during backward
        torch_model = torch.nn.parallel.DistributedDataParallel(torch_model)

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
    """Best float32 BLAS matmul rate (GFLOP/s) on n x n matrices, with this process's threads."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up the threads
    best = min(seconds(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def sgemm_gflops_with(threads: int) -> float:
    """sgemm_gflops in a fresh process whose BLAS has this many threads (BLAS reads its
    thread count when NumPy loads)."""
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    code = "from minigpt.bench.train import sgemm_gflops; print(sgemm_gflops())"
    return float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)


# --- layouts: how a system uses the cores -----------------------------------------------------


@dataclass(frozen=True)
class Layout:
    system: str  # "minigpt" or "torch"
    processes: int
    threads: int  # per process

    @property
    def shape(self) -> str:
        """The layout without the system, e.g. "2 processes x 1 thread" (rows pair up on it)."""
        return (f"{self.processes} process{'es' if self.processes > 1 else ''} x "
                f"{self.threads} thread{'s' if self.threads > 1 else ''}")

    @property
    def label(self) -> str:
        how = "" if self.processes == 1 else (" (MPI)" if self.system == "minigpt" else " (DDP, gloo)")
        return self.shape + how


def process_counts(cores: int, batch_size: int) -> list[int]:
    """Process counts to try: 1, 2, 4, ... up to the cores, and the cores themselves,
    each dividing the batch (a global batch splits evenly or not at all)."""
    counts = {cores} | {2**i for i in range(cores.bit_length()) if 2**i <= cores}
    return sorted(k for k in counts if batch_size % k == 0)


def layouts(system: str, cores: int, batch_size: int) -> list[Layout]:
    """1 process x 1 thread, 1 process x all cores, K processes x cores/K threads."""
    found = [Layout(system, 1, 1)] + ([Layout(system, 1, cores)] if cores > 1 else [])
    return found + [Layout(system, k, cores // k) for k in process_counts(cores, batch_size) if k > 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningLayout:
    """The processes of one layout (step_worker.py), started and waiting for requests.
    steps(n) times the next n batches on every process and returns rank 0's times."""

    def __init__(self, layout: Layout, preset: Preset, seed: int, n_batches: int, mpiexec: str | None):
        self.layout = layout
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MINIGPT_NO_RUNTIME_TUNING")}
        env.update({name: str(layout.threads) for name in THREAD_VARIABLES})
        worker = [sys.executable, "-m", "minigpt.bench.step_worker", layout.system, preset.name, str(seed),
                  str(n_batches)]
        self.helpers = []  # DDP's ranks 1..K-1 (MPI's are mpiexec's children)
        if layout.system == "torch":
            env["MINIGPT_NO_RUNTIME_TUNING"] = "1"  # PyTorch as its users run it
            if layout.processes > 1:
                env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
                           WORLD_SIZE=str(layout.processes), RANK="0")
                self.helpers = [subprocess.Popen(worker, env=dict(env, RANK=str(r)), stdin=subprocess.DEVNULL,
                                                 stdout=subprocess.DEVNULL) for r in range(1, layout.processes)]
        elif layout.processes > 1:
            worker = [mpiexec, "-n", str(layout.processes), *worker]
        self.child = subprocess.Popen(worker, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.child.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"the {layout.system} benchmark process(es) for {layout.label} did not start")

    def steps(self, n: int) -> list[float]:
        self.child.stdin.write(f"{n}\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())

    def close(self):
        if self.child.stdin:
            self.child.stdin.close()
        for process in [self.child, *self.helpers]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


# --- the suite --------------------------------------------------------------------------------


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _mpiexec():
    """mpiexec (with mpi4py importable), or None: the data-parallel minigpt layouts need both."""
    from minigpt.distributed import mpiexec_path

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return mpiexec_path()


def bench_preset(preset: Preset, args, cores: int, mpiexec: str | None, use_torch: bool) -> dict:
    """Time every layout of both systems on one preset; the results (one row per layout)."""
    iters = args.iters or preset.iters
    warmup = preset.warmup if args.warmup is None else args.warmup
    n_batches = warmup + iters
    wanted = layouts("minigpt", cores, preset.batch_size) + (layouts("torch", cores, preset.batch_size)
                                                             if use_torch else [])
    if mpiexec is None:
        skipped = [lay for lay in wanted if lay.system == "minigpt" and lay.processes > 1]
        if skipped:
            print("(mpi4py or mpiexec missing: no data-parallel minigpt layouts; pip install mpi4py mpich)")
        wanted = [lay for lay in wanted if lay not in skipped]
    model = GPT(preset.config, seed=args.seed)
    tokens_per_step = preset.batch_size * preset.config.block_size
    print(f"preset {preset.describe()}; {model.num_params():,} parameters, float32, "
          f"{tokens_per_step:,} tokens per step")
    running = []
    start = time.perf_counter()
    for layout in wanted:  # all started (and warmed up) before any is timed
        try:
            running.append(RunningLayout(layout, preset, args.seed, n_batches, mpiexec))
            running[-1].steps(warmup)
        except (RuntimeError, OSError, json.JSONDecodeError) as err:
            print(f"({layout.system} {layout.label}: could not run: {err})")
    print(f"started {len(running)} layouts and ran {warmup} warm-up step(s) each in "
          f"{time.perf_counter() - start:.1f} s")
    times = {r.layout: [] for r in running}
    per_round = max(1, iters // ROUNDS)
    try:
        for first in range(warmup, n_batches, per_round):  # alternate: the same machine conditions for all
            n = min(per_round, n_batches - first)
            for r in running:
                times[r.layout] += r.steps(n)
    finally:
        for r in running:
            r.close()

    flops_per_token = model.flops_per_token()
    rows = []
    for layout, ts in times.items():
        median = float(np.median(ts))
        rows.append({"system": layout.system, "layout": layout.shape, "processes": layout.processes,
                     "threads": layout.threads, "ms_per_step": median * 1e3, "tokens_per_s": tokens_per_step / median,
                     "gflops": tokens_per_step / median * flops_per_token / 1e9, "steps_timed": len(ts)})
    return {"preset": preset.name, "config": {**vars(preset.config), "batch_size": preset.batch_size},
            "parameters": model.num_params(), "tokens_per_step": tokens_per_step,
            "flops_per_token": flops_per_token, "rows": rows}


def ratios(result: dict) -> dict:
    """minigpt / PyTorch tokens/s: in each layout both ran, and each system at its best."""
    by = {(r["system"], r["layout"]): r for r in result["rows"]}
    out = {"same_layout": {}}
    for (system, layout), row in by.items():
        if system == "minigpt" and ("torch", layout) in by:
            out["same_layout"][layout] = row["tokens_per_s"] / by[("torch", layout)]["tokens_per_s"]
    best = {}
    for system in ("minigpt", "torch"):
        rows = [r for r in result["rows"] if r["system"] == system]
        if rows:
            best[system] = max(rows, key=lambda r: r["tokens_per_s"])
    if len(best) == 2:
        out["best"] = {"minigpt_layout": best["minigpt"]["layout"], "torch_layout": best["torch"]["layout"],
                       "ratio": best["minigpt"]["tokens_per_s"] / best["torch"]["tokens_per_s"]}
    return out


def print_result(result: dict) -> None:
    print(f"\n{result['preset']}, training step, float32 ({result['parameters']:,} parameters, "
          f"{result['tokens_per_step']:,} tokens per step)")
    print(f"{'system':8s} {'layout':28s} {'ms/step':>8s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'MFU':>6s}")
    for r in result["rows"]:
        label = r["layout"] + ("" if r["processes"] == 1 else (" (MPI)" if r["system"] == "minigpt" else " (DDP)"))
        print(f"{r['system']:8s} {label:28s} {r['ms_per_step']:8.2f} {r['tokens_per_s']:9,.0f} "
              f"{r['gflops']:8.2f} {r['mfu']:6.1%}")
    for layout, ratio in result["ratios"]["same_layout"].items():
        print(f"ratio minigpt/torch, {layout}: {ratio:.2f}x")
    if "best" in result["ratios"]:
        b = result["ratios"]["best"]
        print(f"ratio minigpt/torch, each at its best (minigpt {b['minigpt_layout']}, torch {b['torch_layout']}): "
              f"{b['ratio']:.2f}x   (> 1 means minigpt is faster; medians of {result['rows'][0]['steps_timed']} "
              f"steps)")


def run(args) -> int:
    cores = args.threads or available_cores()  # --threads N: as if the machine had N cores
    use_torch = not args.no_torch and _torch_available()
    if not args.no_torch and not use_torch:
        print("(torch is not installed: no PyTorch comparison)")
    mpiexec = _mpiexec()
    names = args.presets or list(PRESETS)
    results = {}
    for name in names:
        results[name] = bench_preset(PRESETS[name], args, cores, mpiexec, use_torch)
        results[name]["ratios"] = ratios(results[name])
    per_core, all_threads = sgemm_gflops_with(1), sgemm_gflops_with(cores)
    print(f"\nBLAS sgemm 1024^3 on this machine: {per_core:.1f} GFLOP/s on 1 thread, {all_threads:.1f} on {cores}; "
          f"MFU = achieved / (the 1-thread rate x the cores a layout uses)")
    for result in results.values():
        for row in result["rows"]:
            row["mfu"] = row["gflops"] / (per_core * row["processes"] * row["threads"])
        print_result(result)
    args.results["train"] = {"cores": cores, "sgemm_gflops_1_thread": per_core, "sgemm_gflops_all_threads": all_threads,
                             "presets": results}
    if args.profile:
        from minigpt.bench import profile

        args.results["profile"] = profile.run_profiles([PRESETS[n] for n in names], args, cores)
    return 0
