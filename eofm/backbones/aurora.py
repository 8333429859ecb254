"""Aurora as a latent backbone (Bodnar et al., "A foundation model for the Earth system", 2025).

The model classes, normalisation and checkpoint loader are the ``microsoft-aurora``
package's own. Aurora has no latent API, so eofm builds the full model, loads the
checkpoint strictly through ``Aurora.load_checkpoint_local`` and then swaps the Aurora
decoder (or, for ``latent="encoder"``, also the Swin backbone) for a module that
captures the tokens. Aurora's own forward still does the normalisation, cropping,
static-variable broadcasting and time embeddings.

The latent is returned as ``(B, levels, H/p, W/p, C)``: level 0 is the surface, and
``C`` is ``2D`` after the backbone (it concatenates its U-Net skip) or ``D`` after the
encoder.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import nn

from eofm.backbones.manifest import AuroraManifest
from eofm.errors import EofmError

log = logging.getLogger(__name__)

LatentSource = Literal["backbone", "encoder"]
INSTALL_HINT = 'Aurora backbones need the optional extra: pip install "eofm[aurora]"'


def import_aurora() -> Any:
    """The ``aurora`` package, or an error that says how to install it."""
    try:
        import aurora
    except ImportError as exc:
        raise EofmError(f"{INSTALL_HINT} (import failed: {exc}).") from None
    return aurora


class _CaptureLatent(nn.Module):
    """Stands in for Aurora's decoder: keeps the tokens, returns an empty prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.latent: torch.Tensor | None = None
        self.patch_res: tuple[int, int, int] | None = None

    def forward(self, x: torch.Tensor, batch: Any, *, lead_times: Any, patch_res: Any) -> Any:
        from aurora import Batch

        self.latent, self.patch_res = x, tuple(patch_res)
        return Batch(surf_vars={}, static_vars={}, atmos_vars={}, metadata=batch.metadata)


class _SkipBackbone(nn.Module):
    """Stands in for Aurora's Swin backbone when the encoder's output is the latent."""

    def forward(self, x: torch.Tensor, *, lead_times: Any, patch_res: Any, rollout_step: int):
        return x


class AuroraLatentBackbone(nn.Module):
    """An Aurora model that returns its latent instead of a forecast."""

    def __init__(
        self,
        manifest: AuroraManifest,
        *,
        latent: LatentSource = "backbone",
        checkpoint: str | None = None,
        source: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        aurora = import_aurora()
        cls = getattr(aurora, manifest.model_class, None)
        if not (isinstance(cls, type) and issubclass(cls, aurora.Aurora)):
            raise EofmError(
                f"{manifest.name}: '{manifest.model_class}' is not an Aurora model class of "
                f"microsoft-aurora."
            )
        if latent not in ("backbone", "encoder"):
            raise EofmError(f"backbone.latent must be 'backbone' or 'encoder', got {latent!r}.")
        self.manifest = manifest
        self.latent_source: LatentSource = latent
        self.model = cls(**manifest.kwargs)
        self.source = None
        if checkpoint is not None:
            self._load(checkpoint, source or {"repo": "?", "revision": "?", "file": checkpoint})
        self.model.decoder = _CaptureLatent()  # after loading: the checkpoint has its keys
        if latent == "encoder":
            self.model.backbone = _SkipBackbone()

    def _load(self, path: str, source: dict[str, str]) -> None:
        """Aurora's own loader: weights-only ``torch.load`` and its key adapters, strict."""
        try:
            self.model.load_checkpoint_local(path, strict=True)
        except Exception as exc:  # RuntimeError (keys/shapes), unpickling, AssertionError
            from eofm.backbones._weights import load_failure

            raise EofmError(
                f"Aurora checkpoint {source['file']} from hf://{source['repo']}@"
                f"{source['revision']} does not load into {self.manifest.model_class}: "
                f"{load_failure(exc)}"
            ) from None
        self.source = source

    @property
    def latent_dim(self) -> int:
        return self.manifest.latent_dim(self.latent_source)

    def forward(self, batch: Any) -> torch.Tensor:
        capture = self.model.decoder
        self.model(batch)
        tokens, (levels, h, w) = capture.latent, capture.patch_res
        capture.latent = None
        return tokens.reshape(tokens.shape[0], levels, h, w, tokens.shape[-1])


def load_aurora_backbone(
    manifest: AuroraManifest,
    *,
    latent: LatentSource = "backbone",
    pretrained: bool = True,
    allow_random_init: bool = False,
) -> AuroraLatentBackbone:
    """Download (pinned revision, same Hub loader and failure rules as Prithvi) and load."""
    from eofm.backbones.fetch import fetch_or_random_init
    from eofm.publishing import hub

    def fetch() -> tuple[str, dict[str, str]]:
        path, commit = hub.download_file(manifest.hub_repo, manifest.hub_file, manifest.revision)
        revision = commit or manifest.revision
        return str(path), {
            "repo": manifest.hub_repo,
            "revision": revision,
            "file": manifest.hub_file,
        }

    path, source = (None, None)
    if pretrained:
        path, source = fetch_or_random_init(manifest.name, fetch, allow_random_init)
    model = AuroraLatentBackbone(manifest, latent=latent, checkpoint=path, source=source)
    if source is not None:
        log.info(
            "Loaded Aurora %s from hf://%s@%s", source["file"], source["repo"], source["revision"]
        )
    return model
