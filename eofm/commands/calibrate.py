"""``eofm calibrate RUN``: temperature scaling fitted on the validation split.

The temperature goes into the run's ``model.json`` (``calibration``), which ``eofm
predict``, ``eofm test`` and ``eofm publish`` read; class maps do not change, their
probabilities do. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from eofm.families.base import family_of
from eofm.families.restore import load_trained
from eofm.train.model_json import read_model_json
from eofm.train.rundir import MODEL_FILE, load_run_recipe, locate_run, write_json

log = logging.getLogger(__name__)


def calibrate(
    spec: str | Path, overrides: list[str] | None = None, *, checkpoint: str | None = None
) -> dict[str, Any]:
    """Fit the temperature on the validation split and record it in ``model.json``; on
    one process (a launch of several is refused: each would write ``model.json``)."""
    from eofm.train.distributed import refuse_distributed_launch

    refuse_distributed_launch("calibrate")
    run_dir, _ = locate_run(str(spec), checkpoint)
    family = family_of(load_run_recipe(run_dir, overrides or []))
    family.require("calibrate", run_dir)  # before any model loads

    trained = load_trained(str(spec), overrides, checkpoint=checkpoint)
    recipe = trained.recipe
    datamodule = family.build_eval_datamodule(recipe, trained)
    record = family.calibrate(trained, datamodule)
    manifest = read_model_json(run_dir / MODEL_FILE)
    manifest["calibration"] = record
    write_json(run_dir / MODEL_FILE, manifest)
    log.info("Temperature %.4f recorded in %s", record["temperature"], run_dir / MODEL_FILE)
    return record
