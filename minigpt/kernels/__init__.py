"""The hot maths of minigpt, in two interchangeable implementations.

`reference.py` is plain NumPy, written to be read; `numba_kernels.py` does the same
maths with Numba loops where that is faster. Layers call `kernels.<name>(...)`, which
goes to the active backend: `MINIGPT_BACKEND=numpy|numba` (default numba), or
`kernels.set_backend(...)` / the `kernels.using(...)` context manager at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import os

from minigpt import runtime  # noqa: F401  (process-wide speed settings; read it)

BACKENDS = ("numpy", "numba")
_MODULES = {"numpy": "minigpt.kernels.reference", "numba": "minigpt.kernels.numba_kernels"}
_active = None


def set_backend(name: str) -> None:
    """Route every kernel call to backend `name` ("numpy" or "numba")."""
    global _active
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    _active = importlib.import_module(_MODULES[name])


def backend() -> str:
    return next(name for name, mod in _MODULES.items() if mod == _active.__name__)


@contextlib.contextmanager
def using(name: str):
    """with kernels.using("numpy"): ...  runs the block on one backend, then restores."""
    previous = backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


@contextlib.contextmanager
def single_threaded():
    """with kernels.single_threaded(): ...  runs Numba's parallel kernels on the calling
    thread only. Decoding calls dozens of kernels per token on one row each: waking the
    other threads for each call costs more than the work itself."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def __getattr__(name):
    # Module-level __getattr__ (PEP 562): kernels.gelu_forward looks up the active backend
    # at call time, so switching backends takes effect everywhere at once.
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_active, name)


set_backend(os.environ.get("MINIGPT_BACKEND", "numba"))
