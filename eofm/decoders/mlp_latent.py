"""One shallow MLP per new variable on a weather model's latent.

Lehmann et al., "Finetuning a Weather Foundation Model with Lightweight Decoders for
Unseen Physical Processes", 2025: with the backbone frozen, a two-layer MLP per variable
maps each latent patch token to the ``p x p`` values of its patch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from timm.layers import Mlp
from torch import nn

LatentLevels = Literal["surface", "all"]


class LatentMLPDecoder(nn.Module):
    """``(B, levels, H', W', C)`` latent -> ``(B, V, H'p, W'p)``, one MLP per variable."""

    def __init__(
        self,
        latent_dim: int,
        targets: Sequence[str],
        *,
        patch_size: int,
        levels: LatentLevels = "surface",
        num_levels: int = 4,
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.targets = list(targets)
        self.patch_size = patch_size
        self.levels = levels
        features = latent_dim if levels == "surface" else latent_dim * num_levels
        # ModuleDict keys may not contain "." and must not clash with attributes.
        self.heads = nn.ModuleDict(
            {
                f"var_{i}": Mlp(features, hidden, patch_size * patch_size, drop=dropout)
                for i, _ in enumerate(self.targets)
            }
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        b, levels, h, w, c = latent.shape
        if self.levels == "surface":
            x = latent[:, 0]
        else:
            x = latent.permute(0, 2, 3, 1, 4).reshape(b, h, w, levels * c)
        p = self.patch_size
        maps = []
        for head in self.heads.values():
            patches = head(x).reshape(b, h, w, p, p)
            maps.append(patches.permute(0, 1, 3, 2, 4).reshape(b, h * p, w * p))
        return torch.stack(maps, dim=1)
