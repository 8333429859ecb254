"""What a published eofm repo holds: its file names, format, and weight checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
RECIPE_FILE = "recipe.yaml"
CARD_FILE = "README.md"
QUICKLOOK_FILE = "quicklook.png"
FULL_WEIGHTS = "model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FORMAT = "eofm-model/1"
#: Every file a published repo may hold; nothing else is uploaded or downloaded.
ALLOWED_FILES = (
    CONFIG_FILE,
    FULL_WEIGHTS,
    ADAPTER_WEIGHTS,
    RECIPE_FILE,
    CARD_FILE,
    QUICKLOOK_FILE,
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_state(model: Any) -> dict:
    """What an adapter-only upload holds: LoRA weights and every weight trained in the run
    (decoder, head, neck, new patch-embedding kernels, BatchNorm statistics), i.e. all
    but the frozen base-model weights."""
    frozen = {
        f"backbone.{name}" for name, p in model.backbone.named_parameters() if not p.requires_grad
    }
    return {k: v for k, v in model.state_dict().items() if k not in frozen}
