"""Regenerate this chapter's figures: python chapters/05-finetuning/figures.py

Each PNG is drawn by a function of minigpt.plots; the notebook (notebooks/05-finetuning.ipynb)
shows the same figures. Two are diagrams of small made-up batches (which position pooling
reads; which targets of an instruction batch count, from minigpt.finetune.instruct_data.collate);
the third draws the comparison table committed in results/comparison.json, when it is there.
Needs no data and trains nothing."""

import json
from pathlib import Path

from minigpt import plots
from minigpt.finetune.instruct_data import collate

HERE = Path(__file__).resolve().parent
EOT = 99  # a stand-in end-of-text id for the made-up batch


def main():
    plots.plot_last_token_pooling([4, 9, 1, 6], 9, out_png=HERE / "last-token-pooling.png")
    # three examples as (prompt ids + response ids + [end-of-text], prompt length): 4 + 3, 2 + 1, 5 + 2 tokens
    batch = [([11, 12, 13, 14, 21, 22, 23, EOT], 4), ([15, 16, 24, EOT], 2), ([11, 17, 18, 19, 13, 25, 26, EOT], 5)]
    _, targets = collate(batch, EOT, mask_prompt=True)
    plots.plot_instruction_targets(targets, [p for _, p in batch], out_png=HERE / "instruction-targets.png",
                                   title="which targets count (the prompt masked)")
    comparison = HERE / "results" / "comparison.json"
    if comparison.exists():
        plots.plot_training_choices(json.loads(comparison.read_text()), out_png=HERE / "training-choices.png")
    else:
        print(f"{comparison.relative_to(HERE.parents[1])} is not there yet: training-choices.png not drawn")
    for png in sorted(HERE.glob("*.png")):
        print(f"wrote {png.relative_to(HERE.parents[1])} ({png.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
