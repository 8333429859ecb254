"""Make the TerraMind reference of ``tests/test_terramind.py`` with TerraTorch 1.2.11.

The reference implementation is TerraTorch's ``TerraMindViT`` (the module its
``terramind_v1_*`` backbones build), not eofm's. This script builds it at two tiny sizes
with the block styles of the release (``tiny_style``: GELU MLP with biases, as
``terramind_v1_tiny``/``small``; ``base_style``: bias-free SwiGLU, as ``terramind_v1_base``/
``large``; the kwargs below repeat terramind_register.py's), gives it seeded random
weights, and writes into ``tests/data/terramind/``:

* ``<style>.safetensors``: the model's state dict in the release's key layout (the keys of
  TerraTorch's module, which loads the release with them), with one modality more than
  the test feeds (S1RTC: the loader has to leave other modalities out). Weights are
  rounded to float16 to keep the files small; the outputs are computed with exactly those
  values in float32.
* ``cases.safetensors``: seeded inputs (int8, divided by 16 when used: exact in float32) and
  the per-layer features TerraTorch returns (``merge_method='mean'``).

Run it in a venv that has TerraTorch (never the project's own)::

    python3.11 -m venv /work/venv-tt
    grep -v '^lightly==' constraints.txt > /tmp/tt-constraints.txt  # 1.2.11 pins lightly 1.5.22
    /work/venv-tt/bin/pip install -c /tmp/tt-constraints.txt terratorch==1.2.11
    /work/venv-tt/bin/python tests/reference/make_terramind_reference.py
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "data" / "terramind"
DIM, DEPTH, HEADS = 16, 3, 2
STYLES = {
    "tiny_style": {
        "qkv_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
        "act_layer": nn.GELU,
        "gated_mlp": False,
    },
    "base_style": {
        "qkv_bias": False,
        "proj_bias": False,
        "mlp_bias": False,
        "act_layer": nn.SiLU,
        "gated_mlp": True,
    },
}
CHANNELS = {"S2L2A": 12, "S1GRD": 2, "DEM": 1}
#: case -> (style, modalities fed, batch, pixels): 32 and 48 px resize the 224 px table
#: (2x2 and 3x3 grids); 224 px uses it as stored.
CASES = {
    "all_32": ("tiny_style", ("S2L2A", "S1GRD", "DEM"), 2, 32),
    "all_48_swiglu": ("base_style", ("S2L2A", "S1GRD", "DEM"), 2, 48),
    "dem_224": ("tiny_style", ("DEM",), 1, 224),
}


def build(style: str) -> nn.Module:
    from terratorch.models.backbones.terramind.model.terramind_register import (
        build_terrammind_vit,
    )
    from terratorch.models.backbones.terramind.model.tm_utils import LayerNorm

    return build_terrammind_vit(
        variant=None,
        pretrained=False,
        modalities=["S2L2A", "S1GRD", "DEM", "S1RTC"],
        encoder_depth=DEPTH,
        dim=DIM,
        num_heads=HEADS,
        mlp_ratio=4,
        num_register_tokens=0,
        norm_layer=partial(LayerNorm, eps=1e-6, bias=False),
        **STYLES[style],
    )


def randomise(model: nn.Module, seed: int) -> None:
    """Visible weights (not the near-identity init), rounded to float16 and back."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if (
                name.endswith("norm1.weight")
                or name.endswith("norm2.weight")
                or name.endswith("encoder_norm.weight")
            ):
                value = 1.0 + 0.2 * noise
            elif name.endswith("mod_emb"):
                value = 0.5 * noise
            else:
                value = 0.15 * noise
            p.copy_(value.half().float())


def release_layouts() -> dict[str, dict[str, list[int]]]:
    """Key -> shape of TerraTorch's registered ``terramind_v1_*`` backbones over S2L2A,
    S1GRD and DEM, built without their tokenizers (no download)."""
    from terratorch.models.backbones.terramind.model import terramind_register as register

    register.tokenizer_dict = {"v1": None, "v01": None}  # raw inputs only
    layouts = {}
    for size in ("tiny", "small", "base", "large"):
        model = getattr(register, f"terramind_v1_{size}")(modalities=["S2L2A", "S1GRD", "DEM"])
        layouts[size] = {k: list(v.shape) for k, v in model.state_dict().items()}
    return layouts


def main() -> None:
    import terratorch.models.backbones.terramind.model.terramind_register  # noqa: F401

    # Importing TerraTorch sets torch.set_float32_matmul_precision("medium") globally
    # (terratorch/models/backbones/clay_v15/model.py), which lets CPU matmuls run below
    # float32 precision; the reference is computed in full float32.
    torch.set_float32_matmul_precision("highest")
    OUT.mkdir(parents=True, exist_ok=True)
    models = {}
    for seed, style in enumerate(STYLES):
        model = build(style).eval()
        randomise(model, seed)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        weights = {
            k: (v.half() if v.is_floating_point() and "pos_emb" not in k else v)
            for k, v in state.items()
        }
        save_file(weights, str(OUT / f"{style}.safetensors"), metadata={"terratorch": "1.2.11"})
        models[style] = model
    cases = {}
    generator = torch.Generator().manual_seed(1234)
    for case, (style, modalities, batch, px) in CASES.items():
        inputs = {}
        for modality in modalities:
            raw = torch.randint(-64, 64, (batch, CHANNELS[modality], px, px), generator=generator)
            cases[f"{case}.input.{modality}"] = raw.to(torch.int8)
            inputs[modality] = raw.float() / 16.0
        with torch.no_grad():
            layers = models[style](dict(inputs))
        for i, layer in enumerate(layers):
            cases[f"{case}.layer{i}"] = layer.contiguous()
    save_file(cases, str(OUT / "cases.safetensors"), metadata={"terratorch": "1.2.11"})
    layouts = json.dumps(release_layouts(), indent=0, sort_keys=True)
    (OUT / "release_layouts.json").write_text(layouts + "\n", encoding="utf-8")
    for path in sorted(OUT.iterdir()):
        print(path.name, path.stat().st_size)


if __name__ == "__main__":
    main()
