"""Any timm model as a multi-scale backbone: ``timm:<model_name>`` or ``hf-hub:<org>/<repo>``.

The model is built with ``timm.create_model(..., features_only=True)`` (Wightman, "PyTorch
Image Models", 2019) and gives its last four feature levels (strides 4 to 32 for the
usual CNNs) straight to a map decoder (``unet``, ``upernet``, ``linear``): no ViT neck.
Normalisation comes from the model's ``pretrained_cfg``. Pretrained weights are fetched by
timm itself (through ``huggingface_hub``), under eofm's one rule: a failed download is an
error unless random initialisation was explicitly allowed.

A 3-channel ImageNet-style model's inputs are RED, GREEN and BLUE, so other band sets are
mapped onto its first convolution by name: kernels of shared bands are copied and new
bands freshly initialised. With no band in common, timm's own ``in_chans`` adaptation
(repeating and rescaling the RGB kernels) is used instead. Either way the log says which.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eofm.backbones.manifest import BackboneManifest, ViTConfig
from eofm.errors import EofmError

log = logging.getLogger(__name__)

PREFIXES = ("timm:", "hf-hub:")
RGB = ("RED", "GREEN", "BLUE")
#: How many of the deepest feature levels the decoders get.
LEVELS = 4


def is_timm_spec(spec: str) -> bool:
    return spec.startswith(PREFIXES)


def timm_name(spec: str) -> str:
    """``timm:resnet18`` -> ``resnet18``; ``hf-hub:org/repo`` stays as timm names it."""
    return spec[len("timm:") :] if spec.startswith("timm:") else spec


def _create(spec: str, **kwargs: Any) -> nn.Module:
    import timm

    name = timm_name(spec)
    if not name.startswith("hf-hub:") and not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f" Did you mean 'timm:{close[0]}'?" if close else ""
        raise EofmError(f"backbone.name {spec}: timm has no model '{name}'.{hint}")
    try:
        return timm.create_model(name, features_only=True, **kwargs)
    except EofmError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EofmError(f"backbone.name {spec}: timm could not build it ({reason}).") from None


def timm_manifest(spec: str) -> BackboneManifest:
    """A manifest for a timm model: its pretrained_cfg normalisation and feature levels."""
    model = _create(spec, pretrained=False)
    cfg = dict(model.pretrained_cfg or {})
    info = model.feature_info
    levels = list(range(len(info)))[-LEVELS:]
    reduction = info.reduction()[-1]
    mean, std = tuple(cfg.get("mean", ())), tuple(cfg.get("std", ()))
    size = cfg.get("input_size", (3, 224, 224))
    config = ViTConfig(
        img_size=int(size[-1]),
        patch_size=(1, reduction, reduction),  # the total stride: inputs pad to a multiple
        in_chans=int(size[0]),
        embed_dim=info.channels()[-1],
        depth=len(info),
        num_heads=1,
    )
    return BackboneManifest(
        name=spec,
        family="timm",
        hub_repo=cfg.get("hf_hub_id") or timm_name(spec),
        hub_file="",
        revision="main",
        config=config,
        bands=RGB if len(mean) == 3 else (),
        mean=mean if len(mean) == 3 else (),
        std=std if len(std) == 3 else (),
        gsd_m=0.0,
        tap_layers=tuple(levels),
    )


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model giving its deepest :data:`LEVELS` feature maps."""

    is_cnn = True

    def __init__(self, model: nn.Module, manifest: BackboneManifest) -> None:
        super().__init__()
        self.model = model
        self.manifest = manifest
        self.config = manifest.config
        self.tap_layers = manifest.tap_layers
        self.feature_channels = [model.feature_info.channels()[i] for i in self.tap_layers]

    @property
    def embed_dim(self) -> int:
        return self.feature_channels[-1]

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], None]:
        if x.ndim == 5:
            x = x.squeeze(2)
        features = self.model(x)
        return [features[i] for i in self.tap_layers], None


def build_timm_backbone(
    manifest: BackboneManifest,
    bands: Sequence[str] | None,
    *,
    pretrained: bool,
    allow_random_init: bool,
) -> TimmBackbone:
    """The backbone with its first convolution fitted to ``bands``; weights by the one rule."""
    from eofm.backbones.fetch import fetch_or_random_init

    spec = manifest.name
    data_bands = list(bands or manifest.bands)
    by_name = bool(manifest.bands) and bool(set(data_bands) & set(manifest.bands))
    source = None
    if pretrained:

        def download() -> tuple[nn.Module, dict]:
            try:
                kwargs = {} if by_name else {"in_chans": len(data_bands)}
                model = _create(spec, pretrained=True, **kwargs)
            except EofmError as exc:
                raise EofmError(
                    f"Pretrained weights of {spec} could not be loaded: {exc}"
                ) from None
            return model, {"repo": manifest.hub_repo, "revision": "main", "file": "timm"}

        model, source = fetch_or_random_init(spec, download, allow_random_init)
    else:
        model = None
    if model is None:
        model = _create(spec, pretrained=False, in_chans=3 if by_name else len(data_bands))
    backbone = TimmBackbone(model, manifest)
    backbone.source = source
    backbone.input_bands = tuple(data_bands)
    if by_name:
        _map_first_conv(backbone, manifest, data_bands)
    else:
        backbone.band_mapping = {"copied": [], "new": data_bands, "dropped": list(manifest.bands)}
        log.info(
            "%s: bands %s share no name with its inputs %s; timm's in_chans adaptation "
            "sets up the first convolution.",
            spec,
            data_bands,
            list(manifest.bands) or "(unnamed)",
        )
    return backbone


def _map_first_conv(backbone: TimmBackbone, manifest: BackboneManifest, bands: list[str]) -> None:
    from eofm.backbones._weights import map_first_conv

    model = backbone.model
    path = (model.pretrained_cfg or {}).get("first_conv", "conv1")
    path = path.replace(".", "_") if not _has(model, path) else path
    backbone.band_mapping = map_first_conv(model, path, manifest.name, list(manifest.bands), bands)


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True
