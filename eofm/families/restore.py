"""A trained model ready for inference, from a run dir, one of its checkpoints, or the Hub."""

from __future__ import annotations

import logging
from typing import Any

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.models.trained import TrainedModel, trained_from_manifest
from eofm.train.model_json import read_model_json
from eofm.train.rundir import (
    MODEL_FILE,
    load_checkpoint,
    load_run_recipe,
    locate_run,
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
    manifest = read_model_json(run_dir / MODEL_FILE)
    state, base = load_checkpoint(checkpoint_path)
    if base:  # a light checkpoint: the frozen backbone comes from its pinned base model
        from eofm.families.published import pin_backbone

        pin_backbone(recipe, base)
    model = family_of(recipe).build_model(recipe, bands=manifest["bands"], pretrained=bool(base))
    if base:
        check_same_base(model, base, checkpoint_path)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if base:  # what the checkpoint left out must be exactly the frozen backbone
        frozen = {n for n, p in model.named_parameters() if n.startswith("backbone.")}
        missing = [k for k in missing if k not in frozen]
    if missing or unexpected:
        raise EofmError(
            f"Checkpoint {checkpoint_path} does not match its run's model: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    log.info("Model from %s", checkpoint_path)
    return trained_from_manifest(model, recipe, manifest, str(checkpoint_path))


def check_same_base(model: Any, base: dict, checkpoint: Any) -> None:
    """The base model loaded now must be the commit the run trained on."""
    from eofm.adapters import base_encoder

    source = getattr(base_encoder(model.backbone), "source", None) or {}
    loaded, wanted = source.get("revision"), base.get("revision")
    if wanted and loaded and loaded != wanted:
        raise EofmError(
            f"Checkpoint {checkpoint} keeps only the trained weights; its frozen backbone is "
            f"{base.get('repo')}@{wanted}, but the Hub now gives {loaded}. Pin the backbone "
            f"(backbone.name=hf://{base.get('repo')}@{wanted}) to use this run."
        )
