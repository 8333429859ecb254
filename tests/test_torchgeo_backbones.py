"""``torchgeo:<WeightsEnum member>`` backbones: served offline to torchgeo's own loader.

Each weight's release file (random tensors in the release's layout: the builder's model
less the classifier keys the release lacks) is put in torch hub's cache under the file
name of the weight's pinned URL, exactly where ``weights.get_state_dict`` looks first.
torch hub checks the SHA-256 prefix only when it downloads, so the cached file is used as
is. The reference is torchgeo's builder itself, given the same member.

Copernicus-FM, Panopticon and CROMA releases are written in their own layouts: Copernicus-FM
less its pooled head; Panopticon as timm's DINOv2 at 518 px plus ``mask_token`` (the layout
torchgeo's ``panopticon_vitb14`` prepares); CROMA as one state dict per part.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import torch

from eofm.backbones.torchgeo_backbone import licence_of
from eofm.bands import SENTINEL2_L1C_BANDS
from eofm.errors import EofmError
from tests.test_training import overrides

RGB = ["RED", "GREEN", "BLUE"]
S2_ALL = list(SENTINEL2_L1C_BANDS)
S2_NO_CIRRUS = [b for b in S2_ALL if b != "CIRRUS"]

#: (weight, the data bands its fit uses): 6 weights of 4 architectures.
WEIGHTS = [
    ("ResNet18_Weights.SENTINEL2_RGB_MOCO", RGB),
    ("ResNet18_Weights.SENTINEL2_ALL_MOCO", S2_ALL),
    ("ResNet50_Weights.SENTINEL2_RGB_MOCO", RGB),
    ("ViTSmall16_Weights.SENTINEL2_ALL_DINO", S2_ALL),
    ("Swin_V2_T_Weights.SENTINEL2_SI_RGB_SATLAS", RGB),
    ("DOFABase16_Weights.DOFA_MAE", RGB),
]
#: Copernicus-FM, Panopticon and CROMA (one weight each): (weight, the data bands of the
#: feature check, input size of the feature check). Panopticon's reference is fixed at
#: 224 px (its builder's default image size).
SPECTRAL_WEIGHTS = [
    ("CopernicusFM_Base_Weights.CopernicusFM_ViT", ["BLUE", "RED", "NIR_BROAD", "VV", "VH"], 64),
    ("Panopticon_Weights.VIT_BASE14", ["RED", "GREEN", "BLUE", "SWIR_1", "VV", "VH"], 224),
    ("CROMABase_Weights.CROMA_VIT", [*reversed(S2_NO_CIRRUS), "VH", "VV"], 64),
]
#: Keys the ResNet, ViT and DOFA releases lack (the builders regenerate them).
NOT_RELEASED = ("fc.", "head.", "fc_norm.")


def _weight(name: str):
    from eofm.backbones.torchgeo_backbone import get_weight

    return get_weight(f"torchgeo:{name}")


def _builder(weight, weights=None):
    """torchgeo's own builder of the weight's architecture."""
    from torchgeo.models import get_model

    return get_model(weight.meta["model"], weights)


def _write_release(cache: Path, name: str) -> None:
    weight = _weight(name)
    target = cache / "hub" / "checkpoints" / PurePosixPath(urlparse(weight.url).path).name
    if target.exists():
        return
    from torchgeo.models import get_model

    torch.manual_seed(0)
    arch = weight.meta["model"]
    if arch.startswith(("copernicusfm", "panopticon")) or "CROMA" in name:
        torch.save(_spectral_release(name, arch), target)
        return
    if arch.startswith(("resnet", "vit")):
        model = get_model(arch, None, in_chans=weight.meta["in_chans"])
    else:
        model = get_model(arch, None)
    if arch.startswith("swin"):  # torchgeo's builder swaps the first conv the same way
        first = model.features[0][0]
        model.features[0][0] = torch.nn.Conv2d(weight.meta["in_chans"], first.out_channels, 4, 4)
    dropped = () if arch.startswith("swin") else NOT_RELEASED  # Satlas releases keep the head
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(dropped)}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, target)


def _spectral_release(name: str, arch: str) -> dict:
    """Random weights in the Copernicus-FM / Panopticon / CROMA release layouts; tensors
    the builders start at zero (tokens, Panopticon's SAR channel table, position tables)
    are random too, so that they count in the feature check."""
    from torchgeo.models import get_model

    model = get_model("croma_base" if "CROMA" in name else arch)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and not tensor.any():
                tensor.normal_(std=0.02)
    if "CROMA" in name:  # torchgeo's croma.load_weights reads one state dict per part
        parts = ("s1_encoder", "s1_GAP_FFN", "s2_encoder", "s2_GAP_FFN", "joint_encoder")
        return {p: getattr(model, p).state_dict() for p in parts}
    if arch.startswith("copernicusfm"):  # the builder lets fc_norm and head miss
        return {k: v for k, v in model.state_dict().items() if not k.startswith("fc_norm.")}
    state = dict(model.model.state_dict())  # timm's DINOv2 at its 518 px pretraining size
    dim = state["cls_token"].shape[-1]
    state["pos_embed"] = torch.randn(1, 1 + 37 * 37, dim) * 0.02
    state["mask_token"] = torch.zeros(1, dim)
    return state


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """torch hub's cache holding every weight of :data:`WEIGHTS` in its release layout
    (the spectral ones are written when a test first asks for them: they are large)."""
    cache = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(cache))
        for name, _ in WEIGHTS:
            _write_release(cache, name)
        yield cache


def test_the_registry_has_one_resolver_line_for_every_torchgeo_weight() -> None:
    from eofm.registry import REGISTRY

    assert REGISTRY.prefixes("backbone") == ["torchgeo:"]
    assert not [n for n in REGISTRY.names("backbone") if n.startswith("torchgeo:")]


def test_manifest_comes_from_the_weights_meta() -> None:
    from eofm.backbones.loading import resolve_manifest

    m = resolve_manifest("torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO")
    assert m.bands == ("VV", "VH") and m.architecture == "resnet"
    assert m.mean == pytest.approx((-12.59, -20.26)) and m.std == pytest.approx((5.26, 5.91))
    assert m.revision == "e79862c667853c10a709bdd77ea8ffbad0e0f1cf"
    assert m.hub_file == "resnet50_sentinel1_all_moco-906e4356.pth"
    assert m.licence == "CC-BY-4.0"
    swin = resolve_manifest("torchgeo:Swin_V2_T_Weights.SENTINEL2_SI_MS_SATLAS")
    assert swin.bands[:3] == ("RED", "GREEN", "BLUE") and swin.bands[-1] == "SWIR_2"
    assert swin.std == pytest.approx((255,) * 3 + (8160,) * 6)
    # SeCo's three Normalize steps compose into one mean/std per band
    seco = resolve_manifest("torchgeo:ResNet18_Weights.SENTINEL2_RGB_SECO")
    x = torch.tensor([50.0, 60.0, 70.0])
    reference = _weight("ResNet18_Weights.SENTINEL2_RGB_SECO").transforms[2:](
        x.clone().view(1, 3, 1, 1)
    )
    ours = (x - torch.tensor(seco.mean)) / torch.tensor(seco.std)
    assert torch.allclose(ours, reference.flatten(), atol=1e-5)
    from eofm.backbones.torchgeo_backbone import licence_of

    assert licence_of(_weight("ScaleMAELarge16_Weights.FMOW_RGB")) == "CC-BY-NC-4.0"


def test_unknown_weight_is_a_clear_error_with_a_suggestion() -> None:
    from eofm.backbones.loading import resolve_manifest

    with pytest.raises(EofmError, match="ResNet50_Weights.SENTINEL2_ALL_MOCO"):
        resolve_manifest("torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOC")
    with pytest.raises(EofmError, match="Landsat bands"):
        resolve_manifest("torchgeo:ResNet18_Weights.LANDSAT_TM_TOA_MOCO")


def test_wavelength_model_takes_its_wavelengths_from_the_band_table() -> None:
    from eofm.backbones.loading import load_backbone

    dofa = load_backbone("torchgeo:DOFABase16_Weights.DOFA_MAE", bands=RGB, pretrained=False)
    assert dofa.wavelengths.tolist() == pytest.approx([0.665, 0.560, 0.490])
    with pytest.raises(EofmError, match="'VV' has none in eofm's band table"):
        load_backbone("torchgeo:DOFABase16_Weights.DOFA_MAE", bands=["VV", "RED"], pretrained=False)


def test_a_missing_file_is_an_error_unless_random_init_is_allowed(tmp_path, monkeypatch) -> None:
    from eofm.backbones.loading import load_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    bad = tmp_path / "hub" / "checkpoints" / "resnet18_sentinel2_rgb_moco-e3a335e3.pth"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")  # found in the cache, so nothing is downloaded
    spec = "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO"
    with pytest.raises(EofmError, match="could not be loaded.*--allow-random-init"):
        load_backbone(spec, bands=RGB, pretrained=True)
    backbone = load_backbone(spec, bands=RGB, pretrained=True, allow_random_init=True)
    assert backbone.source is None


@pytest.mark.parametrize(("name", "bands"), WEIGHTS, ids=[w for w, _ in WEIGHTS])
def test_features_equal_torchgeos_own_model(torch_home, name: str, bands: list[str]) -> None:
    from eofm.backbones.loading import load_backbone

    weight = _weight(name)
    reference = _builder(weight, weight).eval()  # torchgeo's loader reads the cached file
    own = weight.meta.get("bands")
    ours = load_backbone(f"torchgeo:{name}", bands=None if own else bands, pretrained=True).eval()
    assert ours.source["revision"] in weight.url
    size = 64 if weight.meta["model"].startswith(("resnet", "swin")) else 224
    torch.manual_seed(1)
    x = torch.randn(2, len(own or bands), size, size)
    with torch.no_grad():
        features, grid = ours(x)
        model = weight.meta["model"]
        if model.startswith("resnet"):
            expected = reference.forward_intermediates(x, indices=4, intermediates_only=True)
            got = features
        elif model.startswith("swin"):
            expected, got = [reference.features(x).permute(0, 3, 1, 2)], features[-1:]
        elif model.startswith("vit"):
            expected, got = [reference.forward_features(x)], [reference.norm(features[-1])]
        else:  # DOFA: its global pool of the last block's patch tokens
            waves = ours.wavelengths.tolist()
            expected = [reference.forward_features(x, waves)]
            got = [reference.fc_norm(features[-1][:, 1:].mean(dim=1))]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


@pytest.fixture(scope="module")
def s2_root(tmp_path_factory) -> Path:
    from tests.realdata import make_s2hand_chips

    return make_s2hand_chips(tmp_path_factory.mktemp("s2") / "HandLabeled", count=4)


@pytest.mark.parametrize(("name", "bands"), WEIGHTS, ids=[w for w, _ in WEIGHTS])
def test_torchgeo_weights_fit_and_test(
    torch_home, s2_root: Path, tmp_path: Path, name: str, bands: list[str]
) -> None:
    run = _fit_and_test(s2_root, tmp_path / "run", name, bands, vit="ViT" in name or "DOFA" in name)
    if _weight(name).meta.get("bands"):
        model = json.loads((run / "model.json").read_text())
        assert model["normalisation_source"] == "backbone manifest"


def _fit_and_test(root: Path, run: Path, name: str, bands: list[str], *, vit: bool) -> Path:
    """``eofm fit`` then ``eofm test`` of weight ``name`` on ``bands`` (a ViT: LoRA and
    UPerNet; else full fine-tuning and a U-Net), from its served release file."""
    from eofm.cli import main

    args = overrides(
        root,
        **{
            "backbone.name": f"torchgeo:{name}",
            "backbone.pretrained": "true",
            "data.bands": "[" + ",".join(bands) + "]",
            "decoder.name": "upernet" if vit else "unet",
            "adapter.mode": "lora" if vit else "full",
            "trainer.max_epochs": 1,
            "data.num_workers": 0,
        },
    )
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["backbone"]["pretrained_loaded"] is True
    assert model["backbone"]["file"] in _weight(name).url
    assert model["backbone"]["licence"] == licence_of(_weight(name))
    assert main(["test", str(run)]) == 0
    assert (run / "test_metrics.json").is_file()
    return run


def test_eofm_backbones_lists_the_torchgeo_catalogue_with_licences(capsys) -> None:
    from eofm.backbones.torchgeo_backbone import catalogue
    from eofm.backbones.torchgeo_catalogue import catalogue_rows
    from eofm.cli import main

    assert catalogue_rows() == catalogue()  # the shipped list is what torchgeo says now
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    dofa = next(line for line in lines if line.startswith("torchgeo:DOFABase16_Weights.DOFA_MAE"))
    assert "any (by wavelength)" in dofa and dofa.endswith("CC-BY-4.0")
    swin = next(line for line in lines if "Swin_V2_T_Weights.SENTINEL2_SI_MS_SATLAS" in line)
    assert "sentinel2_swint_si_ms-bc68e396.pth@081d6607431b" in swin
    for weight, licence in (
        ("CopernicusFM_Base_Weights.CopernicusFM_ViT", "CC-BY-4.0"),
        ("Panopticon_Weights.VIT_BASE14", "Apache-2.0"),
        ("CROMABase_Weights.CROMA_VIT", "MIT"),
        ("CROMALarge_Weights.CROMA_VIT", "MIT"),
    ):
        line = next(line for line in lines if line.startswith(f"torchgeo:{weight}"))
        assert line.endswith(licence) and "VV,VH" in line


@pytest.mark.parametrize(
    ("name", "bands", "size"), SPECTRAL_WEIGHTS, ids=[w[0] for w in SPECTRAL_WEIGHTS]
)
def test_spectral_features_equal_torchgeos_own_model(
    torch_home, name: str, bands: list[str], size: int
) -> None:
    """Copernicus-FM, Panopticon and CROMA: the last tapped layer, through the model's own
    final norm (and pooling), equals torchgeo's builder given the same release file."""
    from torchgeo.models import get_model

    from eofm.backbones.loading import load_backbone

    _write_release(torch_home, name)
    weight = _weight(name)
    ours = load_backbone(f"torchgeo:{name}", bands=bands, pretrained=True).eval()
    assert ours.source["revision"] in weight.url
    torch.manual_seed(1)
    x = torch.randn(2, len(bands), size, size)
    with torch.no_grad():
        features, grid = ours(x)
        if "CROMA" in name:  # all 14 bands: SAR tokens cross-attending to optical ones
            reference = get_model("croma_base", weight, image_size=size).eval()
            optical, sar = x[:, ours.optical_index], x[:, ours.sar_index]
            expected = reference(x_sar=sar, x_optical=optical)["joint_encodings"]
            got = reference.joint_encoder.norm_out(features[-1])
            assert ours.modality == "joint" and ours.tap_layers == (0, 2, 3, 5)
        elif "Panopticon" in name:
            reference = get_model(weight.meta["model"], weight).eval()
            ids = torch.tensor([ours.channel_ids] * 2)
            expected = reference.model.forward_features({"imgs": x, "chn_ids": ids})
            got = reference.model.norm(features[-1])
            assert list(ours.channel_ids) == pytest.approx([665, 560, 490, 1610, -1, -2])
        else:  # Copernicus-FM: its global pool of the last block's patch tokens
            reference = get_model(weight.meta["model"], weight).eval()
            metadata = torch.full((2, 4), float("nan"))  # lon, lat, time, area unknown
            waves, widths = ours.wavelengths.tolist(), ours.bandwidths.tolist()
            expected = reference.forward_features(x, metadata, waves, widths)
            got = reference.fc_norm(features[-1][:, 1:].mean(dim=1))
            assert waves == pytest.approx([490, 665, 842, 5e7, 5e7])
            assert widths == pytest.approx([65, 30, 115, 1e9, 1e9])
    assert len(features) == 4 and grid[1:] == (size // ours.config.patch_size[-1],) * 2
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_croma_picks_its_encoder_by_the_data_bands() -> None:
    from eofm.backbones.loading import load_backbone

    spec = "torchgeo:CROMABase_Weights.CROMA_VIT"
    sar = load_backbone(spec, bands=["VH", "VV"], pretrained=False)
    assert sar.modality == "sar" and sar.config.depth == 6 and sar.sar_index.tolist() == [1, 0]
    optical = load_backbone(spec, bands=None, pretrained=False)  # its own 12 bands
    assert optical.modality == "optical" and optical.tap_layers == (2, 5, 8, 11)
    with pytest.raises(EofmError, match="band 'CIRRUS' is not one of them"):
        load_backbone(spec, bands=S2_ALL, pretrained=False)
    with pytest.raises(EofmError, match="lacks band 'SWIR_2'"):
        load_backbone(spec, bands=S2_NO_CIRRUS[:-1], pretrained=False)


@pytest.mark.parametrize(
    "name", ["CopernicusFM_Base_Weights.CopernicusFM_ViT", "Panopticon_Weights.VIT_BASE14"]
)
def test_a_band_without_a_wavelength_is_an_error_for_spectral_models(name: str) -> None:
    from eofm.backbones.loading import load_backbone

    with pytest.raises(EofmError, match="band 'DEM' has none in eofm's band table"):
        load_backbone(f"torchgeo:{name}", bands=["RED", "DEM"], pretrained=False)


def test_copernicusfm_fits_and_tests(torch_home, s2_root: Path, tmp_path: Path) -> None:
    """One spectral model through ``eofm fit``, ``eofm test`` and ``eofm export`` (ONNX) at
    test scale (32 px, LoRA)."""
    from eofm.cli import main

    name = "CopernicusFM_Base_Weights.CopernicusFM_ViT"
    _write_release(torch_home, name)
    bands = ["BLUE", "GREEN", "RED", "NIR_BROAD"]
    run = _fit_and_test(s2_root, tmp_path / "run", name, bands, vit=True)
    bundle = tmp_path / "bundle"  # the model card names the weights' URL and licence
    assert main(["publish", str(run), "--repo", "t/cfm", "--dry-run", str(bundle)]) == 0
    card = (bundle / "README.md").read_text()
    assert f"[`{_weight(name).url}`]({_weight(name).url})" in card
    assert "released under **CC-BY-4.0**" in card and "non-commercial" not in card
    # its generated patch kernels trace (no data-dependent branch), so the run exports
    assert main(["export", str(run), "--format", "onnx", "--tile", "32"]) == 0
    exported = json.loads((run / "export" / "model.onnx.json").read_text())
    assert exported["parity_max_abs_diff"] <= 1e-4


@pytest.mark.parametrize(
    ("name", "bands", "adapted"),
    [
        ("CROMABase_Weights.CROMA_VIT", ["VV", "VH"], 12),  # SAR: 6 layers x (to_qkv, to_out)
        ("Swin_V2_T_Weights.SENTINEL2_SI_RGB_SATLAS", RGB, 24),  # 12 blocks x (qkv, proj)
        ("ResNet18_Weights.SENTINEL2_RGB_MOCO", RGB, 0),  # no attention: refused
    ],
    ids=["croma", "swin", "resnet"],
)
def test_lora_finds_the_attention_of_each_layout(name: str, bands: list[str], adapted: int) -> None:
    from eofm.adapters import apply_adapter
    from eofm.models.segmentation import build_segmentation_model
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "demo",
        [f"backbone.name=torchgeo:{name}", "backbone.pretrained=false", "decoder.name=unet"],
    )
    model = build_segmentation_model(recipe, num_classes=2, data_bands=bands)
    recipe.adapter.mode = "lora"
    if not adapted:
        with pytest.raises(EofmError, match="no attention layers for LoRA"):
            apply_adapter(model, recipe.adapter)
        return
    apply_adapter(model, recipe.adapter)
    wrapped = [n for n, m in model.backbone.named_modules() if hasattr(m, "lora_A")]
    assert not any("patch" in n for n in wrapped)
    used = [n for n in wrapped if "s2_encoder" not in n and "joint_encoder" not in n]
    assert len(used) == adapted


def test_a_non_commercial_licence_is_carried_into_the_card() -> None:
    from eofm.publishing.card import backbone_text

    record = {
        "name": "scalemae_large_patch16",
        "repo": "isaaccorley/vit_large_patch16_224_fmow_rgb_scalemae",
        "revision": "9dc7f569424baeb780698352cf6e87638c882123",
        "licence": "CC-BY-NC-4.0",
        "pretrained_loaded": True,
    }
    text = backbone_text(record)
    assert "**CC-BY-NC-4.0**" in text and "non-commercial" in text
    assert "(https://huggingface.co/isaaccorley/" in text
    assert "licence its source states" in backbone_text(record | {"licence": None})
