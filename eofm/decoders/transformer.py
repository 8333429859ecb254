"""The Mesogeos Track A Transformer baseline (Kondylatos et al., NeurIPS 2023 D&B; AUPRC
0.870 on the 2021-22 test years, ``docs/index.html``), after ``TransformerNet`` in
Orion-AI-Lab/mesogeos ``ml_tracks/a.fire_danger/models/model.py`` (without its optional
channel attention): each day's inputs (dynamic and repeated static) through
``tanh(Linear(inputs, d_model))``, sinusoidal positions (Vaswani et al., NeurIPS 2017) with
dropout 0.1, a ``TransformerEncoder`` of 4 layers, 8 heads and feed-forward ``2 d_model``
(d_model 256, feed-forward 512), and a linear classifier on the first day's output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eofm.decoders.fire_danger_head import FireDangerModel, sequence_inputs


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sin on even, cos on odd features (``PositionalEncoding``)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])
    return table


class MesogeosTransformer(FireDangerModel):
    def __init__(
        self,
        dynamic: int,
        static: int,
        patch: int,
        hidden: int = 256,
        dropout: float = 0.1,
        heads: int = 8,
        layers: int = 4,
        max_days: int = 366,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear((dynamic + static) * patch * patch, hidden)
        self.register_buffer("positions", sinusoidal_positions(max_days, hidden), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden, heads, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.classifier = nn.Linear(hidden, 1)

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, doy: torch.Tensor
    ) -> torch.Tensor:
        x = torch.tanh(self.embed(sequence_inputs(dynamic, static)))
        x = self.dropout(x + self.positions[: x.shape[1]])
        return self.classifier(self.encoder(x)[:, 0]).squeeze(1)
