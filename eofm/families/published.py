"""Loading a model that ``eofm publish`` put on the Hub (``hf://ORG/NAME[@REV]``).

Every file comes from one pinned commit through ``huggingface_hub`` (so its cache and
``HF_HUB_OFFLINE=1`` work), only the files a published eofm repo may hold are fetched,
weights are read from safetensors only, and their SHA-256 must match ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.models.trained import TrainedModel, trained_from_manifest


def _fetch_config(spec: str) -> tuple[Any, dict, str | None, Path]:
    """``(ref, config.json, pinned commit, recipe.yaml path)`` of a published model."""
    from eofm.publishing import hub
    from eofm.publishing.bundle import ALLOWED_FILES, CONFIG_FILE, FORMAT, RECIPE_FILE

    ref = hub.parse_hub_uri(spec)
    if ref.filename:
        raise EofmError(f"{spec}: a published eofm model is a whole repo; drop '#{ref.filename}'.")
    config_path, commit = hub.download_file(ref.repo_id, CONFIG_FILE, ref.revision)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EofmError(f"config.json of {spec} is not valid JSON: {exc}") from None
    if config.get("format") != FORMAT or config.get("weights") not in ALLOWED_FILES:
        raise EofmError(
            f"{spec} is not a model published by eofm (config.json format {config.get('format')!r})."
        )
    from eofm.train.model_json import ModelJson

    ModelJson.parse(config, f"config.json of {spec}")  # the fields model.json has, checked alike
    pinned = commit or ref.revision
    recipe_path, _ = hub.download_file(ref.repo_id, RECIPE_FILE, pinned)
    return ref, config, pinned, recipe_path


def published_manifest(spec: str, overrides: list[str] | None = None) -> tuple[Any, dict]:
    """The recipe and ``config.json`` of a published model, without its weights."""
    from eofm.recipe import load_recipe

    _, config, _, recipe_path = _fetch_config(spec)
    return load_recipe(recipe_path, overrides or [], saved=True), config


def load_published(spec: str, overrides: list[str] | None = None) -> TrainedModel:
    from safetensors.torch import load_file

    from eofm.adapters import base_encoder
    from eofm.publishing import hub
    from eofm.publishing.bundle import sha256_of
    from eofm.recipe import load_recipe

    ref, config, pinned, recipe_path = _fetch_config(spec)
    weights_path, _ = hub.download_file(ref.repo_id, config["weights"], pinned)
    if sha256_of(weights_path) != config.get("weights_sha256"):
        raise EofmError(
            f"Checksum mismatch for {config['weights']} of hf://{ref.repo_id}@{pinned}: the download is corrupt."
        )
    recipe = load_recipe(recipe_path, overrides or [], saved=True)
    family = family_of(recipe)
    base = config["backbone"]
    if config["adapter_only"]:
        pin_backbone(recipe, base)
        model = family.build_model(recipe, bands=config["bands"], pretrained=True)
        encoder = base_encoder(model.backbone)
        if (encoder.source or {}).get("revision") != base["revision"]:
            raise EofmError(
                f"Base model {base['repo']} resolved to revision {(encoder.source or {}).get('revision')}, "
                f"but {spec} was trained on {base['revision']}."
            )
    else:
        model = family.build_model(recipe, bands=config["bands"], pretrained=False)
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # safetensors' SafetensorError: a pickle, a damaged header
        raise EofmError(
            f"Weights {config['weights']} of hf://{ref.repo_id}@{pinned} are not a readable "
            f"safetensors file ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
            "eofm loads published weights from safetensors only."
        ) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected_missing = set()
    if config["adapter_only"]:
        expected_missing = {
            f"backbone.{n}" for n, p in model.backbone.named_parameters() if not p.requires_grad
        }
    if unexpected or set(missing) - expected_missing:
        raise EofmError(
            f"Weights of {spec} do not match its recipe: unexpected {unexpected[:3]}, "
            f"missing {sorted(set(missing) - expected_missing)[:3]}."
        )
    return trained_from_manifest(model, recipe, config, f"hf://{ref.repo_id}@{pinned}")


def pin_backbone(recipe: Any, base: dict) -> None:
    """Point ``recipe.backbone.name`` at the exact commit (and file) that the frozen
    weights of a light checkpoint or an adapter-only upload came from, whatever the
    branch the name follows now."""
    from eofm.registry import REGISTRY

    if REGISTRY.resolver("backbone", recipe.backbone.name) is not None:
        return  # a catalogue name (torchgeo:) pins its file and revision itself
    if base.get("repo") and base.get("revision"):
        file = f"#{base['file']}" if base.get("file") else ""
        recipe.backbone.name = f"hf://{base['repo']}@{base['revision']}{file}"
