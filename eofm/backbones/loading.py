"""``load_backbone``: registry name or ``hf://`` id -> a ready encoder with its manifest."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

import torch

from eofm.backbones._weights import WEIGHT_SUFFIXES
from eofm.backbones.fetch import fetch_or_random_init
from eofm.backbones.manifest import (
    AuroraManifest,
    BackboneManifest,
    manifest_from_pretrained_cfg,
)
from eofm.bands import check_band_names
from eofm.errors import EofmError
from eofm.publishing import hub

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_manifest(spec: str) -> BackboneManifest | AuroraManifest:
    """The manifest for a registry name or an ``hf://`` id.

    A known repo with another ``@REVISION`` keeps the registry's file and config. An
    unknown repo is described by its ``config.json`` (``pretrained_cfg``) and its single
    weights file, or the one named with ``#FILE``.
    """
    from eofm.backbones.timm_backbone import is_timm_spec, timm_manifest
    from eofm.registry import REGISTRY, backbone_manifest, manifest_for_repo

    resolver = REGISTRY.resolver("backbone", spec)
    if resolver is not None:  # a prefix such as torchgeo: names a whole catalogue
        return resolver.manifest(spec)
    if is_timm_spec(spec):
        return timm_manifest(spec)
    if not hub.is_hub_uri(spec):
        return backbone_manifest(spec)
    ref = hub.parse_hub_uri(spec)
    known = manifest_for_repo(ref.repo_id, ref.filename)
    if known is not None:
        return replace(
            known, revision=ref.revision or known.revision, hub_file=ref.filename or known.hub_file
        )
    revision = ref.revision or "main"
    files = hub.list_files(ref.repo_id, revision)
    if "config.json" not in files and "config.yaml" in files:  # a Prithvi WxC release
        from eofm.backbones.manifest import WxCManifest

        weights = pick_weights_file(files, ref)
        return WxCManifest(name=spec, hub_repo=ref.repo_id, revision=revision, hub_file=weights)
    if "config.json" not in files:
        raise EofmError(
            f"{ref} is not a registered backbone and has no config.json to build it from."
        )
    config_path, _ = hub.download_file(ref.repo_id, "config.json", revision)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EofmError(f"config.json of {ref} is not valid JSON: {exc}") from None
    if isinstance(config, dict) and isinstance(config.get("aurora"), dict):
        from eofm.backbones.manifest import aurora_manifest_from_config

        weights = pick_weights_file(files, ref)
        return aurora_manifest_from_config(spec, ref.repo_id, revision, weights, config["aurora"])
    pretrained_cfg = config.get("pretrained_cfg", config) if isinstance(config, dict) else None
    if not isinstance(pretrained_cfg, dict):
        raise EofmError(f"config.json of {ref} has no 'pretrained_cfg' mapping.")
    weights = pick_weights_file(files, ref)
    return manifest_from_pretrained_cfg(spec, ref.repo_id, revision, weights, pretrained_cfg)


def load_backbone(
    spec: str,
    *,
    bands: Sequence[str] | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    pretrained: bool = True,
    allow_random_init: bool = False,
) -> torch.nn.Module:
    """Build an encoder and load its pretrained weights from the Hub.

    ``spec`` is a registry name (e.g. ``prithvi_eo_v2_tiny_tl``) or
    ``hf://ORG/REPO[@REVISION][#FILE]``. ``bands`` maps the data's bands onto the
    model's by name: patch-embedding kernels of shared bands are copied and new bands are
    freshly initialised. Random weights are used only with ``pretrained=False``, or when
    loading fails and ``allow_random_init=True`` (with a loud warning).

    The returned module has ``.manifest``, ``.input_bands``, ``.band_mapping`` and
    ``.source`` (repo, resolved commit and file, or ``None`` when randomly initialised).
    """
    manifest = resolve_manifest(spec)
    if isinstance(manifest, AuroraManifest):
        raise EofmError(
            f"{spec} is an Aurora weather model; it takes weather variables, not image bands "
            "(use a recipe with data.name: era5)."
        )
    if manifest.family == "timm":
        from eofm.backbones.timm_backbone import build_timm_backbone

        return build_timm_backbone(
            manifest, bands, pretrained=pretrained, allow_random_init=allow_random_init
        )
    if manifest.family == "torchgeo":
        from eofm.registry import REGISTRY

        return REGISTRY.resolver("backbone", spec).build(
            manifest, bands, pretrained=pretrained, allow_random_init=allow_random_init
        )
    if manifest.family == "scalemae" and bands is not None:
        rgb = {"RED", "GREEN", "BLUE"}
        if set(bands) != rgb or len(bands) != 3:
            raise EofmError(
                f"{spec} (Scale-MAE) takes exactly the bands RED, GREEN and BLUE (in any "
                f"order), got {list(bands)}; set data.bands: [RED, GREEN, BLUE]."
            )
    config = manifest.config
    if num_frames is not None:
        config = replace(config, num_frames=num_frames)
    if img_size is not None:
        config = replace(config, img_size=img_size)
    manifest = replace(manifest, config=config)
    state, source = None, None
    if pretrained:  # download and read before allocating the model: fail fast
        state, source = fetch_or_random_init(
            manifest.name, lambda: _read_pretrained(manifest), allow_random_init
        )
    model = encoder_class(manifest)(config, manifest)
    model.source = None
    if state is not None:
        from eofm.backbones._weights import drop_non_encoder_keys, load_strict

        if manifest.family == "terramind":  # the release is the whole any-to-any model
            from eofm.backbones.terramind import encoder_state

            state = encoder_state(model, state, source=_describe(source))
        state = drop_non_encoder_keys(model, state, source=_describe(source))
        load_strict(model, state, source=_describe(source))
        log.info("Loaded %s (%d encoder tensors, strict).", _describe(source), len(state))
        model.source = source
    _map_bands(model, manifest, bands)
    return model


def encoder_class(manifest: BackboneManifest) -> type:
    """The encoder module of a manifest's architecture family."""
    if manifest.family == "scalemae":
        from eofm.backbones.scalemae import ScaleMAEEncoder

        return ScaleMAEEncoder
    if manifest.family == "terramind":
        from eofm.backbones.terramind import TerraMindEncoder

        return TerraMindEncoder
    from eofm.backbones.prithvi import PrithviEncoder

    return PrithviEncoder


