"""Measurements taken in a fresh process, with a chosen eofm checkout on its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def child_json(code: str, args: list[str], checkout: Path, cwd: Path | None = None) -> dict:
    """Run ``code`` (``python -c``) with ``args`` and ``checkout`` first on its path, and
    return the JSON object on the last line it prints; its stderr tail if it fails."""
    env = dict(os.environ, PYTHONPATH=str(checkout), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=cwd,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])
