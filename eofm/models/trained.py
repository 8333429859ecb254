"""A trained model in eval mode, with what inference must reproduce from training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the network may be an onnxruntime graph: no torch import here
    from torch import nn


@dataclass
class TrainedModel:
    """The network in eval mode plus what inference must reproduce from training."""

    model: nn.Module  # or an exported graph called the same way (models.onnx_model)
    recipe: Any
    bands: list[str]
    mean: list[float]
    std: list[float]
    class_names: list[str]
    patch_size: int
    source: str
    manifest: dict

    @property
    def temperature(self) -> float:
        """The logits' divisor that ``eofm calibrate`` fitted (1: not calibrated)."""
        return float((self.manifest.get("calibration") or {}).get("temperature", 1.0))


def trained_from_manifest(
    model: nn.Module, recipe: Any, manifest: dict, source: str
) -> TrainedModel:
    """Wrap a loaded model with what a run's ``model.json`` (or a Hub ``config.json``) says."""
    model.eval()
    return TrainedModel(
        model=model,
        recipe=recipe,
        bands=list(manifest["bands"]),
        mean=[float(v) for v in manifest["mean"]],
        std=[float(v) for v in manifest["std"]],
        class_names=list(manifest["task"].get("class_names", [])),
        patch_size=int(manifest["backbone"]["patch_size"][-1]),
        source=source,
        manifest=manifest,
    )
