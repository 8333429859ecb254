"""``eofm test``: a run dir (or a published ``hf://`` model) scored on a test split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from eofm.families.base import family_of
from eofm.families.restore import load_trained
from eofm.publishing.hub import is_hub_uri
from eofm.publishing.provenance import random_init_warning
from eofm.train.rundir import (
    TEST_METRICS_FILE,
    load_run_recipe,
    locate_run,
    relative_to,
    scalar,
    write_json,
)

log = logging.getLogger(__name__)


def metrics_target(spec: str | Path, output: Path | None) -> Path | None:
    """Where ``test`` writes its JSON: ``output``, else a run dir's ``test_metrics.json``."""
    if output:
        return Path(output)
    return None if is_hub_uri(str(spec)) else Path(spec) / TEST_METRICS_FILE


def run_test(
    spec: str | Path,
    overrides: list[str] | None = None,
    *,
    checkpoint: str | None = None,
    output: Path | None = None,
    mc_samples: int = 0,
    maps_dir: Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run dir, or a published ``hf://`` model, on a test split.

    Overrides may point elsewhere (e.g. ``data.root=...``). The checkpoint follows the
    one rule that ``predict`` uses too: ``best`` when the run has one, else ``last``
    (``checkpoint`` picks one explicitly). A run dir gets ``test_metrics.json``; for a
    published model the JSON goes to ``output`` if given. It runs on one process and one
    device, also for a run trained with DDP (the per-chip passes are not distributed).

    With ``eval.tiled`` (``eofm test --tiled``) the test split's whole scenes are scored
    through ``eofm predict``'s streaming engine instead of chip by chip (the family's
    :meth:`~eofm.families.base.TaskFamily.evaluate_tiled`; ``maps_dir`` keeps their class
    maps); the metrics keep their names and ``protocol`` records the tiling.
    """
    from eofm.train.distributed import refuse_distributed_launch

    refuse_distributed_launch("test")
    from eofm.train.trainer import build_trainer

    if not is_hub_uri(str(spec)):  # refused before any model loads
        run_dir, _ = locate_run(str(spec), checkpoint)
        family_of(load_run_recipe(run_dir, overrides or [])).require("test", spec)
    trained = load_trained(str(spec), overrides, checkpoint=checkpoint)
    source = trained.source
    if not is_hub_uri(str(spec)):
        source = relative_to(trained.source, Path(spec))
    log.info("eofm test: checkpoint %s", source)
    recipe = trained.recipe
    family = family_of(recipe)
    datamodule = family.build_eval_datamodule(recipe, trained)
    trained_on = recipe.trainer
    if trained_on.strategy != "auto" or trained_on.num_nodes > 1 or trained_on.devices != 1:
        log.info(
            "eofm test runs on one process and one device (the run's recipe has "
            "trainer.strategy=%s, devices=%s, num_nodes=%s).",
            trained_on.strategy,
            trained_on.devices,
            trained_on.num_nodes,
        )
    target = metrics_target(spec, output)
    warning = random_init_warning(trained.manifest)
    head = {
        **({"warning": warning} if warning else {}),
        "checkpoint": source,
        "data_root": recipe.data.root,
    }
    if recipe.eval.tiled.tile is not None:
        tiled = family.evaluate_tiled(
            trained, datamodule, target.parent if target else None, maps_dir
        )
        metrics = {k: scalar(v) for k, v in tiled.pop("metrics").items()}
        payload = {**head, **family.test_record(datamodule), "metrics": metrics, **tiled}
    else:
        trainer = build_trainer(recipe, None, one_process=True)
        task = family.build_task(recipe, trained.model, datamodule)
        results = trainer.test(task, datamodule=datamodule, verbose=False)
        metrics = {k: scalar(v) for k, v in (results[0] if results else {}).items()}
        payload = {
            **head,
            **family.test_record(datamodule),
            "metrics": metrics,
            **family.evaluate(
                trained, datamodule, target.parent if target else None, mc_samples=mc_samples
            ),
        }
    if target is not None:
        write_json(target, payload)
    return payload
