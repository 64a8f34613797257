"""Shared test fixtures: where ../shared is, and single-threaded torch for stable timings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUSTMER_SHARED", REPO.parent / "shared")).resolve()

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared/ folder (real Soundtracks audio, madmom fixtures, published logs)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED}; set ROBUSTMER_SHARED")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one thread is many times faster than two on a loaded 2-core machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
