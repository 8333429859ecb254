"""Scene classification: one label per image chip (EuroSAT MS land cover, ...).

A family of its own rather than part of ``classification`` (which scores Mesogeos /
FireCube datacube samples for fire danger), because nothing but the word is shared:

- the model here is an EO backbone (Prithvi, Scale-MAE, timm or torchgeo weights, LoRA
  through peft as in segmentation) with a head on its pooled tokens or pooled feature map
  (:mod:`eofm.decoders.pooled`); ``classification``'s model is a small temporal head
  (LSTM, transformer, GRU, LOAN) on days of dynamic variables, with no backbone;
- the inputs are multispectral image chips (GeoTIFFs, bands by name, 64 px); there,
  datacube samples (variables x days x patch) cut from a zarr cube;
- the task is multi-class (softmax over the dataset's classes, accuracy and F1 per
  class, a confusion matrix); there, one binary event (focal/BCE, AUPRC, AUROC, a
  validation-picked threshold, temperature calibration);
- ``eofm predict`` here reads a folder of chips and writes a CSV of top-k labels; there,
  it maps one day of danger over a whole cube (``--date``).

One family would make every hook branch on what the sample is, the very ``task.type``
test the seam exists to avoid; ``classification`` stays as it is for its recipes.

Model: :mod:`eofm.models.scene_classification`; task: cross-entropy with overall accuracy
and F1 per class (:mod:`eofm.lightning_tasks.scene_classification`); data:
:mod:`eofm.data.eurosat` (torchgeo's ``EuroSAT``); ``eofm test`` adds the confusion
matrix and ``confusion.png``; ``eofm predict`` writes ``predictions.csv``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eofm.data.bigearthnet_config import BigEarthNetConfig
from eofm.data.eurosat_config import EuroSATConfig
from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option

#: What ``eofm predict`` writes in ``--out``.
PREDICTIONS_FILE = "predictions.csv"


@dataclass
class SceneClassificationTaskConfig(TaskConfig):
    """The ``task`` keys of a scene-classification recipe."""

    class_names: list[str] = option(
        help="class names in label order (EuroSAT: its class folders, sorted)", factory=list
    )
    monitor: str = option("val/accuracy", "metric that picks best.ckpt (its direction is declared)")
    top_k: int = option(3, "labels, with their probabilities, that eofm predict writes per chip")
    label_smoothing: float = option(0.0, "cross-entropy label smoothing (0: none)")


class SceneClassificationFamily(TaskFamily):
    name = "scene_classification"
    task_config = SceneClassificationTaskConfig
    commands = frozenset({"fit", "test", "predict"})
    decoder_input = "pooled"
    metric_directions = {"loss": "min", "accuracy": "max", "mF1": "max", "F1": "max", "mAP": "max"}
    export_output = "logits (B, classes); sigmoid for a multi-label model, else softmax"

    # --- light ------------------------------------------------------------------------
    def metric_names(self, recipe: Recipe) -> list[str]:
        if recipe.data.multilabel:
            return ["loss", "mAP_micro", "mAP_macro", "F1_micro", "F1_macro"]
        classes = recipe.task.class_names
        return ["loss", "accuracy", "mF1", *(f"F1_{c}" for c in classes)]

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        task = recipe.task
        if len(task.class_names) < 2 or len(set(task.class_names)) != len(task.class_names):
            raise RecipeError(
                f"task.class_names in {where} needs at least 2 distinct classes, got "
                f"{task.class_names}."
            )
        if task.top_k < 1:
            raise RecipeError(f"task.top_k in {where} must be at least 1, got {task.top_k}.")
        if not 0 <= task.label_smoothing < 1:
            raise RecipeError(
                f"task.label_smoothing in {where} must be in [0, 1), got {task.label_smoothing}."
            )
        if not isinstance(recipe.data, (EuroSATConfig, BigEarthNetConfig)):
            raise RecipeError(
                f"data.name {recipe.data.name} in {where} holds no labelled image chips for a "
                "scene_classification task (task.type); use data.name: eurosat (one label "
                "per chip) or bigearthnet (a set of labels per patch)."
            )

    def check_data(self, recipe: Recipe, where: str) -> None:
        """The release's files (split lists, image folder) and its class folders, which
        are the labels: each must be in ``task.class_names``, in the same order."""
        super().check_data(recipe, where)
        recipe.data.check_labels(recipe.task.class_names, where)

    # --- heavy: training and evaluation -------------------------------------------------
    def normalisation(self, recipe: Recipe) -> tuple[list[float] | None, list[float] | None, str]:
        """The recipe's mean/std, else the backbone manifest's when it knows every band,
        else the dataset's own statistics (torchgeo's, as the datamodule reads them)."""
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
        return None, None, "torchgeo EuroSATDataModule statistics (bands new to the backbone)"

    def build_datamodule(
        self, recipe: Recipe, mean: list[float] | None, std: list[float] | None
    ) -> Any:
        from eofm.data.loading import pin_memory_for, resolve_workers
        from eofm.registry import REGISTRY

        data = recipe.data
        if not data.root:
            raise EofmError(
                "data.root is empty: set it in the recipe or with data.root=/path/to/eurosat."
            )
        options = {
            k: v for k, v in asdict(data).items() if k not in ("name", "root", "mean", "std")
        }
        options["num_workers"] = resolve_workers(data.num_workers)
        datamodule = REGISTRY.get("dataset", data.name).load()(
            data.root,
            **options,
            mean=mean,
            std=std,
            pin_memory=pin_memory_for(recipe.trainer.accelerator),
            seed=recipe.seed,
        )
        datamodule.check_labels(recipe.task.class_names, "the recipe")
        return datamodule

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        mean, std, norm_source = self.normalisation(recipe)
        datamodule = self.build_datamodule(recipe, mean, std)
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
        from eofm.models.scene_classification import build_scene_classifier

        return build_scene_classifier(
            recipe,
            num_classes=len(recipe.task.class_names),
            data_bands=bands or recipe.data.bands,
            pretrained=pretrained,
            allow_random_init=allow_random_init,
        )

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(recipe, trained.mean, trained.std)

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.lightning_tasks.scene_classification import (
            MultiLabelSceneTask,
            SceneClassificationTask,
        )

        if recipe.data.multilabel:
            return MultiLabelSceneTask(
                model, class_names=recipe.task.class_names, **asdict(recipe.optimizer)
            )
        return SceneClassificationTask(
            model,
            class_names=recipe.task.class_names,
            label_smoothing=recipe.task.label_smoothing,
            **asdict(recipe.optimizer),
        )

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        from eofm.adapters import base_encoder

        encoder = base_encoder(model.backbone)
        task = recipe.task
        out = self.common_manifest(
            recipe,
            encoder,
            datamodule,
            norm_source,
            task={
                "type": task.type,
                "class_names": task.class_names,
                "top_k": task.top_k,
                "multilabel": recipe.data.multilabel,
            },
        )
        out["bands"] = list(recipe.data.bands)
        out["inputs"] = {
            "dataset": recipe.data.name,
            "file_bands": list(datamodule.file_bands),
            "chip_size": [datamodule.chip_size, datamodule.chip_size],
        }
        config = encoder.manifest.config
        out["backbone"].update(
            band_mapping=encoder.band_mapping,
            patch_size=list(config.patch_size),
            num_frames=config.num_frames,
            gsd_m=encoder.manifest.gsd_m,
        )
        return out

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        """Single-label: the test confusion matrix (rows: truth), and ``confusion.png`` in
        ``out_dir``. Multi-label: the average precision of each class and the threshold."""
        super().evaluate(trained, datamodule, out_dir, mc_samples=mc_samples)
        import torch
        from torchmetrics.classification import (
            MulticlassConfusionMatrix,
            MultilabelAveragePrecision,
        )

        names = list(trained.class_names)
        multilabel = trained.recipe.data.multilabel
        metric = (
            MultilabelAveragePrecision(len(names), average="none")
            if multilabel
            else MulticlassConfusionMatrix(len(names))
        )
        model = trained.model.eval()
        device = next(model.parameters()).device
        positives = torch.zeros(len(names))
        with torch.inference_mode():
            for batch in datamodule.test_dataloader():
                logits = model(batch["image"].to(device)).float().cpu()
                if multilabel:
                    metric.update(logits.sigmoid(), batch["label"].long())
                    positives += batch["label"].float().sum(dim=0)
                else:
                    metric.update(logits, batch["label"])
        if multilabel:  # a class absent from the test split has no average precision
            ap = metric.compute().tolist()
            return {
                "average_precision": {
                    name: (value if count > 0 else None)
                    for name, value, count in zip(names, ap, positives.tolist(), strict=True)
                },
                "threshold": float(trained.model.threshold),
            }
        counts = metric.compute().numpy()
        record: dict[str, Any] = {
            "confusion": {"classes": names, "truth_by_predicted": counts.tolist()}
        }
        if out_dir is not None:
            from eofm.evaluation.pictures import confusion_matrix

            confusion_matrix(counts, names, Path(out_dir) / "confusion.png")
            record["pictures"] = ["confusion.png"]
        return record

    # --- outputs ------------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> int:
        """``eofm predict --model RUN CHIPS...``: the chips of files, folders or globs,
        each checked (bands, size) before the model loads, then classified in batches
        (inputs larger than a chip are scenes, labelled by :func:`map_scene`);
        ``predictions.csv`` in ``--out`` has a row per chip: ``file``, ``label_1``,
        ``probability_1`` .. ``label_k``, ``probability_k`` (``task.top_k``), and with
        ``--probabilities`` every class's probability; a multi-label model's rows start
        with ``labels``, those at or above the threshold chosen on validation (``;``-joined).
        """
        options, manifest = request.options, request.manifest
        if options.vector:
            raise EofmError(
                f"--vector: {request.model_spec} is a scene_classification run; it writes a "
                "label per chip (a CSV), not a map to vectorise.",
                exit_code=2,
            )
        if options.tta_flip:
            raise EofmError(
                f"--tta: {request.model_spec} is a scene_classification run, whose predict "
                "has no test-time augmentation.",
                exit_code=2,
            )
        data, inputs = request.recipe.data, manifest["inputs"]
        found = data.chip_files(request.inputs)
        chips, scenes = [], []
        for chip in found:  # every chip and scene, before the model loads
            is_scene = data.check_chip(chip, inputs["file_bands"], inputs["chip_size"])
            (scenes if is_scene else chips).append(chip)
        stride = check_scenes(scenes, request) if scenes else 0
        target = request.out_dir / PREDICTIONS_FILE
        targets = [target] if chips else []
        targets += [request.out_dir / f"{scene.stem}_labels.tif" for scene in scenes]
        for path in targets:
            if path.exists() and not options.overwrite:
                raise EofmError(
                    f"{path} exists; use --overwrite to replace it, or another --out folder.",
                    exit_code=2,
                )
        trained = request.load()
        if chips:
            rows = classify_chips(trained, chips, options)
            write_predictions(target, rows, trained, options.probabilities)
            request.echo(f"eofm predict: {len(chips)} chip(s) classified by {trained.source}")
            request.echo(f"  {target}")
        for scene, path in zip(scenes, targets[len(targets) - len(scenes) :], strict=True):
            cells = map_scene(trained, scene, path, stride, options)
            request.echo(f"eofm predict: {scene}: {cells} cells of {stride} px labelled\n  {path}")
        return 0


def check_scenes(scenes: list[Path], request: PredictRequest) -> int:
    """The sliding window's stride (the chip size less ``--overlap``), which must divide
    the chip size; only single-label models map scenes. Light."""
    if request.manifest["task"].get("multilabel"):
        raise EofmError(
            f"{scenes[0]} is larger than a chip; {request.model_spec} gives a set of labels "
            "per patch and maps no scene. Give patches of its size.",
            exit_code=2,
        )
    size = int(request.manifest["inputs"]["chip_size"][0])
    stride = size - request.options.overlap if request.options.overlap < size else 0
    if stride <= 0 or size % stride:
        raise EofmError(
            f"--overlap {request.options.overlap}: scenes are mapped by windows of the chip "
            f"size ({size} px) stepped by the chip size less the overlap, which must divide "
            f"{size} (e.g. --overlap 0 or {size // 2}).",
            exit_code=2,
        )
    return stride


def classify_chips(trained: Any, chips: list[Path], options: Any) -> list[tuple[Path, list[float]]]:
    """Each chip's class probabilities, read as training read them (the dataset's
    ``read_chip``), normalised with the run's statistics, in batches."""
    import torch

    from eofm.predict.device import resolve_device
    from eofm.registry import REGISTRY

    read_chip = REGISTRY.get("dataset", trained.recipe.data.name).load().read_chip
    manifest = trained.manifest
    index = [manifest["inputs"]["file_bands"].index(b) for b in trained.bands]
    mean = torch.tensor(trained.mean)[:, None, None]
    std = torch.tensor(trained.std)[:, None, None]
    device = resolve_device(options.device)
    model = trained.model.to(device).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(chips), options.batch_size):
            batch = chips[start : start + options.batch_size]
            images = [(read_chip(c)[index] - mean) / std for c in batch]
            logits = model(torch.stack(images).to(device)).float().cpu() / trained.temperature
            multilabel = trained.recipe.data.multilabel
            probabilities = logits.sigmoid() if multilabel else torch.softmax(logits, dim=1)
            rows.extend(zip(batch, probabilities.tolist(), strict=True))
    return rows


