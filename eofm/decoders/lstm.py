"""The Mesogeos Track A LSTM baseline (Kondylatos et al., NeurIPS 2023 D&B; AUPRC 0.856 on
the 2021-22 test years, ``docs/index.html``), after ``SimpleLSTM`` in Orion-AI-Lab/mesogeos
``ml_tracks/a.fire_danger/models/model.py``: LayerNorm over each day's inputs (dynamic and
repeated static), one LSTM layer of ``hidden`` (128), and on its last step an MLP
``hidden -> hidden -> hidden/2`` with dropout (0.5) and ReLU, here ending in one logit.
"""

from __future__ import annotations

import torch
from torch import nn

from eofm.decoders.fire_danger_head import FireDangerModel, sequence_inputs


class MesogeosLSTM(FireDangerModel):
    def __init__(
        self, dynamic: int, static: int, patch: int, hidden: int = 128, dropout: float = 0.5
    ) -> None:
        super().__init__()
        width = (dynamic + static) * patch * patch
        self.norm = nn.LayerNorm(width)
        self.lstm = nn.LSTM(width, hidden, num_layers=1, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.ReLU(),
            nn.Linear(hidden, hidden // 2), nn.Dropout(dropout), nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )  # fmt: skip

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, doy: torch.Tensor
    ) -> torch.Tensor:
        out, _ = self.lstm(self.norm(sequence_inputs(dynamic, static)))
        return self.head(out[:, -1]).squeeze(1)
