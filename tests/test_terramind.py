"""TerraMind v1: the release layout, strict loading from the Hub, equivalence with TerraTorch.

The reference implementation is TerraTorch 1.2.11's ``TerraMindViT`` (what its
``terramind_v1_*`` backbones build). ``tests/reference/make_terramind_reference.py``
(run in a separate venv with TerraTorch) gave two tiny models of the release's two block
styles seeded weights, and stored them in the release's key layout with seeded inputs
and TerraTorch's per-layer features, under ``tests/data/terramind/``; it also stored the
key layout of the four registered sizes. Here eofm loads those weights through its own
strict Hub path and must give the same features at <= 1e-4.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from eofm.backbones.loading import load_backbone
from eofm.backbones.terramind import modality_key
from eofm.errors import EofmError

DATA = Path(__file__).parent / "data" / "terramind"
TOLERANCE = 1e-4
#: The tiny sizes of the reference script, per block style of the release.
STYLES = {
    "tiny_style": {"swiglu": False, "bias": True},
    "base_style": {"swiglu": True, "bias": False},
}
CASES = {  # as in the reference script: style, modalities, batch, pixels
    "all_32": ("tiny_style", ("S2L2A", "S1GRD", "DEM")),
    "all_48_swiglu": ("base_style", ("S2L2A", "S1GRD", "DEM")),
    "dem_224": ("tiny_style", ("DEM",)),
}
BANDS = {
    "S2L2A": [
        "COASTAL_AEROSOL", "BLUE", "GREEN", "RED", "RED_EDGE_1", "RED_EDGE_2",
        "RED_EDGE_3", "NIR_BROAD", "NIR_NARROW", "WATER_VAPOR", "SWIR_1", "SWIR_2",
    ],
    "S1GRD": ["VV", "VH"],
    "DEM": ["DEM"],
}  # fmt: skip


def release_state(style: str) -> dict[str, torch.Tensor]:
    """The reference weights, in float32, under the release's key names."""
    return {k: v.float() for k, v in load_file(DATA / f"{style}.safetensors").items()}


def release_file(state: dict[str, torch.Tensor]) -> bytes:
    """A ``TerraMind_v1_*.pt`` file: a plain state dict saved with ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def serve(hub, repo: str, style: str, state: dict[str, torch.Tensor]) -> str:
    config = {"architecture": "terramind", "embed_dim": 16, "depth": 3, "num_heads": 2}
    hub.add_commit(
        repo,
        {
            "TerraMind_v1_tiny.pt": release_file(state),
            "config.json": json.dumps({"pretrained_cfg": {**config, **STYLES[style]}}).encode(),
        },
    )
    return f"hf://{repo}"


@pytest.fixture(scope="module")
def served(hub) -> dict[str, str]:
    return {style: serve(hub, f"tester/terramind-{style}", style, release_state(style))
            for style in STYLES}  # fmt: skip


@pytest.fixture(scope="module")
def cases() -> dict[str, torch.Tensor]:
    return load_file(DATA / "cases.safetensors")


def case_input(cases: dict[str, torch.Tensor], case: str) -> tuple[torch.Tensor, list[str]]:
    """The case's inputs stacked in eofm's way (one tensor, bands grouped by modality)."""
    _, modalities = CASES[case]
    x = torch.cat([cases[f"{case}.input.{m}"].float() / 16.0 for m in modalities], dim=1)
    return x, [b for m in modalities for b in BANDS[m]]


@pytest.mark.parametrize("case", list(CASES))
def test_every_layer_equals_terratorch(served, cases, case: str) -> None:
    style, _ = CASES[case]
    x, bands = case_input(cases, case)
    encoder = load_backbone(served[style], bands=bands).eval()
    assert encoder.source and encoder.source["file"] == "TerraMind_v1_tiny.pt"
    with torch.no_grad():
        ours, grid = encoder(x, tap_layers=(0, 1, 2))
    side = x.shape[-1] // 16
    assert grid == (1, side, side)
    for layer, tokens in enumerate(ours):
        expected = cases[f"{case}.layer{layer}"]
        assert tokens.shape == expected.shape
        assert (tokens - expected).abs().max().item() <= TOLERANCE, (case, layer)


def test_a_renamed_key_fails_to_load(hub) -> None:
    state = release_state("tiny_style")
    state["encoder.1.attn.qkv_renamed.weight"] = state.pop("encoder.1.attn.qkv.weight")
    spec = serve(hub, "tester/terramind-renamed", "tiny_style", state)
    with pytest.raises(EofmError, match=r"missing key\(s\) 'encoder.1.attn.qkv.weight'"):
        load_backbone(spec)


def test_other_modalities_and_the_decoder_are_left_out(hub, served) -> None:
    """The release is the whole any-to-any model: keys of other modalities (the reference
    file has S1RTC) and of the decoder are not the encoder's and are left out."""
    state = release_state("tiny_style")
    assert any(k.startswith("encoder_embeddings.untok_sen1rtc@224.") for k in state)
    state["decoder.0.attn.qkv.weight"] = torch.zeros(48, 16)
    state["decoder_norm.weight"] = torch.ones(16)
    spec = serve(hub, "tester/terramind-with-decoder", "tiny_style", state)
    encoder = load_backbone(spec)
    assert "untok_sen1rtc@224" not in encoder.encoder_embeddings
    assert not [k for k in encoder.state_dict() if k.startswith("decoder")]


