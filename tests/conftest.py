"""Shared test helpers.

Optional oracles (torch, tiktoken) and data files: locally a test that needs one that is
missing is skipped; with MINIGPT_REQUIRE_OPTIONAL=1 (set by .ci/run) or MINIGPT_DATA_DIR
set, it fails instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import importlib
import os

import pytest

REQUIRE_OPTIONAL = os.environ.get("MINIGPT_REQUIRE_OPTIONAL") == "1"

# The train command's default layout is one MPI rank per core when mpi4py is installed
# (minigpt/launch.py). The tests that run the command compare results bit for bit or count
# threads in one process, so they (and every subprocess and notebook kernel they start)
# get one process; tests/test_launch.py removes this to test the other layouts.
os.environ["MINIGPT_RANKS"] = "1"


def require(module_name: str):
    """Import an optional test dependency, or skip (locally) / fail (in CI)."""
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        message = f"optional test dependency {module_name!r} is not installed ({err})"
        if REQUIRE_OPTIONAL:
            pytest.fail(message + "; MINIGPT_REQUIRE_OPTIONAL=1 demands it")
        pytest.skip(message)


def data_file(name: str):
    """Path of a known data file (see minigpt.files), never downloading in tests.

    With MINIGPT_DATA_DIR set (as in CI), a missing file fails the test."""
    from minigpt import files

    try:
        return files.locate(name, download=False)
    except files.DataUnavailable as err:
        if REQUIRE_OPTIONAL or os.environ.get("MINIGPT_DATA_DIR"):
            pytest.fail(str(err))
        pytest.skip(f"{err}; set MINIGPT_DATA_DIR to a folder that holds it (CI uses ../shared/data)")


@pytest.fixture(scope="session")
def torch():
    torch = require("torch")
    torch.set_num_threads(2)
    return torch
