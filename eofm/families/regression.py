"""Gridded regression: new variables decoded from a weather model's latent space.

Model: a weather backbone (Aurora) and one MLP per target on its latent
(:mod:`eofm.models.latent_regression`), after Lehmann et al., "Finetuning a Weather
Foundation Model with Lightweight Decoders for Unseen Physical Processes", 2025; task:
masked MSE on normalised targets with latitude-weighted RMSE, MAE, bias and ACC
(:mod:`eofm.tasks.regression`); data: ERA5 (:mod:`eofm.data.era5`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from eofm.data.era5_config import ERA5Config
from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option


@dataclass
class RegressionTaskConfig(TaskConfig):
    """The ``task`` keys of a gridded-regression (weather) recipe."""

    targets: list[str] = option(help="variables to predict", factory=list)
    land_only: list[str] = option(help="variables scored over land only", factory=list)
    climatology: str | None = option(
        None, "NetCDF/zarr of the targets on the grid; enables ACC (eofm climatology)"
    )
    path_keys: ClassVar[tuple[str, ...]] = ("climatology",)


class RegressionFamily(TaskFamily):
    name = "regression"
    task_config = RegressionTaskConfig
    commands = frozenset({"fit", "test", "predict", "climatology", "publish"})
    decoder_input = "latent"
    metric_directions = {
        "loss": "min",
        "rmse": "min",  # also rmse_<variable> and rmse_normalised
        "mae": "min",
        "acc": "max",
    }

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        if not recipe.task.targets:
            raise RecipeError(f"task.targets in {where} must name at least one variable.")
        if not isinstance(recipe.data, ERA5Config):
            raise RecipeError(
                f"A regression recipe ({where}) needs weather data (data.name: era5), "
                f"not data.name: {recipe.data.name}."
            )
        strays = [v for v in recipe.task.land_only if v not in recipe.task.targets]
        if strays:
            raise RecipeError(f"task.land_only {strays} in {where} are not task.targets.")

    def build_datamodule(
        self,
        recipe: Recipe,
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
    ) -> Any:
        """The ERA5 datamodule of a regression recipe (validates every input file)."""
        from eofm.data.loading import resolve_workers
        from eofm.registry import REGISTRY

        data = recipe.data
        if not data.root:
            raise EofmError(
                "data.root is empty: set it in the recipe or with data.root=/path/to/era5."
            )
        spec = self.weather_spec(recipe)
        cls = REGISTRY.get("dataset", data.name).load()
        if target_mean is None and data.mean is not None:
            target_mean, target_std = data.mean, data.std
        return cls(
            data.root,
            spec,
            layout=data.layout,
            split_fractions=data.split_fractions,
            target_mean=target_mean,
            target_std=target_std,
            batch_size=data.batch_size,
            num_workers=resolve_workers(data.num_workers),
            seed=recipe.seed,
        )

    def weather_spec(self, recipe: Recipe, *, targets: list[str] | None = None) -> Any:
        """What a sample of the recipe's weather data holds (``targets`` replaces the
        recipe's: none when a trained run only predicts)."""
        from eofm.backbones.loading import resolve_manifest
        from eofm.data.era5 import WeatherSpec

        data = recipe.data
        manifest = resolve_manifest(recipe.backbone.name)
        return WeatherSpec(
            surf_vars=data.surf_vars,
            atmos_vars=data.atmos_vars,
            static_vars=data.static_vars,
            targets=recipe.task.targets if targets is None else targets,
            levels=data.levels,
            allow_missing=data.allow_missing,
            history_steps=data.history_steps,
            step_hours=data.step_hours,
            lead_hours=data.lead_hours,
            lat_range=data.lat_range,
            lon_range=data.lon_range,
            flip_latitude=data.flip_latitude,
            patch_size=getattr(manifest, "patch_size", 4),
            land_only=recipe.task.land_only,
            accumulated=data.accumulated,
        )

    def predict(self, request: PredictRequest) -> int:
        """``eofm predict --model RUN ERA5 --out DIR``: one NetCDF (or zarr) of the run's
        variables at every target time of the data (or ``--start`` .. ``--end``)."""
        from eofm.predict.weather_files import (
            SUFFIXES,
            check_grid,
            forecast_steps,
            write_forecasts,
        )

        inputs, options, echo = request.inputs, request.options, request.echo
        if len(inputs) != 1:
            raise EofmError(
                f"Give one ERA5 folder or zarr store to predict from, got {len(inputs)} inputs.",
                exit_code=2,
            )
        if options.output_format not in SUFFIXES:
            raise EofmError(
                f"--format must be netcdf or zarr, got {options.output_format!r}.", exit_code=2
            )
        trained = request.load()
        run = self.weather_run(trained, inputs[0])
        check_grid(run, trained.manifest, inputs[0])
        steps = forecast_steps(run, options.start, options.end)
        first, last = (str(run.target_time(i))[:13].replace("-", "") for i in (steps[0], steps[-1]))
        name = f"{trained.recipe.name}_{first}_{last}{SUFFIXES[options.output_format]}"
        target = Path(request.out_dir) / name
        if target.exists() and not options.overwrite:
            echo(f"  {target}: exists, skipped (use --overwrite to replace it)")
            return 0
        echo(f"eofm predict: {len(steps)} time steps of {', '.join(run.names)} to {target}")
        write_forecasts(trained, run, steps, target, options.output_format)
        echo(f"  {target}")
        return 0

    def publishes_trained_only(self, trained: Any) -> bool:
        """A weather run publishes its decoders (and LoRA weights) only, with a pointer to
        its pretrained backbone, unless it fine-tuned the whole backbone."""
        backbone = trained.manifest.get("backbone") or {}
        return bool(backbone.get("pretrained_loaded")) and trained.recipe.adapter.mode != "full"

    def climatology(self, recipe: Recipe, target: Path) -> Path:
        """The training-split mean of each target as the recipe defines it (accumulated
        variables summed over the lead window), on the data's grid (NetCDF)."""
        import numpy as np
        import xarray as xr

        from eofm.data.variables import describe_variable
        from eofm.predict.weather_files import atomic_path

        datamodule = self.build_datamodule(recipe)
        dataset = datamodule.dataset("train")
        rows = len(datamodule.lat)
        fields = {}
        for name in recipe.task.targets:
            total = np.zeros((rows, len(datamodule.lon)))
            count = np.zeros_like(total)
            for now in dataset.now:
                values = dataset.target_field(name, now)[:rows].astype(np.float64)
                finite = np.isfinite(values)
                total[finite] += values[finite]
                count += finite
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
            attrs = describe_variable(name, datamodule.source.fields[("surf", name)].array.attrs)
            attrs["cell_methods"] = f"time: mean over {len(dataset.now)} training samples"
            fields[name] = (("latitude", "longitude"), mean, attrs)
        out = xr.Dataset(
            {k: xr.Variable(dims, values, attrs) for k, (dims, values, attrs) in fields.items()},
            coords={
                "latitude": ("latitude", datamodule.lat.numpy().astype(np.float64)),
                "longitude": ("longitude", datamodule.lon.numpy().astype(np.float64)),
            },
            attrs={
                "Conventions": "CF-1.8",
                "title": f"Climatology of {', '.join(recipe.task.targets)} for {recipe.name}",
                "source": "eofm climatology: mean of the training split's targets",
            },
        )
        with atomic_path(target) as tmp:
            out.to_netcdf(tmp)
        return target

    def model_card(self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any) -> str:
        from eofm.publishing.card import render_weather_card

        return render_weather_card(config, recipe, metrics, **card)

    def weather_run(self, trained: Any, root: str | None = None) -> Any:
        """The trained run over ERA5-layout data at ``root`` (default: where it trained),
        with the run's own variables, levels, region and steps."""
        from eofm.data.era5 import open_source
        from eofm.predict.weather import WeatherRun

        recipe = trained.recipe
        root = root or recipe.data.root
        if not root:
            raise EofmError(
                f"The weather run {trained.source} records no data.root; give the ERA5 data "
                "to run it on."
            )
        source = open_source(root, self.weather_spec(recipe, targets=[]), layout=recipe.data.layout)
        return WeatherRun(trained, source, batch_size=recipe.data.batch_size)

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        from eofm.backbones.loading import resolve_manifest
        from eofm.models.latent_regression import check_variables

        check_variables(recipe, resolve_manifest(recipe.backbone.name))
        datamodule = self.build_datamodule(recipe)
        norm_source = "training-split statistics of the targets"
        if recipe.data.mean is not None:
            norm_source = "recipe"
        model = self.build_model(
            recipe, bands=None, pretrained=None, allow_random_init=allow_random_init
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
        from eofm.models.latent_regression import build_latent_regression_model

        return build_latent_regression_model(
            recipe, pretrained=pretrained, allow_random_init=allow_random_init
        )

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(recipe, trained.mean, trained.std)

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.tasks.regression import RegressionTask

        return RegressionTask(
            model,
            targets=recipe.task.targets,
            target_mean=datamodule.mean,
            target_std=datamodule.std,
            lat=datamodule.lat,
            climatology=self.load_climatology(recipe, datamodule),
            **asdict(recipe.optimizer),
        )

    def load_climatology(self, recipe: Recipe, datamodule: Any) -> Any:
        """Climatology of the targets on the data grid ``(V, H, W)``, mean over time if any."""
        path = recipe.task.climatology
        if not path:
            return None
        import torch

        from eofm.data.era5 import read_climatology

        data = recipe.data
        maps = read_climatology(
            Path(path),
            recipe.task.targets,
            lat_range=data.lat_range,
            lon_range=data.lon_range,
            flip_latitude=data.flip_latitude,
            shape=(len(datamodule.lat), len(datamodule.lon)),
        )
        return torch.from_numpy(maps)

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        if not mc_samples:
            return {}
        from eofm.evaluation.spread import spread_skill

        scores = spread_skill(
            trained.model,
            datamodule.test_dataloader(),
            list(trained.recipe.task.targets),
            datamodule.std,
            mc_samples,
        )
        return {"spread_skill": {"members": mc_samples, "method": "MC dropout", **scores}}

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
            task={"type": "regression", "targets": list(recipe.task.targets)},
        )
        out["bands"] = list(recipe.task.targets)
        out["inputs"] = {
            "surf_vars": datamodule.source.surf_names(),
            "atmos_vars": datamodule.source.atmos_names(),
            "static_vars": list(datamodule.statics),
            "filled_statics": datamodule.source.filled_statics,
            "levels_hpa": list(datamodule.source.levels),
        }
        out["targets"] = target_descriptions(recipe, datamodule.source)
        lat, lon = datamodule.lat.tolist(), datamodule.lon.tolist()
        out["grid"] = {"lat": lat, "lon": lon}
        data = recipe.data
        out["timing"] = {
            "history_steps": data.history_steps,
            "step_hours": data.step_hours,
            "lead_hours": data.lead_hours,
        }
        out["backbone"].update(
            latent=recipe.backbone.latent,
            patch_size=[encoder.manifest.patch_size],
        )
        return out

    def cache_key(self, recipe: Recipe) -> dict[str, Any]:
        return {"latent": recipe.backbone.latent}


def target_descriptions(recipe: Recipe, source: Any) -> dict[str, dict[str, Any]]:
    """Units, names and accumulation window of each target (``model.json``)."""
    from eofm.data.variables import describe_variable

    out = {}
    for name in recipe.task.targets:
        field = source.fields.get(("surf", name))
        attrs = dict(getattr(field.array, "attrs", {}) or {}) if field is not None else {}
        described = describe_variable(name, attrs)
        if source.spec.accumulates(name):
            described["accumulated_hours"] = recipe.data.lead_hours
        out[name] = described
    return out
