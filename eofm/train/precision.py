"""``trainer.precision``: what ``auto`` means on this machine, and Lightning's full names."""

from __future__ import annotations

import dataclasses
from typing import Any

from eofm.recipe import Recipe

#: Lightning's short precision names and the full ones they stand for.
PRECISION_ALIASES = {"64": "64-true", "32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def resolve_trainer_precision(precision: int | str, accelerator: str) -> int | str:
    """``auto``: bf16 mixed precision on a CUDA GPU that supports it, else full fp32."""
    if precision != "auto":
        return precision
    if accelerator == "cpu":
        return "32-true"
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def full_precision_name(precision: Any) -> str:
    """``precision`` by its full Lightning name (``32`` and ``"32-true"`` alike)."""
    return PRECISION_ALIASES.get(str(precision), str(precision))


def with_resolved_precision(recipe: Recipe) -> Recipe:
    """``recipe`` with ``trainer.precision: auto`` replaced by what it means on this
    machine, by its full name, so that the run dir records the precision the run really
    trains at."""
    trainer = recipe.trainer
    precision = full_precision_name(
        resolve_trainer_precision(trainer.precision, trainer.accelerator)
    )
    return dataclasses.replace(recipe, trainer=dataclasses.replace(trainer, precision=precision))
