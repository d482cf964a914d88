"""Where the time of a minigpt training step goes: `python -m minigpt bench --profile`.

For the length of the profile, every layer function that model.py calls (minigpt.layers)
and every kernel those call (minigpt.kernels: the matmuls, layernorm, GELU, attention,
cross-entropy, AdamW) is wrapped in a stopwatch. A step is then split into:

    per layer (embedding, layernorm, attention, mlp, head, cross-entropy, dropout),
        forward and backward, and inside each: its kernels (matmul, attention core,
        gelu, ...) and "glue", the NumPy work between them (reshapes, transposes,
        copies, bias adds, stacking the gradients of q, k and v)
    model glue   the forward's and backward's own work outside the layers: residual
                 adds, adding each layer's gradients into the flat buffer, Python
    optimizer    zero_grad, gradient clipping and AdamW
    fixed cost   the same step on a 1-token batch of a 1-channel-per-head model: the
                 same Python, dispatch and thread wake-ups, next to no arithmetic. What
                 no kernel can remove: the interpreter's share of the step.

Each number is the median over the profiled steps, in ms per step. The stopwatch costs
about a microsecond per call; the profiled step is shown beside an unprofiled one.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import numpy as np

from minigpt import GPT, GPTConfig, kernels, layers
from minigpt.bench.train import GRAD_CLIP, minigpt_step, minigpt_trainer, random_batches
from minigpt.optim import clip_grad_norm

# What model.py calls (the layers) and what the layers and the optimizer call (the kernels).
LAYERS = ("embedding", "layernorm", "residual_layernorm", "attention", "mlp", "linear", "cross_entropy", "dropout")
KERNELS = ("matmul", "layernorm_forward", "layernorm_backward", "residual_layernorm_forward",
           "residual_layernorm_backward", "gelu_forward", "gelu_backward", "bias_gelu_forward", "bias_gelu_backward",
           "attention_forward", "attention_backward", "qkv_attention_forward", "qkv_attention_backward",
           "cross_entropy_forward", "cross_entropy_backward", "embedding_backward", "adamw_update")
SHOWN_AS = {"linear": "head (x @ wte^T)", "cross_entropy": "cross-entropy", "residual_layernorm": "residual + layernorm"}


class Stopwatch:
    """Inclusive times of wrapped calls, attributed to the outermost layer call they run in."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.layer_stack = []
        self.times = defaultdict(float)  # (layer function or None, kernel or None) -> seconds
        self.calls = defaultdict(int)

    def wrap(self, name, fn, is_layer):
        def timed(*args, **kwargs):
            outer = self.layer_stack[0] if self.layer_stack else None
            if is_layer:
                self.layer_stack.append(name)
            start = self.clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = self.clock() - start
                if is_layer:
                    self.layer_stack.pop()
                    if outer is None:  # a layer model.py called (not one inside another)
                        self.times[(name, None)] += elapsed
                        self.calls["layers"] += 1
                else:
                    self.times[(outer, name)] += elapsed
                    self.calls["kernels"] += 1

        return timed

    def take(self) -> dict:
        """The times so far (and start again)."""
        times, self.times = dict(self.times), defaultdict(float)
        return times


@contextlib.contextmanager
def stopwatches_installed(watch: Stopwatch):
    """Put watch's wrappers around the layer functions and kernels; take them off after."""
    layer_functions = [f"{layer}_{phase}" for layer in LAYERS for phase in ("forward", "backward")]
    saved = {name: getattr(layers, name) for name in layer_functions}
    try:
        for name, fn in saved.items():  # model.py and the layers look these up at call time
            setattr(layers, name, watch.wrap(name, fn, is_layer=True))
        for name in KERNELS:  # set on the package, shadowing its lookup in the active backend
            setattr(kernels, name, watch.wrap(name, getattr(kernels, name), is_layer=False))
        yield watch
    finally:
        for name, fn in saved.items():
            setattr(layers, name, fn)
        for name in KERNELS:
            vars(kernels).pop(name, None)  # back to kernels.__getattr__, the active backend


