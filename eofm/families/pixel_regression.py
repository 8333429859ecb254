"""Pixel-wise regression on EO imagery: a value per pixel (biomass, canopy height, land
surface temperature, ...).

A family of its own rather than part of ``regression``, which decodes weather variables
from Aurora/Prithvi WxC latents of gridded reanalysis (NetCDF/zarr in and out); here the
inputs are GeoTIFF image chips through an EO backbone, as in ``segmentation``, and the
output is a float map. It shares segmentation's dense model (backbone, neck, decoder,
1x1 head; :mod:`eofm.models.pixel_regression` adds one output channel in the target's
units) and its streaming GeoTIFF engine (:mod:`eofm.predict.engine`, whose ``value``
product is the float COG with NaN nodata, and ``std`` the spread of
``--uncertainty mc-dropout:N`` or ``tta``).

Task: MSE, L1 or Huber loss over the valid pixels, RMSE, MAE, R² and bias
(:mod:`eofm.lightning_tasks.pixel_regression`); ``eofm test`` adds the predicted-vs-observed
density of the test pixels and ``pred_vs_obs.png``. Data: image/target GeoTIFF pairs
(:mod:`eofm.data.geotiff_targets`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option

#: What ``eofm test`` draws in the run dir.
DENSITY_PICTURE = "pred_vs_obs.png"
#: Bins per axis of the predicted-vs-observed density.
DENSITY_BINS = 64


@dataclass
class PixelRegressionTaskConfig(TaskConfig):
    """The ``task`` keys of a pixel-regression recipe."""

    target_name: str = option("value", "what the target holds (the output band's name)")
    units: str = option("", "the target's units (e.g. Mg/ha, m, K)")
    loss: Literal["mse", "l1", "huber"] = option("mse", "mse, l1 or huber, over valid pixels")
    huber_delta: float = option(1.0, "Huber threshold, in standard deviations of the target")
    monitor: str = option("val/RMSE", "metric that picks best.ckpt (its direction is declared)")


class PixelRegressionFamily(TaskFamily):
    name = "pixel_regression"
    task_config = PixelRegressionTaskConfig
    commands = frozenset({"fit", "test", "predict"})
    decoder_input = "maps"
    metric_directions = {"loss": "min", "RMSE": "min", "MAE": "min", "R2": "max"}
    predict_uncertainties = ("mc-dropout", "tta")
    export_output = "values (B, 1, tile, tile), in the target's units"
    predicts_from_graph = True

    # --- light ------------------------------------------------------------------------
    def metric_names(self, recipe: Recipe) -> list[str]:
        return ["loss", "RMSE", "MAE", "R2", "bias"]

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        if not recipe.task.huber_delta > 0:
            raise RecipeError(
                f"task.huber_delta in {where} must be > 0, got {recipe.task.huber_delta}."
            )
        if not recipe.task.target_name.strip():
            raise RecipeError(f"task.target_name in {where} is empty; name what the target holds.")
        from eofm.registry import REGISTRY

        known = [e.name for e in REGISTRY.entries("dataset") if e.meta.get("regression")]
        if recipe.data.name not in known:
            raise RecipeError(
                f"data.name {recipe.data.name} in {where} holds no per-pixel targets for a "
                f"pixel_regression task (task.type); use one of {known}."
            )

    # --- heavy: training and evaluation -------------------------------------------------
    def normalisation(self, recipe: Recipe) -> tuple[list[float] | None, list[float] | None, str]:
        """The recipe's mean/std, else the backbone manifest's when it knows every band,
        else the training images' own statistics."""
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
        self, recipe: Recipe, mean: list[float] | None, std: list[float] | None, pad_multiple: int
    ) -> Any:
        from eofm.data.loading import pin_memory_for, resolve_workers
        from eofm.registry import REGISTRY

        data = recipe.data
        options = {
            k: v
            for k, v in asdict(data).items()
            if k not in ("name", "root", "mean", "std", "num_workers")
        }
        return REGISTRY.get("dataset", data.name).load()(
            data.root,
            **options,
            mean=mean,
            std=std,
            num_workers=resolve_workers(data.num_workers),
            pin_memory=pin_memory_for(recipe.trainer.accelerator),
            seed=recipe.seed,
            pad_multiple=pad_multiple,
        )

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        from eofm.backbones.loading import resolve_manifest
        from eofm.models.pixel_regression import build_pixel_regressor

        mean, std, norm_source = self.normalisation(recipe)
        patch = resolve_manifest(recipe.backbone.name).patch_size[-1]
        datamodule = self.build_datamodule(recipe, mean, std, patch)
        model = build_pixel_regressor(
            recipe,
            data_bands=recipe.data.bands,
            pretrained=recipe.backbone.pretrained,
            allow_random_init=allow_random_init,
            target_mean=datamodule.target_mean,
            target_std=datamodule.target_std,
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
        """The model to load a checkpoint into (its target scale comes with the weights)."""
        from eofm.models.pixel_regression import build_pixel_regressor

        return build_pixel_regressor(
            recipe,
            data_bands=bands or recipe.data.bands,
            pretrained=pretrained,
            allow_random_init=allow_random_init,
        )

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(recipe, trained.mean, trained.std, trained.patch_size)

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.lightning_tasks.pixel_regression import PixelRegressionTask

        return PixelRegressionTask(
            model,
            loss=recipe.task.loss,
            huber_delta=recipe.task.huber_delta,
            **asdict(recipe.optimizer),
        )

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        """``class_names`` holds the one output band's name (what
        :class:`eofm.models.trained.TrainedModel` names the outputs by)."""
        from eofm.adapters import base_encoder
        from eofm.models.pixel_regression import target_scale

        encoder = base_encoder(model.backbone)
        task, scale = recipe.task, target_scale(model)
        out = self.common_manifest(
            recipe,
            encoder,
            datamodule,
            norm_source,
            task={
                "type": task.type,
                "class_names": [task.target_name],
                "units": task.units,
                "loss": task.loss,
                "target_mean": float(scale.mean),
                "target_std": float(scale.std),
            },
        )
        out["bands"] = list(recipe.data.bands)
        config = encoder.manifest.config
        out["backbone"].update(
            band_mapping=encoder.band_mapping,
            patch_size=list(config.patch_size),
            num_frames=config.num_frames,
            gsd_m=encoder.manifest.gsd_m,
            coords={"time": False, "location": False, "gsd": False},
        )
        out["input_range"] = datamodule.input_range()
        return out

    def test_record(self, datamodule: Any) -> dict[str, Any]:
        return {"test_chips": list(datamodule.splits["test"])}

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        """The predicted-vs-observed density of every valid test pixel (a 2-D histogram
        on a shared range), drawn as ``pred_vs_obs.png`` in ``out_dir``."""
        super().evaluate(trained, datamodule, out_dir, mc_samples=mc_samples)
        import numpy as np
        import torch

        model = trained.model.eval()
        device = next(model.parameters()).device
        predicted, observed = [], []
        with torch.inference_mode():
            for batch in datamodule.test_dataloader():
                values = model(batch["image"].to(device))[:, 0].float().cpu()
                valid = torch.isfinite(batch["target"])
                predicted.append(values[valid].numpy())
                observed.append(batch["target"][valid].numpy())
        p, o = np.concatenate(predicted), np.concatenate(observed)
        low, high = float(min(p.min(), o.min())), float(max(p.max(), o.max()))
        high = high if high > low else low + 1.0
        counts, _, _ = np.histogram2d(o, p, bins=DENSITY_BINS, range=[[low, high], [low, high]])
        record: dict[str, Any] = {
            "density": {
                "pixels": int(o.size),
                "range": [low, high],
                "observed_by_predicted": counts.astype(int).tolist(),
            }
        }
        if out_dir is not None:
            task = trained.recipe.task
            label = f"{task.target_name} ({task.units})" if task.units else task.target_name
            density_picture(counts, (low, high), label, Path(out_dir) / DENSITY_PICTURE)
            record["pictures"] = [DENSITY_PICTURE]
        return record

    # --- outputs ------------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> int:
        """GeoTIFF scenes of any size streamed through the model by the segmentation
        engine: ``<stem>.tif`` is a float32 COG of the value (NaN nodata), and with
        ``--uncertainty mc-dropout:N`` (or ``tta``) ``<stem>_std.tif`` its standard
        deviation over the passes. No quicklook, probabilities or polygons."""
        from eofm.families.segmentation import predict_scenes

        options = request.options
        for given, flag in (
            (options.vector, "--vector"),
            (options.probabilities, "--probabilities"),
        ):
            if given:
                raise EofmError(
                    f"{flag}: {request.model_spec} is a pixel_regression run; it writes a "
                    "value map (a float COG), with no classes to vectorise or probabilities.",
                    exit_code=2,
                )
        options.quicklook = False  # the PNG quicklook draws classes or probabilities
        return predict_scenes(request, values=True)


def density_picture(counts: Any, span: tuple[float, float], label: str, target: Path) -> Path:
    """Predicted against observed pixels as a density (log colour scale), with the 1:1 line."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    from eofm.atomic import atomic_path

    figure, axis = plt.subplots(figsize=(5.5, 5))
    shown = np.ma.masked_equal(counts.T, 0)
    vmax = max(float(counts.max()), 1.0)
    image = axis.imshow(
        shown, origin="lower", extent=(*span, *span), cmap="viridis", norm=LogNorm(1, vmax)
    )
    axis.plot(span, span, color="black", linewidth=0.8, linestyle="--", label="1:1")
    axis.set_xlabel(f"observed {label}")
    axis.set_ylabel(f"predicted {label}")
    axis.legend(loc="upper left")
    figure.colorbar(image, ax=axis, fraction=0.046, label="pixels")
    try:
        with atomic_path(target) as tmp:
            figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)
    return target
