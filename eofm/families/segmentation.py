"""Segmentation: a class per pixel of GeoTIFF chips (flood water, burn scars, ...).

Model: a ViT backbone, a neck, a map decoder and a 1x1 head
(:mod:`eofm.models.segmentation`); task: CE/dice losses with IoU, F1 and accuracy
(:mod:`eofm.lightning_tasks.segmentation`); outputs: Cloud-Optimized GeoTIFF class maps streamed
over scenes of any size (:mod:`eofm.predict.engine`); card: classes and bands.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from eofm.data.config import ChipDataConfig
from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option

if TYPE_CHECKING:  # pragma: no cover
    from eofm.publishing.card import CardSection

log = logging.getLogger(__name__)


@dataclass
class SegmentationTaskConfig(TaskConfig):
    """The ``task`` keys of a segmentation recipe."""

    class_names: list[str] = option(
        help="class names, index = label value", factory=lambda: ["background", "foreground"]
    )
    ignore_index: int = option(-1, "label value that is never scored")
    loss: Literal["ce", "dice", "ce+dice"] = option("ce", "ce, dice or ce+dice")
    class_weights: list[float] | None = option(None, "cross-entropy class weights")


class SegmentationFamily(TaskFamily):
    name = "segmentation"
    task_config = SegmentationTaskConfig
    commands = frozenset({"fit", "test", "predict", "ensemble", "calibrate", "publish"})
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
    fits_distributed = True  # tests/test_ddp.py
    tests_tiled = True
    export_output = "logits (B, classes, tile, tile)"
    predicts_from_graph = True

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
        if not isinstance(recipe.data, ChipDataConfig):
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
        from eofm.bands import frame_bands
        from eofm.models.segmentation import build_segmentation_model

        return build_segmentation_model(
            recipe,
            num_classes=len(recipe.task.class_names),
            data_bands=frame_bands(bands or recipe.data.bands),
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
        from eofm.lightning_tasks.segmentation import SegmentationTask

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
        out["bands"] = input_bands(recipe)
        if recipe.data.frame_list():  # a multi-date stack: its frames, in file order
            out["frames"] = recipe.data.frame_list()
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
        from eofm.evaluation.passes import evaluate_segmentation

        ignore = trained.recipe.task.ignore_index
        return evaluate_segmentation(trained, datamodule, out_dir, ignore_index=ignore)

    def evaluate_tiled(
        self, trained: Any, datamodule: Any, out_dir: Any, maps_dir: Path | None = None
    ) -> dict[str, Any]:
        """The test split's whole chips streamed through ``eofm predict``'s engine."""
        return score_tiled(trained, datamodule, out_dir, maps_dir)

    def calibrate(self, trained: Any, datamodule: Any) -> dict[str, Any]:
        from eofm.evaluation.calibration import calibration_record
        from eofm.evaluation.passes import sample_logits

        logits, target = sample_logits(
            trained.model,
            datamodule.val_dataloader(),
            len(trained.class_names),
            trained.recipe.task.ignore_index,
        )
        units = len(datamodule.val_dataloader().dataset)
        return calibration_record(logits, target, "val", units=units, unit="chips")

    def predict(self, request: PredictRequest) -> int:
        """GeoTIFF scenes of any size streamed through the model (:mod:`eofm.predict.engine`)."""
        return predict_scenes(request)

    def check_ensemble_member(
        self, first: str, recipe: Recipe, manifest: dict, other: str, other_recipe: Recipe,
        other_manifest: dict,
    ) -> None:  # fmt: skip
        """Ensemble members must predict the same classes from the same bands."""
        if list(other_recipe.task.class_names) != list(recipe.task.class_names):
            raise EofmError(
                f"Ensemble members predict different classes: {first} "
                f"{list(recipe.task.class_names)} vs {other} {list(other_recipe.task.class_names)}.",
                exit_code=2,
            )
        if list(other_manifest["bands"]) != list(manifest["bands"]):
            raise EofmError(
                f"Ensemble members read different bands: {first} {manifest['bands']} vs {other} "
                f"{other_manifest['bands']}.",
                exit_code=2,
            )

    def card_section(
        self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any
    ) -> CardSection:
        """Classes, bands with their normalisation, split, and the test scores."""
        from eofm.publishing.card import CardSection, adapter_text, backbone_text
        from eofm.publishing.paths import public_path

        repo_id, quicklook = card["repo_id"], card["quicklook"]
        backbone, task = config["backbone"], config["task"]
        dataset = recipe.data.name
        meta = {
            "tags": ["earth-observation", "remote-sensing", "eofm", task["type"], "image-segmentation"],
            "pipeline_tag": "image-segmentation",
            "datasets": [dataset],
        }  # fmt: skip
        result = None
        if metrics and metrics.get("metrics"):
            values = metrics["metrics"]
            result = {
                "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                "dataset": {"type": dataset, "name": dataset, "split": "test"},
                "metrics": [
                    {
                        "type": key.split("/", 1)[1],
                        "value": round(float(value), 4),
                        "name": key,
                    }
                    for key, value in sorted(values.items())
                    if value is not None and key.startswith("test/")
                ],
            }
            rows = "\n".join(
                f"| {k} | {v:.4f} |" for k, v in sorted(values.items()) if v is not None
            )
            tiled = (metrics.get("protocol") or {}).get("tiled")
            whole = (
                f", each chip whole in tiles of {tiled['tile']} px overlapping by "
                f"{tiled['overlap']} px as `eofm predict` streams it"
                + (" (flip TTA)" if tiled["tta"] == "flip" else "")
                if tiled
                else ""
            )
            evaluation = (
                f"On the test split ({len(metrics.get('test_chips', []))} chips{whole}), with "
                f"checkpoint `{metrics.get('checkpoint')}`:\n\n| metric | value |\n|---|---|\n{rows}"
            )
        else:
            evaluation = (
                "**This model was not evaluated**: its run has no test metrics. Run "
                f"`eofm test hf://{repo_id} data.root=...` on labelled data before use."
            )
        mapping = backbone.get("band_mapping", {})
        band_rows = "\n".join(
            f"| {i} | {band} | {mean:.6g} | {std:.6g} | {'copied' if band in mapping.get('copied', []) else 'new'} |"
            for i, (band, mean, std) in enumerate(
                zip(config["bands"], config["mean"], config["std"], strict=True), 1
            )
        )
        split_text = recipe.data.split_description()
        fields = dict(
            summary=recipe.description
            or f"{task['type'].capitalize()} of {', '.join(task['class_names'])}.",
            eofm_version=config["eofm_version"],
            task_type=task["type"],
            class_list=", ".join(f"{i} = {c}" for i, c in enumerate(task["class_names"])),
            backbone_text=backbone_text(backbone),
            adapter_text=adapter_text(config["adapter"], frozen="backbone frozen"),
            decoder_text=f"{config['decoder']['name']} ({config['decoder']['channels']} channels)",
            patch_size=backbone["patch_size"][-1],
            num_frames=backbone["num_frames"],
            weights_text=(
                f"LoRA adapter and trained head only (`{config['weights']}`); the base model is fetched from its pinned revision"
                if config["adapter_only"]
                else f"the complete model (`{config['weights']}`)"
            ),
            band_rows=band_rows,
            dataset_name=dataset,
            data_root=public_path(recipe.data.root),
            split_text=split_text,
            evaluation_text=evaluation,
            repo_id=repo_id,
            revision_hint=card.get("revision") or "main",
            quicklook_text="![quicklook](quicklook.png)" if quicklook else "",
            intended_use=(
                f"Mapping {', '.join(task['class_names'][1:])} per pixel in {dataset}-like imagery, "
                "for research and for screening that a person reviews."
            ),
        )
        return CardSection("model_card.md", meta, result, fields)


def input_bands(recipe: Recipe) -> list[str]:
    """The bands a scene gives the model: the data's bands, or for a stack of dates
    (``data.frames``) every frame's bands, frame-major, named ``BAND@frame``."""
    from eofm.bands import stack_band_names

    frames = [f["name"] for f in recipe.data.frame_list()]
    return stack_band_names(recipe.data.bands, frames) if frames else list(recipe.data.bands)


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


