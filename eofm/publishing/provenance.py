"""Where a model's backbone weights came from, said the same way wherever the model is
described: ``eofm test``, the report, the model card and the attributes of its outputs.

A run trained with ``--allow-random-init`` (or ``backbone.pretrained: false``) has a
foundation model's architecture but none of its pretraining; ``model.json`` records
``backbone.pretrained_loaded: false``. Nothing downstream may then name the backbone's
Hub repo and commit as if its weights were used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The GeoTIFF tag / NetCDF attribute that flags a randomly initialised backbone.
RANDOM_INIT_ATTRIBUTE = "eofm_backbone_weights"
RANDOM_INIT_VALUE = "random initialisation (no pretrained weights were loaded)"


def is_random_init(manifest: Mapping[str, Any]) -> bool:
    """Whether the model of ``manifest`` (``model.json`` or a published ``config.json``)
    has a foundation-model backbone that was randomly initialised."""
    weather = (manifest.get("inputs") or {}).get("weather") or {}
    if weather.get("random_init"):
        return True  # its inputs come from a weather run whose backbone was random
    backbone = manifest.get("backbone") or {}
    if backbone.get("name", "none") == "none" or "pretrained_loaded" not in backbone:
        return False  # no foundation backbone (fire-danger heads, plain downscaling)
    return not backbone["pretrained_loaded"]


def random_init_warning(manifest: Mapping[str, Any]) -> str | None:
    """One sentence warning that the backbone was randomly initialised, or None."""
    if not is_random_init(manifest):
        return None
    weather = (manifest.get("inputs") or {}).get("weather") or {}
    if weather.get("random_init"):
        return (
            f"this model's weather inputs come from the run {weather.get('run')}, whose "
            "backbone was trained from random initialisation: no pretrained weights were "
            "loaded there."
        )
    name = (manifest.get("backbone") or {}).get("name")
    return (
        f"this model's backbone ({name}) was trained from random initialisation: no "
        "pretrained weights were loaded, so it has the architecture of the foundation model "
        "but none of its pretraining."
    )


def backbone_source(manifest: Mapping[str, Any]) -> str:
    """``repo@revision`` of the pretrained weights, or what replaced them."""
    backbone = manifest.get("backbone") or {}
    if is_random_init(manifest):
        return f"{backbone.get('name')}, {RANDOM_INIT_VALUE}"
    return f"{backbone.get('repo')}@{backbone.get('revision')}"


def output_attributes(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Attributes (GeoTIFF tags, NetCDF global attributes) that every output of the model
    carries about its weights: the random-initialisation flag, when it applies."""
    return {RANDOM_INIT_ATTRIBUTE: RANDOM_INIT_VALUE} if is_random_init(manifest) else {}
