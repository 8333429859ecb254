"""Backbone manifests: everything downstream needs to know about a pretrained encoder.

A manifest is plain data (no torch import): the Hub location, the architecture, the
bands with their normalisation, the ground sample distance, and the layers a decoder taps.
Nothing else in eofm hard-codes a band order or a normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eofm.bands import HLS_PRITHVI_BANDS, SENTINEL2_BANDS_WITHOUT_CIRRUS


@dataclass(frozen=True)
class ViTConfig:
    """The architecture of a Prithvi-style ViT encoder (Jakubik et al., 2023; Szwarcman et al., 2024)."""

    img_size: int = 224
    patch_size: tuple[int, int, int] = (1, 16, 16)
    num_frames: int = 1
    in_chans: int = 6
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    coords_encoding: tuple[str, ...] = ()
    coords_scale_learn: bool = False
    norm_eps: float = 1e-6

    def num_params(self) -> int:
        """Exact parameter count of :class:`~eofm.backbones.prithvi.PrithviEncoder`."""
        d, t, ph, pw = self.embed_dim, *self.patch_size
        hidden = int(d * self.mlp_ratio)
        patch = d * self.in_chans * t * ph * pw + d
        block = (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d) + 4 * d
        scales = len(self.coords_encoding) if self.coords_scale_learn else 0
        return patch + d + self.depth * block + 2 * d + scales


@dataclass(frozen=True)
class BackboneManifest:
    """A registered (or Hub-described) pretrained encoder."""

    name: str
    family: str
    hub_repo: str
    hub_file: str
    revision: str
    config: ViTConfig
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    gsd_m: float
    tap_layers: tuple[int, ...]
    licence: str = ""

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return self.config.patch_size

    @property
    def hub_ref(self) -> str:
        return f"{self.hub_repo}@{self.revision}"

    def band_stats(self) -> dict[str, tuple[float, float]]:
        return {b: (m, s) for b, m, s in zip(self.bands, self.mean, self.std, strict=True)}


# ---------------------------------------------------------------------------------------
# Facts from the official releases: repos, files, configs, bands, normalisation.
# Prithvi-EO-1.0: Jakubik et al., "Foundation Models for Generalist Geospatial AI",
# arXiv:2310.18660. Prithvi-EO-2.0: Szwarcman et al., arXiv:2412.02732.

PRITHVI_V1_MEAN = (775.229, 1080.993, 1228.586, 2497.202, 2204.214, 1610.832)
PRITHVI_V1_STD = (1281.526, 1270.030, 1399.480, 1368.345, 1291.676, 1154.506)
PRITHVI_V2_MEAN = (1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0)
PRITHVI_V2_STD = (2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0)
_TL = ("time", "location")

#: The Hub revision pinned for the official repos. The Hub is unreachable from where eofm
#: is built, so these track ``main``; the commit actually downloaded is recorded in the
#: run dir (``model.json``) so that every run stays reproducible.
OFFICIAL_REVISION = "main"


def _prithvi(
    name: str, repo: str, file: str, *, v1: bool = False, tl: bool = False, **cfg: Any
) -> BackboneManifest:
    config = ViTConfig(coords_encoding=_TL if tl else (), coords_scale_learn=tl, **cfg)
    taps = {12: (2, 5, 8, 11), 24: (5, 11, 17, 23), 32: (7, 15, 23, 31)}[config.depth]
    return BackboneManifest(
        name=name,
        family="prithvi",
        hub_repo=f"ibm-nasa-geospatial/{repo}",
        hub_file=file,
        revision=OFFICIAL_REVISION,
        config=config,
        bands=HLS_PRITHVI_BANDS,
        mean=PRITHVI_V1_MEAN if v1 else PRITHVI_V2_MEAN,
        std=PRITHVI_V1_STD if v1 else PRITHVI_V2_STD,
        gsd_m=30.0,
        tap_layers=taps,
        licence="Apache-2.0",  # the Prithvi-EO repos' cards
    )


PRITHVI_MANIFESTS: tuple[BackboneManifest, ...] = (
    _prithvi(
        "prithvi_eo_v1_100",
        "Prithvi-EO-1.0-100M",
        "Prithvi_EO_V1_100M.pt",
        v1=True,
        num_frames=3,
    ),
    _prithvi(
        "prithvi_eo_v2_tiny_tl",
        "Prithvi-EO-2.0-tiny-TL",
        "Prithvi_EO_V2_tiny_TL.pt",
        tl=True,
        embed_dim=192,
        depth=12,
        num_heads=3,
        num_frames=1,
    ),
    _prithvi(
        "prithvi_eo_v2_100_tl",
        "Prithvi-EO-2.0-100M-TL",
        "Prithvi_EO_V2_100M_TL.pt",
        tl=True,
        num_frames=4,
    ),
    _prithvi(
        "prithvi_eo_v2_300",
        "Prithvi-EO-2.0-300M",
        "Prithvi_EO_V2_300M.pt",
        embed_dim=1024,
        depth=24,
        num_heads=16,
        num_frames=4,
    ),
    _prithvi(
        "prithvi_eo_v2_300_tl",
        "Prithvi-EO-2.0-300M-TL",
        "Prithvi_EO_V2_300M_TL.pt",
        tl=True,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        num_frames=4,
    ),
    _prithvi(
        "prithvi_eo_v2_600",
        "Prithvi-EO-2.0-600M",
        "Prithvi_EO_V2_600M.pt",
        embed_dim=1280,
        depth=32,
        num_heads=16,
        num_frames=4,
        patch_size=(1, 14, 14),
    ),
    _prithvi(
        "prithvi_eo_v2_600_tl",
        "Prithvi-EO-2.0-600M-TL",
        "Prithvi_EO_V2_600M_TL.pt",
        tl=True,
        embed_dim=1280,
        depth=32,
        num_heads=16,
        num_frames=4,
        patch_size=(1, 14, 14),
    ),
)


# Scale-MAE ViT-L/16 (Reed et al., ICCV 2023): the file torchgeo 0.8's
# ScaleMAELarge16_Weights.FMOW_RGB downloads; RGB in 0..255, normalised by /255 and then
# the ImageNet mean and std, i.e. by mean 255*m and std 255*s in 0..255 units.
SCALEMAE_MEAN = (123.675, 116.28, 103.53)
SCALEMAE_STD = (58.395, 57.12, 57.375)
SCALEMAE_BANDS = ("RED", "GREEN", "BLUE")

SCALEMAE_MANIFESTS: tuple[BackboneManifest, ...] = (
    BackboneManifest(
        name="scalemae_large_patch16",
        family="scalemae",
        hub_repo="isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae",
        hub_file="vit_large_patch16_224_fmow_rgb_scalemae-98ed9821.pth",
        revision="9dc7f569424baeb780698352cf6e87638c882123",
        config=ViTConfig(in_chans=3, embed_dim=1024, depth=24, num_heads=16),
        bands=SCALEMAE_BANDS,
        mean=SCALEMAE_MEAN,
        std=SCALEMAE_STD,
        gsd_m=0.3,  # fMoW RGB: about 0.3 m and coarser
        tap_layers=(5, 11, 17, 23),
        licence="CC-BY-NC-4.0",  # the repo's card and torchgeo's weight table: non-commercial
    ),
)


# TerraMind v1 (Jakubik et al., "TerraMind: Large-Scale Generative Multimodality for Earth
# Observation", ICCV 2025, arXiv:2504.11171). Facts from TerraTorch 1.2.11,
# terratorch/models/backbones/terramind/model/terramind_register.py (repos, files, sizes,
# PRETRAINED_BANDS, v1_pretraining_mean/std) and modality_info.py (16 px patches, 224 px):
# the encoder of the raw S2L2A, S1GRD and DEM modalities. Licence: Apache-2.0 (model card).


@dataclass(frozen=True)
class TerraMindConfig(ViTConfig):
    """A TerraMind encoder: the ViT sizes plus its block style and modalities.

    ``swiglu`` and ``bias``: tiny and small have GELU MLPs and biased linears; base and large
    a bias-free SwiGLU MLP and bias-free linears (TerraTorch's ``terramind_v1_*``)."""

    swiglu: bool = False
    bias: bool = True
    modalities: tuple[str, ...] = ("S2L2A", "S1GRD", "DEM")

    def num_params(self) -> int:
        """Exact parameter count of :class:`~eofm.backbones.terramind.TerraMindEncoder`."""
        d = self.embed_dim
        hidden = int(d * self.mlp_ratio)
        if self.swiglu:
            hidden = int(2 * hidden / 3)
        b = 1 if self.bias else 0
        attn = 3 * d * d + 3 * d * b + d * d + d * b
        mlp = (3 if self.swiglu else 2) * d * hidden + (
            (2 * hidden + d) if self.swiglu else (hidden + d)
        ) * b
        block = attn + mlp + 2 * d
        pixels = self.patch_size[-1] * self.patch_size[-2]
        embeds = sum(len(TERRAMIND_MODALITIES[m]) * pixels * d + d for m in self.modalities)
        return embeds + self.depth * block + d


#: Modality -> its bands in the release's channel order (TerraTorch ``PRETRAINED_BANDS``).
TERRAMIND_MODALITIES: dict[str, tuple[str, ...]] = {
    "S2L2A": SENTINEL2_BANDS_WITHOUT_CIRRUS,
    "S1GRD": ("VV", "VH"),
    "DEM": ("DEM",),
}
#: Pretraining normalisation (``v1_pretraining_mean``/``_std``): S2L2A reflectance x 10000,
#: S1GRD backscatter in dB, DEM in metres.
TERRAMIND_MEAN: dict[str, tuple[float, ...]] = {
    "S2L2A": (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234,
              3132.22, 3162.988, 2424.884, 1857.648),
    "S1GRD": (-12.599, -20.293),
    "DEM": (670.665,),
}  # fmt: skip
TERRAMIND_STD: dict[str, tuple[float, ...]] = {
    "S2L2A": (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918,
              1753.829, 1797.379, 1434.261, 1334.311),
    "S1GRD": (5.195, 5.890),
    "DEM": (951.272,),
}  # fmt: skip
#: TerraMind v1 on Sentinel-2 L1C (``untok_sen2l1c@224``, the 13 L1C bands with CIRRUS), for
#: data stored as L1C such as Sen1Floods11's S2Hand chips.
TERRAMIND_S2L1C_MEAN = (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849,
                        3040.56, 3306.481, 1473.847, 506.07, 2472.825, 1838.929)  # fmt: skip
TERRAMIND_S2L1C_STD = (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131,
                       1679.732, 1727.26, 1024.687, 442.165, 1331.411, 1160.419)  # fmt: skip


def terramind_manifest(
    name: str, repo: str, revision: str, file: str, config: TerraMindConfig
) -> BackboneManifest:
    """The manifest of a TerraMind encoder over ``config.modalities``."""
    mods = config.modalities
    taps = tuple(sorted({max(0, config.depth * k // 4 - 1) for k in (1, 2, 3, 4)}))
    return BackboneManifest(
        name=name,
        family="terramind",
        hub_repo=repo,
        hub_file=file,
        revision=revision,
        config=config,
        bands=tuple(b for m in mods for b in TERRAMIND_MODALITIES[m]),
        mean=tuple(v for m in mods for v in TERRAMIND_MEAN[m]),
        std=tuple(v for m in mods for v in TERRAMIND_STD[m]),
        gsd_m=10.0,
        tap_layers=taps,
        licence="Apache-2.0",
    )


def _terramind(size: str, dim: int, depth: int, heads: int, large_style: bool) -> BackboneManifest:
    config = TerraMindConfig(
        in_chans=15,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        swiglu=large_style,
        bias=not large_style,
    )
    return terramind_manifest(
        f"terramind_v1_{size}",
        f"ibm-esa-geospatial/TerraMind-1.0-{size}",
        OFFICIAL_REVISION,
        f"TerraMind_v1_{size}.pt",
        config,
    )


TERRAMIND_MANIFESTS: tuple[BackboneManifest, ...] = (
    _terramind("tiny", 192, 12, 3, False),
    _terramind("small", 384, 12, 6, False),
    _terramind("base", 768, 12, 12, True),
    _terramind("large", 1024, 24, 16, True),
)


def terramind_manifest_from_cfg(
    name: str, repo: str, revision: str, file: str, cfg: dict[str, Any]
) -> BackboneManifest:
    """A TerraMind manifest from a ``config.json`` ``pretrained_cfg`` with
    ``architecture: terramind`` (sizes, ``swiglu``, ``bias``, ``modalities``)."""
    from eofm.errors import EofmError

    where = f"config.json of hf://{repo}@{revision}"
    modalities = tuple(cfg.get("modalities", ("S2L2A", "S1GRD", "DEM")))
    unknown = [m for m in modalities if m not in TERRAMIND_MODALITIES]
    if unknown or not modalities:
        raise EofmError(
            f"{where}: TerraMind modalities {unknown or '[]'} are not among "
            f"{list(TERRAMIND_MODALITIES)}."
        )
    config = TerraMindConfig(
        img_size=int(cfg.get("img_size", 224)),
        in_chans=sum(len(TERRAMIND_MODALITIES[m]) for m in modalities),
        embed_dim=int(cfg["embed_dim"]),
        depth=int(cfg["depth"]),
        num_heads=int(cfg["num_heads"]),
        mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
        swiglu=bool(cfg.get("swiglu", False)),
        bias=bool(cfg.get("bias", True)),
        modalities=modalities,
    )
    return terramind_manifest(f"hf://{repo}", repo, revision, file, config)


def manifest_from_pretrained_cfg(
    name: str, repo: str, revision: str, file: str, cfg: dict[str, Any]
) -> BackboneManifest:
    """Build a manifest from a Hub repo's ``config.json`` ``pretrained_cfg`` block."""
    from eofm.errors import EofmError

    where = f"config.json of hf://{repo}@{revision}"
    if cfg.get("architecture") == "terramind":
        missing = [k for k in ("embed_dim", "depth", "num_heads") if k not in cfg]
        if missing:
            raise EofmError(f"{where} lacks pretrained_cfg key '{missing[0]}'.")
        return terramind_manifest_from_cfg(name, repo, revision, file, cfg)
    required = ("embed_dim", "depth", "num_heads", "patch_size", "in_chans")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise EofmError(f"{where} lacks pretrained_cfg key '{missing[0]}'.")
    patch = cfg["patch_size"]
    patch = (1, patch, patch) if isinstance(patch, int) else tuple(patch)
    if len(patch) == 2:
        patch = (1, *patch)
    coords = tuple(cfg.get("coords_encoding") or ())
    config = ViTConfig(
        img_size=int(cfg.get("img_size", 224)),
        patch_size=patch,
        num_frames=int(cfg.get("num_frames", 1)),
        in_chans=int(cfg["in_chans"]),
        embed_dim=int(cfg["embed_dim"]),
        depth=int(cfg["depth"]),
        num_heads=int(cfg["num_heads"]),
        mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
        coords_encoding=coords,
        coords_scale_learn=bool(cfg.get("coords_scale_learn", False)) and bool(coords),
    )
    family = str(cfg.get("architecture", "prithvi"))
    if family not in ("prithvi", "scalemae"):
        raise EofmError(f"{where}: architecture {family!r} is not prithvi, scalemae or terramind.")
    scalemae = family == "scalemae"
    bands = tuple(
        _hls_band_name(b)
        for b in cfg.get("bands", SCALEMAE_BANDS if scalemae else HLS_PRITHVI_BANDS)
    )
    mean = tuple(float(v) for v in cfg.get("mean", SCALEMAE_MEAN if scalemae else PRITHVI_V2_MEAN))
    std = tuple(float(v) for v in cfg.get("std", SCALEMAE_STD if scalemae else PRITHVI_V2_STD))
    if not (len(bands) == len(mean) == len(std) == config.in_chans):
        raise EofmError(
            f"{where}: bands ({len(bands)}), mean ({len(mean)}), std ({len(std)}) and "
            f"in_chans ({config.in_chans}) disagree."
        )
    depth = config.depth
    taps = tuple(sorted({max(0, depth * k // 4 - 1) for k in (1, 2, 3, 4)}))
    return BackboneManifest(
        name=f"hf://{repo}",
        family=family,
        hub_repo=repo,
        hub_file=file,
        revision=revision,
        config=config,
        bands=bands,
        mean=mean,
        std=std,
        gsd_m=float(cfg.get("gsd", 30.0)),
        tap_layers=taps,
    )


_HLS_ALIASES = {
    "B02": "BLUE",
    "B03": "GREEN",
    "B04": "RED",
    "B05": "NIR_NARROW",
    "B8A": "NIR_NARROW",
    "B06": "SWIR_1",
    "B07": "SWIR_2",
    "NIR": "NIR_NARROW",
    "SWIR1": "SWIR_1",
    "SWIR2": "SWIR_2",
}


def _hls_band_name(name: str) -> str:
    """Official config.json band names (``B02`` or ``BLUE``) -> eofm band names."""
    from eofm.bands import check_band_names

    upper = str(name).upper()
    return check_band_names([_HLS_ALIASES.get(upper, upper)], where="config.json bands")[0]


# ---------------------------------------------------------------------------------------
# Aurora (Bodnar et al., "A foundation model for the Earth system", Nature 641, 2025):
# the package's own classes; eofm records where the weights live.
#: ``default_checkpoint_revision`` of microsoft-aurora 2.0.1 for both checkpoints.
AURORA_REVISION = "0be7e57c685dac86b78c4a19a3ab149d13c6a3dd"


@dataclass(frozen=True)
class AuroraManifest:
    """A pretrained Aurora: the ``aurora`` class to build, its kwargs, and its checkpoint.

    ``kwargs`` are passed to the class unchanged (a Hub repo's ``config.json`` may set
    them, e.g. for a small test model); ``embed_dim`` and ``patch_size`` repeat the
    values the class uses so that nothing downstream has to import Aurora to know them.
    """

    name: str
    hub_repo: str
    hub_file: str
    revision: str
    model_class: str
    embed_dim: int
    patch_size: int = 4
    latent_levels: int = 4
    kwargs: dict[str, Any] = field(default_factory=dict)
    params_millions: float = 0.0
    surf_vars: tuple[str, ...] = ("2t", "10u", "10v", "msl")
    static_vars: tuple[str, ...] = ("lsm", "z", "slt")
    atmos_vars: tuple[str, ...] = ("z", "u", "v", "t", "q")
    family: str = "aurora"
    licence: str = "MIT"  # microsoft/aurora's card

    @property
    def hub_ref(self) -> str:
        return f"{self.hub_repo}@{self.revision}"

    @property
    def bands(self) -> tuple[str, ...]:
        """The input variables (what ``eofm backbones`` lists for a weather model)."""
        return self.surf_vars + tuple(f"{v}(pl)" for v in self.atmos_vars)

    def latent_dim(self, source: str) -> int:
        """Channels of the latent: the backbone concatenates its skip, doubling D."""
        return 2 * self.embed_dim if source == "backbone" else self.embed_dim


AURORA_MANIFESTS: tuple[AuroraManifest, ...] = (
    AuroraManifest(
        name="aurora_small_pretrained",
        hub_repo="microsoft/aurora",
        hub_file="aurora-0.25-small-pretrained.ckpt",
        revision=AURORA_REVISION,
        model_class="AuroraSmallPretrained",
        embed_dim=256,
        params_millions=112.8,
    ),
    AuroraManifest(
        name="aurora_pretrained",
        hub_repo="microsoft/aurora",
        hub_file="aurora-0.25-pretrained.ckpt",
        revision=AURORA_REVISION,
        model_class="AuroraPretrained",
        embed_dim=512,
        params_millions=1300.0,
    ),
)


def aurora_manifest_from_config(
    name: str, repo: str, revision: str, file: str, cfg: dict[str, Any]
) -> AuroraManifest:
    """A manifest from a Hub repo's ``config.json`` ``{"aurora": {"class": ..., "kwargs": ...}}``."""
    from eofm.errors import EofmError

    where = f"config.json of hf://{repo}@{revision}"
    model_class = cfg.get("class")
    kwargs = cfg.get("kwargs", {})
    if not isinstance(model_class, str) or not isinstance(kwargs, dict):
        raise EofmError(f"{where}: 'aurora' needs a 'class' name and a 'kwargs' mapping.")
    defaults = {"AuroraSmallPretrained": 256}.get(model_class, 512)
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return AuroraManifest(
        name=name,
        hub_repo=repo,
        hub_file=file,
        revision=revision,
        model_class=model_class,
        embed_dim=int(kwargs.get("embed_dim", defaults)),
        patch_size=int(kwargs.get("patch_size", 4)),
        latent_levels=int(kwargs.get("latent_levels", 4)),
        kwargs=tuples,
        surf_vars=tuple(kwargs.get("surf_vars", ("2t", "10u", "10v", "msl"))),
        static_vars=tuple(kwargs.get("static_vars", ("lsm", "z", "slt"))),
        atmos_vars=tuple(kwargs.get("atmos_vars", ("z", "u", "v", "t", "q"))),
    )


#: Files of a Prithvi WxC release beside its weights: the input statistics (mean and
#: standard deviation per variable and level) and the anomaly variances that scale the
#: outputs, all read by the ``prithviwxc`` package's own readers.
WXC_SCALER_FILES = {
    "musigma_surface": "climatology/musigma_surface.nc",
    "musigma_vertical": "climatology/musigma_vertical.nc",
    "anomaly_variance_surface": "climatology/anomaly_variance_surface.nc",
    "anomaly_variance_vertical": "climatology/anomaly_variance_vertical.nc",
}


@dataclass(frozen=True)
class WxCManifest:
    """A pretrained Prithvi WxC (Schmude et al., "Prithvi WxC: Foundation Model for Weather
    and Climate", 2024): its Hub repo, ``config.yaml`` (the ``params`` of the model), the
    weights and the scaler files. The architecture is read from ``config.yaml`` when the
    model is built; nothing downstream needs torch to know the repo's layout."""

    name: str
    hub_repo: str
    revision: str
    hub_file: str
    config_file: str = "config.yaml"
    scaler_files: tuple[tuple[str, str], ...] = tuple(WXC_SCALER_FILES.items())
    params_millions: float = 0.0
    family: str = "prithvi_wxc"
    patch_size: int = 2
    licence: str = "MIT"  # the Prithvi-WxC repo's card

    @property
    def hub_ref(self) -> str:
        return f"{self.hub_repo}@{self.revision}"

    @property
    def bands(self) -> tuple[str, ...]:
        return ("MERRA-2 surface and vertical variables (config.yaml)",)


WXC_MANIFESTS: tuple[WxCManifest, ...] = (
    WxCManifest(
        name="prithvi_wxc_2300m",
        hub_repo="ibm-nasa-geospatial/Prithvi-WxC-1.0-2300M",
        # The release's commit could not be looked up from this machine (no Hub): the
        # branch is followed and model.json records the commit actually downloaded.
        revision="main",
        hub_file="prithvi.wxc.2300m.v1.pt",
        params_millions=2300.0,
    ),
)