def test_a_stored_positional_table_that_differs_is_refused(hub) -> None:
    """The release stores its sin-cos tables; one that is not ours means other maths."""
    state = release_state("tiny_style")
    key = "encoder_embeddings.untok_sen2l2a@224.pos_emb"
    state[key] = state[key].flip(1)
    spec = serve(hub, "tester/terramind-other-table", "tiny_style", state)
    with pytest.raises(EofmError, match="pos_emb"):
        load_backbone(spec)


def test_other_maths_would_be_caught(served, cases) -> None:
    """The comparison is sensitive: a perturbed weight moves the features past 1e-4."""
    x, bands = case_input(cases, "all_32")
    encoder = load_backbone(served["tiny_style"], bands=bands).eval()
    with torch.no_grad():
        encoder.encoder[2].mlp.fc1.weight[0, 0] += 1e-2
        ours, _ = encoder(x, tap_layers=(2,))
    assert (ours[0] - cases["all_32.layer2"]).abs().max().item() > TOLERANCE


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large"])
def test_registered_sizes_have_the_release_layout(size: str) -> None:
    """terramind_v1_<size> has exactly the keys and shapes of TerraTorch's registered
    backbone over S2L2A, S1GRD and DEM (built on the meta device: no memory, no
    download); the stored fixed tables and zero norm biases are our buffers."""
    from eofm.backbones.loading import encoder_class
    from eofm.registry import backbone_manifest

    layout = json.loads((DATA / "release_layouts.json").read_text())[size]
    manifest = backbone_manifest(f"terramind_v1_{size}")
    assert manifest.hub_repo == f"ibm-esa-geospatial/TerraMind-1.0-{size}"
    assert manifest.hub_file == f"TerraMind_v1_{size}.pt"
    assert manifest.licence == "Apache-2.0"
    with torch.device("meta"):
        ours = encoder_class(manifest)(manifest.config, manifest)
    weights = {k: list(v.shape) for k, v in ours.state_dict().items()}
    buffers = {k: list(v.shape) for k, v in ours.named_buffers()}
    assert {**weights, **buffers} == layout
    assert manifest.config.num_params() == sum(p.numel() for p in ours.parameters())


def test_bands_map_to_their_modalities_by_name(served, cases) -> None:
    """HLS's six bands read the S2L2A embedding's columns of those bands: the same
    features as the full model given zeros in the other bands' columns' place."""
    hls = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]
    encoder = load_backbone(served["tiny_style"], bands=hls).eval()
    assert encoder.input_bands == tuple(hls)
    assert list(encoder.encoder_embeddings) == ["untok_sen2l2a@224"]
    full = load_backbone(served["tiny_style"], bands=BANDS["S2L2A"]).eval()
    x = torch.randn(1, 6, 32, 32)
    padded = torch.zeros(1, 12, 32, 32)
    padded[:, [BANDS["S2L2A"].index(b) for b in hls]] = x
    with torch.no_grad():
        a, _ = encoder(x, tap_layers=(2,))
        b, _ = full(padded, tap_layers=(2,))
    assert torch.allclose(a[0], b[0], atol=1e-5)


def test_bands_outside_the_modalities_or_split_are_refused(served) -> None:
    with pytest.raises(EofmError, match="CIRRUS.*no TerraMind modality"):
        load_backbone(served["tiny_style"], bands=["RED", "CIRRUS"])
    with pytest.raises(EofmError, match="S2L2A bands must be adjacent"):
        load_backbone(served["tiny_style"], bands=["RED", "VV", "GREEN"])


