"""Will the model fit? Compare what loading needs with what the machine has, before allocating.

gpt2-xl, float32: 1,557,611,200 parameters x 4 bytes = 6,230,444,800 bytes (6.23 GB) of
weights, plus 643,289,600 bytes while loading (a float64 array the size of wte, 50257 x 1600):
6.87 GB at the peak. Training needs three more buffers as large as the weights (gradients,
AdamW's two moments), 24.9 GB before activations: a 24 GiB machine (25.8 GB) would have
less than 1 GB left for the activations, the data and the operating system.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from minigpt.pretrained.errors import NotEnoughMemory


def memory_needed(config, dtype=np.float32) -> tuple[int, int]:
    """(bytes of the weights, extra bytes at the peak of loading) for a model of this config.

    The weights are one flat buffer of num_params x itemsize bytes. Loading briefly needs a
    float64 array the size of the largest tensor (wte) on top: GPT() draws its initial
    weights in float64 before the file's values replace them, and converting a float16 or
    bfloat16 tensor needs less. The gradient buffer is allocated too but costs nothing
    until training writes to it (the kernel hands out its zero pages on first use)."""
    from minigpt.model import parameter_shapes

    sizes = [math.prod(shape) for shape in parameter_shapes(config).values()]
    return sum(sizes) * np.dtype(dtype).itemsize, max(sizes) * 8


def available_memory() -> int | None:
    """Bytes this process can still use: the kernel's MemAvailable (free memory plus caches
    it can drop), lowered to a container's (cgroup's) limit when one is set. None where
    neither can be read (not Linux): then no check is made."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # v2
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",  # v1
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = (Path(name).read_text().strip() for name in (limit_file, usage_file))
            if limit.isdigit() and int(limit) < 1 << 60:  # "max" or a huge number mean no limit
                candidates.append(max(0, int(limit) - int(usage)))
        except (OSError, ValueError):
            pass
    return min(candidates) if candidates else None


def check_memory(config, dtype, what: str) -> None:
    """Raise NotEnoughMemory, with both numbers, if loading `what` would not fit."""
    weights, loading = memory_needed(config, dtype)
    available = available_memory()
    if available is not None and weights + loading > available:
        dtype = np.dtype(dtype)
        raise NotEnoughMemory(
            f"{what} needs about {_gb(weights + loading)} of memory to load in {dtype.name} "
            f"({weights // dtype.itemsize:,} parameters: {_gb(weights)} of weights, {_gb(loading)} more "
            f"while loading), but only {_gb(available)} is available"
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB ({n:,} bytes)"
