"""The one registry of eofm: backbones, decoders, tasks and datasets, by name.

Entries are declared as data with a lazy ``module:attribute`` target, so listing or
validating names never imports torch. Registration has no import side effects.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from eofm.errors import EofmError

Kind = Literal["backbone", "decoder", "task", "dataset"]


@dataclass(frozen=True)
class Entry:
    """One registered component: ``target`` is ``"package.module:attribute"``."""

    kind: Kind
    name: str
    target: str
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """Name -> :class:`Entry`, per kind."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}

    def add(self, kind: Kind, name: str, target: str, summary: str = "", **meta: Any) -> None:
        key = (kind, name)
        if key in self._entries:
            raise ValueError(f"{kind} {name!r} is registered twice")
        self._entries[key] = Entry(kind, name, target, summary, meta)

    def names(self, kind: Kind) -> list[str]:
        return [name for (k, name) in self._entries if k == kind]

    def entries(self, kind: Kind) -> Iterator[Entry]:
        return (e for (k, _), e in self._entries.items() if k == kind)

    def get(self, kind: Kind, name: str) -> Entry:
        try:
            return self._entries[(kind, name)]
        except KeyError:
            names = self.names(kind)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise EofmError(
                f"Unknown {kind} '{name}'.{hint} Registered: {', '.join(names)}."
            ) from None


def _build() -> Registry:
    from eofm.backbones.manifest import AURORA_MANIFESTS, PRITHVI_MANIFESTS

    reg = Registry()
    for manifest in PRITHVI_MANIFESTS:
        reg.add(
            "backbone",
            manifest.name,
            "eofm.backbones.prithvi:PrithviEncoder",
            "Prithvi-EO ViT encoder",
            manifest=manifest,
        )
    for aurora in AURORA_MANIFESTS:
        reg.add(
            "backbone",
            aurora.name,
            "eofm.backbones.aurora:AuroraLatentBackbone",
            "Aurora weather model (microsoft-aurora), latent after its backbone",
            manifest=aurora,
        )
    reg.add(
        "decoder",
        "progressive",
        "eofm.decoders.progressive:ProgressiveDecoder",
        "CPU-lean progressive upsampling with depthwise-separable convs",
    )
    reg.add(
        "decoder", "upernet", "eofm.decoders.upernet:UperNetDecoder", "UPerNet (Xiao et al., 2018)"
    )
    reg.add(
        "decoder",
        "mlp_latent",
        "eofm.decoders.mlp_latent:LatentMLPDecoder",
        "one shallow MLP per variable on a weather model's latent (Lehmann et al., 2025)",
    )
    reg.add(
        "task",
        "regression",
        "eofm.tasks.regression:RegressionTask",
        "gridded regression: masked MSE, lat-weighted RMSE, MAE, bias, ACC",
    )
    reg.add(
        "task",
        "segmentation",
        "eofm.tasks.segmentation:SegmentationTask",
        "pixel classification: CE/dice, IoU/F1/accuracy",
    )
    reg.add(
        "dataset",
        "sen1floods11",
        "eofm.data.sen1floods11:Sen1Floods11DataModule",
        "Sen1Floods11 hand-labelled chips (S1Hand/S2Hand/LabelHand)",
    )
    reg.add(
        "dataset",
        "era5",
        "eofm.data.era5:ERA5DataModule",
        "ERA5 as per-variable NetCDF files or a WeatherBench2-style zarr -> Aurora batches",
    )
    return reg


REGISTRY = _build()


def backbone_manifest(name: str) -> Any:
    """The :class:`~eofm.backbones.manifest.BackboneManifest` registered as ``name``."""
    return REGISTRY.get("backbone", name).meta["manifest"]


def manifest_for_repo(repo_id: str) -> Any | None:
    """The registered manifest whose Hub repo is ``repo_id`` (case-sensitive), if any."""
    for entry in REGISTRY.entries("backbone"):
        if entry.meta["manifest"].hub_repo == repo_id:
            return entry.meta["manifest"]
    return None