def write_predictions(
    target: Path, rows: list[tuple[Path, list[float]]], trained: Any, every_class: bool
) -> None:
    """``predictions.csv``, written whole or not at all (:func:`eofm.atomic.atomic_output`)."""
    import csv

    from eofm.atomic import atomic_output
    from eofm.publishing.provenance import output_attributes

    names = list(trained.class_names)
    k = min(int(trained.manifest["task"].get("top_k", 3)), len(names))
    flags = output_attributes(trained.manifest)  # a random-init backbone says so per row
    threshold = float(trained.model.threshold) if trained.recipe.data.multilabel else None
    header = ["file"] + (["labels"] if threshold is not None else [])
    header += [f"{kind}_{i}" for i in range(1, k + 1) for kind in ("label", "probability")]
    header += [f"probability_{c}" for c in names] if every_class else []
    header += list(flags)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for chip, probabilities in rows:
            ranked = sorted(range(len(names)), key=lambda i: -probabilities[i])[:k]
            row: list[Any] = [str(chip)]
            if threshold is not None:
                row.append(
                    ";".join(n for n, p in zip(names, probabilities, strict=True) if p >= threshold)
                )
            for i in ranked:
                row += [names[i], f"{probabilities[i]:.6f}"]
            if every_class:
                row += [f"{p:.6f}" for p in probabilities]
            writer.writerow(row + list(flags.values()))


