"""A GRU fire-danger head (Cho et al., EMNLP 2014): a GRU over the L days of the pixel's
dynamic variables, its last state with the static variables, then an MLP. An option next
to the published Mesogeos baselines (:mod:`eofm.decoders.lstm`, :mod:`eofm.decoders.transformer`)."""

from __future__ import annotations

import torch
from torch import nn

from eofm.decoders.fire_danger_head import FireDangerModel


class TemporalGRU(FireDangerModel):
    def __init__(
        self, dynamic: int, static: int, patch: int, hidden: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(dynamic * patch * patch, hidden, batch_first=True)
        width = hidden + static * patch * patch
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, doy: torch.Tensor
    ) -> torch.Tensor:
        b, steps = dynamic.shape[:2]
        _, state = self.gru(dynamic.reshape(b, steps, -1))
        return self.head(torch.cat([state[-1], static.reshape(b, -1)], dim=1)).squeeze(1)
