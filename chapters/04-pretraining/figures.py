"""Regenerate this chapter's figures: python chapters/04-pretraining/figures.py

Each PNG is drawn by a function of minigpt.plots from numbers the package computes; the
notebook (notebooks/04-pretraining.ipynb) draws the same figures from the same calls. It
trains the notebook's two short runs (the preset's model: 500 iterations with the default init,
and the first 300 of the same schedule with GPT-2's), under a minute on an idle 2-core
machine; the runs go to out/04-pretraining-figures.
Needs Tiny Shakespeare (MINIGPT_DATA_DIR, the cache, or a download)."""

from pathlib import Path

import numpy as np

from minigpt import data, plots
from minigpt.generate import sampling_probs
from minigpt.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "out" / "04-pretraining-figures"
SHORT_RUN = dict(data="shakespeare", max_iters=500, eval_interval=50, eval_iters=10, sample_tokens=0, progress=False)
PROMPT = "First Citizen:\nWe are "
RULES = {"T=1": dict(temperature=1.0), "T=0.5": dict(temperature=0.5), "T=1.5": dict(temperature=1.5),
         "top-k 5": dict(top_k=5), "top-p 0.9": dict(top_p=0.9)}


def main():
    plots.plot_lr_schedule(warmup=100, lr_decay_iters=2000, lr=1e-3, min_lr=1e-4, max_iters=2200,
                           out_png=HERE / "lr-schedule.png")
    quiet = lambda *args: None  # noqa: E731
    run = train(TrainConfig(**SHORT_RUN, out_dir=str(OUT / "init-width-scaled")), log=quiet)
    gpt2_run = dict(SHORT_RUN, max_iters=300, lr_decay_iters=500)  # the first 300 steps of the same schedule
    run_gpt2 = train(TrainConfig(**gpt2_run, init_std=0.02, out_dir=str(OUT / "init-gpt2")), log=quiet)
    plots.plot_losses(run.metrics, HERE / "loss.png", title="Tiny Shakespeare, 500 iterations (the notebook's run)")
    shared = [row for row in run.metrics if row["iter"] <= 300]
    plots.compare_val_losses({"std 1/sqrt(n_embd)": shared, "std 0.02 (GPT-2)": run_gpt2.metrics},
                             HERE / "init-short.png", title="the same 300 iterations, two initialisations")

    model, tokenizer = run.model.eval(), run.tokenizer
    prompt = np.array([tokenizer.encode(PROMPT)])  # (1, T)
    next_logits = model.forward(prompt)[0][0, -1]  # (V,)
    dists = {label: sampling_probs(next_logits[None], **rule)[0] for label, rule in RULES.items()}
    dists["greedy"] = np.eye(tokenizer.vocab_size)[np.argmax(next_logits)]
    plots.plot_next_token_distributions(dists, [tokenizer.decode([i]) for i in range(tokenizer.vocab_size)],
                                        out_png=HERE / "sampling-rules.png")
    for png in sorted(HERE.glob("*.png")):
        print(f"wrote {png.relative_to(HERE.parents[1])} ({png.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    data.load_text("shakespeare")  # fail early, with the message saying where to get it
    main()
