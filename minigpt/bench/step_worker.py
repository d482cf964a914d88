"""One layout of the training benchmark, in processes of its own, timing steps on request.

    python -m minigpt.bench.step_worker minigpt PRESET SEED N_BATCHES        (1 process)
    mpiexec -n K python -m minigpt.bench.step_worker minigpt ...            (K MPI ranks)
    python -m minigpt.bench.step_worker torch PRESET SEED N_BATCHES         (1 process, or one
        of K with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set: DDP over gloo)

The threads of each process are set by the parent through the usual variables
(OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS), read when the libraries load.

Every rank builds the same model (same seed) and the same global batches, and trains on
its rows of each batch. minigpt runs train.train_step, the training loop's own step
(one Allreduce of the flat gradient under MPI); PyTorch runs its usual loop (AdamW,
gradient clipping; DistributedDataParallel with several processes).

Protocol, on rank 0's stdin and stdout: it prints "ready", then for each line "N" it runs
the next N batches on every rank and prints their times (rank 0's, which include waiting
for the others in the gradient sum) as a JSON list. End of input: every rank exits.
Ranks wait for the next request without spinning, so that an idle layout leaves the
cores to the one being timed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from minigpt.bench.train import GRAD_CLIP, LR, PRESETS, minigpt_trainer, random_batches, time_steps, torch_trainer
from minigpt.distributed import IDLE_POLL_S

QUIT = -1


def minigpt_layout(preset, seed, n_batches):
    """(step(x, y), world, next_request) for minigpt on this process's share."""
    from minigpt import distributed
    from minigpt.train import train_step

    world = distributed.world()
    model, optimizer = minigpt_trainer(preset.config, seed)

    def step(x, y):
        return train_step(model, optimizer, [(world.local_rows(x), world.local_rows(y))], LR, GRAD_CLIP, world)

    return step, world.rank, world.broadcast_int


def torch_layout(preset, seed, n_batches):
    """(step(x, y), rank, next_request) for PyTorch: one process, or DDP over gloo."""
    import torch  # first, so that its OpenMP starts with its own settings

    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if size > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=size)
    model, _ = minigpt_trainer(preset.config, seed)
    torch.manual_seed(seed)
    step = torch_trainer(model, int(os.environ.get("OMP_NUM_THREADS", "1")), distributed=size > 1)
    part = preset.batch_size // size

    def local_step(x, y):
        return step(x[rank * part:(rank + 1) * part], y[rank * part:(rank + 1) * part])

    def next_request(n, poll_s=IDLE_POLL_S):  # rare checks: see distributed.IDLE_POLL_S
        if size == 1:
            return n
        import torch.distributed as dist

        value = torch.tensor([n], dtype=torch.int64)
        work = dist.broadcast(value, src=0, async_op=True)
        while not work.is_completed():  # sleep between checks: no spinning
            time.sleep(poll_s)
        work.wait()
        return int(value[0])

    return local_step, rank, next_request


def main(system, preset_name, seed, n_batches):
    preset = PRESETS[preset_name]
    step, rank, next_request = (minigpt_layout if system == "minigpt" else torch_layout)(preset, seed, n_batches)
    batches = random_batches(preset.config, preset.batch_size, n_batches, np.random.default_rng(seed))
    done = 0
    if rank == 0:
        print("ready", flush=True)
    while True:
        if rank == 0:
            line = sys.stdin.readline()
            n = int(line) if line.strip() else QUIT
        n = next_request(n if rank == 0 else 0)
        if n == QUIT:
            break
        times = time_steps(step, batches[done:done + n])
        done += n
        if rank == 0:
            print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
