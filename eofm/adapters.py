"""How a pretrained backbone is adapted: frozen, LoRA/DoRA (through peft), or full.

LoRA: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
DoRA: Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", ICML 2024.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from eofm.errors import EofmError
from eofm.jsonfile import json_text
from eofm.recipe import AdapterConfig

log = logging.getLogger(__name__)

#: Attention projections of every block, by layout: ``blocks.N.attn.{qkv,proj}`` (timm's:
#: Prithvi, Scale-MAE, DOFA, Copernicus-FM, Panopticon), ``encoder.N.attn`` (TerraMind),
#: ``features.S.N.attn`` (torchvision's Swin, Satlas), ``transformer.layers.N.0.{to_qkv,
#: to_out}`` (CROMA); anchored so that a patch embedding's ``proj`` never matches.
_ATTENTION = (
    r"(.*blocks|encoder)\.\d+\.attn\.(qkv|proj)",
    r".*features\.\d+\.\d+\.attn\.(qkv|proj)",
    r".*transformer\.layers\.\d+\.0\.(to_qkv|to_out)",
)
#: Their MLPs' linear layers (``fc3``: the gate of TerraMind's SwiGLU MLP).
_MLP = (
    r"(.*blocks|encoder)\.\d+\.mlp\.(fc1|fc2|fc3)",
    r".*features\.\d+\.\d+\.mlp\.(0|3)",
    r".*transformer\.layers\.\d+\.1\.net\.(0|3)",
)
LORA_ATTENTION = "|".join(f"({p})" for p in _ATTENTION)
LORA_ATTENTION_MLP = "|".join(f"({p})" for p in _ATTENTION + _MLP)


def apply_adapter(model: nn.Module, cfg: AdapterConfig) -> None:
    """Set up ``model.backbone`` for ``cfg.mode``; decoder and head always train.

    When the data has bands the backbone was not pretrained on, the patch embedding
    (whose kernels for those bands are fresh) trains in every mode.
    """
    backbone = model.backbone
    new_bands = bool(getattr(backbone, "band_mapping", {}).get("new"))
    if cfg.mode == "full":
        backbone.requires_grad_(True)
        model.backbone_needs_grad = True
        return
    if cfg.mode == "frozen":
        backbone.requires_grad_(False)
        model.backbone_needs_grad = new_bands
    elif cfg.mode == "lora":
        model.backbone = _wrap_lora(backbone, cfg)
        model.backbone_needs_grad = True
    else:  # validated by the recipe; kept for direct API use
        raise ValueError(f"unknown adapter mode {cfg.mode!r}")
    if new_bands:
        patch_embed = model.backbone.get_submodule(_patch_embed_path(model.backbone))
        patch_embed.requires_grad_(True)
        log.info(
            "Patch embedding trains too: bands %s are new to the backbone.",
            backbone.band_mapping["new"],
        )


def _patch_embed_path(backbone: nn.Module) -> str:
    for name, _ in backbone.named_modules():
        if name.endswith("patch_embed.proj"):
            return name
    raise LookupError("backbone has no patch_embed.proj")


def _wrap_lora(backbone: nn.Module, cfg: AdapterConfig) -> nn.Module:
    import re

    from peft import LoraConfig, get_peft_model

    if not any(re.fullmatch(LORA_ATTENTION, name) for name, _ in backbone.named_modules()):
        raise EofmError(
            f"adapter.mode lora: the backbone ({type(backbone).__name__}) has no attention "
            "layers for LoRA to adapt (a convolutional network); use adapter.mode frozen or full."
        )
    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        use_dora=cfg.dora,
        target_modules=LORA_ATTENTION_MLP if cfg.include_mlp else LORA_ATTENTION,
        bias="none",
    )
    wrapped = get_peft_model(backbone, config)
    targets = [n for n, m in wrapped.named_modules() if hasattr(m, "lora_A")]
    if any("patch_embed" in n for n in targets):  # guarded by the anchored regex
        raise RuntimeError("LoRA must not target patch_embed.proj")
    log.info("LoRA (rank %d%s) on %d layers.", cfg.rank, ", DoRA" if cfg.dora else "", len(targets))
    return wrapped


def is_lora(backbone: nn.Module) -> bool:
    return hasattr(backbone, "peft_config")


def base_encoder(backbone: nn.Module) -> nn.Module:
    """The encoder itself, under a peft wrapper or not (it carries ``manifest``, ``source``)."""
    base = getattr(backbone, "base_model", None)
    return base.model if base is not None else backbone


def save_adapter(model: nn.Module, folder: Path, base: dict) -> Path:
    """Save the LoRA weights on their own (peft layout), the other trained weights, and
    a pointer to the base model (``base``: repo, revision, file)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    backbone = model.backbone
    lora_state = get_peft_model_state_dict(backbone)
    save_file(
        {k: v.detach().contiguous() for k, v in lora_state.items()},
        str(folder / "adapter_model.safetensors"),
    )
    backbone.peft_config["default"].save_pretrained(str(folder))
    lora_ids = {id(p) for n, p in backbone.named_parameters() if "lora_" in n}
    others = {
        name: param.detach().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad and id(param) not in lora_ids
    }
    others.update(
        {
            name: buf.detach().contiguous()
            for name, buf in model.named_buffers()
            if "running_" in name
        }
    )
    save_file(others, str(folder / "trained_modules.safetensors"))
    (folder / "base_model.json").write_text(
        json_text(base, "base_model.json", indent=2) + "\n", encoding="utf-8"
    )
    return folder
