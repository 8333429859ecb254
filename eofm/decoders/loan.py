"""LOAN: location-aware adaptive normalisation (Shams Eddin, Roscher and Gall,
"Location-aware Adaptive Normalization: A Deep Learning Approach for Wildfire Danger
Forecasting", IEEE TGRS 2023).

The dynamic stream is batch-normalised and then scaled and shifted per location,
``BN(x) * (1 + gamma) + beta``, with gamma and beta from 3x3 convolutions of the static
map, broadcast over time; a sin-cos day-of-year encoding (base 10, scaled by a learned
``1 + w``) is added to the pooled temporal features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from eofm.decoders.fire_danger_head import FireDangerModel


def day_of_year_encoding(doy: torch.Tensor, dim: int, base: float = 10.0) -> torch.Tensor:
    """Sin-cos encoding of the day of year with base 10 (LOAN), ``(B,)`` -> ``(B, dim)``."""
    half = dim // 2
    freq = base ** (-torch.arange(half, dtype=torch.float32, device=doy.device) / half)
    angles = (doy.float()[:, None] / 365.25 * 2 * math.pi) * freq[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class LOAN(FireDangerModel):
    def __init__(
        self, dynamic: int, static: int, patch: int, hidden: int = 64, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dynamic, affine=False)
        self.gamma = nn.Conv2d(static, dynamic, 3, padding=1)
        self.beta = nn.Conv2d(static, dynamic, 3, padding=1)
        for conv in (self.gamma, self.beta):  # start as plain batch norm
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.embed = nn.Linear(dynamic, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.doy_scale = nn.Parameter(torch.zeros(1))  # the learned w of (1 + w)
        self.hidden = hidden
        self.head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(
        self, dynamic: torch.Tensor, static: torch.Tensor, doy: torch.Tensor
    ) -> torch.Tensor:
        b, steps, c, p, _ = dynamic.shape
        x = self.norm(dynamic.reshape(b * steps, c, p, p)).reshape(b, steps, c, p, p)
        gamma, beta = self.gamma(static), self.beta(static)  # (B, C, p, p)
        x = x * (1 + gamma[:, None]) + beta[:, None]
        x = self.embed(x.mean(dim=(-2, -1)))  # pool the window: (B, L, hidden)
        _, state = self.gru(x)
        pooled = state[-1] + (1 + self.doy_scale) * day_of_year_encoding(doy, self.hidden)
        return self.head(pooled).squeeze(1)
