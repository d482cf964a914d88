"""The end of `python -m minigpt bench`: the README's speed table, and the --json file."""

from __future__ import annotations

import json
from pathlib import Path


def training_table(train: dict, torch_version: str | None) -> list[str]:
    """Markdown rows per preset: tokens/s of minigpt and PyTorch in each layout, the ratio,
    and each system at its best."""
    torch_name = f"PyTorch {torch_version}" if torch_version else "PyTorch"
    lines = []
    for name, result in train["presets"].items():
        lines += ["", f"| {name}, training tokens/s (float32) | minigpt | {torch_name} | minigpt / PyTorch |",
                  "| --- | --- | --- | --- |"]
        rows = {(r["system"], r["layout"]): r for r in result["rows"]}
        shapes = list(dict.fromkeys(r["layout"] for r in result["rows"]))
        for shape in shapes:
            mine, theirs = rows.get(("minigpt", shape)), rows.get(("torch", shape))
            many = mine and mine["processes"] > 1 or theirs and theirs["processes"] > 1
            label = shape + (" (minigpt: MPI; PyTorch: DDP over gloo)" if many else "")
            ratio = f"{mine['tokens_per_s'] / theirs['tokens_per_s']:.2f}x" if mine and theirs else ""
            lines.append(f"| {label} | {_rate(mine)} | {_rate(theirs)} | {ratio} |")
        best = result["ratios"].get("best")
        if best:
            mine = rows[("minigpt", best["minigpt_layout"])]
            theirs = rows[("torch", best["torch_layout"])]
            lines.append(f"| **each at its best** | **{mine['tokens_per_s']:,.0f}** ({best['minigpt_layout']}, "
                         f"MFU {mine['mfu']:.0%}) | {theirs['tokens_per_s']:,.0f} ({best['torch_layout']}) | "
                         f"**{best['ratio']:.2f}x** |")
    return lines


def _rate(row) -> str:
    return "" if row is None else f"{row['tokens_per_s']:,.0f}"


def print_summary(results: dict, machine: dict) -> None:
    """The README's speed section, ready to paste (only what this run measured)."""
    if "train" not in results and "sample" not in results:
        return
    print("\n== summary (the README's speed table) ==")
    print(f"Machine: {machine['cpu']}, {machine['cores']} cores; load average "
          f"{_load(machine.get('load_average_before'))} before, {_load(machine.get('load_average_after'))} after. "
          f"Command: `{machine['command']}`")
    if "train" in results:
        train = results["train"]
        for line in training_table(train, machine["versions"].get("torch")):
            print(line)
        print(f"\nBLAS sgemm (1024^3): {train['sgemm_gflops_1_thread']:.1f} GFLOP/s on one core, "
              f"{train['sgemm_gflops_all_threads']:.1f} on all {train['cores']}; MFU = achieved GFLOP/s / "
              f"(the one-core rate x the cores used).")
    if "sample" in results:
        s = results["sample"]
        print(f"Sampling, batch 1, within the context window: {s['cached_tokens_per_s']:,.0f} tokens/s with the "
              f"KV cache, {s['uncached_tokens_per_s']:,.0f} without.")


def _load(values) -> str:
    return "?" if not values else f"{values[0]:.1f}"


def write_json(path, results: dict, machine: dict) -> None:
    """Every number of this run and what it ran on, as JSON (written whole, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"machine": machine, **results}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"\nwrote {path}")
