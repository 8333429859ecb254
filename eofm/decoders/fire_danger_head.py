"""What every next-day fire-danger head shares: one logit per sample, and its threshold.

A head takes ``dynamic (B, L, Cd, p, p)``, ``static (B, Cs, p, p)`` and the fire day's day
of year ``doy (B,)`` (the datacube batches of :mod:`eofm.data.mesogeos` and
:mod:`eofm.data.firecube`) and returns ``(B,)`` logits. The published Mesogeos models end
in two logits and a softmax (``ml_tracks/a.fire_danger/models/model.py``); one logit with a
sigmoid is the same model (the logit is the difference of the two).
"""

from __future__ import annotations

import torch
from torch import nn


class FireDangerModel(nn.Module):
    """What the classification task needs of a model: ``predict_batch`` -> logits ``(B,)``."""

    cacheable = False
    backbone_needs_grad = True

    def __init__(self) -> None:
        super().__init__()
        # the decision threshold picked on the validation split (max F1), kept with the weights
        self.register_buffer("threshold", torch.tensor(0.5))

    def predict_batch(self, batch: dict) -> torch.Tensor:
        return self(batch["dynamic"], batch["static"], batch["doy"])


def sequence_inputs(dynamic: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """``(B, L, Cd * p * p + Cs * p * p)``: each day's dynamic inputs with the static ones
    repeated, as the Mesogeos trainer feeds its models (``trainer/trainer.py``)."""
    b, steps = dynamic.shape[:2]
    repeated = static.reshape(b, 1, -1).expand(b, steps, -1)
    return torch.cat([dynamic.reshape(b, steps, -1), repeated], dim=2)
