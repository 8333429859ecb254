"""``eofm predict`` and ``eofm ensemble``: the model's family predicts (``TaskFamily.predict``).

Everything that can be wrong with the options, the inputs or the outputs is found
before the model is loaded and before the output folder is created: such errors cost
well under a second and leave nothing behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.predict.options import PredictOptions

log = logging.getLogger(__name__)


def describe_model(spec: str) -> tuple[Any, dict]:
    """The recipe and ``model.json`` of a run dir, or the recipe and ``config.json`` of a
    published model, without loading any weight (fast)."""
    from eofm.publishing.hub import is_hub_uri

    if is_hub_uri(spec):
        from eofm.families.published import published_manifest

        return published_manifest(spec)
    from eofm.train.rundir import MODEL_FILE, load_run_recipe, locate_run, read_json

    run_dir, _ = locate_run(spec)
    return load_run_recipe(run_dir), read_json(run_dir / MODEL_FILE)


def run_predict(
    model_spec: str,
    inputs: Sequence[str],
    out_dir: Path,
    options: PredictOptions,
    *,
    shard: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = log.info,
    members: Sequence[str] = (),
    family_options: Mapping[str, Any] | None = None,
) -> int:
    """Predict ``inputs`` with ``model_spec`` (averaged with the ``members`` of an
    ensemble, checked before any weight is loaded) through its family's ``predict``;
    ``family_options`` are the given options that only some families read (``--start``)."""
    from eofm.families.base import PredictRequest, family_of

    options.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EofmError(f"Output folder {out_dir} exists and is not a folder.")
    recipe, manifest = describe_model(model_spec)
    family = family_of(recipe)
    family.require("ensemble" if members else "predict", model_spec)
    family.check_predict_options(family_options or {}, model_spec)
    for member in members:
        family.check_ensemble_member(model_spec, recipe, manifest, member, *describe_model(member))

    def load() -> Any:  # torch is imported only once inputs and options are checked
        from eofm.families.restore import load_trained

        return load_trained(model_spec)

    request = PredictRequest(
        model_spec=model_spec,
        recipe=recipe,
        manifest=manifest,
        inputs=list(inputs),
        out_dir=out_dir,
        options=options,
        load=load,
        members=list(members),
        shard=shard,
        progress=progress,
        echo=echo,
        family_options=dict(family_options or {}),
    )
    return family.predict(request)