def map_scene(trained: Any, scene: Path, target: Path, stride: int, options: Any) -> int:
    """A sliding-window label map of ``scene`` as a COG at ``target``: windows of the chip
    size stepped by ``stride`` (the chip size less ``--overlap``), read a strip at a time;
    each cell of ``stride`` px takes the class of the mean probabilities of the windows
    covering it (band 1, uint8; the class names in the tags). Right and bottom edges
    narrower than a cell stay out of the map, whose transform is the scene's scaled by
    ``stride``. Returns the number of cells."""
    import numpy as np
    import rasterio
    import torch
    from rasterio.windows import Window

    from eofm.atomic import atomic_output
    from eofm.predict.cog import write_cog
    from eofm.predict.device import resolve_device
    from eofm.publishing.provenance import output_attributes

    size = int(trained.manifest["inputs"]["chip_size"][0])
    index = [trained.manifest["inputs"]["file_bands"].index(b) for b in trained.bands]
    mean = torch.tensor(trained.mean)[:, None, None]
    std = torch.tensor(trained.std)[:, None, None]
    device = resolve_device(options.device)
    model = trained.model.to(device).eval()
    per = size // stride  # cells along a window's side
    with rasterio.open(scene) as src:
        starts_r = range(0, src.height - size + 1, stride)
        starts_c = list(range(0, src.width - size + 1, stride))
        rows, cols = len(starts_r) - 1 + per, len(starts_c) - 1 + per
        sums = np.zeros((len(trained.class_names), rows, cols), np.float32)
        with torch.inference_mode():
            for i, r0 in enumerate(starts_r):
                strip = src.read(window=Window(0, r0, src.width, size), out_dtype="int32")
                strip = (torch.from_numpy(strip)[index].float() - mean) / std
                windows = torch.stack([strip[:, :, c0 : c0 + size] for c0 in starts_c])
                for b in range(0, len(windows), options.batch_size):
                    logits = model(windows[b : b + options.batch_size].to(device)).float().cpu()
                    probabilities = torch.softmax(logits / trained.temperature, dim=1).numpy()
                    for j, p in enumerate(probabilities, start=b):
                        sums[:, i : i + per, j : j + per] += p[:, None, None]
        profile = {
            "driver": "GTiff", "width": cols, "height": rows, "count": 1, "dtype": "uint8",
            "crs": src.crs, "transform": src.transform * rasterio.Affine.scale(stride),
        }  # fmt: skip
    labels = sums.argmax(axis=0).astype(np.uint8)
    tags = {"eofm_classes": ",".join(trained.class_names), **output_attributes(trained.manifest)}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        staging = tmp.with_name(tmp.name + ".staging.tif")
        try:
            with rasterio.open(staging, "w", **profile) as dst:
                dst.write(labels, 1)
                dst.update_tags(**tags)
                dst.set_band_description(1, "class index (eofm_classes)")
            write_cog(staging, tmp, "classes")
        finally:
            staging.unlink(missing_ok=True)
    return rows * cols
