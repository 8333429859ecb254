"""A trained model ready for inference, from a run dir, one of its checkpoints, or the Hub."""

from __future__ import annotations

import logging

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.models.trained import TrainedModel, trained_from_manifest
from eofm.train.rundir import (
    MODEL_FILE,
    load_run_recipe,
    load_task_state,
    locate_run,
    read_json,
)

log = logging.getLogger(__name__)


def load_trained(
    spec: str, overrides: list[str] | None = None, *, checkpoint: str | None = None
) -> TrainedModel:
    """A run dir or checkpoint (no download: every weight comes from the checkpoint), or
    ``hf://ORG/NAME[@REV]``, a model published with ``eofm publish``."""
    from eofm.families.published import load_published
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