def score_tiled(
    trained: Any, datamodule: Any, out_dir: Any, maps_dir: Path | None = None
) -> dict[str, Any]:
    """``eofm test`` with ``eval.tiled``: each test chip (image and label, as the dataset
    pairs them) predicted as ``eofm predict --tile T --overlap O [--tta flip]`` would, by
    the same :class:`~eofm.predict.engine.Predictor`, into ``maps_dir`` (default: a
    temporary folder), and its class map scored against the label
    (:mod:`eofm.evaluation.scenes`). A TL model gets each chip's acquisition date as the
    chip-wise test does."""
    import tempfile

    from eofm.evaluation import pictures
    from eofm.evaluation.scenes import class_map_scores, scene_metrics
    from eofm.evaluation.scores import PixelScores
    from eofm.predict.engine import Predictor
    from eofm.predict.options import PredictOptions

    recipe, names = trained.recipe, list(trained.class_names)
    tiled = recipe.eval.tiled
    pairs = datamodule.split_pairs("test")
    if not pairs:
        raise EofmError(f"The test split is empty (data under {datamodule.root}).")
    options = PredictOptions(
        tile=tiled.tile,
        overlap=tiled.overlap,
        tta_flip=tiled.tta == "flip",
        quicklook=False,
        bands=datamodule.image_bands,
        device="cpu" if recipe.trainer.accelerator == "cpu" else "auto",
    )
    predictor = Predictor(trained, options)
    scores = PixelScores(len(names))
    with tempfile.TemporaryDirectory(prefix="eofm-tiled-") as scratch:
        folder = Path(maps_dir or scratch)
        for chip, (image, label) in pairs.items():
            predictor.options.date = _chip_date(datamodule, chip)  # as the chip's sample
            result = predictor.predict(image, folder)
            scores += class_map_scores(
                result.outputs[0], label, len(names), recipe.task.ignore_index
            )
    record: dict[str, Any] = {
        "protocol": {"tiled": asdict(tiled)},
        "metrics": scene_metrics(scores, names),
        "confusion": {"classes": names, "truth_by_predicted": scores.confusion.tolist()},
    }
    if out_dir is not None:
        pictures.confusion_matrix(scores.confusion, names, Path(out_dir) / "confusion.png")
        record["pictures"] = ["confusion.png"]
    return record


