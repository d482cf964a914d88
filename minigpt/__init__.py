"""minigpt: a GPT written from scratch in NumPy and Numba, every gradient by hand."""

from minigpt.model import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
__version__ = "0.1.0"
