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

from eofm.atomic import unwinding_on_sigterm
from eofm.errors import EofmError
from eofm.predict.options import PredictOptions

log = logging.getLogger(__name__)


def describe_model(spec: str) -> tuple[Any, dict]:
    """The recipe and ``model.json`` of a run dir, or the recipe and ``config.json`` of a
    published model, without loading any weight (fast)."""
    from eofm.models.onnx_model import describe_onnx, is_onnx_model
    from eofm.publishing.hub import is_hub_uri

    if is_onnx_model(spec):  # a graph written by 'eofm export', run in onnxruntime
        return describe_onnx(spec)
    if is_hub_uri(spec):
        from eofm.publishing.hub import parse_hub_uri

        parse_hub_uri(spec)  # a malformed name fails before the heavy import below
        from eofm.families.published import published_manifest

        return published_manifest(spec)
    from eofm.train.model_json import read_model_json
    from eofm.train.rundir import MODEL_FILE, load_run_recipe, locate_run

    run_dir, _ = locate_run(spec)
    return load_run_recipe(run_dir), read_model_json(run_dir / MODEL_FILE)


@unwinding_on_sigterm  # SIGTERM removes partial files as Ctrl-C does
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
    check_writable(out_dir)
    recipe, manifest = describe_model(model_spec)
    family = family_of(recipe)
    family.require("ensemble" if members else "predict", model_spec)
    family.check_predict_options(family_options or {}, model_spec)
    check_supported(model_spec, recipe, family, options, ensemble=bool(members))
    for member in members:
        other_recipe, other_manifest = describe_model(member)
        if family_of(other_recipe).name != family.name:
            raise EofmError(
                f"Ensemble members are of different task families: {model_spec} is "
                f"{family.name}, {member} is {family_of(other_recipe).name}.",
                exit_code=2,
            )
        family.check_ensemble_member(
            model_spec, recipe, manifest, member, other_recipe, other_manifest
        )
    from eofm.models.onnx_model import check_onnx_options, is_onnx_model

    if is_onnx_model(model_spec):
        if not family.predicts_from_graph:
            raise EofmError(
                f"{model_spec} is an exported {family.name} graph; eofm predict runs exported "
                "segmentation and pixel_regression graphs. Predict from the run dir, or run "
                "the graph in onnxruntime yourself (its sidecar JSON gives input and output).",
                exit_code=2,
            )
        check_onnx_options(model_spec, options)

    def load() -> Any:  # torch is imported only once inputs and options are checked
        from eofm.families.restore import load_trained
        from eofm.models.onnx_model import is_onnx_model, load_onnx_model

        return (
            load_onnx_model(model_spec) if is_onnx_model(model_spec) else load_trained(model_spec)
        )

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


def check_supported(
    model_spec: str, recipe: Any, family: Any, options: PredictOptions, *, ensemble: bool
) -> None:
    """Refuse, from the recipe alone, what the family's predictor would silently ignore:
    an ensemble it does not average, an uncertainty it does not write, MC dropout on a
    model without dropout."""
    from eofm.predict.options import parse_uncertainty

    if ensemble and not family.averages_ensembles:
        raise EofmError(
            f"eofm ensemble averages segmentation runs; {model_spec} is a {family.name} run, "
            "whose members it would not average. Predict each run on its own.",
            exit_code=2,
        )
    kind = parse_uncertainty(options.uncertainty)[0]
    if kind and kind not in family.predict_uncertainties:
        raise EofmError(
            f"--uncertainty {options.uncertainty}: {model_spec} is a {family.name} run, whose "
            f"predictions write no uncertainty map (supported: "
            f"{list(family.predict_uncertainties) or 'none'}).",
            exit_code=2,
        )
    lora_dropout = recipe.adapter.mode == "lora" and recipe.adapter.dropout > 0
    if kind == "mc-dropout" and recipe.decoder.dropout <= 0 and not lora_dropout:
        raise EofmError(
            f"--uncertainty {options.uncertainty}: {model_spec} has no dropout to sample "
            f"(decoder.dropout {recipe.decoder.dropout}, adapter.mode {recipe.adapter.mode}); "
            "use entropy or tta, or train with decoder.dropout > 0.",
            exit_code=2,
        )


def check_writable(out_dir: Path) -> None:
    """``--out`` (or, while it does not exist, the nearest folder above it) must take a
    file: probed with a temporary file, removed at once, so that a read-only folder is
    refused before the model loads and nothing is created."""
    import os
    import tempfile

    folder = out_dir.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".eofm-write-probe-")
    except OSError as exc:
        where = "" if folder == out_dir.absolute() else f" ({folder} is not writable)"
        raise EofmError(
            f"Output folder {out_dir} (--out) cannot be written{where}: {exc.strerror or exc}.",
            exit_code=2,
        ) from None
    os.close(fd)
    os.unlink(probe)
