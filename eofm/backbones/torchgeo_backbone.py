"""Any pretrained weight of ``torchgeo.models`` as a backbone: ``torchgeo:<WeightsEnum member>``.

``torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO`` names a member of one of torchgeo's
``WeightsEnum`` classes (Stewart et al., "TorchGeo: Deep Learning With Geospatial Data",
2022; ``torchgeo/models/*.py``, torchgeo 0.8.1). Everything else comes from that member:

- the bands (``meta['bands']``, renamed onto eofm's band table) and the normalisation
  (the ``Normalize`` steps of its ``transforms``, composed into one mean/std per band);
- the architecture (``meta['model']``) and so the feature levels the decoders get: the four
  stages of a ResNet (timm) or a Swin (torchvision), or four tapped blocks of a ViT;
- the weights, through torchgeo's own ``get_state_dict`` (torch hub's
  ``load_state_dict_from_url``: the pinned URL, ``check_hash=True`` so a download is
  checked against the SHA-256 prefix in its file name, and ``weights_only=True``), under
  eofm's one rule: a failed download is an error unless random weights were asked for;
- the licence of the release (the Hub cards / torchgeo's weight tables; ``unknown`` where
  neither states one).

Wavelength-conditioned models (DOFA, Wang et al., "Neural Plasticity-Inspired Foundation
Model for Observing the Earth Crossing Modalities", arXiv:2403.15356; Copernicus-FM and
Panopticon, :mod:`eofm.backbones.torchgeo_wavelength`) take any band of eofm's table that
has a central wavelength (and the SAR bands their own papers encode); their weights carry
no band list. CROMA (:mod:`eofm.backbones.torchgeo_croma`) has a fixed band set per
modality, and the data's bands pick its optical, SAR or joint encoder.

The models are built by torchgeo's own builders with ``weights=None`` and the state dict is
loaded here, strictly except for the classifier keys each builder itself allows to miss:
torchgeo's builders would unpickle with ``weights_only=False``.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from eofm.backbones.manifest import BackboneManifest, ViTConfig
from eofm.backbones.torchgeo_croma import CROMA_OPTICAL
from eofm.bands import BAND_WAVELENGTH_UM, check_band_names
from eofm.errors import EofmError

log = logging.getLogger(__name__)

PREFIX = "torchgeo:"

#: torchgeo's band names (Sentinel-2 L1C as SSL4EO-S12 and SatlasPretrain spell them,
#: NAIP's R/G/B, Sentinel-1) -> eofm's band table.
_BAND_NAMES = {
    **{k: "COASTAL_AEROSOL" for k in ("B1", "B01")},
    **{k: "BLUE" for k in ("B2", "B02", "B")},
    **{k: "GREEN" for k in ("B3", "B03", "G")},
    **{k: "RED" for k in ("B4", "B04", "R")},
    **{k: "RED_EDGE_1" for k in ("B5", "B05")},
    **{k: "RED_EDGE_2" for k in ("B6", "B06")},
    **{k: "RED_EDGE_3" for k in ("B7", "B07")},
    **{k: "NIR_BROAD" for k in ("B8", "B08")},
    **{k: "NIR_NARROW" for k in ("B8A", "B8a")},
    **{k: "WATER_VAPOR" for k in ("B9", "B09")},
    "B10": "CIRRUS",
    "B11": "SWIR_1",
    "B12": "SWIR_2",
    "VV": "VV",
    "VH": "VH",
}

#: Licences of the releases, from torchgeo's weight tables (docs/api/weights/*.csv) and
#: the Hub cards of the files; by weights class, then by pretraining data set.
_LICENCE_BY_CLASS = {
    "DOFABase16_Weights": "CC-BY-4.0",
    "DOFALarge16_Weights": "CC-BY-4.0",
    "CopernicusFM_Base_Weights": "CC-BY-4.0",
    "CROMABase_Weights": "MIT",  # the Hub card of torchgeo/croma
    "CROMALarge_Weights": "MIT",
    "Panopticon_Weights": "Apache-2.0",
    "ScaleMAELarge16_Weights": "CC-BY-NC-4.0",
}
_LICENCE_BY_DATASET = {"SSL4EO-S12": "CC-BY-4.0", "SatlasPretrain": "Apache-2.0"}

#: Architectures conditioned on each band's place in the spectrum (no band list of their own).
SPECTRAL = ("dofa", "copernicusfm", "panopticon")
#: CROMA's weights name no builder in their meta ('model': 'vit'); their class does.
_CROMA_BUILDERS = {"CROMABase_Weights": "croma_base", "CROMALarge_Weights": "croma_large"}

#: Tapped blocks of a ViT, by depth (as for Prithvi: the last block of each quarter).
_VIT_TAPS = {12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 32: (7, 15, 23, 31)}


@dataclass(frozen=True)
class TorchGeoManifest(BackboneManifest):
    """A torchgeo weight: the manifest fields plus what only torchgeo weights have."""

    weight: str = ""
    architecture: str = ""  # resnet | vit | swin | dofa | copernicusfm | panopticon | croma
    licence: str = "unknown"
    url: str = ""
    in_chans: int = 0

    @property
    def wavelength_conditioned(self) -> bool:
        return self.architecture in SPECTRAL

    def band_stats(self) -> dict[str, tuple[float, float]]:
        if not self.mean:
            return {}
        return super().band_stats()


def is_torchgeo_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def _weights_enums() -> dict[str, Any]:
    import inspect

    import torchgeo.models
    from torchvision.models._api import WeightsEnum

    return {
        name: obj
        for name, obj in vars(torchgeo.models).items()
        if inspect.isclass(obj) and issubclass(obj, WeightsEnum)
    }


def get_weight(spec: str) -> Any:
    """The ``WeightsEnum`` member that ``torchgeo:<Class>.<MEMBER>`` names."""
    name = spec[len(PREFIX) :]
    enums = _weights_enums()
    cls_name, _, member = name.partition(".")
    members = [f"{c}.{m}" for c, e in enums.items() for m in e.__members__]
    if cls_name in enums and member in enums[cls_name].__members__:
        return enums[cls_name][member]
    close = difflib.get_close_matches(name, members, n=1)
    hint = f" Did you mean '{PREFIX}{close[0]}'?" if close else ""
    raise EofmError(
        f"backbone.name {spec}: torchgeo {_version()} has no weights '{name}'.{hint} "
        f"Its weights are <WeightsClass>.<MEMBER>, e.g. {members[0]}."
    )


def _version() -> str:
    import torchgeo

    return torchgeo.__version__


def _model_name(weight: Any) -> str:
    """The name of the torchgeo builder of ``weight``'s architecture."""
    return _CROMA_BUILDERS.get(type(weight).__name__, str(weight.meta.get("model", "")))


