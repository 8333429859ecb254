"""Dense prediction: Backbone ► Neck ► Decoder ► Head, assembled from a recipe."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eofm.decoders.neck import MapNeck, ViTNeck
from eofm.errors import RecipeError
from eofm.models.base import LatentModel
from eofm.recipe import Recipe

log = logging.getLogger(__name__)


class SegmentationModel(LatentModel):
    """Dense prediction at the input's resolution from a ViT encoder or a CNN's feature levels."""

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        decoder: nn.Module,
        head: nn.Module,
        frames: nn.Module | None = None,
    ) -> None:
        super().__init__(backbone, decoder)
        self.neck = neck
        self.head = head
        #: multi-date stacks: how the frames reach the backbone (eofm.models.temporal)
        self.frames = frames
        for part in (self.neck, self.decoder, self.head):
            part.to(memory_format=torch.channels_last)

    def encode(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        gsd_m: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | list[torch.Tensor], tuple[int, int, int] | None]:
        """Tokens of the tapped layers stacked ``(B, taps, N, D)`` and the patch grid; or a
        CNN's feature maps (a list of several resolutions) and ``None``."""
        extra = {"gsd_m": gsd_m} if gsd_m is not None else {}  # Scale-MAE: metres per pixel
        with self.backbone_grad():
            if self.frames is not None:
                tokens, grid = self.frames(
                    self.backbone, x, temporal_coords, location_coords, **extra
                )
            else:
                tokens, grid = self.backbone(x, temporal_coords, location_coords, **extra)
        if grid is None:
            return list(tokens), None
        return torch.stack(list(tokens), dim=1), tuple(grid)

    @property
    def cacheable(self) -> bool:
        """Latents of one shape per sample (ViT tokens) can go to the latent cache."""
        return not getattr(self.backbone, "is_cnn", False)

    def decode(
        self,
        latent: torch.Tensor | list[torch.Tensor],
        grid: tuple[int, int, int] | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        maps = latent if isinstance(latent, list) else list(latent.unbind(1))
        features = self.decoder(self.neck(maps, grid))
        logits = self.head(features)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits.contiguous()

    INPUT_KEYS = ("image", "temporal_coords", "location_coords", "gsd_m")

    def encode_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        latent, grid = self.encode(
            batch["image"],
            batch.get("temporal_coords"),
            batch.get("location_coords"),
            batch.get("gsd_m"),
        )
        b = latent.shape[0]
        return {"latent": latent, "grid": torch.tensor(grid).expand(b, 3)}

    def decode_batch(self, batch: dict) -> torch.Tensor:
        grid = tuple(int(v) for v in batch["grid"][0])
        return self.decode(batch["latent"], grid, tuple(batch["mask"].shape[-2:]))

    def predict_batch(self, batch: dict) -> torch.Tensor:
        if "latent" in batch:
            return self.decode_batch(batch)
        return self(
            batch["image"],
            batch.get("temporal_coords"),
            batch.get("location_coords"),
            batch.get("gsd_m"),
        )

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
        gsd_m: torch.Tensor | None = None,
    ) -> torch.Tensor:
        latent, grid = self.encode(x, temporal_coords, location_coords, gsd_m)
        return self.decode(latent, grid, tuple(x.shape[-2:]))


