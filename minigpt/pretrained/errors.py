"""The two errors of minigpt.pretrained (ValueErrors, so the CLI reports them like any bad input)."""


class PretrainedError(ValueError):
    """A Hugging Face folder, config or weights file that minigpt cannot load, and why."""


class NotEnoughMemory(PretrainedError, MemoryError):
    """The model would not fit in the memory available; raised before allocating it."""