def _architecture(weight: Any) -> str:
    model = _model_name(weight)
    for prefix, arch in (
        ("resnet", "resnet"),
        ("vit_", "vit"),
        ("swin", "swin"),
        ("dofa", "dofa"),
        ("copernicusfm", "copernicusfm"),
        ("panopticon", "panopticon"),
        ("croma", "croma"),
    ):
        if model.startswith(prefix):
            return arch
    return ""


def _eofm_bands(spec: str, weight: Any) -> tuple[str, ...]:
    raw = weight.meta.get("bands")
    if raw is None:
        return ()
    if "LANDSAT" in weight.name:
        raise EofmError(
            f"backbone.name {spec}: Landsat bands ({', '.join(raw)}) are not in eofm's band "
            "table; use a Sentinel-1/2 or RGB weight."
        )
    unknown = [b for b in raw if b not in _BAND_NAMES]
    if unknown:
        raise EofmError(
            f"backbone.name {spec}: band {unknown[0]!r} of this weight has no name in eofm's "
            "band table."
        )
    return tuple(_BAND_NAMES[b] for b in raw)


def _normalisation(weight: Any, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Compose the ``Normalize`` steps of the weight's transforms into one mean/std per band:
    ``((x - m1) / s1 - m2) / s2 = (x - (m1 + m2 s1)) / (s1 s2)``."""
    mean, std = [0.0] * n, [1.0] * n
    found = False
    for step in weight.transforms.modules() if isinstance(weight.transforms, nn.Module) else ():
        if type(step).__name__ != "Normalize" or not hasattr(step, "std"):
            continue
        found = True
        m = [float(v) for v in torch.as_tensor(step.mean).flatten().tolist()]
        s = [float(v) for v in torch.as_tensor(step.std).flatten().tolist()]
        m, s = (m * n if len(m) == 1 else m), (s * n if len(s) == 1 else s)
        mean = [a + b * c for a, b, c in zip(mean, m, std, strict=True)]
        std = [a * b for a, b in zip(std, s, strict=True)]
    return (tuple(mean), tuple(std)) if found else ((), ())


def licence_of(weight: Any) -> str:
    meta = weight.meta
    return str(
        meta.get("license")
        or _LICENCE_BY_CLASS.get(type(weight).__name__)
        or _LICENCE_BY_DATASET.get(meta.get("dataset", ""))
        or ("Apache-2.0" if weight.name.endswith("_SECO") else None)  # SeCo's Hub cards
        or "unknown"
    )


def _revision(url: str) -> str:
    parts = PurePosixPath(urlparse(url).path).parts
    return parts[parts.index("resolve") + 1] if "resolve" in parts else "pinned-url"


@functools.lru_cache(maxsize=32)
def torchgeo_manifest(spec: str) -> TorchGeoManifest:
    """The manifest of a torchgeo weight: bands, normalisation, architecture, feature levels."""
    weight = get_weight(spec)
    model_name = _model_name(weight)
    arch = _architecture(weight)
    if not arch:
        raise EofmError(
            f"backbone.name {spec}: eofm does not yet take torchgeo's '{model_name}' "
            "architecture; it takes ResNet, ViT, Swin, DOFA, Copernicus-FM, Panopticon and "
            "CROMA weights."
        )
    bands = CROMA_OPTICAL if arch == "croma" else _eofm_bands(spec, weight)
    if not bands and arch not in SPECTRAL:
        raise EofmError(
            f"backbone.name {spec}: the weight's meta has no band list, so eofm cannot map "
            "data bands onto its input; pick a weight with 'bands' in its meta."
        )
    in_chans = int(weight.meta.get("in_chans", len(bands)))
    model = _build(arch, model_name, in_chans)
    if arch in ("resnet", "swin"):
        channels = _stage_channels(arch, model)
        config = ViTConfig(
            img_size=224,
            patch_size=(1, 32, 32),  # total stride: inputs pad to a multiple of it
            in_chans=in_chans,
            embed_dim=channels[-1],
            depth=4,
            num_heads=1,
        )
        taps: tuple[int, ...] = (0, 1, 2, 3)
    else:
        config = _vit_config(arch, model, in_chans)
        taps = _VIT_TAPS.get(config.depth, tuple(range(config.depth))[-4:])
    mean, std = _normalisation(weight, len(bands)) if bands else ((), ())
    return TorchGeoManifest(
        name=spec,
        family="torchgeo",
        hub_repo=weight.url,
        hub_file=PurePosixPath(urlparse(weight.url).path).name,
        revision=_revision(weight.url),
        config=config,
        bands=bands,
        mean=mean,
        std=std,
        gsd_m=0.0,
        tap_layers=taps,
        weight=spec[len(PREFIX) :],
        architecture=arch,
        licence=licence_of(weight),
        url=weight.url,
        in_chans=in_chans,
    )


def _vit_config(arch: str, model: nn.Module, in_chans: int) -> ViTConfig:
    """Patch, width, depth and heads of a ViT-like torchgeo model (CROMA: its optical
    encoder; the SAR and joint encoders are shallower, see :func:`build_torchgeo_backbone`)."""
    if arch == "croma":
        patch, dim, depth, heads = 8, model.encoder_dim, model.encoder_depth, model.num_heads
    elif arch == "copernicusfm":
        embed = model.patch_embed_spectral
        patch, dim, depth = embed.kernel_size, embed.embed_dim, len(model.blocks)
        heads = model.blocks[0].attn.num_heads
    elif arch == "panopticon":
        vit = model.model
        patch, dim, depth = vit.patch_embed.patch_size[0], vit.embed_dim, len(vit.blocks)
        heads = vit.blocks[0].attn.num_heads
    elif arch == "dofa":
        patch, dim, depth = model.patch_size, model.embed_dim, len(model.blocks)
        heads = model.num_heads
    else:
        patch, dim, depth = model.patch_embed.patch_size[0], model.embed_dim, len(model.blocks)
        heads = model.blocks[0].attn.num_heads
    return ViTConfig(
        img_size=224,
        patch_size=(1, int(patch), int(patch)),
        in_chans=in_chans,
        embed_dim=int(dim),
        depth=int(depth),
        num_heads=int(heads),
    )


def _build(arch: str, model_name: str, in_chans: int) -> nn.Module:
    """The bare architecture from torchgeo's builder (no weights), shaped for ``in_chans``."""
    from torchgeo.models import get_model

    if arch == "resnet":
        return get_model(model_name, in_chans=in_chans)
    if arch == "vit":
        return get_model(model_name, in_chans=in_chans, dynamic_img_size=True)
    if arch in ("dofa", "copernicusfm", "panopticon", "croma"):
        return get_model(model_name)  # CROMA: both modalities, as its release holds both
    model = get_model(model_name)  # torchvision Swin; torchgeo swaps the first conv the same way
    first = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_chans, first.out_channels, kernel_size=4, stride=4)
    return model


