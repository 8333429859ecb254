"""A trained model ready for inference, from a run dir, one of its checkpoints, or the Hub."""

from __future__ import annotations

import logging
from pathlib import Path

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.models.trained import TrainedModel, trained_from_manifest
from eofm.train.rundir import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    load_run_recipe,
    load_task_state,
    read_json,
)

log = logging.getLogger(__name__)

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


def load_trained(
    spec: str, overrides: list[str] | None = None, *, checkpoint: str | None = None
) -> TrainedModel:
    """A run dir or checkpoint (no download: every weight comes from the checkpoint), or
    ``hf://ORG/NAME[@REV]``, a model published with ``eofm publish``."""
    from eofm.commands.published import load_published
    from eofm.publishing.hub import is_hub_uri

    if is_hub_uri(str(spec)):
        return load_published(str(spec), overrides)
    run_dir, checkpoint_path = locate_run(spec, checkpoint)
    recipe = load_run_recipe(run_dir, overrides or [])
    manifest = read_json(run_dir / MODEL_FILE)
    model = family_of(recipe).build_model(recipe, bands=manifest["bands"], pretrained=False)
    state = load_task_state(checkpoint_path)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise EofmError(
            f"Checkpoint {checkpoint_path} does not match its run's model: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    log.info("Model from %s", checkpoint_path)
    return trained_from_manifest(model, recipe, manifest, str(checkpoint_path))
