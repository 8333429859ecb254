"""Weather backbone ► latent ► per-variable decoders, assembled from a recipe.

``encode`` and ``decode`` are separate so that the latent cache (``eofm.train.cache``) can
run the frozen backbone once and train the decoders from stored latents.
"""

from __future__ import annotations

from typing import Any

import torch

from eofm.models.base import LatentModel
from eofm.recipe import Recipe


class LatentRegressionModel(LatentModel):
    """Predicts normalised target fields ``(B, V, H, W)`` from an Aurora batch."""

    def encode(self, inputs: Any) -> torch.Tensor:
        with self.backbone_grad():
            return self.backbone(inputs)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)

    INPUT_KEYS = ("inputs",)

    def encode_batch(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"latent": self.encode(batch["inputs"])}

    def decode_batch(self, batch: dict) -> torch.Tensor:
        return self.decode(batch["latent"])

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.decode(self.encode(inputs))


def build_latent_regression_model(
    recipe: Recipe,
    *,
    pretrained: bool | None = None,
    allow_random_init: bool = False,
) -> LatentRegressionModel:
    """The model of a regression recipe: Aurora backbone, adapter, one MLP per target."""
    from eofm.adapters import apply_adapter
    from eofm.backbones.aurora import load_aurora_backbone
    from eofm.backbones.loading import resolve_manifest
    from eofm.backbones.manifest import AuroraManifest
    from eofm.decoders.mlp_latent import LatentMLPDecoder
    from eofm.errors import RecipeError

    manifest = resolve_manifest(recipe.backbone.name)
    if not isinstance(manifest, AuroraManifest):
        raise RecipeError(
            f"backbone.name {recipe.backbone.name} is not a weather backbone; regression on "
            "ERA5 needs an Aurora backbone (e.g. aurora_small_pretrained)."
        )
    if recipe.decoder.name != "mlp_latent":
        raise RecipeError(f"decoder.name must be mlp_latent for {manifest.name}.")
    check_variables(recipe, manifest)
    backbone = load_aurora_backbone(
        manifest,
        latent=recipe.backbone.latent,
        pretrained=recipe.backbone.pretrained if pretrained is None else pretrained,
        allow_random_init=allow_random_init,
    )
    decoder = LatentMLPDecoder(
        backbone.latent_dim,
        recipe.task.targets,
        patch_size=manifest.patch_size,
        levels=recipe.decoder.latent_levels,
        num_levels=manifest.latent_levels,
        hidden=recipe.decoder.channels,
        dropout=recipe.decoder.dropout,
    )
    model = LatentRegressionModel(backbone, decoder)
    apply_adapter(model, recipe.adapter)
    return model


def check_variables(recipe: Recipe, manifest: Any) -> None:
    """Every input variable must have a patch embedding in the backbone."""
    from eofm.errors import RecipeError

    for key, known in (
        ("surf_vars", manifest.surf_vars),
        ("atmos_vars", manifest.atmos_vars),
        ("static_vars", manifest.static_vars),
    ):
        unknown = [v for v in getattr(recipe.data, key) if v not in known]
        if unknown:
            raise RecipeError(
                f"data.{key} {unknown}: {manifest.name} has no embedding for them "
                f"(it knows {list(known)})."
            )