def _stage_channels(arch: str, model: nn.Module) -> list[int]:
    if arch == "resnet":
        return [int(model.feature_info[i]["num_chs"]) for i in range(1, 5)]
    return [int(model.features[i][-1].norm1.normalized_shape[0]) for i in (1, 3, 5, 7)]


#: Keys each torchgeo builder lets the release miss (classifier heads it regenerates).
_MAY_MISS = {
    "resnet": {"fc.weight", "fc.bias"},
    "vit": {"norm.weight", "norm.bias", "head.weight", "head.bias"},
    "swin": set(),
    "dofa": {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"},
    "copernicusfm": {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"},
    "panopticon": set(),
    "croma": {"attn_bias"},  # CROMA's 2-D ALiBi, computed from the grid
}


def read_torchgeo_weights(manifest: TorchGeoManifest) -> tuple[dict[str, torch.Tensor], dict]:
    """Download (or find in torch hub's cache) the release file through torchgeo's loader."""
    weight = get_weight(manifest.name)
    try:
        state = weight.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EofmError(
            f"Pretrained weights of {manifest.name} could not be loaded from {manifest.url}: "
            f"{type(exc).__name__}: {reason}."
        ) from None
    if manifest.architecture == "croma" and isinstance(state, dict):
        from eofm.backbones.torchgeo_croma import croma_state

        state = croma_state(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EofmError(f"{manifest.url} does not hold a state dict of tensors.")
    source = {"repo": manifest.url, "revision": manifest.revision, "file": manifest.hub_file}
    return dict(state), source


def _load(model: nn.Module, state: dict[str, torch.Tensor], manifest: TorchGeoManifest) -> None:
    may_miss = _MAY_MISS[manifest.architecture]
    if manifest.architecture == "panopticon":
        from eofm.backbones.torchgeo_wavelength import panopticon_state

        state = panopticon_state(state, model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise EofmError(
            f"{manifest.url} does not fit {manifest.name}: {str(exc).splitlines()[-1].strip()}"
        ) from None
    bad_missing = sorted(set(missing) - may_miss)
    bad_unexpected = sorted(set(unexpected) - may_miss)
    if bad_missing or bad_unexpected:
        raise EofmError(
            f"{manifest.url} does not fit {manifest.name}: missing keys {bad_missing[:5]}, "
            f"unexpected keys {bad_unexpected[:5]}."
        )


class TorchGeoBackbone(nn.Module):
    """A torchgeo model giving four feature levels (CNN / Swin stages) or tapped ViT tokens.

    CNNs and Swin give maps ``(B, C, H, W)`` and ``None`` (like :mod:`timm_backbone`); ViTs
    give the tokens of the tapped blocks ``(B, 1 + N, D)`` (CROMA: ``(B, N, D)``) and the
    patch grid, for the ViT neck (and LoRA on the attention of timm blocks).
    """

    def __init__(self, model: nn.Module, manifest: TorchGeoManifest) -> None:
        super().__init__()
        self.model = model
        self.manifest = manifest
        self.config = manifest.config
        self.tap_layers = manifest.tap_layers
        self.is_cnn = manifest.architecture in ("resnet", "swin")
        if self.is_cnn:
            self.feature_channels = _stage_channels(manifest.architecture, model)
        self.register_buffer("wavelengths", torch.zeros(0), persistent=False)
        #: Copernicus-FM: bandwidths (nm); Panopticon: channel ids; CROMA: the optical and
        #: SAR channels' indices in the data's bands, and which encoder runs.
        self.register_buffer("bandwidths", torch.zeros(0), persistent=False)
        self.channel_ids: tuple[float, ...] = ()
        self.register_buffer("optical_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("sar_index", torch.zeros(0, dtype=torch.long), persistent=False)
        self.modality = "optical"

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], tuple[int, int, int] | None]:
        if x.ndim == 5:
            x = x.squeeze(2)
        arch = self.manifest.architecture
        if arch == "resnet":
            return self._resnet(x), None
        if arch == "swin":
            return self._swin(x), None
        if arch == "dofa":
            return self._dofa(x)
        if arch == "copernicusfm":
            from eofm.backbones.torchgeo_wavelength import copernicusfm_tokens

            return copernicusfm_tokens(
                self.model, x, self.wavelengths, self.bandwidths, self.tap_layers
            )
        if arch == "panopticon":
            from eofm.backbones.torchgeo_wavelength import panopticon_tokens

            return panopticon_tokens(self.model, x, self.channel_ids, self.tap_layers)
        if arch == "croma":
            from eofm.backbones.torchgeo_croma import croma_tokens

            return croma_tokens(
                self.model, x, self.modality, self.optical_index, self.sar_index, self.tap_layers
            )
        return self._vit(x)

    def _resnet(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model
        x = m.maxpool(m.act1(m.bn1(m.conv1(x))))
        out = []
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            out.append(x)
        return out

    def _swin(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, stage in enumerate(self.model.features):
            x = stage(x)
            if i in (1, 3, 5, 7):
                out.append(x.permute(0, 3, 1, 2))  # torchvision Swin keeps NHWC
        return out

    def _vit(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        m = self.model
        grid = (
            1,
            x.shape[-2] // m.patch_embed.patch_size[0],
            x.shape[-1] // m.patch_embed.patch_size[1],
        )
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        out = []
        for i, block in enumerate(m.blocks):
            x = block(x)
            if i in self.tap_layers:
                out.append(x)
        return out, grid

    def _dofa(self, x: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int, int]]:
        m = self.model
        h, w = x.shape[-2] // m.patch_size, x.shape[-1] // m.patch_size
        tokens, _ = m.patch_embed(x, self.wavelengths.to(x.device, torch.float32))
        pos = _resample_positions(m.pos_embed, (h, w))
        tokens = tokens + pos[:, 1:, :]
        cls = (m.cls_token + pos[:, :1, :]).expand(tokens.shape[0], -1, -1)
        x = torch.cat((cls, tokens), dim=1)
        out = []
        for i, block in enumerate(m.blocks):
            x = block(x)
            if i in self.tap_layers:
                out.append(x)
        return out, (1, h, w)


def _resample_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """DOFA's fixed 2-D sin-cos table for another patch grid: bicubic, as timm's
    ``resample_abs_pos_embed`` (unchanged at the pretraining grid)."""
    n = int(round((pos.shape[1] - 1) ** 0.5))
    if (n, n) == tuple(grid):
        return pos
    table = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
    table = table.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)
    return torch.cat([pos[:, :1], table], dim=1)


def wavelengths_of(spec: str, bands: Sequence[str]) -> list[float]:
    """Central wavelengths (µm) of ``bands`` from eofm's band table; an unknown one is an error."""
    missing = [b for b in bands if b not in BAND_WAVELENGTH_UM]
    if missing:
        raise EofmError(
            f"{spec} is conditioned on band wavelengths, and band {missing[0]!r} has none in "
            f"eofm's band table (eofm.bands.BAND_WAVELENGTH_UM: "
            f"{', '.join(BAND_WAVELENGTH_UM)})."
        )
    return [BAND_WAVELENGTH_UM[b] for b in bands]


def build_torchgeo_backbone(
    manifest: TorchGeoManifest,
    bands: Sequence[str] | None,
    *,
    pretrained: bool,
    allow_random_init: bool,
) -> TorchGeoBackbone:
    """The torchgeo model with its weights by the one rule and its input fitted to ``bands``."""
    from eofm.backbones.fetch import fetch_or_random_init

    data_bands = check_band_names(bands, where="data.bands") if bands else list(manifest.bands)
    if not data_bands:
        raise EofmError(f"{manifest.name} has no band list of its own; set data.bands.")
    inputs = _band_inputs(manifest, data_bands)
    state, source = None, None
    if pretrained:
        state, source = fetch_or_random_init(
            manifest.name, lambda: read_torchgeo_weights(manifest), allow_random_init
        )
    model = _build(manifest.architecture, _model_name(get_weight(manifest.name)), manifest.in_chans)
    if state is not None:
        _load(model, state, manifest)
        log.info("Loaded %s from %s (torchgeo %s).", manifest.name, manifest.url, _version())
    backbone = TorchGeoBackbone(model, manifest)
    backbone.source = source
    backbone.input_bands = tuple(data_bands)
    if inputs:
        for name, value in inputs.items():
            setattr(backbone, name, value)
        backbone.band_mapping = {"copied": data_bands, "new": [], "dropped": []}
    else:
        _map_first_conv(backbone, data_bands)
    if manifest.architecture == "croma" and backbone.modality != "optical":
        from dataclasses import replace

        from eofm.backbones.torchgeo_croma import modality_depth, quarter_taps

        depth = modality_depth(model, backbone.modality)
        backbone.config = replace(backbone.config, depth=depth)
        backbone.tap_layers = quarter_taps(depth)
    return backbone


def _band_inputs(manifest: TorchGeoManifest, bands: list[str]) -> dict[str, Any]:
    """What a model that is not fitted by copying first-layer kernels is told about the
    data's bands (empty for ResNet, ViT and Swin); an unknown band is an error here."""
    arch = manifest.architecture
    if arch == "dofa":
        return {"wavelengths": torch.tensor(wavelengths_of(manifest.name, bands))}
    if arch == "copernicusfm":
        from eofm.backbones.torchgeo_wavelength import copernicusfm_spectra

        waves, widths = copernicusfm_spectra(manifest.name, bands)
        return {"wavelengths": torch.tensor(waves), "bandwidths": torch.tensor(widths)}
    if arch == "panopticon":
        from eofm.backbones.torchgeo_wavelength import panopticon_channel_ids

        return {"channel_ids": tuple(panopticon_channel_ids(manifest.name, bands))}
    if arch == "croma":
        from eofm.backbones.torchgeo_croma import croma_band_order, croma_modality

        modality = croma_modality(manifest.name, bands)
        optical, sar = croma_band_order(bands)
        return {
            "modality": modality,
            "optical_index": torch.tensor(optical, dtype=torch.long),
            "sar_index": torch.tensor(sar, dtype=torch.long),
        }
    return {}


def _first_conv_path(arch: str) -> str:
    return {"resnet": "conv1", "vit": "patch_embed.proj", "swin": "features.0.0"}[arch]


def _map_first_conv(backbone: TorchGeoBackbone, bands: list[str]) -> None:
    """Kernels of shared bands copied by name, new bands freshly initialised."""
    from eofm.backbones._weights import map_first_conv

    manifest = backbone.manifest
    path = _first_conv_path(manifest.architecture)
    backbone.band_mapping = map_first_conv(
        backbone.model, path, manifest.name, list(manifest.bands), bands
    )


#: The bands column of ``eofm backbones`` for the models without a band list of their own.
_LISTED_BANDS = {
    "dofa": "any (by wavelength)",
    "copernicusfm": "any (by wavelength and bandwidth); VV,VH",
    "panopticon": "any (by wavelength); VV,VH",
    "croma": "12 S2 bands without CIRRUS (optical), VV,VH (SAR), or all 14 (joint)",
}


def catalogue() -> list[tuple[str, str, str, str]]:
    """``(name, url-file@revision, bands, licence)`` of every torchgeo weight eofm takes,
    read from the enums alone (no model is built)."""
    rows = []
    for cls_name, enum in _weights_enums().items():
        for member, weight in enum.__members__.items():
            arch = _architecture(weight)
            if not arch:
                continue
            spec = f"{PREFIX}{cls_name}.{member}"
            try:
                bands = ",".join(_eofm_bands(spec, weight))
            except EofmError:
                continue  # bands outside eofm's table (Landsat)
            if arch in _LISTED_BANDS:
                bands = _LISTED_BANDS[arch]
            elif not bands:
                continue  # no band list to map data bands onto
            file = PurePosixPath(urlparse(weight.url).path).name
            rows.append((spec, f"{file}@{_revision(weight.url)[:12]}", bands, licence_of(weight)))
    return rows


class TorchGeoResolver:
    """The registry's resolver for the ``torchgeo:`` prefix: spec -> manifest -> backbone."""

    prefix = PREFIX
    manifest = staticmethod(torchgeo_manifest)
    build = staticmethod(build_torchgeo_backbone)


RESOLVER = TorchGeoResolver()
