"""Encoder, neck, decoders and adapters on tiny inputs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from eofm.adapters import is_lora, save_adapter
from eofm.backbones.loading import load_backbone
from eofm.decoders.neck import tokens_to_map
from eofm.models.base import count_parameters
from eofm.models.segmentation import build_segmentation_model
from eofm.recipe import load_recipe

HLS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def tiny_recipe(**sections):
    base = {"backbone": {"name": "prithvi_eo_v2_tiny_tl", "pretrained": False}}
    base.update(sections)
    return load_recipe(base)


@pytest.mark.parametrize("decoder", ["progressive", "upernet"])
@pytest.mark.parametrize("size", [32, 48])
def test_segmentation_output_matches_input_size(decoder: str, size: int) -> None:
    recipe = tiny_recipe(decoder={"name": decoder, "channels": 32})
    model = build_segmentation_model(recipe, num_classes=3, data_bands=["VV", "VH"])
    logits = model(torch.randn(2, 2, size, size))
    assert logits.shape == (2, 3, size, size)
    assert torch.isfinite(logits).all()


def test_upernet_fuse_modes_both_run() -> None:
    for fuse in ("factorized", "concat"):
        recipe = tiny_recipe(decoder={"name": "upernet", "channels": 16, "fuse": fuse})
        model = build_segmentation_model(recipe, num_classes=2, data_bands=HLS)
        assert model(torch.randn(2, 6, 64, 64)).shape == (2, 2, 64, 64)


def test_one_by_one_conv_commutes_with_bilinear_upsampling() -> None:
    """The identity behind UPerNet's factorized fuse."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 4, 1, bias=False)
    x = torch.randn(2, 8, 7, 7)
    a = conv(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False))
    b = F.interpolate(conv(x), size=(28, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_neck_folds_time_into_channels() -> None:
    b, t, h, w, d = 2, 3, 4, 5, 6
    grid_tokens = torch.arange(b * t * h * w * d, dtype=torch.float32).reshape(b, t, h, w, d)
    tokens = torch.cat([torch.zeros(b, 1, d), grid_tokens.reshape(b, t * h * w, d)], dim=1)
    maps = tokens_to_map(tokens, (t, h, w))
    assert maps.shape == (b, t * d, h, w)
    # channel block k holds frame k
    torch.testing.assert_close(maps[:, d : 2 * d], grid_tokens[:, 1].permute(0, 3, 1, 2))


def test_multi_frame_model_runs() -> None:
    recipe = tiny_recipe(
        backbone={"name": "prithvi_eo_v2_tiny_tl", "pretrained": False, "num_frames": 2}
    )
    model = build_segmentation_model(recipe, num_classes=2, data_bands=HLS)
    assert model(torch.randn(1, 6, 2, 32, 32)).shape == (1, 2, 32, 32)


def test_frozen_trains_only_decoder_and_head_when_bands_are_known() -> None:
    model = build_segmentation_model(
        tiny_recipe(adapter={"mode": "frozen"}), num_classes=2, data_bands=HLS
    )
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert model.backbone_needs_grad is False
    trainable, total = count_parameters(model)
    assert 0 < trainable < total


def test_frozen_with_new_bands_trains_the_patch_embedding() -> None:
    model = build_segmentation_model(
        tiny_recipe(adapter={"mode": "frozen"}), num_classes=2, data_bands=["VV", "VH"]
    )
    grads = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert grads == {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    model(torch.randn(1, 2, 32, 32)).sum().backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None


@pytest.mark.parametrize("include_mlp", [False, True])
def test_lora_targets_attention_never_patch_embed(include_mlp: bool) -> None:
    recipe = tiny_recipe(adapter={"mode": "lora", "rank": 4, "include_mlp": include_mlp})
    model = build_segmentation_model(recipe, num_classes=2, data_bands=HLS)
    assert is_lora(model.backbone)
    lora_layers = {
        n.rsplit(".lora_A", 1)[0] for n, _ in model.backbone.named_parameters() if ".lora_A." in n
    }
    assert lora_layers, "no LoRA layer was created"
    assert not any("patch_embed" in n for n in lora_layers)
    kinds = {n.split(".")[-1] for n in lora_layers}
    assert kinds == ({"qkv", "proj", "fc1", "fc2"} if include_mlp else {"qkv", "proj"})
    assert sum(1 for n in lora_layers if n.endswith("qkv")) == 12
    keys = model.backbone.state_dict().keys()
    assert any(k.startswith("base_model.model.blocks.0.attn.qkv.base_layer.weight") for k in keys)
    base_trainable = [
        n for n, p in model.backbone.named_parameters() if p.requires_grad and "lora_" not in n
    ]
    assert base_trainable == []


def test_dora_option_reaches_peft() -> None:
    recipe = tiny_recipe(adapter={"mode": "lora", "rank": 2, "dora": True})
    model = build_segmentation_model(recipe, num_classes=2, data_bands=HLS)
    assert model.backbone.peft_config["default"].use_dora is True
    assert model(torch.randn(1, 6, 32, 32)).shape == (1, 2, 32, 32)


def test_save_adapter_alone(tmp_path) -> None:
    from safetensors.torch import load_file

    recipe = tiny_recipe(adapter={"mode": "lora", "rank": 2})
    model = build_segmentation_model(recipe, num_classes=2, data_bands=["VV", "VH"])
    folder = save_adapter(
        model, tmp_path / "adapter", {"repo": "org/base", "revision": "abc", "file": "w.pt"}
    )
    lora = load_file(str(folder / "adapter_model.safetensors"))
    assert lora and all("lora_" in k for k in lora)
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 2
    assert json.loads((folder / "base_model.json").read_text())["revision"] == "abc"
    others = load_file(str(folder / "trained_modules.safetensors"))
    assert any(k.startswith("head.") for k in others)
    assert "backbone.base_model.model.patch_embed.proj.weight" in others  # new bands train


def test_full_mode_trains_everything() -> None:
    model = build_segmentation_model(
        tiny_recipe(adapter={"mode": "full"}), num_classes=2, data_bands=HLS
    )
    trainable, total = count_parameters(model)
    assert trainable == total


def test_band_mapping_copies_shared_kernels() -> None:
    torch.manual_seed(0)
    ref = load_backbone("prithvi_eo_v2_tiny_tl", pretrained=False)
    torch.manual_seed(0)
    mapped = load_backbone("prithvi_eo_v2_tiny_tl", pretrained=False, bands=["RED", "VV", "BLUE"])
    w_ref, w_new = ref.patch_embed.proj.weight, mapped.patch_embed.proj.weight
    torch.testing.assert_close(w_new[:, 0], w_ref[:, 2])
    torch.testing.assert_close(w_new[:, 2], w_ref[:, 0])
    assert mapped.band_mapping == {
        "copied": ["RED", "BLUE"],
        "new": ["VV"],
        "dropped": ["GREEN", "NIR_NARROW", "SWIR_1", "SWIR_2"],
    }


def test_unknown_band_is_named() -> None:
    from eofm.errors import EofmError

    with pytest.raises(EofmError, match="'NIRR'"):
        load_backbone("prithvi_eo_v2_tiny_tl", pretrained=False, bands=["RED", "NIRR"])
