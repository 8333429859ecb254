"""The Lightning ``Trainer`` of a recipe, and the checks before it resumes a run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.recipe import Recipe
from eofm.train.precision import resolve_trainer_precision


def build_trainer(
    recipe: Recipe, run_dir: Path | None, *, callbacks: list | None = None, loggers: Any = False
) -> Any:
    """``lightning.Trainer`` with the recipe's ``trainer`` keys and atomic checkpoints."""
    import lightning as L

    from eofm.train.checkpointing import AtomicCheckpointIO

    kwargs = {k: v for k, v in asdict(recipe.trainer).items() if v is not None}
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