def profiled_steps(model, optimizer, batches, watch):
    """Run the steps with the stopwatches on; one dict of times (s) per step."""
    steps = []
    for x, y in batches:
        t0 = time.perf_counter()
        model.zero_grad()
        t1 = time.perf_counter()
        model.forward(x, y)
        t2 = time.perf_counter()
        model.backward()
        t3 = time.perf_counter()
        clip_grad_norm(model.flat_grads, GRAD_CLIP)
        optimizer.step()
        t4 = time.perf_counter()
        steps.append({"inside": watch.take(), "zero_grad": t1 - t0, "forward": t2 - t1, "backward": t3 - t2,
                      "optimizer": t4 - t3, "step": t4 - t0})
    return steps


def breakdown(steps: list[dict]) -> dict:
    """Median ms per step of every part (see the module docstring)."""
    def median_ms(values):
        return float(np.median(values)) * 1e3

    rows = {}
    for layer in LAYERS:
        for phase in ("forward", "backward"):
            fn = f"{layer}_{phase}"
            totals = [s["inside"].get((fn, None), 0.0) for s in steps]
            if not any(totals):
                continue
            kernel_names = sorted({k for s in steps for (outer, k) in s["inside"] if outer == fn and k is not None})
            inside = {k: median_ms([s["inside"].get((fn, k), 0.0) for s in steps]) for k in kernel_names}
            glue = median_ms([t - sum(s["inside"].get((fn, k), 0.0) for k in kernel_names)
                              for t, s in zip(totals, steps)])
            rows.setdefault(layer, {})[phase] = {"ms": median_ms(totals), "kernels": inside, "glue_ms": glue}
    model_glue = {}
    for phase in ("forward", "backward"):
        layer_time = [sum(t for (fn, k), t in s["inside"].items() if k is None and fn.endswith(phase)) for s in steps]
        model_glue[phase] = median_ms([s[phase] - t for s, t in zip(steps, layer_time)])
    optimizer = median_ms([s["optimizer"] + s["zero_grad"] for s in steps])
    per_kernel = defaultdict(list)  # each kernel over the whole step, wherever it ran
    for s in steps:
        sums = defaultdict(float)
        for (outer, k), t in s["inside"].items():
            if k is not None:
                sums[k] += t
        for k in {k for st in steps for (_, k) in st["inside"] if k is not None}:
            per_kernel[k].append(sums[k])
    adamw = median_ms([s["inside"].get((None, "adamw_update"), 0.0) for s in steps])
    return {"layers": rows, "model_glue_ms": model_glue,
            "optimizer": {"ms": optimizer, "adamw_update_ms": adamw},
            "kernels_ms": dict(sorted(((k, median_ms(v)) for k, v in per_kernel.items()), key=lambda kv: -kv[1])),
            "forward_ms": median_ms([s["forward"] for s in steps]),
            "backward_ms": median_ms([s["backward"] for s in steps]),
            "step_ms": median_ms([s["step"] for s in steps])}


def fixed_cost_config(config: GPTConfig) -> GPTConfig:
    """The same layers and heads with 1 channel per head and a 1-token context: the same
    calls, next to no arithmetic."""
    return GPTConfig(vocab_size=config.vocab_size, block_size=1, n_layer=config.n_layer, n_head=config.n_head,
                     n_embd=config.n_head)


