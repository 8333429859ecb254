"""The Scale-MAE ViT encoder, state-dict compatible with the released checkpoint.

Reed et al., "Scale-MAE: A Scale-Aware Masked Autoencoder for Multiscale Geospatial
Representation Learning", ICCV 2023 (arXiv:2212.14532). The encoder is a plain timm-layout
ViT (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.*``, ``norm``; qkv
with bias, LayerNorm eps 1e-6) built from timm blocks. What makes it Scale-MAE is its
positional encoding: the 2D sin-cos table of the patch grid is computed for every input
with the grid coordinates multiplied by the input's ground sample distance (GSD), so
that the same ground extent gets the same encoding at any resolution. The stored
``pos_embed`` is kept only so that the release loads strictly; it is never used.

``gsd`` is Scale-MAE's ``res``: 1.0 evaluates at the pre-training data's native scale
(the paper's convention); 2.0 means pixels twice as large.
"""

from __future__ import annotations

import torch
from torch import nn

from eofm.backbones.manifest import BackboneManifest, ViTConfig
from eofm.backbones.vit import init_linear_weights, tapped_tokens, transformer_blocks


class PatchEmbed2d(nn.Module):
    """Non-overlapping 2D patches -> tokens, with a Conv2d named ``proj`` as released."""

    def __init__(self, in_chans: int, embed_dim: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        h, w = x.shape[-2:]
        if h % self.patch or w % self.patch:
            raise ValueError(
                f"Input of {h}x{w} px is not divisible by the patch size {self.patch}; "
                "crop or pad it to a multiple."
            )
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (1, *x.shape[-2:])


def gsd_sincos_2d(dim: int, rows: int, cols: int, gsd: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + rows*cols, dim)``: the 2D sin-cos table with positions scaled by ``gsd``.

    The first half of the width encodes the column, the second the row (the released
    model's convention); the cls position is zeros. Computed in ``gsd``'s dtype.
    """
    half = dim // 2
    omega = torch.arange(half // 2, dtype=gsd.dtype, device=gsd.device)
    omega /= half / 2.0
    omega = 1.0 / 10000**omega
    row, col = torch.meshgrid(
        torch.arange(rows, dtype=gsd.dtype, device=gsd.device),
        torch.arange(cols, dtype=gsd.dtype, device=gsd.device),
        indexing="ij",
    )
    tables = []
    for scale in gsd:
        parts = []
        for coord in (col, row):
            angles = (coord * scale).reshape(-1)[:, None] * omega[None, :]
            parts += [torch.sin(angles), torch.cos(angles)]
        tables.append(torch.cat(parts, dim=1))
    table = torch.stack(tables)
    return torch.cat([table.new_zeros(len(gsd), 1, dim), table], dim=1)


class ScaleMAEEncoder(nn.Module):
    """Scale-MAE ViT encoder. ``forward`` returns the tokens of the tapped layers.

    Inputs are ``(B, C, H, W)`` (or ``(B, C, 1, H, W)``) normalised as the manifest says;
    ``gsd`` is a float or a ``(B,)`` tensor (default :attr:`gsd`). Like the Prithvi
    encoder, the last tapped layer is normed, and the grid is ``(1, H', W')``.
    """

    def __init__(self, config: ViTConfig, manifest: BackboneManifest | None = None) -> None:
        super().__init__()
        self.config = config
        self.manifest = manifest
        d, patch = config.embed_dim, config.patch_size[-1]
        grid = config.img_size // patch
        self.patch_embed = PatchEmbed2d(config.in_chans, d, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        # the release's fixed table: loaded (strict) and never used
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, d), requires_grad=False)
        self.blocks = transformer_blocks(config)
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.tap_layers: tuple[int, ...] = manifest.tap_layers if manifest else (config.depth - 1,)
        self.gsd: float | None = None  # a fixed res; None: from gsd_m, else 1.0
        self.gsd_reference_m = manifest.gsd_m if manifest else 1.0
        nn.init.normal_(self.cls_token, std=0.02)
        init_linear_weights(self.blocks)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        tap_layers: tuple[int, ...] | None = None,
        *,
        gsd: float | torch.Tensor | None = None,
        gsd_m: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        """Return the tokens ``(B, 1 + H'W', D)`` of each tapped layer, and the grid.

        ``gsd`` is Scale-MAE's res; without it, a fixed :attr:`gsd`, else the inputs'
        metres per pixel ``gsd_m`` over :attr:`gsd_reference_m`, else 1.0."""
        if gsd is None:
            gsd = self.gsd
        if gsd is None and gsd_m is not None:
            gsd = gsd_m.float() / self.gsd_reference_m
        if gsd is None:
            gsd = 1.0
        if x.ndim == 5:
            x = x.squeeze(2)
        tokens, grid = self.patch_embed(x)
        b = tokens.shape[0]
        scale = torch.as_tensor(gsd, dtype=tokens.dtype)
        scale = scale.to(tokens.device).reshape(-1).expand(b) if scale.numel() == 1 else scale
        pos = gsd_sincos_2d(self.embed_dim, grid[1], grid[2], scale.to(tokens.device))
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + pos
        taps = tuple(tap_layers or self.tap_layers)
        return tapped_tokens(self.blocks, self.norm, tokens, taps), grid