def test_s1_before_s2_bands_split_in_the_data_order(served, cases) -> None:
    """data.bands with VV, VH first (then DEM, then the S2 bands): the input is split in
    that order, each modality's bands to its own embedding, and the features equal
    TerraTorch's for the same pixels given in its modality order (S2L2A, S1GRD, DEM):
    the modalities' tokens are encoded together and averaged."""
    x, bands = case_input(cases, "all_32")
    order = BANDS["S1GRD"] + BANDS["DEM"] + BANDS["S2L2A"]
    encoder = load_backbone(served["tiny_style"], bands=order).eval()
    assert encoder.input_bands == tuple(order)
    assert list(encoder.modality_bands) == ["S1GRD", "DEM", "S2L2A"]
    with torch.no_grad():
        ours, _ = encoder(x[:, [bands.index(b) for b in order]], tap_layers=(0, 1, 2))
    for layer, tokens in enumerate(ours):
        expected = cases[f"all_32.layer{layer}"]
        assert (tokens - expected).abs().max().item() <= TOLERANCE, layer


@pytest.mark.parametrize(
    "recipe",
    [
        "sen1floods11_s2_terramind_v1_base",
        "sen1floods11_s1s2_terramind_v1_base",
        "hls_burn_scars_terramind_v1_base",
    ],
)
def test_terramind_recipes_build_with_lora(served, recipe: str) -> None:
    """The recipes' bands reach their modalities' embeddings (S2 bands S2L2A, VV and VH
    S1GRD); LoRA wraps the encoder's attention."""
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe

    overrides = [f"backbone.name={served['base_style']}", "decoder.name=progressive",
                 "backbone.tap_layers=[0,1,2]", "decoder.channels=16"]  # fmt: skip
    loaded = load_recipe(recipe, overrides)
    model = SegmentationFamily().build_model(loaded, bands=loaded.data.bands, pretrained=True)
    encoder = model.backbone.base_model.model
    assert encoder.input_bands == tuple(loaded.data.bands)
    modalities = {m for m, bands in BANDS.items() if set(bands) & set(loaded.data.bands)}
    assert set(encoder.modality_bands) == modalities
    assert {modality_key(m) for m in modalities} == set(encoder.encoder_embeddings)
    lora = [n for n, m in model.backbone.named_modules() if hasattr(m, "lora_A")]
    assert len(lora) == 2 * 3 and all(".attn." in n for n in lora)
    logits = model(torch.randn(2, len(loaded.data.bands), 32, 32))
    assert logits.shape == (2, 2, 32, 32)
    logits.mean().backward()


def _test_scale(root: Path, served: dict) -> list[str]:
    """Overrides that fit a TerraMind recipe in seconds: the served base-layout weights,
    three tapped layers, a 16-channel progressive decoder, 32 px crops, one epoch."""
    return [
        f"data.root={root}",
        f"backbone.name={served['base_style']}",
        "decoder.name=progressive",
        "backbone.tap_layers=[0,1,2]",
        "decoder.channels=16",
        "data.crop_size=32",
        "data.batch_size=2",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]


