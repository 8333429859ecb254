"""Prithvi checkpoints in the official layouts, served by the loopback Hub, loaded strictly.

Checkpoints are written here in the exact key layouts of the official releases
(GUIDE §2): the prefixed MAE layout (``encoder.*``, ``decoder.*``, ``encoder.pos_embed``)
and the old flat v1 layout, with tiny dimensions.
"""

from __future__ import annotations

import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_safetensors

from eofm.backbones.loading import load_backbone
from eofm.backbones.manifest import ViTConfig
from eofm.backbones.positional import sincos_3d
from eofm.backbones.prithvi import PrithviEncoder
from eofm.errors import EofmError

TINY = {
    "img_size": 32,
    "num_frames": 1,
    "patch_size": [1, 8, 8],
    "in_chans": 6,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "decoder_embed_dim": 16,
    "decoder_depth": 1,
    "decoder_num_heads": 2,
    "mlp_ratio": 4.0,
    "coords_encoding": ["time", "location"],
    "coords_scale_learn": True,
    "mask_ratio": 0.75,
    "norm_pix_loss": False,
    "bands": ["B02", "B03", "B04", "B05", "B06", "B07"],
    "mean": [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0],
    "std": [2248.0, 2179.0, 2178.0, 1850.0, 1242.0, 1049.0],
}


