"""The Lightning ``Trainer`` of a recipe, and the checks before it resumes a run."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.recipe import Recipe
from eofm.train.precision import resolve_trainer_precision

log = logging.getLogger(__name__)


def build_trainer(
    recipe: Recipe,
    run_dir: Path | None,
    *,
    callbacks: list | None = None,
    loggers: Any = False,
    one_process: bool = False,
) -> Any:
    """``lightning.Trainer`` with the recipe's ``trainer`` keys and atomic checkpoints;
    ``one_process``: on one device whatever the recipe's ``devices`` and ``strategy``
    (the commands that score a trained model)."""
    import lightning as L

    from eofm.train.checkpointing import AtomicCheckpointIO
    from eofm.train.distributed import one_process_trainer

    kwargs = {k: v for k, v in asdict(recipe.trainer).items() if v is not None}
    if one_process:
        kwargs = one_process_trainer(kwargs)
    kwargs.pop("compile")
    kwargs["precision"] = resolve_trainer_precision(kwargs["precision"], kwargs["accelerator"])
    return L.Trainer(
        **kwargs,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir) if run_dir else None,
        callbacks=callbacks or [],
        logger=loggers,
        enable_model_summary=False,
    )


def fit_logging_interval(trainer: Any, train_loader: Any) -> None:
    """Log training steps at least once an epoch: ``log_every_n_steps`` is lowered to the
    epoch's batch count (each rank's, under DDP) when an epoch is shorter (small datasets,
    the demos), instead of
    Lightning's warning that the interval exceeds it (``fit_loop.setup_data``), which
    advises just that. The recipe's value stands otherwise."""
    try:
        batches = len(train_loader)
    except TypeError:  # an iterable dataset: its length is unknown
        return
    batches = -(-batches // max(1, trainer.world_size))  # DDP: each rank's share
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif isinstance(limit, float) and limit < 1.0:
        batches = int(batches * limit)
    if 0 < batches < trainer.log_every_n_steps:
        log.info(
            "Training steps are logged every %d step(s), the epoch's length (the recipe's "
            "trainer.log_every_n_steps=%d is longer).",
            batches,
            trainer.log_every_n_steps,
        )
        trainer.log_every_n_steps = batches


def compile_model(model: Any, setting: bool | str) -> None:
    """``torch.compile`` each part of ``model`` in place (``trainer.compile``).

    ``nn.Module.compile`` keeps the module tree as it is, so state dicts, checkpoints and
    published weights carry no ``_orig_mod.`` prefix. ``setting`` is ``True`` (the default
    backend, inductor) or a backend name.
    """
    if setting is False:
        return
    options = {} if setting is True else {"backend": str(setting)}
    for part in model.children():
        part.compile(**options)


def check_resumable(checkpoint: Path) -> int:
    """The epochs ``checkpoint`` has finished; a damaged or foreign checkpoint is refused
    before the trainer tries to resume from it."""
    from eofm.train.rundir import finished_epochs

    try:
        return finished_epochs(checkpoint)
    except EofmError as exc:
        raise EofmError(f"Cannot resume: {exc} Move it away to train from the start.") from None
