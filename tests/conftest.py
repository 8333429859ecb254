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


@pytest.fixture(autouse=True)
def _log_handlers_outlive_captured_streams():
    """A library's ``logging.StreamHandler`` made during a test (Lightning adds one when it
    is first imported) keeps that test's captured ``sys.stderr``, closed once the test
    ends; it is pointed at the real stderr again, so that a later test's log record is
    not a '--- Logging error ---' traceback in what that test captures."""
    import logging
    import sys

    yield
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.__stderr__  # setStream would flush the closed one
