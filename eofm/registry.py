"""The one registry of eofm: backbones, decoders, task families and datasets, by name.

Entries are declared as data with lazy ``module:attribute`` targets, so listing or
validating names never imports torch, and registration has no import side effects.
Adding a component is one new module plus one line below.
"""

from __future__ import annotations

import difflib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from eofm.errors import EofmError

Kind = Literal["backbone", "decoder", "family", "dataset"]


def load_target(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    return pkgutil.resolve_name(target)


@dataclass(frozen=True)
class Entry:
    """One registered component: ``target`` is ``"package.module:attribute"``.

    ``meta`` holds facts about the entry; a string value of the form ``module:attr``
    is loaded on demand with :meth:`load_meta`.
    """

    kind: Kind
    name: str
    target: str
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        return load_target(self.target)

    def load_meta(self, key: str) -> Any:
        return load_target(self.meta[key])


class Registry:
    """Name -> :class:`Entry`, per kind."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self._prefixes: dict[tuple[str, str], Entry] = {}

    def add(self, kind: Kind, name: str, target: str, **meta: Any) -> None:
        key = (kind, name)
        if key in self._entries:
            raise ValueError(f"{kind} {name!r} is registered twice")
        self._entries[key] = Entry(kind, name, target, meta)

    def add_prefix(self, kind: Kind, prefix: str, target: str, **meta: Any) -> None:
        """Names ``<prefix><anything>`` resolve through ``target`` (an object with
        ``manifest(name)`` and ``build(...)``), e.g. every torchgeo weight at once;
        ``meta["catalogue"]`` lists the names it takes without importing torch."""
        self._prefixes[(kind, prefix)] = Entry(kind, prefix, target, meta)

    def prefix_entries(self, kind: Kind) -> list[Entry]:
        return [e for (k, _), e in self._prefixes.items() if k == kind]

    def prefixes(self, kind: Kind) -> list[str]:
        return [p for (k, p) in self._prefixes if k == kind]

    def resolver(self, kind: Kind, name: str) -> Any | None:
        """The resolver whose prefix starts ``name``, or ``None``."""
        for (k, prefix), entry in self._prefixes.items():
            if k == kind and name.startswith(prefix):
                return entry.load()
        return None

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
    reg = Registry()
    # Backbones: one entry per manifest (facts of the official releases).
    for manifests, encoder in (
        ("PRITHVI_MANIFESTS", "eofm.backbones.prithvi:PrithviEncoder"),
        ("SCALEMAE_MANIFESTS", "eofm.backbones.scalemae:ScaleMAEEncoder"),
        ("TERRAMIND_MANIFESTS", "eofm.backbones.terramind:TerraMindEncoder"),
        ("AURORA_MANIFESTS", "eofm.backbones.aurora:AuroraLatentBackbone"),
        ("WXC_MANIFESTS", "eofm.backbones.prithvi_wxc:WxCLatentBackbone"),
    ):
        for manifest in load_target(f"eofm.backbones.manifest:{manifests}"):
            reg.add("backbone", manifest.name, encoder, manifest=manifest)
    reg.add_prefix(
        "backbone",
        "torchgeo:",
        "eofm.backbones.torchgeo_backbone:RESOLVER",
        catalogue="eofm.backbones.torchgeo_catalogue:catalogue_rows",
    )
    # Decoders: every class takes (in_channels, channels, *, patch_size, **options).
    reg.add("decoder", "progressive", "eofm.decoders.progressive:ProgressiveDecoder", input="maps")
    reg.add("decoder", "upernet", "eofm.decoders.upernet:UperNetDecoder", input="maps")
    reg.add("decoder", "linear", "eofm.decoders.linear:LinearDecoder", input="maps")
    reg.add("decoder", "unet", "eofm.decoders.unet:UNetDecoder", input="maps")
    reg.add("decoder", "mlp_latent", "eofm.decoders.mlp_latent:LatentMLPDecoder", input="latent")
    reg.add(
        "decoder",
        "pixel_shuffle",
        "eofm.decoders.pixel_shuffle:PixelShuffleDecoder",
        input="coarse",
    )
    reg.add("decoder", "lstm", "eofm.decoders.lstm:MesogeosLSTM", input="datacube")
    reg.add(
        "decoder", "transformer", "eofm.decoders.transformer:MesogeosTransformer", input="datacube"
    )
    reg.add("decoder", "gru", "eofm.decoders.gru:TemporalGRU", input="datacube")
    reg.add("decoder", "loan", "eofm.decoders.loan:LOAN", input="datacube")
    reg.add("decoder", "pooled_linear", "eofm.decoders.pooled:PooledLinearHead", input="pooled")
    reg.add("decoder", "pooled_mlp", "eofm.decoders.pooled:PooledMLPHead", input="pooled")
    # Task families: what is predicted, from which model, scored how, written where.
    reg.add("family", "segmentation", "eofm.families.segmentation:SegmentationFamily")
    reg.add("family", "regression", "eofm.families.regression:RegressionFamily")
    reg.add("family", "classification", "eofm.families.classification:ClassificationFamily")
    reg.add("family", "downscaling", "eofm.families.downscaling:DownscalingFamily")
    reg.add(
        "family",
        "scene_classification",
        "eofm.families.scene_classification:SceneClassificationFamily",
    )
    reg.add("family", "pixel_regression", "eofm.families.pixel_regression:PixelRegressionFamily")
    # Datasets: the datamodule and the config dataclass of its ``data`` keys.
    reg.add(
        "dataset",
        "sen1floods11",
        "eofm.data.sen1floods11:Sen1Floods11DataModule",
        config="eofm.data.sen1floods11_config:Sen1Floods11Config",
    )
    reg.add(
        "dataset",
        "hls_burn_scars",
        "eofm.data.hls_burn_scars:HLSBurnScarsDataModule",
        config="eofm.data.hls_burn_scars_config:HLSBurnScarsConfig",
    )
    reg.add("dataset", "multi_temporal_crop", "eofm.data.multi_temporal_crop:MultiTemporalCropDataModule", config="eofm.data.multi_temporal_crop_config:MultiTemporalCropConfig")  # fmt: skip
    reg.add(
        "dataset",
        "firecube",
        "eofm.data.firecube:FireCubeDataModule",
        config="eofm.data.firecube_config:FireCubeConfig",
    )
    reg.add(
        "dataset",
        "mesogeos",
        "eofm.data.mesogeos:MesogeosDataModule",
        config="eofm.data.mesogeos_config:MesogeosConfig",
    )
    reg.add(
        "dataset",
        "era5",
        "eofm.data.era5:ERA5DataModule",
        config="eofm.data.era5_config:ERA5Config",
    )
    reg.add(
        "dataset",
        "merra2_downscaling",
        "eofm.data.merra2_downscaling:MERRA2DownscalingDataModule",
        config="eofm.data.merra2_downscaling_config:MERRA2DownscalingConfig",
    )
    reg.add(
        "dataset",
        "era5_downscaling",
        "eofm.data.era5_downscaling:ERA5DownscalingDataModule",
        config="eofm.data.era5_downscaling_config:ERA5DownscalingConfig",
    )
    reg.add(
        "dataset",
        "eurosat",
        "eofm.data.eurosat:EuroSATDataModule",
        config="eofm.data.eurosat_config:EuroSATConfig",
    )
    reg.add(
        "dataset",
        "bigearthnet",
        "eofm.data.bigearthnet:BigEarthNetDataModule",
        config="eofm.data.bigearthnet_config:BigEarthNetConfig",
    )
    reg.add(
        "dataset",
        "geotiff_targets",
        "eofm.data.geotiff_targets:GeoTIFFTargetsDataModule",
        config="eofm.data.geotiff_targets_config:GeoTIFFTargetsConfig",
        regression=True,
    )
    reg.add(
        "dataset",
        "biomassters",
        "eofm.data.biomassters:BioMasstersDataModule",
        config="eofm.data.biomassters_config:BioMasstersConfig",
        regression=True,
    )
    return reg


REGISTRY = _build()


def backbone_manifest(name: str) -> Any:
    """The manifest (Prithvi or Aurora) registered as ``name``."""
    return REGISTRY.get("backbone", name).meta["manifest"]


def manifest_for_repo(repo_id: str, filename: str | None = None) -> Any | None:
    """The registered manifest whose Hub repo is ``repo_id`` (case-sensitive), if any;
    with ``filename``, the one of that file (a repo may hold several models)."""
    found = [
        e.meta["manifest"]
        for e in REGISTRY.entries("backbone")
        if e.meta["manifest"].hub_repo == repo_id
    ]
    exact = [m for m in found if filename and m.hub_file == filename]
    return (exact or found or [None])[0]
