"""Copernicus-FM and Panopticon: torchgeo's spectrally conditioned ViTs as eofm backbones.

Both take any set of bands, each described by where it sits in the spectrum rather than by
its position in a fixed input list; eofm describes each data band from its band table
(:mod:`eofm.bands`). The models are torchgeo 0.8.1's own (``copernicusfm_base``,
``panopticon_vitb14``); this module feeds them the bands and taps their blocks.

**Copernicus-FM** (Wang et al., "Towards a Unified Copernicus Foundation Model for Earth
Vision", arXiv:2503.11849; ``torchgeo/models/copernicusfm.py``). ``forward_features(x,
metadata, wavelengths, bandwidths, input_mode='spectral')`` generates the patch kernels
from a Fourier encoding of each band's central wavelength and bandwidth, in nanometres
(``DynamicPatchEmbed``); the optical bands take eofm's Sentinel-2 centres and bandwidths
(``BAND_WAVELENGTH_UM``, ``BAND_BANDWIDTH_UM``). Sentinel-1 VV and VH are encoded as the
model's own configs encode them: wavelength 5e7 nm and bandwidth 1e9 nm for both
(zhu-xlab/Copernicus-FM, ``Copernicus-Bench/src/configs/dataset/cobench_flood_s1.yaml``;
the encoder's range comment "max bandwidth: s1 ~ 1 m"). The per-sample metadata (lon, lat,
time, patch area) is passed as unknown (NaN), which the model answers with its learned
"unknown" tokens (``coord_token``, ``scale_token``, ``time_token``). Patches are 16 px;
the patch conv pads by 1, as in the model. The release holds everything but the pooled
head (``fc_norm``), which the builder itself lets miss.

**Panopticon** (Waldmann et al., "Panopticon: Advancing Any-Sensor Foundation Models for
Earth Observation", arXiv:2503.10845; ``torchgeo/models/panopticon.py``). A DINOv2 ViT-B/14
(timm) whose patch embedding fuses the bands by cross-attention over channel embeddings
(``PanopticonPE``, ``ChnAttn``), given ``chn_ids``: an optical band's central wavelength in
nanometres, and a negative id for a SAR channel. ``ChnEmb`` indexes its SAR table with
``-(id + 1)``: rows 0-3 are VV, VH, HH, HV with the orbit embedding averaged (orbit
unknown), rows 4-7 the same for ascending and 8-11 for descending orbits. eofm's VV and VH
carry no orbit direction, so they are -1 and -2. The release is timm's DINOv2 layout at the
518 px pretraining size plus DINOv2's ``mask_token``; as torchgeo's builder does, the mask
token is dropped and the 37 x 37 position table resized to the model's 224 px grid, then
resized again to each input's grid.

Both models are torchgeo's modules with torchgeo's parameters; what runs them is written
here: the position tables resized to each input's grid, the blocks tapped, and two
patch-embedding steps re-composed from the models' own sub-modules so that the graph has no
data-dependent branch or shape and exports (``eofm export``): Copernicus-FM's Fourier
encoding without ``FourierExpansion``'s range assertion, and Panopticon's channel
embeddings built from the ids known at build time instead of ``ChnEmb``'s boolean-mask
writes. The tests check the features against torchgeo's own ``forward_features``.

Feature levels are four tapped blocks (``(B, 1 + N, D)``, the cls token first) and the
patch grid, like eofm's other ViTs. The weights carry no normalisation (their transforms
are ``nn.Identity()``), so data normalisation comes from the data set's statistics, as for
DOFA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from eofm.bands import BAND_BANDWIDTH_UM, BAND_WAVELENGTH_UM
from eofm.errors import EofmError

#: Copernicus-FM's encoding of Sentinel-1 polarisations: (wavelength nm, bandwidth nm).
COPERNICUSFM_SAR_NM = {"VV": (5e7, 1e9), "VH": (5e7, 1e9)}
#: Panopticon's channel ids of Sentinel-1 polarisations, orbit direction unknown.
PANOPTICON_SAR_IDS = {"VV": -1.0, "VH": -2.0}


def _no_wavelength(spec: str, band: str, sar: Sequence[str]) -> EofmError:
    return EofmError(
        f"{spec} is conditioned on band wavelengths, and band {band!r} has none in eofm's "
        f"band table (eofm.bands.BAND_WAVELENGTH_UM: {', '.join(BAND_WAVELENGTH_UM)}; "
        f"SAR: {', '.join(sar)})."
    )


def copernicusfm_spectra(spec: str, bands: Sequence[str]) -> tuple[list[float], list[float]]:
    """Central wavelengths and bandwidths (nm) of ``bands`` for Copernicus-FM."""
    waves, widths = [], []
    for band in bands:
        if band in COPERNICUSFM_SAR_NM:
            wave, width = COPERNICUSFM_SAR_NM[band]
        elif band in BAND_WAVELENGTH_UM and band in BAND_BANDWIDTH_UM:
            wave = round(BAND_WAVELENGTH_UM[band] * 1000, 3)
            width = round(BAND_BANDWIDTH_UM[band] * 1000, 3)
        else:
            raise _no_wavelength(spec, band, list(COPERNICUSFM_SAR_NM))
        waves.append(wave)
        widths.append(width)
    return waves, widths


def panopticon_channel_ids(spec: str, bands: Sequence[str]) -> list[float]:
    """Panopticon's ``chn_ids`` of ``bands``: wavelength in nm, or the SAR channel's id."""
    ids = []
    for band in bands:
        if band in PANOPTICON_SAR_IDS:
            ids.append(PANOPTICON_SAR_IDS[band])
        elif band in BAND_WAVELENGTH_UM:
            ids.append(round(BAND_WAVELENGTH_UM[band] * 1000, 3))
        else:
            raise _no_wavelength(spec, band, list(PANOPTICON_SAR_IDS))
    return ids


def _resize_positions(
    table: torch.Tensor, grid: tuple[int, int], old: tuple[int, int]
) -> torch.Tensor:
    from torchgeo.models.copernicusfm import resize_abs_pos_embed

    return resize_abs_pos_embed(table, grid, old, num_prefix_tokens=1)


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    out = []
    for i, block in enumerate(blocks):
        x = block(x)
        if i in taps:
            out.append(x)
    return out


def _fourier(values: torch.Tensor, expansion: nn.Module, dim: int) -> torch.Tensor:
    """``FourierExpansion.forward`` without its range assertion (a data-dependent branch
    that ``torch.export`` cannot trace; the bands' values are fixed when the backbone is
    built and lie in range: 443-2190 nm and 5e7 nm, bandwidths 15-180 nm and 1e9 nm)."""
    x = values.double()
    periods = torch.logspace(
        math.log10(expansion.lower),
        math.log10(expansion.upper),
        dim // 2,
        base=10,
        device=x.device,
        dtype=x.dtype,
    )
    prod = torch.einsum("...i,j->...ij", x, 2 * math.pi / periods)
    return torch.cat((torch.sin(prod), torch.cos(prod)), dim=-1).float()


def _spectral_patches(
    embed: nn.Module, x: torch.Tensor, wavelengths: torch.Tensor, bandwidths: torch.Tensor
) -> torch.Tensor:
    """``DynamicPatchEmbed.forward`` in spectral mode at its own kernel size: the patch
    kernels generated from the bands' Fourier-encoded wavelengths and bandwidths, applied
    with stride ``kernel_size`` and padding 1, as the model does."""
    import torch.nn.functional as F

    waves = _fourier(wavelengths.to(x.device), embed.spectrum_central_expansion, embed.hyper_dim)
    waves = waves + _fourier(
        bandwidths.to(x.device), embed.spectrum_bandwidth_expansion, embed.hyper_dim
    )
    waves = embed.fclayer(waves)
    weight, bias = embed.weight_generator(waves)
    k = embed.kernel_size
    kernels = weight.view(waves.shape[0], k, k, embed.embed_dim).permute(3, 0, 1, 2)
    bias = bias.view(embed.embed_dim) * embed.scaler
    out = F.conv2d(x, kernels * embed.scaler, bias=bias, stride=k, padding=1, dilation=1)
    return out.flatten(2).transpose(1, 2)


def copernicusfm_tokens(
    model: nn.Module,
    x: torch.Tensor,
    wavelengths: torch.Tensor,
    bandwidths: torch.Tensor,
    taps: Sequence[int],
) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
    """``CopernicusFM.forward_features`` (spectral mode, metadata unknown) up to the blocks,
    keeping the tapped blocks' tokens."""
    tokens = _spectral_patches(model.patch_embed_spectral, x, wavelengths, bandwidths)
    k = model.patch_embed_spectral.kernel_size
    h, w = (x.shape[-2] + 2 - k) // k + 1, (x.shape[-1] + 2 - k) // k + 1
    side = int(math.sqrt(model.num_patches))
    pos = _resize_positions(model.pos_embed, (h, w), (side, side))
    pos = (
        pos
        + model.coord_fc(model.coord_token)
        + model.scale_fc(model.scale_token)
        + model.time_fc(model.time_token)
    )
    tokens = tokens + pos[:, 1:, :]
    cls = (model.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
    return _run_blocks(model.blocks, torch.cat((cls, tokens), dim=1), taps), (1, h, w)


def _channel_embeddings(chnemb: nn.Module, channel_ids: Sequence[float]) -> torch.Tensor:
    """``ChnEmb.forward`` for channel ids known when the backbone is built, ``(C, D)``.

    Optical ids: the 1-D sin-cos embedding of the wavelength (nm, floored to
    ``opt_coarsity``). SAR ids: row ``-(id + 1)`` of ChnEmb's table, i.e. the transmit,
    receive and orbit embeddings concatenated, for polarisation VV, VH, HH, HV (row mod 4)
    and orbit unknown / ascending / descending (row div 4; unknown is the mean of the two).
    Built from the ids as Python numbers, without ChnEmb's boolean-mask writes, so the
    graph has no data-dependent shapes (``torch.export``).
    """
    from torchgeo.models.panopticon import get_1d_sincos_pos_embed_from_grid_torch

    transmit, receive, orbit = chnemb.embed_transmit, chnemb.embed_receive, chnemb.embed_orbit
    orbits = ((orbit[0] + orbit[1]) / 2, orbit[0], orbit[1])
    rows = []
    for value in channel_ids:
        if value >= 0:
            wave = torch.tensor([float(value // chnemb.opt_coarsity)], device=orbit.device)
            row = get_1d_sincos_pos_embed_from_grid_torch(chnemb.embed_dim, wave)[0]
            rows.append(row.to(orbit.dtype))
            continue
        index = int(-(value + 1))
        pol, direction = index % 4, index // 4
        parts = (transmit[(0, 0, 1, 1)[pol]], receive[(0, 1, 1, 0)[pol]], orbits[direction])
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def _panopticon_patches(
    embed: nn.Module, x: torch.Tensor, channel_ids: Sequence[float]
) -> torch.Tensor:
    """``PanopticonPE.forward``: per-channel patch projections, channel embeddings added,
    fused across channels by cross-attention from a learned query (``ChnAttn``; torchgeo's
    Panopticon builds it without its optional layer norm), then projected."""
    fusion = embed.chnfus
    # Conv3dWrapper.forward, less its ``squeeze(1)`` of the 2304 channels (a no-op in
    # torch that ONNX's Squeeze rejects)
    x = embed.conv3d.conv3d(x.unsqueeze(1))  # B, D, C, Hp, Wp
    x = x.flatten(-2).permute(0, 2, 3, 1)  # B, C, L, D
    b, _, length, dim = x.shape
    x = x + _channel_embeddings(fusion.chnemb, channel_ids)[None, :, None, :]
    x = x.permute(0, 2, 1, 3).flatten(0, 1)  # B*L, C, D
    query = fusion.query.expand(x.shape[0], -1, -1)
    x = fusion.xattn(query, x, x).reshape(b, length, dim)
    return embed.proj(x)


def panopticon_tokens(
    model: nn.Module, x: torch.Tensor, channel_ids: Sequence[float], taps: Sequence[int]
) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
    """timm's ``VisionTransformer.forward_features`` of Panopticon's DINOv2, with its
    position table resized to the input's patch grid, keeping the tapped blocks' tokens."""
    vit = model.model
    b = x.shape[0]
    tokens = _panopticon_patches(vit.patch_embed, x, channel_ids)
    patch = vit.patch_embed.patch_size
    h, w = x.shape[-2] // patch[0], x.shape[-1] // patch[1]
    pos = _resize_positions(vit.pos_embed, (h, w), vit.patch_embed.grid_size)
    tokens = torch.cat((vit.cls_token.expand(b, -1, -1), tokens), dim=1) + pos
    tokens = vit.norm_pre(vit.patch_drop(vit.pos_drop(tokens)))
    return _run_blocks(vit.blocks, tokens, taps), (1, h, w)


def panopticon_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The release (timm's DINOv2 keys at 518 px, plus ``mask_token``) as the state of
    torchgeo's ``Panopticon`` wrapper, as ``panopticon_vitb14`` prepares it."""
    state = {k: v for k, v in state.items() if k != "mask_token"}
    if "pos_embed" in state:
        table = state["pos_embed"]
        side = int(round(math.sqrt(table.shape[1] - 1)))
        state["pos_embed"] = _resize_positions(
            table, model.model.patch_embed.grid_size, (side, side)
        )
    return {f"model.{k}": v for k, v in state.items()}