def median_step_ms(config, batch_size, n, warmup, seed) -> float:
    model, optimizer = minigpt_trainer(config, seed)
    step = minigpt_step(model, optimizer)
    batches = random_batches(config, batch_size, warmup + n, np.random.default_rng(seed))
    times = []
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        step(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def profile_preset(preset, threads: int, n: int, warmup: int, seed: int) -> dict:
    from minigpt import runtime

    runtime.limit_threads(threads)
    model, optimizer = minigpt_trainer(preset.config, seed)
    batches = random_batches(preset.config, preset.batch_size, warmup + n, np.random.default_rng(seed))
    step = minigpt_step(model, optimizer)
    for x, y in batches[:warmup]:
        step(x, y)
    watch = Stopwatch()
    with stopwatches_installed(watch):
        steps = profiled_steps(model, optimizer, batches[warmup:], watch)
    result = breakdown(steps)
    result["unprofiled_step_ms"] = median_step_ms(preset.config, preset.batch_size, n, warmup, seed)
    result["fixed_cost_ms"] = median_step_ms(fixed_cost_config(preset.config), 1, max(n, 20), warmup, seed)
    result["calls_per_step"] = {k: v // len(steps) for k, v in watch.calls.items()}
    result["threads"] = threads
    return result


def print_profile(name: str, profiles: dict) -> None:
    """One table: a column pair (forward, backward) per thread count."""
    counts = list(profiles)
    print(f"\nprofile of a minigpt step, {name}: ms per step (median of the profiled steps)")
    header = f"{'':34s}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>20s}" for t in counts)
    print(header)
    print(f"{'':34s}" + "".join(f"{'forward':>10s}{'backward':>10s}" for _ in counts))

    def line(label, values):
        print(f"{label:34s}" + "".join(f"{'' if v is None else f'{v:.2f}':>10s}" for v in values))

    first = profiles[counts[0]]
    for layer, phases in first["layers"].items():
        line(SHOWN_AS.get(layer, layer), [profiles[t]["layers"].get(layer, {}).get(p, {}).get("ms")
                                          for t in counts for p in ("forward", "backward")])
        kernel_names = sorted({k for p in phases.values() for k in p["kernels"]})
        if kernel_names:
            for k in kernel_names:
                line(f"    {k}", [profiles[t]["layers"].get(layer, {}).get(p, {}).get("kernels", {}).get(k)
                                   for t in counts for p in ("forward", "backward")])
            line("    glue (NumPy between kernels)", [profiles[t]["layers"].get(layer, {}).get(p, {}).get("glue_ms")
                                                       for t in counts for p in ("forward", "backward")])
    line("model glue (residuals, grads +=)", [profiles[t]["model_glue_ms"][p] for t in counts
                                               for p in ("forward", "backward")])
    line("total forward / backward", [profiles[t][f"{p}_ms"] for t in counts for p in ("forward", "backward")])
    print(f"{'':34s}" + "".join(f"{'ms':>10s}{'of step':>10s}" for _ in counts))
    print(f"{'optimizer (zero, clip, AdamW)':34s}" + "".join(
        f"{profiles[t]['optimizer']['ms']:10.2f}{profiles[t]['optimizer']['ms'] / profiles[t]['step_ms']:10.1%}"
        for t in counts))
    print(f"{'fixed cost (1-token step)':34s}" + "".join(
        f"{profiles[t]['fixed_cost_ms']:10.2f}{profiles[t]['fixed_cost_ms'] / profiles[t]['unprofiled_step_ms']:10.1%}"
        for t in counts))
    print(f"{'step, profiled / not':34s}" + "".join(
        f"{profiles[t]['step_ms']:10.2f}{profiles[t]['unprofiled_step_ms']:10.2f}" for t in counts))
    for t in counts:
        step = profiles[t]["step_ms"]
        parts = ", ".join(f"{k} {ms / step:.0%}" for k, ms in profiles[t]["kernels_ms"].items() if ms / step >= 0.005)
        print(f"{t} thread{'s' if t > 1 else ''}, each kernel's share of the step: {parts}")
    calls = first["calls_per_step"]
    print(f"({calls.get('layers', 0)} layer calls and {calls.get('kernels', 0)} kernel calls per step)")


def run_profiles(presets, args, cores: int) -> dict:
    """Profile each preset at 1 thread and at all cores; print and return the numbers."""
    out = {}
    for preset in presets:
        n = args.iters or max(3, preset.iters // 3)
        warmup = preset.warmup if args.warmup is None else args.warmup
        profiles = {t: profile_preset(preset, t, n, warmup, args.seed) for t in sorted({1, cores})}
        print_profile(preset.name, profiles)
        out[preset.name] = {str(t): p for t, p in profiles.items()}
    return out
