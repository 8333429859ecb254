"""Test-suite set-up: a loopback Hugging Face Hub, started before anything imports
``huggingface_hub`` (whose endpoint is read at import time), and the shared real data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.hub_server import LoopbackHub

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_HUB: LoopbackHub | None = None
_SCRATCH_FOLDERS: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    global _HUB
    _HUB = LoopbackHub().start()
    home = tempfile.mkdtemp(prefix="eofm-hf-home-")
    latents = tempfile.mkdtemp(prefix="eofm-latents-")
    _SCRATCH_FOLDERS.extend([home, latents])
    os.environ.update(
        {
            "HF_ENDPOINT": _HUB.endpoint,
            "HF_TOKEN": _HUB.token,
            "HF_HOME": home,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "EOFM_CACHE_DIR": latents,
        }
    )
    os.environ.pop("HF_HUB_OFFLINE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HUB is not None:
        _HUB.stop()
    for folder in _SCRATCH_FOLDERS:  # the Hub cache and latent cache of this run
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def hub() -> LoopbackHub:
    assert _HUB is not None
    return _HUB


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"The shared test data folder {SHARED_DATA} is missing (CI provides ../shared/data)."
        )
    return SHARED_DATA
