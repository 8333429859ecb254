"""Classification of datacube samples: next-day wildfire danger (Mesogeos / FireCube).

Model: a lightweight temporal head on the sample's days of dynamic variables and its
static variables (the Mesogeos baselines ``lstm`` and ``transformer``, or ``gru`` and
``loan``; :mod:`eofm.decoders`); task: focal or weighted BCE with AUPRC, AUROC,
calibration error and F1 at the validation-best threshold (:mod:`eofm.lightning_tasks.classification`);
data: :mod:`eofm.data.mesogeos` (Track A) or :mod:`eofm.data.firecube`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from eofm.data.firecube_config import FireCubeConfig
from eofm.data.mesogeos_config import MesogeosConfig
from eofm.errors import RecipeError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option


@dataclass
class ClassificationTaskConfig(TaskConfig):
    """The ``task`` keys of a classification (datacube sample) recipe."""

    class_names: list[str] = option(
        help="class names, index = label value", factory=lambda: ["background", "foreground"]
    )
    loss: Literal["focal", "bce", "ce"] = option(
        "focal", "focal, (weighted) bce, or ce (unweighted, as Mesogeos Track A trains)"
    )


class ClassificationFamily(TaskFamily):
    name = "classification"
    task_config = ClassificationTaskConfig
    commands = frozenset({"fit", "test", "predict", "calibrate"})
    decoder_input = "datacube"
    metric_directions = {
        "loss": "min",
        "AUPRC": "max",
        "AUROC": "max",
        "F1": "max",
        "precision": "max",
        "recall": "max",
        "ECE": "min",
    }

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        if not isinstance(recipe.data, (FireCubeConfig, MesogeosConfig)):
            raise RecipeError(
                f"A classification recipe ({where}) needs datacube samples (data.name: "
                f"mesogeos or firecube), not data.name: {recipe.data.name}."
            )

    def weather_features(self, recipe: Recipe, weather: dict | None = None) -> Any:
        """The weather run's features for the cube (``data.weather_run``), or None.

        ``weather`` is what a trained run's ``model.json`` recorded (run, root, features),
        which takes the place of the recipe's keys."""
        from eofm.data.weather_features import WeatherFeatures
        from eofm.errors import EofmError
        from eofm.families.base import family_of
        from eofm.families.restore import load_trained

        keys = asdict(recipe.data)  # data.name mesogeos has no weather keys
        weather = weather or {
            "run": keys.get("weather_run", ""),
            "root": keys.get("weather_root", ""),
            "features": keys.get("weather_features", "outputs"),
        }
        if not weather.get("run"):
            return None
        trained = load_trained(weather["run"])
        try:
            run = family_of(trained.recipe).weather_run(trained, weather.get("root") or None)
        except EofmError as exc:
            raise EofmError(f"data.weather_run {weather['run']}: {exc}") from None
        return WeatherFeatures(run, weather["features"], str(run.source.root))

    def build_datamodule(self, recipe: Recipe, weather: dict | None = None) -> Any:
        from eofm.data.loading import pin_memory_for, resolve_workers
        from eofm.errors import EofmError
        from eofm.registry import REGISTRY

        data = recipe.data
        if not data.root:
            raise EofmError(
                "data.root is empty: set it in the recipe or with data.root=/path/to/cube."
            )
        own = ("name", "root", "num_workers", "weather_run", "weather_root", "weather_features")
        options = {k: v for k, v in asdict(data).items() if k not in own}
        return REGISTRY.get("dataset", data.name).load()(
            data.root,
            **options,
            num_workers=resolve_workers(data.num_workers),
            pin_memory=pin_memory_for(recipe.trainer.accelerator),
            seed=recipe.seed,
            weather=self.weather_features(recipe, weather),
        )

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        datamodule = self.build_datamodule(recipe)
        bands = [*datamodule.dynamic_vars, *datamodule.static_vars]
        model = self.build_model(recipe, bands=bands, pretrained=False)
        return FitSetup(datamodule, model, "training samples")

    def build_model(
        self,
        recipe: Recipe,
        *,
        bands: list[str] | None,
        pretrained: bool | None,
        allow_random_init: bool = False,
    ) -> Any:
        from eofm.registry import REGISTRY

        data = recipe.data
        cls = REGISTRY.get("decoder", recipe.decoder.name).load()
        dynamic = len(bands) - len(data.static_vars) if bands else len(data.dynamic_vars)
        return cls(
            dynamic,
            len(data.static_vars),
            data.patch,
            hidden=recipe.decoder.channels,
            dropout=recipe.decoder.dropout,
        )

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(recipe, trained.manifest["inputs"].get("weather"))

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.lightning_tasks.classification import ClassificationTask

        labels = datamodule.tensors["train"]["label"]
        positives = float(labels.sum())
        pos_weight = (len(labels) - positives) / max(positives, 1.0)
        return ClassificationTask(
            model, loss=recipe.task.loss, pos_weight=pos_weight, **asdict(recipe.optimizer)
        )

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        from eofm._version import __version__
        from eofm.publishing.provenance import is_random_init

        data = recipe.data

        return {
            "eofm_version": __version__,
            "task": {
                "type": self.name,
                "target": data.target,
                "class_names": recipe.task.class_names,
            },
            "bands": [*datamodule.dynamic_vars, *datamodule.static_vars],
            "mean": [float(v) for v in datamodule.mean],
            "std": [float(v) for v in datamodule.std],
            "normalisation_source": norm_source,
            "inputs": {
                "dynamic_vars": list(data.dynamic_vars),
                "static_vars": list(data.static_vars),
                "lag_days": data.lag_days,
                "patch": data.patch,
                "weather": (
                    {
                        "run": data.weather_run,
                        "root": data.weather_root,
                        "features": data.weather_features,
                        "names": datamodule.weather.names,
                        # what the weather run's model.json says of its backbone's weights
                        "random_init": is_random_init(datamodule.weather.run.trained.manifest),
                    }
                    if datamodule.weather is not None
                    else None
                ),
                **datamodule.manifest_inputs(),
            },
            "backbone": {"name": "none", "patch_size": [1, 1, 1]},
            "adapter": asdict(recipe.adapter),
            "decoder": asdict(recipe.decoder),
        }

    def calibrate(self, trained: Any, datamodule: Any) -> dict[str, Any]:
        import math

        from eofm.evaluation.calibration import calibration_record
        from eofm.evaluation.passes import sample_scores

        logits, labels = sample_scores(trained.model, datamodule.val_dataloader())
        record = calibration_record(logits, labels, "val", units=len(labels), unit="samples")
        threshold = float(trained.model.threshold)
        logit = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else 0.0
        # the same decisions: p_T >= t_T exactly where p >= t
        record["threshold_calibrated"] = 1 / (1 + math.exp(-logit / record["temperature"]))
        return record

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        super().evaluate(trained, datamodule, out_dir, mc_samples=mc_samples)
        from eofm.evaluation.passes import evaluate_binary

        threshold = float(trained.model.threshold)
        return evaluate_binary(trained, datamodule, out_dir, threshold=threshold)

    def predict(self, request: PredictRequest) -> int:
        """``eofm predict --model RUN CUBE --date D``: a danger map of fires starting on D."""
        from eofm.errors import EofmError

        inputs, options = request.inputs, request.options
        if not options.date:
            raise EofmError(
                "--date YYYY-MM-DD is needed: the day whose fire danger to map.", exit_code=2
            )
        if len(inputs) != 1:
            raise EofmError(f"Give one datacube to map, got {len(inputs)} inputs.", exit_code=2)
        from eofm.data.cube_metadata import check_date_in_cube

        check_date_in_cube(inputs[0], options.date)  # the cube's time axis, not the model
        from eofm.forecasts.danger_map import write_danger_map

        trained = request.load()
        weather = self.weather_features(trained.recipe, trained.manifest["inputs"].get("weather"))
        target = write_danger_map(
            trained.model, trained.manifest, inputs[0], request.out_dir, options.date,
            overwrite=options.overwrite, weather=weather, temperature=trained.temperature,
        )  # fmt: skip
        request.echo(f"  {target}")
        return 0

    def test_record(self, datamodule: Any) -> dict[str, Any]:
        test = datamodule.tensors["test"]["label"]
        return {
            "test_days": datamodule.label_days("test"),
            "test_samples": len(test),
            "test_positive_rate": float(test.mean()),
        }
