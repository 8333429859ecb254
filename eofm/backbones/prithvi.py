"""The Prithvi-EO encoder, state-dict compatible with the official checkpoints.

Prithvi-EO 1.0: Jakubik et al., "Foundation Models for Generalist Geospatial Artificial
Intelligence", arXiv:2310.18660 (2023). Prithvi-EO 2.0 and its TL (time-location)
variants: Szwarcman et al., "Prithvi-EO-2.0: A Versatile Multi-Temporal Foundation Model
for Earth Observation Applications", arXiv:2412.02732 (2024).

The encoder is a ViT (Dosovitskiy et al., ICLR 2021) over 3D patches of a
``(B, C, T, H, W)`` cube, built from timm blocks. Parameter names match the official
release (``patch_embed.proj``, ``cls_token``, ``blocks.{i}.*``, ``norm``,
``temporal_embed_enc.scale``, ``location_embed_enc.scale``). The fixed positional table
is not a parameter: it is recomputed for every input grid, so any ``num_frames`` and
image size that the patch size divides work with the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from eofm.backbones.manifest import BackboneManifest, ViTConfig
from eofm.backbones.positional import sincos_1d, sincos_3d
from eofm.backbones.vit import init_linear_weights, tapped_tokens, transformer_blocks


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3D patches -> tokens, with a Conv3d named ``proj`` as released."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        t, h, w = x.shape[-3:]
        pt, ph, pw = self.patch_size
        if t % pt or h % ph or w % pw:
            raise ValueError(
                f"Input of {t} frames x {h}x{w} px is not divisible by the patch size "
                f"{self.patch_size}; crop or pad it to a multiple."
            )
        x = self.proj(x)
        grid = tuple(x.shape[-3:])
        return x.flatten(2).transpose(1, 2), grid  # (B, T'*H'*W', D), t-major


def _register_scale(module: nn.Module, learn_scale: bool) -> None:
    """``scale``: a learned parameter initialised to 0.1 (TL checkpoints), else a fixed 1."""
    if learn_scale:
        module.scale = nn.Parameter(torch.full((1,), 0.1))
    else:
        module.register_buffer("scale", torch.ones(1), persistent=False)


class TemporalEncoder(nn.Module):
    """Sin-cos encoding of ``(B, T, 2)`` [year, day-of-year], half the width each."""

    def __init__(self, embed_dim: int, learn_scale: bool) -> None:
        super().__init__()
        self.year_dim = embed_dim // 2
        self.day_dim = embed_dim - self.year_dim
        _register_scale(self, learn_scale)

    def forward(self, coords: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
        b, t, _ = coords.shape
        year = sincos_1d(self.year_dim, coords[:, :, 0]).reshape(b, t, -1)
        day = sincos_1d(self.day_dim, coords[:, :, 1]).reshape(b, t, -1)
        emb = self.scale * torch.cat([year, day], dim=-1).to(self.scale.device)
        return emb.repeat_interleave(tokens_per_frame, dim=1)


class LocationEncoder(nn.Module):
    """Sin-cos encoding of ``(B, 2)`` [lat, lon], half the width each."""

    def __init__(self, embed_dim: int, learn_scale: bool) -> None:
        super().__init__()
        self.lat_dim = embed_dim // 2
        self.lon_dim = embed_dim - self.lat_dim
        _register_scale(self, learn_scale)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        lat = sincos_1d(self.lat_dim, coords[:, 0])
        lon = sincos_1d(self.lon_dim, coords[:, 1])
        return (self.scale * torch.cat([lat, lon], dim=-1).to(self.scale.device)).unsqueeze(1)


class PrithviEncoder(nn.Module):
    """Prithvi-EO ViT encoder. ``forward`` returns the tokens of the tapped layers.

    Inputs are ``(B, C, H, W)`` or ``(B, C, T, H, W)``, normalised with the manifest's
    mean and std. TL variants also take ``temporal_coords (B, T, 2)`` and
    ``location_coords (B, 2)``; without them the encoder behaves as a non-TL model.
    """

    def __init__(self, config: ViTConfig, manifest: BackboneManifest | None = None) -> None:
        super().__init__()
        self.config = config
        self.manifest = manifest
        d = config.embed_dim
        self.patch_embed = PatchEmbed3d(config.in_chans, d, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = transformer_blocks(config)
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        if "time" in config.coords_encoding:
            self.temporal_embed_enc = TemporalEncoder(d, config.coords_scale_learn)
        if "location" in config.coords_encoding:
            self.location_embed_enc = LocationEncoder(d, config.coords_scale_learn)
        self.tap_layers: tuple[int, ...] = manifest.tap_layers if manifest else (config.depth - 1,)
        self._pos_cache: dict[tuple[int, int, int], torch.Tensor] = {}
        self._init_weights()

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def _init_weights(self) -> None:
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        init_linear_weights(self.blocks)

    def pos_embed(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """The fixed 3D sin-cos table for a token grid (cached per grid)."""
        table = self._pos_cache.get(grid)
        if table is None or table.device != device:
            table = sincos_3d(self.embed_dim, grid, cls_token=True).to(device)
            self._pos_cache[grid] = table
        return table

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        tap_layers: tuple[int, ...] | None = None,
    ) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        """Return the tokens ``(B, 1 + T'H'W', D)`` of each tapped layer, and the grid."""
        if x.ndim == 4:
            x = x.unsqueeze(2)
        tokens, grid = self.patch_embed(x)
        pos = self.pos_embed(grid, tokens.device).to(tokens.dtype)
        tokens = tokens + pos[:, 1:]
        if temporal_coords is not None and hasattr(self, "temporal_embed_enc"):
            # a sample whose date is unknown (NaN) gets no temporal embedding, alone
            dated = torch.isfinite(temporal_coords).all(dim=-1).all(dim=-1)  # (B,)
            embedding = self.temporal_embed_enc(
                torch.nan_to_num(temporal_coords), grid[1] * grid[2]
            ).to(tokens.dtype)
            tokens = tokens + embedding * dated[:, None, None].to(tokens.dtype)
        if location_coords is not None and hasattr(self, "location_embed_enc"):
            tokens = tokens + self.location_embed_enc(location_coords).to(tokens.dtype)
        cls = (self.cls_token + pos[:, :1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        taps = tuple(tap_layers or self.tap_layers)
        return tapped_tokens(self.blocks, self.norm, tokens, taps), grid