def build_segmentation_model(
    recipe: Recipe,
    *,
    num_classes: int,
    data_bands: Sequence[str],
    num_frames: int = 1,
    pretrained: bool | None = None,
    allow_random_init: bool = False,
) -> SegmentationModel:
    """Build the model of a recipe. ``pretrained=None`` follows ``recipe.backbone.pretrained``."""
    from eofm.adapters import apply_adapter
    from eofm.backbones.loading import load_backbone

    cfg = recipe.backbone
    frames = len(recipe.data.frame_list()) or 1
    native = frames > 1 and cfg.temporal == "native"
    if native:
        check_native_frames(recipe)
    backbone = load_backbone(
        cfg.name,
        bands=data_bands,
        num_frames=(frames if native else 1) if frames > 1 else cfg.num_frames or num_frames,
        img_size=cfg.img_size,
        pretrained=cfg.pretrained if pretrained is None else pretrained,
        allow_random_init=allow_random_init,
    )
    if hasattr(backbone, "gsd"):  # Scale-MAE's resolution-aware positions
        backbone.gsd = cfg.gsd
        backbone.gsd_reference_m = cfg.gsd_reference_m or backbone.gsd_reference_m
    from eofm.registry import REGISTRY

    decoder_cls = REGISTRY.get("decoder", recipe.decoder.name).load()
    make_neck = _cnn_neck if getattr(backbone, "is_cnn", False) else _vit_neck
    stacked = frames if frames > 1 and cfg.temporal == "concat" else 1
    neck = make_neck(recipe, backbone, decoder_cls, stacked)
    decoder = decoder_cls(
        neck.out_channels,
        recipe.decoder.channels,
        patch_size=backbone.config.patch_size[-1],
        fuse=recipe.decoder.fuse,
    )
    head = nn.Sequential(
        nn.Dropout2d(recipe.decoder.dropout), nn.Conv2d(decoder.out_channels, num_classes, 1)
    )
    model = SegmentationModel(backbone, neck, decoder, head, frame_encoder(backbone, frames, cfg))
    apply_adapter(model, recipe.adapter)
    return model


def frame_encoder(backbone: nn.Module, frames: int, cfg: Any) -> nn.Module | None:
    """How a stack of ``frames`` frames reaches ``backbone`` (None for one frame)."""
    if frames == 1:
        return None
    from eofm.models.temporal import FrameEncoder

    if getattr(backbone, "is_cnn", False):
        return FrameEncoder(frames, cfg.temporal, backbone.feature_channels, maps=True)
    channels = [backbone.embed_dim] * len(backbone.tap_layers)
    return FrameEncoder(frames, cfg.temporal, channels, maps=False)


def check_native_frames(recipe: Recipe) -> None:
    """Only a backbone of 3D patches (Prithvi-EO) takes several frames itself."""
    from eofm.backbones.loading import resolve_manifest

    manifest = resolve_manifest(recipe.backbone.name)
    if manifest.family != "prithvi":
        raise RecipeError(
            f"data.frames gives {len(recipe.data.frame_list())} frames, and backbone "
            f"{recipe.backbone.name} takes one frame: set backbone.temporal to mean, max, "
            "concat or attention to pool the frames' features (native is for Prithvi-EO)."
        )


def _vit_neck(recipe: Recipe, backbone: nn.Module, decoder_cls: type, stacked: int = 1) -> ViTNeck:
    cfg = recipe.backbone
    if cfg.tap_layers:
        depth = backbone.config.depth
        bad = [i for i in cfg.tap_layers if not 0 <= i < depth]
        if bad:
            raise RecipeError(
                f"backbone.tap_layers {bad} are outside 0..{depth - 1} for {cfg.name}."
            )
        backbone.tap_layers = tuple(cfg.tap_layers)
    if decoder_cls.needs_pyramid and len(backbone.tap_layers) != 4:
        raise RecipeError(
            f"decoder.name {recipe.decoder.name} builds a 4-level pyramid and needs 4 tapped "
            f"layers; backbone.tap_layers has {len(backbone.tap_layers)} "
            f"({list(backbone.tap_layers)}). Tap 4 layers, or use decoder.name: progressive."
        )
    frames = backbone.config.num_frames // backbone.config.patch_size[0] * stacked
    return ViTNeck(
        backbone.embed_dim * frames, len(backbone.tap_layers), pyramid=decoder_cls.needs_pyramid
    )


def _cnn_neck(recipe: Recipe, backbone: nn.Module, decoder_cls: type, stacked: int = 1) -> MapNeck:
    if getattr(decoder_cls, "needs_tokens", False):
        raise RecipeError(
            f"decoder.name {recipe.decoder.name} fuses ViT tokens of one resolution; a timm "
            f"backbone ({recipe.backbone.name}) gives feature levels, so use unet, upernet "
            "or linear."
        )
    if recipe.adapter.mode == "lora":
        raise RecipeError(
            f"adapter.mode lora adapts ViT attention; {recipe.backbone.name} is a CNN, so use "
            "adapter.mode full or frozen."
        )
    if recipe.backbone.tap_layers:
        raise RecipeError(
            f"backbone.tap_layers is for ViT backbones; {recipe.backbone.name} gives its "
            "deepest 4 feature levels."
        )
    return MapNeck([c * stacked for c in backbone.feature_channels])