def _describe(source: dict[str, str]) -> str:
    return f"hf://{source['repo']}@{source['revision']}#{source['file']}"


def _read_pretrained(manifest: BackboneManifest) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Download the manifest's checkpoint at its pinned revision; return encoder tensors."""
    from eofm.backbones._weights import prithvi_encoder_state, read_state_dict

    path, commit = hub.download_file(manifest.hub_repo, manifest.hub_file, manifest.revision)
    source = {
        "repo": manifest.hub_repo,
        "revision": commit or manifest.revision,
        "file": manifest.hub_file,
    }
    state = read_state_dict(path)
    if manifest.family == "prithvi":  # MAE checkpoints carry the decoder too
        state = prithvi_encoder_state(state, source=_describe(source))
    return state, source


def _map_bands(
    model: torch.nn.Module, manifest: BackboneManifest, bands: Sequence[str] | None
) -> None:
    from eofm.backbones._weights import transfer_patch_embed

    model_bands = list(manifest.bands)
    data_bands = check_band_names(bands, where="the requested bands") if bands else model_bands
    if manifest.family == "terramind":  # one patch embedding per modality
        from eofm.backbones.terramind import map_bands

        model.band_mapping = map_bands(model, data_bands)
        return
    model.input_bands = tuple(data_bands)
    model.band_mapping = {"copied": data_bands, "new": [], "dropped": []}
    if data_bands == model_bands:
        return
    old = model.patch_embed.proj
    new = type(old)(  # Conv3d (Prithvi) or Conv2d (Scale-MAE)
        len(data_bands), old.out_channels, kernel_size=old.kernel_size, stride=old.stride
    )
    fresh = new.weight.detach().clone()
    torch.nn.init.xavier_uniform_(fresh.view(fresh.shape[0], -1))
    weight, copied, added = transfer_patch_embed(
        old.weight.detach(), model_bands, data_bands, fresh
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(old.bias)
    model.patch_embed.proj = new
    dropped = [b for b in model_bands if b not in data_bands]
    model.band_mapping = {"copied": copied, "new": added, "dropped": dropped}
    log.info(
        "Band mapping for %s: patch-embed weights copied for %s; freshly initialised for %s; "
        "pretrained bands not used: %s.",
        manifest.name,
        copied or "none",
        added or "none",
        dropped or "none",
    )


def pick_weights_file(files: list[str], ref: hub.HubRef) -> str:
    """The single weights file of a repo (safetensors preferred), or the one named by ``#FILE``."""
    if ref.filename:
        if ref.filename not in files:
            raise EofmError(
                f"File '{ref.filename}' does not exist in {ref}; the repo holds {files}."
            )
        return ref.filename
    weights = [f for f in files if f.endswith(WEIGHT_SUFFIXES)]
    safetensors = [f for f in weights if f.endswith(".safetensors")]
    candidates = safetensors or weights
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise EofmError(f"{ref} holds no weights file (*.safetensors, *.pt, *.pth).")
    raise EofmError(
        f"{ref} holds several weights files {candidates}; name one with "
        f"hf://{ref.repo_id}@{ref.revision or 'main'}#FILE."
    )