def test_burn_scars_recipe_fits_and_tests(served, tmp_path: Path) -> None:
    """The burn-scars recipe end to end at test scale (HLS chips in the release layout)."""
    from eofm.cli import main
    from tests.hls import make_hls_root

    root = make_hls_root(tmp_path / "hls")
    run = tmp_path / "run"
    args = _test_scale(root, served)
    assert main(["fit", "hls_burn_scars_terramind_v1_base", *args, "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["backbone"]["repo"] == "tester/terramind-base_style"
    assert main(["test", str(run)]) == 0
    # the run exports as one graph; eofm export checks it against PyTorch (<= 1e-4 ONNX)
    graph = tmp_path / "model.onnx"
    assert (
        main(["export", str(run), "--format", "onnx", "--tile", "32", "--output", str(graph)]) == 0
    )
    assert json.loads((tmp_path / "model.onnx.json").read_text())["parity_max_abs_diff"] <= 1e-4


def test_sen1floods11_s1s2_recipe_fits_and_tests(served, tmp_path: Path) -> None:
    """The S1 + S2 recipe end to end at test scale: the real S1Hand chips and labels with
    S2Hand chips in the release's format, each chip's two files stacked into TerraMind's
    S2L2A and S1GRD embeddings; ``eofm test`` scores the chips tiled, through the
    predict engine."""
    from eofm.cli import main
    from tests.realdata import make_s1s2_chips

    root = make_s1s2_chips(tmp_path / "HandLabeled")
    run = tmp_path / "run"
    args = [*_test_scale(root, served), "data.num_workers=0", "eval.tiled.tile=32"]
    args.append("eval.tiled.overlap=8")
    name = "sen1floods11_s1s2_terramind_v1_base"
    assert main(["fit", name, *args, "--run-dir", str(run)]) == 0
    model = json.loads((run / "model.json").read_text())
    assert model["bands"] == load_recipe_bands(name)
    output = tmp_path / "test.json"  # scored tiled, as eofm predict reads each chip's stack
    assert main(["test", str(run), "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["protocol"]["tiled"]["tile"] == 32 and payload["test_chips"]


def load_recipe_bands(name: str) -> list[str]:
    from eofm.recipe import load_recipe

    return list(load_recipe(name, []).data.bands)


def test_registered_tiny_loads_strictly_through_the_hub(hub) -> None:
    """terramind_v1_tiny downloads TerraMind_v1_tiny.pt from its repo through eofm's one
    strict path; the commit downloaded is recorded. Without the repo: one clear error."""
    from eofm.registry import backbone_manifest

    manifest = backbone_manifest("terramind_v1_tiny")
    with pytest.raises(EofmError, match="--allow-random-init"):
        load_backbone("terramind_v1_tiny")
    layout = json.loads((DATA / "release_layouts.json").read_text())["tiny"]
    torch.manual_seed(0)
    from eofm.backbones.loading import encoder_class

    release = encoder_class(manifest)(manifest.config, manifest)
    state = {**release.state_dict(), **dict(release.named_buffers())}
    assert {k: list(v.shape) for k, v in state.items()} == layout
    commit = hub.add_commit(manifest.hub_repo, {manifest.hub_file: release_file(state)})
    encoder = load_backbone("terramind_v1_tiny")
    assert encoder.source == {"repo": manifest.hub_repo, "revision": commit,
                              "file": "TerraMind_v1_tiny.pt"}  # fmt: skip
    assert torch.equal(encoder.encoder[11].mlp.fc2.weight, release.encoder[11].mlp.fc2.weight)


def test_backbones_listing_names_terramind_and_its_licence(capsys) -> None:
    from eofm.cli import main

    assert main(["backbones"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("terramind_v1_")]
    assert [r.split()[0] for r in rows] == [f"terramind_v1_{s}" for s in
                                            ("tiny", "small", "base", "large")]  # fmt: skip
    assert all(r.rstrip().endswith("Apache-2.0") and ",VV,VH,DEM" in r for r in rows)
    assert "ibm-esa-geospatial/TerraMind-1.0-large@" in rows[-1]


def test_sen1floods11_recipe_normalises_with_terraminds_l1c_statistics() -> None:
    """S2Hand chips are L1C: the recipe gives TerraMind's own L1C statistics of its bands."""
    from eofm.backbones.manifest import TERRAMIND_S2L1C_MEAN, TERRAMIND_S2L1C_STD
    from eofm.bands import SENTINEL2_L1C_BANDS
    from eofm.recipe import load_recipe

    recipe = load_recipe("sen1floods11_s2_terramind_v1_base", [])
    index = [SENTINEL2_L1C_BANDS.index(b) for b in recipe.data.bands]
    assert "CIRRUS" not in recipe.data.bands and len(index) == 12
    assert list(recipe.data.mean) == [TERRAMIND_S2L1C_MEAN[i] for i in index]
    assert list(recipe.data.std) == [TERRAMIND_S2L1C_STD[i] for i in index]


def test_the_stored_fixed_tensors_are_optional_but_must_be_ours(hub, cases) -> None:
    """Without the stored sin-cos tables and zero norm biases the features are the same;
    a norm bias that is not zero (a model that learned one) is refused, as are the blocks
    of a deeper model."""
    from eofm.backbones.terramind import FIXED_SUFFIXES

    state = release_state("tiny_style")
    bare = {k: v for k, v in state.items() if not k.endswith(FIXED_SUFFIXES)}
    assert len(bare) < len(state)
    x, bands = case_input(cases, "all_32")
    encoder = load_backbone(serve(hub, "tester/terramind-bare", "tiny_style", bare), bands=bands)
    with torch.no_grad():
        ours, _ = encoder.eval()(x, tap_layers=(2,))
    assert (ours[0] - cases["all_32.layer2"]).abs().max().item() <= TOLERANCE
    biased = {**state, "encoder.0.norm1.bias": torch.ones(16)}
    with pytest.raises(EofmError, match="encoder.0.norm1.bias"):
        load_backbone(serve(hub, "tester/terramind-biased", "tiny_style", biased))
    deeper = {**state, **{k.replace("encoder.2.", "encoder.3."): v for k, v in state.items()
                          if k.startswith("encoder.2.")}}  # fmt: skip
    with pytest.raises(EofmError, match=r"unexpected key\(s\) 'encoder.3."):
        load_backbone(serve(hub, "tester/terramind-deeper", "tiny_style", deeper))
