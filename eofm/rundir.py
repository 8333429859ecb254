"""The run dir: resolved recipe, model manifest, checkpoints, metrics and logs.

Layout::

    RUN_DIR/recipe.yaml          the fully resolved recipe
    RUN_DIR/model.json           bands, normalisation, backbone source (commit), classes
    RUN_DIR/checkpoints/         best.ckpt, last.ckpt
    RUN_DIR/metrics.json         final validation metrics of fit
    RUN_DIR/test_metrics.json    written by ``eofm test``
    RUN_DIR/adapter/             LoRA weights alone (peft layout) + base-model pointer
    RUN_DIR/logs/                CSV and TensorBoard logs
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.recipe import Recipe, dump_recipe, load_recipe

RECIPE_FILE = "recipe.yaml"
MODEL_FILE = "model.json"
METRICS_FILE = "metrics.json"
TEST_METRICS_FILE = "test_metrics.json"
CHECKPOINT_DIR = "checkpoints"


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EofmError(
            f"{path} does not exist; is {path.parent} a run dir written by 'eofm fit'?"
        ) from None
    except ValueError as exc:
        raise EofmError(f"{path} is not valid JSON: {exc}") from None


def check_run_dir(run_dir: Path, recipe: Recipe) -> bool:
    """Decide whether ``fit`` may use ``run_dir``; returns True when it resumes.

    A new or empty folder starts a run. A run dir with the same resolved recipe resumes
    from its last checkpoint. Anything else is refused, so nothing a user made is
    overwritten.
    """
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise EofmError(f"Run dir {run_dir} exists and is not a folder.")
    saved = run_dir / RECIPE_FILE
    if not saved.exists():
        if any(run_dir.iterdir()):
            raise EofmError(
                f"Run dir {run_dir} is not empty and holds no {RECIPE_FILE}; choose a new --run-dir."
            )
        return False
    if saved.read_text(encoding="utf-8") != dump_recipe(recipe):
        raise EofmError(
            f"Run dir {run_dir} holds a different recipe ({saved}); choose a new --run-dir "
            "or rerun with the same recipe and overrides to resume."
        )
    return (run_dir / CHECKPOINT_DIR / "last.ckpt").exists()


def load_run_recipe(run_dir: Path, overrides: Iterable[str] = ()) -> Recipe:
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise EofmError(f"{run_dir} is not a run dir: {path} does not exist.")
    return load_recipe(path, overrides)
