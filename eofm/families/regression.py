"""Gridded regression: new variables decoded from a weather model's latent space.

Model: a weather backbone (Aurora) and one MLP per target on its latent
(:mod:`eofm.models.latent_regression`), after Lehmann et al., "Finetuning a Weather
Foundation Model with Lightweight Decoders for Unseen Physical Processes", 2025; task:
masked MSE on normalised targets with latitude-weighted RMSE, MAE, bias and ACC
(:mod:`eofm.lightning_tasks.regression`); data: ERA5 (:mod:`eofm.data.era5`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from eofm.data.era5_config import ERA5Config
from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option

if TYPE_CHECKING:  # pragma: no cover
    from eofm.publishing.card import CardSection


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
    predict_options = {
        "--start": "first target time, e.g. 2020-01-01T12",
        "--end": "last target time",
        "--format": "netcdf (one file, the default) or zarr",
    }
    decoder_input = "latent"
    metric_directions = {
        "loss": "min",
        "rmse": "min",  # also rmse_<variable> and rmse_normalised
        "mae": "min",
        "acc": "max",
    }

    tests_mc_dropout = True

    def metric_names(self, recipe: Recipe) -> list[str]:
        """As ``tasks/regression.py`` logs them: per target, and the normalised RMSE."""
        scores = ["rmse", "mae", "bias", *(["acc"] if recipe.task.climatology else [])]
        targets = recipe.task.targets
        return ["loss", "rmse_normalised", *(f"{s}_{t}" for s in scores for t in targets)]

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
        from eofm.forecasts.weather_files import (
            SUFFIXES,
            check_grid,
            forecast_steps,
            write_forecasts,
        )

        inputs, options, echo = request.inputs, request.options, request.echo
        given = request.family_options
        output_format = given.get("--format") or "netcdf"
        if len(inputs) != 1:
            raise EofmError(
                f"Give one ERA5 folder or zarr store to predict from, got {len(inputs)} inputs.",
                exit_code=2,
            )
        if output_format not in SUFFIXES:
            raise EofmError(f"--format must be netcdf or zarr, got {output_format!r}.", exit_code=2)
        trained = request.load()
        run = self.weather_run(trained, inputs[0])
        check_grid(run, trained.manifest, inputs[0])
        steps = forecast_steps(run, given.get("--start"), given.get("--end"))
        first, last = (str(run.target_time(i))[:13].replace("-", "") for i in (steps[0], steps[-1]))
        name = f"{trained.recipe.name}_{first}_{last}{SUFFIXES[output_format]}"
        target = Path(request.out_dir) / name
        if target.exists() and not options.overwrite:
            echo(f"  {target}: exists, skipped (use --overwrite to replace it)")
            return 0
        echo(f"eofm predict: {len(steps)} time steps of {', '.join(run.names)} to {target}")
        write_forecasts(trained, run, steps, target, output_format)
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

        from eofm.atomic import atomic_path
        from eofm.data.variables import describe_variable

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

    def card_section(
        self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any
    ) -> CardSection:
        """Variables with units, grid, lead time, inputs and the test scores."""
        from eofm.publishing.card import CardSection, adapter_text, backbone_text, evaluation_table
        from eofm.publishing.paths import public_path

        repo_id, backbone = card["repo_id"], config["backbone"]
        targets = config.get("targets") or {v: {} for v in config["bands"]}
        evaluation, entries = evaluation_table(metrics, repo_id, "ERA5-layout data")
        meta = {
            "tags": ["weather", "climate", "eofm", "regression", *targets],
            "datasets": ["era5"],
        }
        result = None
        if entries:
            result = {
                "task": {"type": "regression", "name": "Gridded regression"},
                "dataset": {"type": "era5", "name": "ERA5", "split": "test"},
                "metrics": entries,
            }
        rows = []
        for variable, info in targets.items():
            window = info.get("accumulated_hours")
            kind = (
                f"accumulated over the {window} h before the target time"
                if window
                else "at the target time"
            )
            rows.append(
                f"| {variable} | {info.get('long_name', variable)} | {info.get('units', '1')} | {kind} |"
            )
        grid = config.get("grid") or {}
        lat, lon = grid.get("lat") or [float("nan")], grid.get("lon") or [float("nan")]
        step = abs(lat[1] - lat[0]) if len(lat) > 1 else float("nan")
        grid_text = (
            f"{len(lat)} x {len(lon)} cells of {step:g} degrees, latitudes {lat[0]:g} .. {lat[-1]:g} "
            f"(north to south), longitudes {lon[0]:g} .. {lon[-1]:g}"
        )
        timing = config.get("timing") or {}
        inputs = config.get("inputs") or {}
        fractions = recipe.data.split_fractions
        fields = dict(
            summary=recipe.description or f"{', '.join(targets)} from a weather model's latent.",
            eofm_version=config["eofm_version"],
            variable_list=", ".join(targets),
            backbone_text=backbone_text(backbone),
            adapter_text=adapter_text(
                config["adapter"], frozen="backbone frozen (lightweight decoders on its latent)"
            ),
            decoder_text=f"{config['decoder']['name']}, one per variable ({config['decoder']['channels']} hidden)",
            weights_text=(
                f"the trained decoders (and LoRA weights) only, `{config['weights']}`; the "
                "backbone is fetched from its pinned revision"
                if config["adapter_only"]
                else f"the complete model (`{config['weights']}`)"
            ),
            variable_rows="\n".join(rows),
            grid_text=grid_text,
            history_steps=timing.get("history_steps", "?"),
            step_hours=timing.get("step_hours", "?"),
            lead_hours=timing.get("lead_hours", "?"),
            surf_vars=", ".join(inputs.get("surf_vars", [])) or "none",
            atmos_vars=", ".join(inputs.get("atmos_vars", [])) or "none",
            levels=", ".join(f"{v:g}" for v in inputs.get("levels_hpa", [])) or "-",
            static_vars=", ".join(inputs.get("static_vars", [])) or "none",
            data_root=public_path(recipe.data.root),
            split_fractions=list(fractions),
            evaluation_text=evaluation,
            repo_id=repo_id,
            revision_hint=card.get("revision") or "main",
            train_period=f"the first {fractions[0]:.0%} of the record",
        )
        return CardSection("weather_model_card.md", meta, result, fields)

    def weather_run(self, trained: Any, root: str | None = None) -> Any:
        """The trained run over ERA5-layout data at ``root`` (default: where it trained),
        with the run's own variables, levels, region and steps."""
        from eofm.data.era5 import open_source
        from eofm.forecasts.weather import WeatherRun

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
        from eofm.lightning_tasks.regression import RegressionTask

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
