"""CROMA as an eofm backbone: its optical, SAR or joint encoder, by the data's bands.

CROMA (Fuller et al., "CROMA: Remote Sensing Representations with Contrastive Radar-Optical
Masked Autoencoders", NeurIPS 2023, arXiv:2311.00566) as torchgeo 0.8.1 builds it
(``torchgeo/models/croma.py``: ``croma_base`` / ``croma_large``). It has a fixed band set
per modality (``CROMA.s2_channels = 12``, ``s1_channels = 2``): the 12 Sentinel-2 L1C bands
of SSL4EO-S12 without B10, in the order B1..B8, B8A, B9, B11, B12 (the order CROMA's
Copernicus-Bench configs list, zhu-xlab/Copernicus-FM,
``Copernicus-Bench/src/configs/dataset/croma/cobench_eurosat_s2.yaml``), and Sentinel-1
VV, VH. The data's bands pick the encoder, by name, in any order:

- the 12 optical bands: the optical encoder (``s2_encoder``, 12 / 24 layers);
- VV and VH: the SAR encoder (``s1_encoder``, 6 / 12 layers);
- all 14: both encoders, then the joint encoder (``joint_encoder``: SAR tokens
  cross-attending to the optical ones, 6 / 12 layers), as ``CROMA.forward`` runs them.

Any other set is an error naming the band. Feature levels are the tokens of four tapped
layers of the last encoder run (the last layer of each quarter, before its final
``norm_out``), ``(B, N, D)`` with no cls token, and the patch grid (8 px patches), like
eofm's other ViTs. CROMA's attention bias is its 2-D ALiBi over the patch grid
(``get_2dalibi``), computed here for each input's grid (torchgeo fixes it at 120 px); an
input that is not a multiple of 8 px loses its last partial patch row and column, as a
strided patch convolution would.

The release is one file holding one state dict per part (``s1_encoder``, ``s1_GAP_FFN``,
``s2_encoder``, ``s2_GAP_FFN``, ``joint_encoder``); it is flattened to the keys of a
``CROMA`` built with both modalities and loaded strictly (the ALiBi buffer is computed, so
it may miss). The weights carry no normalisation (``transforms=nn.Identity()``), so data
normalisation comes from the data set's statistics, as for DOFA.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from eofm.bands import SENTINEL2_BANDS_WITHOUT_CIRRUS
from eofm.errors import EofmError

#: CROMA's optical input, in its channel order (Sentinel-2 L1C less B10, i.e. CIRRUS).
CROMA_OPTICAL = SENTINEL2_BANDS_WITHOUT_CIRRUS
#: CROMA's SAR input, in its channel order.
CROMA_SAR = ("VV", "VH")
PATCH = 8


def croma_modality(spec: str, bands: Sequence[str]) -> str:
    """``optical``, ``sar`` or ``joint`` for the data's ``bands``; other sets are errors."""
    given = set(bands)
    for modality, wanted in (
        ("optical", set(CROMA_OPTICAL)),
        ("sar", set(CROMA_SAR)),
        ("joint", set(CROMA_OPTICAL) | set(CROMA_SAR)),
    ):
        if given == wanted:
            return modality
    known = set(CROMA_OPTICAL) | set(CROMA_SAR)
    extra = [b for b in bands if b not in known]
    if extra:
        raise EofmError(
            f"{spec} takes Sentinel-2 bands {', '.join(CROMA_OPTICAL)} (no CIRRUS/B10) and/or "
            f"Sentinel-1 {', '.join(CROMA_SAR)}; band {extra[0]!r} is not one of them."
        )
    wanted = CROMA_OPTICAL if given & set(CROMA_OPTICAL) else CROMA_SAR
    missing = [b for b in wanted if b not in given]
    raise EofmError(
        f"{spec} has a fixed band set per modality; data.bands lacks band {missing[0]!r} "
        f"(optical: {', '.join(CROMA_OPTICAL)}; SAR: {', '.join(CROMA_SAR)})."
    )


def croma_band_order(bands: Sequence[str]) -> tuple[list[int], list[int]]:
    """Indices of CROMA's optical and SAR channels within ``bands`` (empty where absent)."""
    index = {b: i for i, b in enumerate(bands)}
    optical = [index[b] for b in CROMA_OPTICAL if b in index]
    sar = [index[b] for b in CROMA_SAR if b in index]
    return optical, sar