def reference_encoder(cfg: dict, seed: int = 0) -> PrithviEncoder:
    torch.manual_seed(seed)
    coords = tuple(cfg.get("coords_encoding") or ())
    config = ViTConfig(
        img_size=cfg["img_size"],
        patch_size=tuple(cfg["patch_size"]),
        num_frames=cfg["num_frames"],
        in_chans=cfg["in_chans"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        coords_encoding=coords,
        coords_scale_learn=bool(cfg.get("coords_scale_learn")) and bool(coords),
    )
    encoder = PrithviEncoder(config)
    with torch.no_grad():  # non-default scales, so that loading them is observable
        for name, p in encoder.named_parameters():
            if name.endswith(".scale"):
                p.fill_(0.37)
    return encoder


def official_state(encoder: PrithviEncoder, *, layout: str) -> dict[str, torch.Tensor]:
    """The encoder's weights in an official checkpoint layout, with MAE-decoder keys."""
    d, dd = encoder.embed_dim, 16
    grid = (encoder.config.num_frames, encoder.config.img_size // 8, encoder.config.img_size // 8)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    state["pos_embed"] = sincos_3d(d, grid)
    decoder = {
        "decoder_embed.weight": torch.randn(dd, d),
        "decoder_embed.bias": torch.zeros(dd),
        "decoder_pos_embed": torch.zeros(1, 1 + math.prod(grid), dd),
        "decoder_blocks.0.norm1.weight": torch.ones(dd),
        "decoder_norm.weight": torch.ones(dd),
        "decoder_pred.weight": torch.randn(6 * 64, dd),
    }
    if layout == "mae":
        out = {f"encoder.{k}": v for k, v in state.items()}
        out.update({f"decoder.{k}": v for k, v in decoder.items()})
        out["decoder.mask_token"] = torch.zeros(1, 1, dd)
        return out
    if layout == "flat":
        return {**state, **decoder, "mask_token": torch.zeros(1, 1, dd)}
    raise ValueError(layout)


def torch_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def config_bytes(cfg: dict) -> bytes:
    return json.dumps({"architecture": "prithvi_eo_v2", "pretrained_cfg": cfg}).encode()


def features(encoder: torch.nn.Module, x: torch.Tensor, **kw) -> list[torch.Tensor]:
    encoder.eval()
    with torch.no_grad():
        tokens, _ = encoder(x, tap_layers=(0, 1), **kw)
    return tokens


@pytest.mark.parametrize("layout", ["mae", "flat"])
def test_official_layouts_load_strictly_with_equal_features(hub, layout: str) -> None:
    ref = reference_encoder(TINY)
    repo = f"tester/prithvi-tiny-{layout}"
    hub.add_commit(
        repo,
        {
            "config.json": config_bytes(TINY),
            "Prithvi_tiny.pt": torch_bytes(official_state(ref, layout=layout)),
        },
    )
    encoder = load_backbone(f"hf://{repo}")
    assert encoder.source["repo"] == repo
    assert encoder.source["revision"] == hub.commits(repo)[-1]
    x = torch.randn(2, 6, 32, 32)
    coords = {
        "temporal_coords": torch.tensor([[[2020.0, 150.0]]] * 2),
        "location_coords": torch.tensor([[45.0, 7.0]] * 2),
    }
    for got, want in zip(features(encoder, x, **coords), features(ref, x, **coords), strict=True):
        torch.testing.assert_close(got, want)
    assert encoder.temporal_embed_enc.scale.item() == pytest.approx(0.37)
    assert encoder.manifest.bands == ("BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2")


def test_renamed_key_fails_and_names_it(hub) -> None:
    state = official_state(reference_encoder(TINY), layout="mae")
    state["encoder.blocks.1.attn.qkv.weightt"] = state.pop("encoder.blocks.1.attn.qkv.weight")
    hub.add_commit(
        "tester/prithvi-renamed", {"config.json": config_bytes(TINY), "w.pt": torch_bytes(state)}
    )
    with pytest.raises(EofmError) as info:
        load_backbone("hf://tester/prithvi-renamed")
    message = str(info.value)
    assert "'blocks.1.attn.qkv.weight'" in message and "'blocks.1.attn.qkv.weightt'" in message


def test_safetensors_is_preferred_and_revisions_are_pinned(hub) -> None:
    first, second = reference_encoder(TINY, seed=1), reference_encoder(TINY, seed=2)
    repo = "tester/prithvi-st"
    st = {k: v.contiguous() for k, v in official_state(first, layout="mae").items()}
    old = hub.add_commit(
        repo,
        {
            "config.json": config_bytes(TINY),
            "model.safetensors": save_safetensors(st),
            "legacy.pt": torch_bytes(official_state(second, layout="mae")),
        },
    )
    hub.add_commit(
        repo,
        {
            "model.safetensors": save_safetensors(
                {k: v.contiguous() for k, v in official_state(second, layout="mae").items()}
            )
        },
    )
    x = torch.randn(1, 6, 32, 32)
    pinned = load_backbone(f"hf://{repo}@{old}")
    assert pinned.source == {"repo": repo, "revision": old, "file": "model.safetensors"}
    torch.testing.assert_close(features(pinned, x)[-1], features(first, x)[-1])
    latest = load_backbone(f"hf://{repo}")
    torch.testing.assert_close(features(latest, x)[-1], features(second, x)[-1])
    named = load_backbone(f"hf://{repo}@{old}#legacy.pt")
    torch.testing.assert_close(features(named, x)[-1], features(second, x)[-1])


def test_several_weights_files_need_a_name(hub) -> None:
    state = torch_bytes(official_state(reference_encoder(TINY), layout="mae"))
    hub.add_commit(
        "tester/prithvi-two", {"config.json": config_bytes(TINY), "a.pt": state, "b.pt": state}
    )
    with pytest.raises(EofmError, match=r"#FILE"):
        load_backbone("hf://tester/prithvi-two")
    assert load_backbone("hf://tester/prithvi-two#b.pt").source["file"] == "b.pt"


def test_registered_name_downloads_its_official_repo(hub) -> None:
    """prithvi_eo_v2_tiny_tl at full size (embed 192, depth 12), official file name."""
    cfg = dict(TINY, img_size=224, patch_size=[1, 16, 16], embed_dim=192, depth=12, num_heads=3)
    ref = reference_encoder(cfg)
    state = {f"encoder.{k}": v for k, v in ref.state_dict().items()}
    state["encoder.pos_embed"] = sincos_3d(192, (1, 14, 14))
    assert tuple(state["encoder.pos_embed"].shape) == (1, 197, 192)
    repo = "ibm-nasa-geospatial/Prithvi-EO-2.0-tiny-TL"
    sha = hub.add_commit(
        repo, {"Prithvi_EO_V2_tiny_TL.pt": torch_bytes(state), "config.json": config_bytes(cfg)}
    )
    encoder = load_backbone("prithvi_eo_v2_tiny_tl")
    assert encoder.source == {"repo": repo, "revision": sha, "file": "Prithvi_EO_V2_tiny_TL.pt"}
    x = torch.randn(1, 6, 64, 64)  # another image size: positions are recomputed
    torch.testing.assert_close(features(encoder, x)[-1], features(ref, x)[-1])
    # a known repo at an explicit revision keeps the registry's file name
    again = load_backbone(f"hf://{repo}@{sha}")
    assert again.source["file"] == "Prithvi_EO_V2_tiny_TL.pt"
    # num_frames can differ from the checkpoint's
    frames = load_backbone("prithvi_eo_v2_tiny_tl", num_frames=3)
    tokens, grid = frames(torch.randn(1, 6, 3, 32, 32))
    assert grid == (3, 2, 2) and tokens[-1].shape == (1, 1 + 12, 192)


def test_missing_repo_revision_and_truncated_checkpoint(hub) -> None:
    with pytest.raises(EofmError, match="tester/does-not-exist"):
        load_backbone("hf://tester/does-not-exist")
    hub.add_commit(
        "tester/prithvi-rev",
        {
            "config.json": config_bytes(TINY),
            "w.pt": torch_bytes(official_state(reference_encoder(TINY), layout="mae")),
        },
    )
    with pytest.raises(EofmError, match="'nope'"):
        load_backbone("hf://tester/prithvi-rev@nope")
    data = torch_bytes(official_state(reference_encoder(TINY), layout="mae"))
    hub.add_commit(
        "tester/prithvi-truncated",
        {"config.json": config_bytes(TINY), "w.pt": data[: len(data) // 2]},
    )
    with pytest.raises(EofmError, match=r"truncated|corrupt"):
        load_backbone("hf://tester/prithvi-truncated")


def test_no_silent_random_init(hub, caplog) -> None:
    with pytest.raises(EofmError, match="--allow-random-init"):
        load_backbone("prithvi_eo_v2_600_tl")  # not served by the loopback Hub
    with caplog.at_level(logging.WARNING):
        encoder = load_backbone(
            "hf://ibm-nasa-geospatial/Prithvi-EO-2.0-100M-TL", allow_random_init=True
        )
    assert encoder.source is None
    assert "RANDOMLY INITIALISED" in caplog.text
    assert load_backbone("prithvi_eo_v2_100_tl", pretrained=False).source is None


def test_unreachable_hub_is_a_clear_error(tmp_path) -> None:
    """A real client pointed at a closed loopback port (a fresh process: HF_ENDPOINT is read at import)."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"))
    code = "from eofm.cli import main; import sys; sys.exit(main(['fit', 'demo', 'trainer.max_steps=1', '--run-dir', sys.argv[1]]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "unreachable" in proc.stderr and "--allow-random-init" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing written


def test_pos_embed_matches_an_independent_numpy_formula() -> None:
    d, (t, h, w) = 32, (2, 3, 4)

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2))
        out = np.outer(pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    rows = []
    for ti in range(t):
        for hi in range(h):
            for wi in range(w):
                rows.append(
                    np.concatenate(
                        [
                            one_d(12, np.array([wi]))[0],
                            one_d(12, np.array([hi]))[0],
                            one_d(8, np.array([ti]))[0],
                        ]
                    )
                )
    expected = np.concatenate([np.zeros((1, d)), np.stack(rows)])[None]
    np.testing.assert_allclose(sincos_3d(d, (t, h, w)).numpy(), expected, atol=1e-6)


def test_classifier_head_keys_are_left_out_with_one_log_line(hub, caplog) -> None:
    """Issue 34 item 7: a timm-layout ViT checkpoint (flat keys) with a classifier head
    (``head.*``) and its pooled norm (``fc_norm.*``) loads; the head is named in one log
    line; any other stray key still fails strictly."""
    ref = reference_encoder(TINY)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    head = {
        "fc_norm.weight": torch.ones(32),
        "fc_norm.bias": torch.zeros(32),
        "head.weight": torch.randn(10, 32),
        "head.bias": torch.zeros(10),
    }
    hub.add_commit(
        "tester/prithvi-classifier",
        {"config.json": config_bytes(TINY), "w.safetensors": save_safetensors({**state, **head})},
    )
    with caplog.at_level(logging.INFO, logger="eofm.backbones._weights"):
        encoder = load_backbone("hf://tester/prithvi-classifier")
    lines = [r.getMessage() for r in caplog.records if "non-encoder" in r.getMessage()]
    assert len(lines) == 1 and all(k in lines[0] for k in head)
    x = torch.randn(1, 6, 32, 32)
    coords = {
        "temporal_coords": torch.tensor([[[2020.0, 150.0]]]),
        "location_coords": torch.tensor([[45.0, 7.0]]),
    }
    for got, want in zip(features(encoder, x, **coords), features(ref, x, **coords), strict=True):
        torch.testing.assert_close(got, want)
    stray = {**state, **head, "blocks.9.attn.qkv.weight": torch.zeros(3)}
    hub.add_commit(
        "tester/prithvi-stray",
        {"config.json": config_bytes(TINY), "w.safetensors": save_safetensors(stray)},
    )
    with pytest.raises(EofmError, match=r"unexpected key\(s\) 'blocks\.9\.attn\.qkv\.weight'"):
        load_backbone("hf://tester/prithvi-stray")
