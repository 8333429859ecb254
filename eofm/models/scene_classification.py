"""Chip classification: Backbone ► pooled feature ► head decoder ► linear layer, from a recipe."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from eofm.decoders.pooled import pool_features
from eofm.errors import RecipeError
from eofm.models.base import LatentModel
from eofm.recipe import Recipe


class SceneClassifier(LatentModel):
    """One logit per class for each chip. ``threshold`` (kept in checkpoints) is the
    probability above which a label is given when labels are not exclusive."""

    INPUT_KEYS = ("image",)
    cacheable = False

    def __init__(self, backbone: nn.Module, decoder: nn.Module, num_classes: int, dropout: float):
        super().__init__(backbone, decoder)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(decoder.out_channels, num_classes)
        )
        self.register_buffer("threshold", torch.tensor(0.5))
        self.tokens = not getattr(backbone, "is_cnn", False)
        self.patch = int(backbone.config.patch_size[-1]) if self.tokens else 1

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)``: the backbone's last tapped output pooled over space. A ViT's input
        is padded at the bottom and right to a multiple of its patch (BigEarthNet's 120 px
        to 128 for 16 px patches) with zeros, the band means after normalisation."""
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.patch, -w % self.patch
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        with self.backbone_grad():
            features, _ = self.backbone(x)
        return pool_features(list(features), tokens=self.tokens)

    def encode_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"latent": self.pooled(batch["image"])}

    def decode_batch(self, batch: dict) -> torch.Tensor:
        return self.classifier(self.decoder(batch["latent"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(self.pooled(x)))

    def predict_batch(self, batch: dict) -> torch.Tensor:
        if "latent" in batch:
            return self.decode_batch(batch)
        return self(batch["image"])


def build_scene_classifier(
    recipe: Recipe,
    *,
    num_classes: int,
    data_bands: Sequence[str],
    pretrained: bool | None = None,
    allow_random_init: bool = False,
) -> SceneClassifier:
    """The model of a recipe (``pretrained=None`` follows ``recipe.backbone.pretrained``),
    with the recipe's adapter (frozen, LoRA/DoRA through peft, or full)."""
    from eofm.adapters import apply_adapter
    from eofm.backbones.loading import load_backbone
    from eofm.registry import REGISTRY

    cfg = recipe.backbone
    backbone = load_backbone(
        cfg.name,
        bands=data_bands,
        num_frames=cfg.num_frames or 1,
        img_size=cfg.img_size,
        pretrained=cfg.pretrained if pretrained is None else pretrained,
        allow_random_init=allow_random_init,
    )
    is_cnn = getattr(backbone, "is_cnn", False)
    if is_cnn and recipe.adapter.mode == "lora":
        raise RecipeError(
            f"adapter.mode lora adapts ViT attention; {cfg.name} is a CNN, so use "
            "adapter.mode full or frozen."
        )
    if cfg.tap_layers and is_cnn:
        raise RecipeError(f"backbone.tap_layers is for ViT backbones, not {cfg.name}.")
    if not is_cnn:  # the head reads the last tapped layer: by default the encoder's last
        depth = backbone.config.depth
        bad = [i for i in cfg.tap_layers or () if not 0 <= i < depth]
        if bad:
            raise RecipeError(
                f"backbone.tap_layers {bad} are outside 0..{depth - 1} for {cfg.name}."
            )
        backbone.tap_layers = tuple(cfg.tap_layers or (depth - 1,))
    width = backbone.feature_channels[-1] if is_cnn else backbone.embed_dim
    decoder = REGISTRY.get("decoder", recipe.decoder.name).load()(
        [width], recipe.decoder.channels, dropout=recipe.decoder.dropout
    )
    model = SceneClassifier(backbone, decoder, num_classes, recipe.decoder.dropout)
    apply_adapter(model, recipe.adapter)
    return model
