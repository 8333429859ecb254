"""Segmentation: a class per pixel of GeoTIFF chips (flood water, burn scars, ...).

Model: a ViT backbone, a neck, a map decoder and a 1x1 head
(:mod:`eofm.models.segmentation`); task: CE/dice losses with IoU, F1 and accuracy
(:mod:`eofm.tasks.segmentation`); outputs: Cloud-Optimized GeoTIFF class maps streamed
over scenes of any size (:mod:`eofm.predict.engine`); card: classes and bands.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, TaskFamily
from eofm.recipe import Recipe

log = logging.getLogger(__name__)


class SegmentationFamily(TaskFamily):
    name = "segmentation"
    decoder_input = "maps"
    metric_directions = {
        "loss": "min",
        "mIoU": "max",
        "mF1": "max",
        "accuracy": "max",
        "IoU": "max",
        "F1": "max",
    }

    predict_uncertainties = ("entropy", "mc-dropout", "tta")
    averages_ensembles = True

    def metric_names(self, recipe: Recipe) -> list[str]:
        """As ``tasks/segmentation.py`` logs them: the means, and IoU and F1 per class."""
        classes = recipe.task.class_names
        return [
            "loss", "mIoU", "mF1", "accuracy", *(f"IoU_{c}" for c in classes),
            *(f"F1_{c}" for c in classes),
        ]  # fmt: skip

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        if len(recipe.task.class_names) < 2:
            raise RecipeError(f"task.class_names in {where} needs at least 2 classes.")
        if not hasattr(recipe.data, "bands"):
            raise RecipeError(
                f"data.name {recipe.data.name} in {where} holds no image bands for a "
                "segmentation task (task.type)."
            )

    def normalisation(self, recipe: Recipe) -> tuple[list[float] | None, list[float] | None, str]:
        """Mean/std for the recipe's bands: explicit, else the backbone manifest's.

        Returns ``(None, None, ...)`` when some band is new to the backbone: the
        datamodule then computes statistics on the training split.
        """
        from eofm.backbones.loading import resolve_manifest

        data = recipe.data
        if data.mean is not None:
            return list(data.mean), list(data.std), "recipe"
        stats = resolve_manifest(recipe.backbone.name).band_stats()
        if all(b in stats for b in data.bands):
            return (
                [stats[b][0] for b in data.bands],
                [stats[b][1] for b in data.bands],
                ("backbone manifest"),
            )
        return None, None, "training-split statistics (bands new to the backbone)"

    def build_datamodule(
        self,
        recipe: Recipe,
        mean: list[float] | None,
        std: list[float] | None,
        *,
        pad_multiple: int,
        coords: dict[str, bool] | None = None,
    ) -> Any:
        """The datamodule of ``recipe``; ``coords`` says which TL coordinates to supply."""
        from eofm.data.loading import pin_memory_for, resolve_workers
        from eofm.registry import REGISTRY

        data = recipe.data
        if not data.root:
            raise EofmError(
                "data.root is empty: set it in the recipe or with data.root=/path/to/data."
            )
        cls = REGISTRY.get("dataset", data.name).load()
        options = {  # the dataset's own data.* keys, then what the family decides
            k: v
            for k, v in asdict(data).items()
            if k not in ("name", "root", "mean", "std", "num_workers")
        }
        options["split_fractions"] = tuple(data.split_fractions)
        datamodule = cls(
            data.root,
            **options,
            mean=mean,
            std=std,
            num_workers=resolve_workers(data.num_workers),
            pin_memory=pin_memory_for(recipe.trainer.accelerator),
            seed=recipe.seed,
            pad_multiple=pad_multiple,
            temporal_coords=bool(coords and coords.get("time")),
            location_coords=bool(coords and coords.get("location")),
            gsd_from_data=bool(coords and coords.get("gsd")),
        )
        expected = getattr(datamodule, "num_classes", None)
        if expected is not None and expected != len(recipe.task.class_names):
            raise EofmError(
                f"task.class_names has {len(recipe.task.class_names)} classes but dataset "
                f"{data.name} has {expected}."
            )
        return datamodule

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        from eofm.backbones.loading import resolve_manifest

        manifest = resolve_manifest(recipe.backbone.name)
        mean, std, norm_source = self.normalisation(recipe)
        datamodule = self.build_datamodule(
            recipe, mean, std, pad_multiple=manifest.patch_size[-1], coords=wanted_coords(recipe)
        )
        model = self.build_model(
            recipe,
            bands=recipe.data.bands,
            pretrained=recipe.backbone.pretrained,
            allow_random_init=allow_random_init,
        )
        return FitSetup(datamodule, model, norm_source)

    def build_model(
        self,
        recipe: Recipe,
        *,
        bands: list[str] | None,
        pretrained: bool | None,
        allow_random_init: bool = False,
    ) -> Any:
        from eofm.models.segmentation import build_segmentation_model

        return build_segmentation_model(
            recipe,
            num_classes=len(recipe.task.class_names),
            data_bands=bands or recipe.data.bands,
            pretrained=pretrained,
            allow_random_init=allow_random_init,
        )

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(
            recipe,
            trained.mean,
            trained.std,
            pad_multiple=trained.patch_size,
            coords=trained.manifest["backbone"].get("coords"),
        )

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.tasks.segmentation import SegmentationTask

        return SegmentationTask(
            model,
            class_names=recipe.task.class_names,
            ignore_index=recipe.task.ignore_index,
            loss=recipe.task.loss,
            class_weights=recipe.task.class_weights,
            **asdict(recipe.optimizer),
        )

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        from eofm.adapters import base_encoder

        encoder = base_encoder(model.backbone)
        out = self.common_manifest(
            recipe,
            encoder,
            datamodule,
            norm_source,
            task={"type": recipe.task.type, "class_names": recipe.task.class_names},
        )
        out["bands"] = list(recipe.data.bands)
        out["backbone"].update(
            band_mapping=encoder.band_mapping,
            patch_size=list(encoder.manifest.config.patch_size),
            num_frames=encoder.manifest.config.num_frames,
            gsd_m=encoder.manifest.gsd_m,
        )
        out["backbone"]["coords"] = getattr(
            datamodule, "uses_coords", {"time": False, "location": False, "gsd": False}
        )
        if hasattr(encoder, "gsd_reference_m"):  # Scale-MAE: how res was set
            out["backbone"]["gsd"] = {"value": encoder.gsd, "reference_m": encoder.gsd_reference_m}
        if hasattr(datamodule, "input_range"):
            out["input_range"] = datamodule.input_range()
        return out

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        super().evaluate(trained, datamodule, out_dir, mc_samples=mc_samples)
        from eofm.evaluation.splits import evaluate_segmentation

        ignore = trained.recipe.task.ignore_index
        return evaluate_segmentation(trained, datamodule, out_dir, ignore_index=ignore)

    def check_calibratable(self, run_dir: Any) -> None:
        return None

    def calibrate(self, trained: Any, datamodule: Any) -> dict[str, Any]:
        from eofm.evaluation.calibration import calibration_record
        from eofm.evaluation.splits import sample_logits

        logits, target = sample_logits(
            trained.model,
            datamodule.val_dataloader(),
            len(trained.class_names),
            trained.recipe.task.ignore_index,
        )
        units = len(datamodule.val_dataloader().dataset)
        return calibration_record(logits, target, "val", units=units, unit="chips")

    def check_predictable(self, model_spec: str) -> None:
        return None

    def predictor(self, trained: Any, options: Any, members: Any = ()) -> Any:
        from eofm.predict.engine import Predictor

        return Predictor(trained, options, members)

    def check_publishable(self, run_dir: Any) -> None:
        return None

    def check_exportable(self, run_dir: Any) -> None:
        return None

    def model_card(self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any) -> str:
        from eofm.publishing.card import render_segmentation_card

        return render_segmentation_card(config, recipe, metrics, **card)


def wanted_coords(recipe: Recipe) -> dict[str, bool]:
    """What the backbone takes from the data: TL ``time`` and ``location`` (unless
    ``backbone.coords: false``), and Scale-MAE's ``gsd`` (unless ``backbone.gsd`` fixes it)."""
    from eofm.backbones.loading import resolve_manifest

    manifest = resolve_manifest(recipe.backbone.name)
    gsd = manifest.family == "scalemae" and recipe.backbone.gsd is None
    if not recipe.backbone.coords:
        return {"time": False, "location": False, "gsd": gsd}
    encoding = getattr(manifest.config, "coords_encoding", ())
    return {"time": "time" in encoding, "location": "location" in encoding, "gsd": gsd}
