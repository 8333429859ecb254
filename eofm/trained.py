"""A trained model ready for inference, loaded from a run dir or one of its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from eofm.errors import EofmError
from eofm.recipe import Recipe
from eofm.rundir import CHECKPOINT_DIR, MODEL_FILE, load_run_recipe, read_json


@dataclass
class TrainedModel:
    """The network in eval mode plus what inference must reproduce from training."""

    model: torch.nn.Module
    recipe: Recipe
    bands: list[str]
    mean: list[float]
    std: list[float]
    class_names: list[str]
    patch_size: int
    source: str


def locate_run(spec: str) -> tuple[Path, Path]:
    """``RUN_DIR`` (its best checkpoint, else last) or ``RUN_DIR/checkpoints/X.ckpt``."""
    path = Path(spec)
    if path.is_file() and path.suffix == ".ckpt":
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        checkpoint = path
    elif path.is_dir():
        run_dir = path
        checkpoint = path / CHECKPOINT_DIR / "best.ckpt"
        if not checkpoint.is_file():
            checkpoint = path / CHECKPOINT_DIR / "last.ckpt"
    else:
        raise EofmError(f"Model {spec} is neither a run dir nor a .ckpt file.")
    if not (run_dir / MODEL_FILE).is_file():
        raise EofmError(
            f"{run_dir} is not a run dir written by 'eofm fit' ({MODEL_FILE} is missing)."
        )
    if not checkpoint.is_file():
        raise EofmError(f"Run dir {run_dir} has no checkpoint in {run_dir / CHECKPOINT_DIR}.")
    return run_dir, checkpoint


def load_task_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The LightningModule state dict of a checkpoint, read with ``weights_only=True``."""
    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EofmError(
            f"Checkpoint {checkpoint} could not be read: {type(exc).__name__}."
        ) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise EofmError(f"Checkpoint {checkpoint} holds no 'state_dict'.")
    return payload["state_dict"]


def load_trained(spec: str, overrides: list[str] | None = None) -> TrainedModel:
    """A run dir or checkpoint (no download: every weight comes from the checkpoint), or
    ``hf://ORG/NAME[@REV]``, a model published with ``eofm publish``."""
    from eofm.model import build_segmentation_model
    from eofm.published import is_published_spec, load_published

    if is_published_spec(spec):
        return load_published(spec, overrides)
    run_dir, checkpoint = locate_run(spec)
    recipe = load_run_recipe(run_dir, overrides or [])
    manifest = read_json(run_dir / MODEL_FILE)
    if recipe.task.type == "regression":
        from eofm.weather_model import build_latent_regression_model

        model = build_latent_regression_model(recipe, pretrained=False)
    else:
        model = build_segmentation_model(
            recipe,
            num_classes=len(recipe.task.class_names),
            data_bands=manifest["bands"],
            pretrained=False,
        )
    state = load_task_state(checkpoint)
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise EofmError(
            f"Checkpoint {checkpoint} does not match its run's model: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    return trained_from_manifest(model, recipe, manifest, str(checkpoint))


def trained_from_manifest(
    model: torch.nn.Module, recipe: Recipe, manifest: dict, source: str
) -> TrainedModel:
    """Wrap a loaded model with what a run's ``model.json`` (or a Hub ``config.json``) says."""
    model.eval()
    return TrainedModel(
        model=model,
        recipe=recipe,
        bands=list(manifest["bands"]),
        mean=[float(v) for v in manifest["mean"]],
        std=[float(v) for v in manifest["std"]],
        class_names=list(recipe.task.class_names),
        patch_size=int(manifest["backbone"]["patch_size"][-1]),
        source=source,
    )
