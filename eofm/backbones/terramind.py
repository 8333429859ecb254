"""The TerraMind v1 encoder for raw (untokenised) inputs, state-dict compatible with the release.

Jakubik et al., "TerraMind: Large-Scale Generative Multimodality for Earth Observation",
ICCV 2025 (arXiv:2504.11171). TerraMind is a 4M-style (Mizrahi et al., NeurIPS 2023) any-to-any
model; eofm uses only its encoder over raw pixels of the S2L2A, S1GRD and DEM modalities,
as TerraTorch's ``terramind_v1_*`` backbones do, not its generative decoder ("thinking in
modalities").

What the release's encoder is (learned from TerraTorch 1.2.11,
``terratorch/models/backbones/terramind/model/{terramind_vit,encoder_embeddings,tm_utils}.py``;
this is an independent implementation, and TerraTorch is the reference of the equivalence
test ``tests/test_terramind.py``):

* each modality has its own patch embedding ``encoder_embeddings.<key>.proj``: a bias-free
  linear map of a flattened 16x16 patch, flattened row, column, then channel (the channel
  varies fastest); plus a learned modality vector ``mod_emb`` (1, 1, D) and a fixed 2D
  sin-cos table ``pos_emb`` for the 224 px grid (a stored buffer), resized bicubically
  for other input sizes;
* the tokens of all modalities are concatenated and go through ``encoder.{i}`` pre-norm
  transformer blocks (LayerNorm without bias, eps 1e-6; tiny and small: GELU MLP with
  biases; base and large: bias-free SwiGLU, Shazeer 2020, with a 2/3-width hidden layer),
  and the last block's output through ``encoder_norm``;
* each layer's tokens are averaged over the modalities (TerraTorch's default
  ``merge_method='mean'``), giving one ``(B, H'W', D)`` map per layer.

There is no class token: the grid is ``(1, H', W')`` and every token is a patch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from eofm.backbones.manifest import TERRAMIND_MODALITIES, BackboneManifest, TerraMindConfig


class BiaslessLayerNorm(nn.Module):
    """LayerNorm without a learned bias (a zero buffer, as the release's modules hold it)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (scaled dot product)."""

    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class FeedForward(nn.Module):
    """``fc2(act(fc1 x))``, or with ``gated`` SwiGLU ``fc2(silu(fc1 x) * fc3 x)``."""

    def __init__(self, dim: int, hidden: int, *, gated: bool, bias: bool) -> None:
        super().__init__()
        self.gated = gated
        if gated:
            hidden = int(2 * hidden / 3)
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        if gated:
            self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))
        return self.fc2(F.gelu(self.fc1(x)))


class TerraMindBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1 x)``, then ``x + mlp(norm2 x)``."""

    def __init__(self, config: TerraMindConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.norm1 = BiaslessLayerNorm(d, config.norm_eps)
        self.attn = SelfAttention(d, config.num_heads, config.bias)
        self.norm2 = BiaslessLayerNorm(d, config.norm_eps)
        self.mlp = FeedForward(d, int(d * config.mlp_ratio), gated=config.swiglu, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_grid(rows: int, cols: int, dim: int) -> torch.Tensor:
    """``(1, rows*cols, dim)`` row-major: sin and cos of the row, then of the column, each
    over ``dim/4`` frequencies ``1/10000^(i/(dim/4))`` (MoCo v3's 2D table, as stored)."""
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    row, col = torch.meshgrid(
        torch.arange(rows, dtype=torch.float32),
        torch.arange(cols, dtype=torch.float32),
        indexing="ij",
    )
    angle_row = row.reshape(-1, 1) * omega
    angle_col = col.reshape(-1, 1) * omega
    parts = [angle_row.sin(), angle_row.cos(), angle_col.sin(), angle_col.cos()]
    return torch.cat(parts, dim=1).unsqueeze(0)


class ModalityEmbedding(nn.Module):
    """Patches of one modality -> tokens, plus its positional and modality embeddings."""

    def __init__(self, channels: int, config: TerraMindConfig) -> None:
        super().__init__()
        d, self.patch = config.embed_dim, config.patch_size[-1]
        self.side = config.img_size // self.patch
        self.proj = nn.Linear(channels * self.patch * self.patch, d, bias=False)
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_emb", sincos_grid(self.side, self.side, d), persistent=False)
        nn.init.normal_(self.mod_emb, std=0.02)
        nn.init.xavier_uniform_(self.proj.weight)

    def positions(self, rows: int, cols: int) -> torch.Tensor:
        """The stored table, resized bicubically when the grid is not the pretraining one."""
        if (rows, cols) == (self.side, self.side):
            return self.pos_emb
        d = self.pos_emb.shape[-1]
        table = self.pos_emb.reshape(1, self.side, self.side, d).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", align_corners=False)
        return table.permute(0, 2, 3, 1).reshape(1, rows * cols, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(
                f"Input of {h}x{w} px is not divisible by the patch size {p}; "
                "crop or pad it to a multiple."
            )
        rows, cols = h // p, w // p
        patches = x.reshape(b, c, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1)
        tokens = self.proj(patches.reshape(b, rows * cols, p * p * c))
        return tokens + (self.positions(rows, cols) + self.mod_emb).to(tokens.dtype)


class TerraMindEncoder(nn.Module):
    """TerraMind v1 encoder. ``forward`` returns the modality-averaged tokens of the taps.

    The input is one ``(B, C, H, W)`` (or ``(B, C, 1, H, W)``) stack of the bands in
    :attr:`input_bands` order, normalised as the manifest says; it is split into the
    modalities those bands belong to (``self.modality_bands``), and each modality's bands
    go to its own patch embedding.
    """

    def __init__(self, config: TerraMindConfig, manifest: BackboneManifest | None = None) -> None:
        super().__init__()
        self.config = config
        self.manifest = manifest
        self.modality_bands: dict[str, tuple[str, ...]] = {
            name: TERRAMIND_MODALITIES[name] for name in config.modalities
        }
        self.encoder_embeddings = nn.ModuleDict(
            {
                modality_key(name): ModalityEmbedding(len(bands), config)
                for name, bands in self.modality_bands.items()
            }
        )
        self.encoder = nn.ModuleList(TerraMindBlock(config) for _ in range(config.depth))
        self.encoder_norm = BiaslessLayerNorm(config.embed_dim, config.norm_eps)
        self.tap_layers: tuple[int, ...] = manifest.tap_layers if manifest else (config.depth - 1,)
        self.input_bands: tuple[str, ...] = tuple(
            b for bands in self.modality_bands.values() for b in bands
        )
        self._init_blocks()

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def _init_blocks(self) -> None:
        """MAE's initialisation: xavier-uniform linears (q, k, v each as its own matrix)."""
        for name, module in self.encoder.named_modules():
            if isinstance(module, nn.Linear):
                if name.endswith("qkv"):
                    fan = module.weight.shape[0] // 3 + module.weight.shape[1]
                    bound = math.sqrt(6.0 / fan)
                    nn.init.uniform_(module.weight, -bound, bound)
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def use_bands(self, groups: dict[str, Sequence[str]]) -> None:
        """Read ``groups`` (modality -> the data's bands of it, in input order, the
        modalities in the order their bands come in the input) from now on; the
        embeddings of modalities without bands are removed. The modalities' order only
        says how the input splits: their tokens are averaged, and attention has no order."""
        for name in list(self.modality_bands):
            if name not in groups:
                del self.encoder_embeddings[modality_key(name)]
        self.modality_bands = {name: tuple(bands) for name, bands in groups.items()}
        self.input_bands = tuple(b for bands in self.modality_bands.values() for b in bands)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int], int]:
        """Concatenated tokens of every modality, the grid and the number of modalities."""
        if x.ndim == 5:
            x = x.squeeze(2)
        expected = len(self.input_bands)
        if x.shape[1] != expected:
            raise ValueError(
                f"TerraMind expects {expected} input bands {list(self.input_bands)}, got "
                f"{x.shape[1]}."
            )
        chunks = torch.split(x, [len(b) for b in self.modality_bands.values()], dim=1)
        tokens = [
            self.encoder_embeddings[modality_key(name)](chunk)
            for name, chunk in zip(self.modality_bands, chunks, strict=True)
        ]
        p = self.config.patch_size[-1]
        grid = (1, x.shape[-2] // p, x.shape[-1] // p)
        return torch.cat(tokens, dim=1), grid, len(tokens)

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        tap_layers: tuple[int, ...] | None = None,
    ) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        """The tokens ``(B, H'W', D)`` of each tapped layer (averaged over the modalities;
        the last layer's after ``encoder_norm``), and the grid ``(1, H', W')``."""
        tokens, grid, modalities = self.embed(x)
        taps = tuple(tap_layers or self.tap_layers)
        last = len(self.encoder) - 1
        out = []
        for i, block in enumerate(self.encoder):
            tokens = block(tokens)
            if i in taps:
                layer = self.encoder_norm(tokens) if i == last else tokens
                b, n, d = layer.shape
                out.append(layer.reshape(b, modalities, n // modalities, d).mean(dim=1))
            if i >= max(taps):
                break
        return out, grid


def modality_key(name: str) -> str:
    """The release's embedding key of a modality, e.g. ``S2L2A`` -> ``untok_sen2l2a@224``."""
    return f"untok_{name.lower().replace('s2', 'sen2').replace('s1', 'sen1')}@224"


#: The fixed tensors the release stores beside the weights: checked, then left out.
FIXED_SUFFIXES = (".pos_emb", "norm1.bias", "norm2.bias", "encoder_norm.bias")


def encoder_state(
    model: TerraMindEncoder, state: dict[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """The keys of ``model`` in a TerraMind checkpoint (the whole any-to-any model), its
    stored fixed tensors checked against ours.

    The release holds the encoder (``encoder.*``, ``encoder_norm.*``), the embeddings of
    every modality (``encoder_embeddings.<key>.*``) and the generative decoder; kept are
    the encoder and the embeddings of ``model``'s modalities. The stored sin-cos tables
    and zero LayerNorm biases are buffers of the release's modules: they must equal the
    ones this module computes (else the maths differs and loading fails), and are then
    dropped, so that a checkpoint with or without them loads. Any other key is left to
    the strict check of the weights.
    """
    from eofm.errors import EofmError

    prefixes = ("encoder.", "encoder_norm.") + tuple(
        f"encoder_embeddings.{key}." for key in model.encoder_embeddings
    )
    kept = {k: v for k, v in state.items() if k.startswith(prefixes)}
    if not kept:
        raise EofmError(f"Checkpoint {source} holds no TerraMind encoder keys.")
    ours = dict(model.named_buffers())
    for key in [k for k in kept if k.endswith(FIXED_SUFFIXES) and k in ours]:
        stored, expected = kept.pop(key), ours[key]
        if stored.shape != expected.shape:
            continue  # a table for another image size (backbone.img_size): ours is used
        if not torch.allclose(stored.float(), expected.float(), atol=1e-4):
            raise EofmError(
                f"Checkpoint {source}: the fixed tensor '{key}' differs from the one eofm "
                "computes for this architecture; the checkpoint is not a TerraMind v1 encoder."
            )
    return kept


def map_bands(model: TerraMindEncoder, data_bands: Sequence[str]) -> dict[str, list[str]]:
    """Feed ``data_bands`` to the modalities they belong to (the patch-embedding columns of
    each band are kept by name, in the data's order); modalities without bands are removed.

    The bands of one modality must be adjacent in the data. Returns the band mapping."""
    from eofm.errors import EofmError

    owner = {b: m for m, bands in model.modality_bands.items() for b in bands}
    unknown = [b for b in data_bands if b not in owner]
    if unknown:
        known = "; ".join(f"{m}: {', '.join(b)}" for m, b in model.modality_bands.items())
        raise EofmError(f"Band(s) {unknown} are in no TerraMind modality of this model ({known}).")
    groups: dict[str, list[str]] = {}
    previous = None
    for band in data_bands:
        modality = owner[band]
        if modality in groups and modality != previous:
            raise EofmError(
                f"The {modality} bands must be adjacent in data.bands, got {list(data_bands)}."
            )
        groups.setdefault(modality, []).append(band)
        previous = modality
    for modality, bands in groups.items():
        embedding = model.encoder_embeddings[modality_key(modality)]
        pretrained = model.modality_bands[modality]
        if list(bands) == list(pretrained):
            continue
        old = embedding.proj.weight.detach()
        d = old.shape[0]
        columns = old.view(d, -1, len(pretrained))[..., [pretrained.index(b) for b in bands]]
        embedding.proj = nn.Linear(columns.shape[1] * len(bands), d, bias=False)
        with torch.no_grad():
            embedding.proj.weight.copy_(columns.reshape(d, -1))
    dropped = [b for b in owner if b not in data_bands]
    model.use_bands(groups)
    return {"copied": list(data_bands), "new": [], "dropped": dropped}
