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

import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eofm.atomic import write_text
from eofm.checkpoint_format import BASE_KEY
from eofm.errors import EofmError
from eofm.jsonfile import finite_or_none, json_text
from eofm.recipe import Recipe, load_recipe
from eofm.train.precision import with_resolved_precision

RECIPE_FILE = "recipe.yaml"
MODEL_FILE = "model.json"
METRICS_FILE = "metrics.json"
TEST_METRICS_FILE = "test_metrics.json"
CHECKPOINT_DIR = "checkpoints"


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: never a half file."""
    write_text(path, text)


def write_json(path: Path, data: Any) -> None:
    """``data`` as strict JSON (never NaN or inf: :mod:`eofm.jsonfile`), atomically."""
    write_text_atomic(path, json_text(data, str(path.name), indent=2) + "\n")


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
    before = resume_identity(with_absolute_paths(load_recipe(saved, saved=True)))
    now = resume_identity(recipe)
    changed = [key for key in {**before, **now} if before.get(key) != now.get(key)]
    if changed:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {now.get(k)!r} now" for k in changed[:3])
        more = f"; and {len(changed) - 3} more" if len(changed) > 3 else ""
        hint = (
            f" (the run trained at trainer.precision={before['trainer.precision']}: pass that "
            "to resume it)"
            if changed == ["trainer.precision"]
            else ""
        )
        raise EofmError(
            f"Run dir {run_dir} holds a different recipe ({saved}: {shown}{more}); choose a "
            f"new --run-dir or rerun with the same recipe and overrides to resume{hint}."
        )
    return (run_dir / CHECKPOINT_DIR / "last.ckpt").exists()


#: Keys that change how a run executes, not what it trains: a run dir resumes when only
#: these differ (another machine's worker count, or a later release's defaults for them).
RUNTIME_ONLY = ("data.num_workers", "trainer.compile", "trainer.enable_progress_bar")


def resume_identity(recipe: Recipe) -> dict[str, Any]:
    """What must match for a run dir to resume: the recipe's values by dotted key, less
    the runtime-only ones, with the precision by its full name (a saved ``auto``, which
    the last releases wrote, taken as this machine resolves it)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = value

    walk("", with_resolved_precision(recipe).to_dict())
    for key in RUNTIME_ONLY:
        flat.pop(key, None)
    return flat


def load_run_recipe(run_dir: Path, overrides: Iterable[str] = ()) -> Recipe:
    path = run_dir / RECIPE_FILE
    if not path.is_file():
        raise EofmError(f"{run_dir} is not a run dir: {path} does not exist.")
    return load_recipe(path, overrides, saved=True)


def with_absolute_paths(recipe: Recipe) -> Recipe:
    """``recipe`` with its local paths made absolute, so that a run dir works from any
    folder (``eofm publish`` strips them again): the keys each section lists in
    ``path_keys``."""

    def absolute(section: Any) -> Any:
        local = {
            key: str(Path(value).expanduser().resolve())
            for key in section.path_keys
            if (value := getattr(section, key)) and "://" not in value
        }
        return dataclasses.replace(section, **local)

    return dataclasses.replace(recipe, data=absolute(recipe.data), task=absolute(recipe.task))


def scalar(value: Any) -> float | None:
    """A metric as a plain float with 6 significant digits (tensors included); None
    (JSON null) when there was nothing to score it on (NaN) or it is infinite."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().item()
    value = finite_or_none(value)
    return None if value is None else float(f"{value:.6g}")


def relative_to(path: str | None, root: Path) -> str | None:
    """``path`` relative to ``root`` when it lies inside it."""
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def load_task_state(checkpoint: Path) -> dict[str, Any]:
    """The LightningModule state dict of a checkpoint, read with ``weights_only=True``.

    torch's own message, which suggests the unsafe ``weights_only=False``, is never shown.
    """
    return load_checkpoint(checkpoint)[0]


def load_checkpoint(checkpoint: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(state dict, base)`` of a checkpoint: ``base`` is the pointer to the pretrained
    backbone (repo, revision, file) whose frozen weights a light checkpoint leaves out."""
    payload = _checkpoint_payload(checkpoint)
    return payload["state_dict"], payload.get(BASE_KEY)


def finished_epochs(checkpoint: Path) -> int:
    """How many epochs the run had finished when ``checkpoint`` was saved (it is saved at
    the end of an epoch, whose 0-based index Lightning stores as ``epoch``)."""
    return int(_checkpoint_payload(checkpoint).get("epoch", -1)) + 1


def _checkpoint_payload(checkpoint: Path) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EofmError(
            f"Checkpoint {checkpoint} could not be read ({type(exc).__name__}): it is damaged "
            "or was not written by 'eofm fit'."
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise EofmError(f"Checkpoint {checkpoint} holds no 'state_dict'.")
    return payload


#: The one rule for which checkpoint of a run dir is used: the first that exists.
CHECKPOINT_ORDER = ("best", "last")


def locate_run(spec: str, checkpoint: str | None = None) -> tuple[Path, Path]:
    """``RUN_DIR`` (its best checkpoint, else last, or the one named) or a ``.ckpt`` file."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".ckpt":
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        chosen = path
    elif path.is_dir():
        run_dir = path
        names = (checkpoint,) if checkpoint else CHECKPOINT_ORDER
        candidates = [path / CHECKPOINT_DIR / f"{name}.ckpt" for name in names]
        chosen = next((c for c in candidates if c.is_file()), candidates[0])
        if checkpoint and not chosen.is_file():
            raise EofmError(f"Checkpoint {chosen} does not exist; did 'eofm fit' finish an epoch?")
    else:
        raise EofmError(f"Model {spec} is neither a run dir nor a .ckpt file.")
    checkpoint_path = chosen
    if not (run_dir / MODEL_FILE).is_file():
        raise EofmError(
            f"{run_dir} is not a run dir written by 'eofm fit' ({MODEL_FILE} is missing)."
        )
    if not checkpoint_path.is_file():
        raise EofmError(f"Run dir {run_dir} has no checkpoint in {run_dir / CHECKPOINT_DIR}.")
    return run_dir, checkpoint_path
