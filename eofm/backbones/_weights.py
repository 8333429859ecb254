"""Checkpoint files -> encoder state dicts: safe reading, key remapping, band transfer."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from eofm.errors import EofmError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint without executing code: safetensors, or ``torch.load(weights_only=True)``.

    Wrapped layouts (``{"model": ...}``, ``{"state_dict": ...}``) are unwrapped.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EofmError(f"Checkpoint {path} does not exist.") from None
    except Exception as exc:
        raise EofmError(
            f"Checkpoint {path} could not be read (truncated, corrupt, or not a weights-only "
            f"checkpoint): {load_failure(exc)}"
        ) from None
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise EofmError(f"Checkpoint {path} does not hold a state dict of tensors.")
    return dict(state)


def load_failure(exc: BaseException) -> str:
    """Why a weights file did not load, in one line, without torch's advice to reload it
    with ``weights_only=False`` (which would run whatever code the pickle holds)."""
    import pickle

    text = str(exc).strip()
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return (
            "it holds Python objects besides tensors, and eofm reads weights only (it never "
            "runs the code a pickle may hold)"
        )
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def prithvi_encoder_state(
    state: Mapping[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """Encoder keys of an official Prithvi checkpoint, in our module's names.

    Handles the prefixed MAE layout (``encoder.*``; ``decoder.*`` dropped) and the old flat
    v1 layout (same names, no prefix; keys containing ``decoder`` and ``mask_token``
    dropped). The stored ``pos_embed`` is dropped: it is a fixed sin-cos table that the
    encoder recomputes for each input grid.
    """
    if any(k.startswith("encoder.") for k in state):
        encoder = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    else:
        encoder = {k: v for k, v in state.items() if "decoder" not in k and k != "mask_token"}
    encoder.pop("pos_embed", None)
    if not encoder:
        raise EofmError(f"Checkpoint {source} holds no Prithvi encoder keys.")
    return encoder


#: Key prefixes of what a ViT checkpoint carries beside the encoder: timm's classifier
#: (``head.*``) and the norm before it when the tokens are average-pooled (``fc_norm.*``,
#: ``global_pool='avg'``), as in timm's ``VisionTransformer`` (timm/models/
#: vision_transformer.py) and the checkpoints saved from it, Scale-MAE's fine-tuned
#: classifiers among them (bair-climate-initiative/scale-mae, ``models_vit.py``).
NON_ENCODER_PREFIXES = ("head.", "fc_norm.")


def drop_non_encoder_keys(
    module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str
) -> dict[str, torch.Tensor]:
    """``state`` without the known non-encoder keys that ``module`` does not have, with one
    log line naming them; every other key is left for :func:`load_strict` to check."""
    expected = module.state_dict()
    dropped = [k for k in state if k not in expected and k.startswith(NON_ENCODER_PREFIXES)]
    if dropped:
        log.info(
            "Checkpoint %s: left out %d non-encoder key(s) (classifier head): %s.",
            source,
            len(dropped),
            ", ".join(dropped),
        )
    return {k: v for k, v in state.items() if k not in dropped}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the offending keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key(s) {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected key(s) {_short(unexpected)}")
        raise EofmError(f"Checkpoint {source} does not match the encoder: {'; '.join(parts)}.")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise EofmError(
                f"Checkpoint {source}: key '{key}' has shape {tuple(tensor.shape)}, "
                f"the encoder expects {tuple(expected[key].shape)}."
            )
    module.load_state_dict(state, strict=True)


def _short(keys: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def transfer_patch_embed(
    weight: torch.Tensor,
    model_bands: Sequence[str],
    data_bands: Sequence[str],
    fresh: torch.Tensor,
) -> tuple[torch.Tensor, list[str], list[str]]:
    """Map a patch-embedding kernel ``(D, C_model, ...)`` onto ``data_bands`` by name.

    Kernels of shared bands are copied; bands the model never saw take their slice of
    ``fresh`` (a freshly initialised kernel of the data's shape). Returns the new kernel,
    the copied bands and the new bands.
    """
    index = {b: i for i, b in enumerate(model_bands)}
    out = fresh.clone()
    copied, new = [], []
    for j, band in enumerate(data_bands):
        if band in index:
            out[:, j] = weight[:, index[band]]
            copied.append(band)
        else:
            new.append(band)
    return out, copied, new


def map_first_conv(
    model: nn.Module, path: str, name: str, pretrained: list[str], bands: list[str]
) -> dict[str, list[str]]:
    """Replace the 2D conv at ``path`` of ``model`` (its first layer) by one that reads
    ``bands``: kernels of the bands it shares with ``pretrained`` are copied by name, new
    bands freshly initialised; returns the band mapping (copied, new, dropped)."""
    if list(bands) == list(pretrained):
        return {"copied": list(bands), "new": [], "dropped": []}
    old = model.get_submodule(path)
    new = nn.Conv2d(
        len(bands),
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    fresh = new.weight.detach().clone()
    weight, copied, added = transfer_patch_embed(old.weight.detach(), pretrained, bands, fresh)
    with torch.no_grad():
        new.weight.copy_(weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
    dropped = [b for b in pretrained if b not in bands]
    log.info(
        "Band mapping for %s (by name): first-conv kernels copied for %s; freshly initialised "
        "for %s; pretrained bands not used: %s.",
        name,
        copied or "none",
        added or "none",
        dropped or "none",
    )
    return {"copied": copied, "new": added, "dropped": dropped}
