"""Shared test fixtures: the location of ../shared/data and a marker to skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.project", "tests.e2e.fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GENEVAE_DATA_MIRROR", PROJECT_ROOT.parent / "shared" / "data"))

requires_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the small real data sets; skips the test when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    """Tests use tiny models, where extra threads only add contention (and CI has 2 cores)."""
    import torch

    torch.set_num_threads(1)