def quarter_taps(depth: int) -> tuple[int, ...]:
    """The last layer of each quarter: (2, 5, 8, 11) of 12, (0, 2, 3, 5) of 6."""
    return tuple(sorted({max(0, depth * q // 4 - 1) for q in (1, 2, 3, 4)}))


def modality_depth(model: nn.Module, modality: str) -> int:
    """Layers of the encoder whose taps are the features for ``modality``."""
    part = {"optical": model.s2_encoder, "sar": model.s1_encoder, "joint": model.joint_encoder}
    layers = part[modality] if modality == "joint" else part[modality].transformer
    return len(layers.layers)


@functools.lru_cache(maxsize=8)
def _alibi(num_heads: int, rows: int, cols: int) -> torch.Tensor:
    """``get_2dalibi`` for a ``rows x cols`` grid (torchgeo's is for square grids only):
    minus the Euclidean distance between patches times each head's ALiBi slope."""
    start = 2 ** (-(2 ** -(math.log2(num_heads) - 3)))
    slopes = torch.tensor([start * start**i for i in range(num_heads)], dtype=torch.float32)
    points = torch.tensor(list(itertools.product(range(rows), range(cols))), dtype=torch.float64)
    dist = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1).sqrt().float()
    bias = dist[None] * slopes[:, None, None] * -1
    return bias.unsqueeze(0)


def _patches(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``b c (h i) (w j) -> b (h w) (c i j)`` (CROMA's ``ViT.forward``), whole patches only."""
    b, c = x.shape[:2]
    h, w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
    x = x[..., : h * PATCH, : w * PATCH].reshape(b, c, h, PATCH, w, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * PATCH * PATCH), (h, w)


def _encode(
    encoder: nn.Module, x: torch.Tensor, bias: torch.Tensor, taps: Sequence[int] | None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """An encoder's output (after ``norm_out``) and the tokens of its tapped layers."""
    x = encoder.linear_input(x)
    out = []
    for i, (attn, ffn) in enumerate(encoder.transformer.layers):
        x = attn(x, bias) + x
        x = ffn(x) + x
        if taps is not None and i in taps:
            out.append(x)
    return encoder.transformer.norm_out(x), out


def croma_tokens(
    model: nn.Module,
    x: torch.Tensor,
    modality: str,
    optical: torch.Tensor,
    sar: torch.Tensor,
    taps: Sequence[int],
) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
    """CROMA's forward for ``modality``, keeping the tapped layers' tokens."""
    patches, (h, w) = _patches(x)
    c = x.shape[1]
    patches = patches.reshape(x.shape[0], h * w, c, PATCH * PATCH)
    bias = _alibi(model.num_heads, h, w).to(x.device, x.dtype)

    def part(index: torch.Tensor) -> torch.Tensor:
        return patches[:, :, index.to(x.device)].flatten(2)

    if modality == "optical":
        return _encode(model.s2_encoder, part(optical), bias, taps)[1], (1, h, w)
    if modality == "sar":
        return _encode(model.s1_encoder, part(sar), bias, taps)[1], (1, h, w)
    sar_out, _ = _encode(model.s1_encoder, part(sar), bias, None)
    optical_out, _ = _encode(model.s2_encoder, part(optical), bias, None)
    joint, out = model.joint_encoder, []
    y = sar_out
    for i, (attn, cross, ffn) in enumerate(joint.layers):
        y = attn(y, bias) + y
        y = cross(y, optical_out, bias) + y
        y = ffn(y) + y
        if i in taps:
            out.append(y)
    return out, (1, h, w)


def croma_state(state: dict) -> dict[str, torch.Tensor]:
    """The release's per-part state dicts as the flat keys of ``CROMA`` (both modalities)."""
    flat: dict[str, torch.Tensor] = {}
    for part, sub in state.items():
        if not isinstance(sub, dict):
            raise EofmError(
                f"The CROMA release should hold one state dict per part; {part!r} is a "
                f"{type(sub).__name__}."
            )
        flat.update({f"{part}.{k}": v for k, v in sub.items()})
    return flat
