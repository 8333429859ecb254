"""Tiny run dirs written directly (no training), for inference tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from eofm.commands.fit import model_manifest as _model_manifest
from eofm.lightning_tasks.segmentation import SegmentationTask
from eofm.models.segmentation import build_segmentation_model
from eofm.recipe import dump_recipe, load_recipe
from eofm.train.rundir import write_json


def make_run_dir(
    run_dir: Path,
    bands: list[str],
    mean: list[float],
    std: list[float],
    *,
    tap_layers: tuple[int, ...] = (0, 1),
    seed: int = 0,
    dropout: float = 0.1,
) -> Path:
    """A run dir whose model is Prithvi-tiny cut to ``tap_layers`` + a small decoder."""
    torch.manual_seed(seed)
    recipe = load_recipe(
        {
            "name": "tiny",
            "task": {"definition": "flood_mapping"},
            "backbone": {
                "name": "prithvi_eo_v2_tiny_tl",
                "pretrained": False,
                "tap_layers": list(tap_layers),
            },
            "decoder": {"name": "progressive", "channels": 16, "dropout": dropout},
            "data": {"bands": bands},
        }
    )
    model = build_segmentation_model(recipe, num_classes=2, data_bands=bands)
    with torch.no_grad():  # a visible class boundary instead of a near-constant map
        model.head[1].bias.copy_(torch.tensor([0.0, 0.05]))
    task = SegmentationTask(model, class_names=recipe.task.class_names)
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": task.state_dict()}, run_dir / "checkpoints" / "best.ckpt")
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    stats = SimpleNamespace(mean=mean, std=std)
    write_json(run_dir / "model.json", _model_manifest(recipe, model, stats, "test"))
    return run_dir
