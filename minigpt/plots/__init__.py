"""Figures shared by the command line, the chapters and the notebooks, one module a topic:
tokenization (chapter 1), attention (2), gpt (3), training and sampling (4), finetuning (5), speed (6).

Every function builds and returns a matplotlib Figure, saving it when given `out_png`
(see base.py). All of them are reachable as `minigpt.plots.<name>`.
"""

from minigpt.plots import attention, finetuning, gpt, sampling, speed, tokenization, training
from minigpt.plots.attention import *  # noqa: F403
from minigpt.plots.finetuning import *  # noqa: F403
from minigpt.plots.gpt import *  # noqa: F403
from minigpt.plots.sampling import *  # noqa: F403
from minigpt.plots.speed import *  # noqa: F403
from minigpt.plots.tokenization import *  # noqa: F403
from minigpt.plots.training import *  # noqa: F403

__all__ = [*tokenization.__all__, *attention.__all__, *gpt.__all__, *training.__all__, *sampling.__all__,
           *finetuning.__all__, *speed.__all__]