def _chip_date(datamodule: Any, chip: str) -> str | None:
    """The chip's acquisition date (``YYYY-MM-DD``) that the chip-wise test feeds a TL
    model, or None."""
    import datetime

    day = (datamodule.coords.get(chip) or {}).get("temporal")
    if not datamodule.uses_coords.get("time") or not day:
        return None
    year, day_of_year = day
    return str(datetime.date(int(year), 1, 1) + datetime.timedelta(days=int(day_of_year) - 1))


def predict_scenes(request: PredictRequest, *, values: bool = False) -> int:
    """Every scene and every output checked before the model loads, then each scene
    streamed (with the ensemble's members) to its outputs, with progress; ``values``:
    the model regresses a value per pixel (:class:`eofm.predict.engine.Predictor`)."""
    from eofm.cluster.shards import select_shard
    from eofm.predict.options import parse_uncertainty
    from eofm.predict.plan import expand_inputs, plan_scene
    from eofm.predict.products import products_for
    from eofm.predict.scenes import check_gsd_option, check_scene_gsd, inspect_scene

    options, manifest, out_dir, echo = (
        request.options,
        request.manifest,
        request.out_dir,
        request.echo,
    )
    members = request.members
    scenes = expand_inputs(request.inputs, options.resolution_m)
    if request.recipe.data.frame_list():  # single-date scenes -> stacks of the model's frames
        from eofm.data.frame_stack import stack_single_dates

        scenes = stack_single_dates(scenes, request.recipe.data.frame_list(), manifest["bands"])
    shard = select_shard(request.shard)
    mine = shard.take(scenes)
    options.validate(int(manifest["backbone"]["patch_size"][-1]))
    products = products_for(
        options, parse_uncertainty(options.uncertainty)[0], ensemble=bool(members), values=values
    )
    needs_gsd = bool(((manifest.get("backbone") or {}).get("coords") or {}).get("gsd"))
    check_gsd_option(request.model_spec, options, needs_gsd)
    infos, plans = {}, {}
    for scene in mine:  # every scene and every output, before anything is written
        infos[scene] = inspect_scene(
            scene,
            manifest["bands"],
            options.bands,
            input_range=manifest.get("input_range"),
            strict=options.strict,
        )
        if needs_gsd and options.gsd_m is None:
            check_scene_gsd(scene)
        plans[scene] = plan_scene(
            scene,
            out_dir,
            quicklook=options.quicklook,
            vector=options.vector,
            overwrite=options.overwrite,
            inputs=scenes,
            companions=[suffix for _, suffix in products[1:]],
        )

    from eofm.families.restore import load_trained  # torch: only once all is checked
    from eofm.predict.engine import Predictor
    from eofm.predict.grid import count_tiles

    trained = request.load()
    predictor = Predictor(trained, options, [load_trained(m) for m in members], values=values)
    todo = [s for s in mine if plans[s].write_raster]
    tiles = {
        s: count_tiles(infos[s].height, infos[s].width, options.tile, options.overlap) for s in todo
    }
    ledger = None
    if shard.sharded:  # manifest-<i>-of-<n>.json: each scene's outputs, checksums, status
        from eofm.cluster.manifest import ShardLedger

        ledger = ShardLedger(
            out_dir, shard, mine, scenes, model=request.model_spec, wait=predictor.wait
        )
        ledger.save()
    echo(
        f"eofm predict: {len(mine)} of {len(scenes)} scene(s), {shard}, "
        f"{sum(tiles.values())} tiles of {options.tile} px, model {trained.source}"
    )
    started = time.perf_counter()
    pixels = 0
    with _progress(request.progress) as bar:
        scenes_task = bar.add_task("scenes", total=len(mine))
        for scene in mine:
            plan = plans[scene]
            tiles_task = bar.add_task(scene.name, total=tiles.get(scene, 0))
            predict = functools.partial(
                predictor.predict,
                scene,
                out_dir,
                plan=plan,
                on_tiles=lambda n, t=tiles_task: bar.advance(t, n),
                background=True,  # its COGs are finished while the next scene streams
            )
            result = ledger.run(plan, predict) if ledger else predict()
            bar.remove_task(tiles_task)
            bar.advance(scenes_task)
            if result is None:  # failed: recorded in the manifest, and raised at the end
                continue
            if result.skipped:
                echo(f"  {scene}: skipped, {plan.raster} exists (use --overwrite)")
                continue
            if plan.write_raster:
                pixels += infos[scene].height * infos[scene].width
            for output in result.outputs:
                echo(f"  {output}")
        if ledger:
            ledger.close()  # raises, naming the failed scenes, if any
        else:
            predictor.wait()
    seconds = time.perf_counter() - started
    if pixels:
        echo(
            f"eofm predict: {pixels / 1e6:.2f} MP in {seconds:.1f} s ({pixels / 1e6 / seconds:.2f} MP/s)"
        )
    return 0


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, *args: object) -> None:
        return None

    def remove_task(self, *args: object) -> None:
        return None


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
