"""The task-family seam: what ``fit``, ``test``, ``predict`` and ``publish`` ask of a family.

A family (segmentation, gridded regression, ...) owns how its model is assembled, its
LightningModule (loss and metrics, with each metric's direction), the fields it adds to
``model.json``, what ``eofm test`` records, how ``eofm predict`` writes outputs and what
``eofm publish`` puts on the model card. The commands call these hooks and never test
``task.type`` themselves. Adding a family is one module here plus one registry line.

Family modules are light: they import torch, lightning and the data code inside their
hooks, so that recipe checks (:meth:`TaskFamily.check_recipe`) stay fast.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eofm.errors import EofmError, RecipeError

if TYPE_CHECKING:  # pragma: no cover
    from eofm.recipe import Recipe

Direction = Literal["min", "max"]


@dataclass
class FitSetup:
    """What ``fit`` trains: the datamodule, the model, and where normalisation came from."""

    datamodule: Any
    model: Any
    norm_source: str


class TaskFamily:
    """The hooks of one task family. Subclasses set the class attributes and hooks."""

    name: ClassVar[str] = ""
    #: What its decoders consume: ``maps`` (feature maps) or ``latent`` (weather latents).
    decoder_input: ClassVar[str] = "maps"
    #: Metric names (after ``stage/``) by prefix, and whether lower or higher is better.
    metric_directions: ClassVar[Mapping[str, Direction]] = {"loss": "min"}
    #: ``eofm predict --uncertainty`` kinds the family's predictor writes (none: refused).
    predict_uncertainties: ClassVar[tuple[str, ...]] = ()
    #: Whether ``eofm ensemble`` averages the family's runs (else it is refused at once).
    averages_ensembles: ClassVar[bool] = False
    #: Whether ``eofm test --mc-dropout N`` scores the family's runs (spread-skill).
    tests_mc_dropout: ClassVar[bool] = False

    # --- light: recipe checks -------------------------------------------------------
    def check_recipe(self, recipe: Recipe, where: str) -> None:
        """Checks that need no heavy import; subclasses extend them."""
        from eofm.registry import REGISTRY

        entry = REGISTRY.get("decoder", recipe.decoder.name)
        if entry.meta.get("input") != self.decoder_input:
            fitting = [
                e.name
                for e in REGISTRY.entries("decoder")
                if e.meta.get("input") == self.decoder_input
            ]
            raise RecipeError(
                f"decoder.name {recipe.decoder.name} in {where} does not fit a {self.name} "
                f"task (task.type); use one of {fitting}."
            )
        self.monitor_mode(recipe.task.monitor, where)
        from eofm.publishing.hub import is_hub_uri, parse_hub_uri

        if is_hub_uri(recipe.backbone.name):
            try:
                parse_hub_uri(recipe.backbone.name)
            except EofmError as exc:
                raise RecipeError(f"backbone.name in {where}: {exc}") from None

    def metric_names(self, recipe: Recipe) -> list[str]:
        """Every metric (after ``stage/``) that the family's task logs for ``recipe``,
        per class or variable included; families whose names depend on the recipe
        extend it. Light: ``task.monitor`` is checked against it when the recipe loads."""
        return list(self.metric_directions)

    def check_monitor_logged(self, recipe: Recipe, where: str) -> None:
        """``task.monitor`` must be a metric the run will log, or the first epoch ends in
        a Lightning error about a missing key."""
        monitor = recipe.task.monitor
        names = self.metric_names(recipe)
        if monitor.partition("/")[2] in names:
            return
        known = [f"val/{n}" for n in names]
        close = difflib.get_close_matches(monitor, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise RecipeError(
            f"task.monitor {monitor!r} in {where} is not a metric this {self.name} run logs "
            f"(its val/ metrics: {known}).{hint}"
        )

    def monitor_mode(self, monitor: str, where: str = "the recipe") -> Direction:
        """``min`` or ``max`` for a monitored metric, from its declared direction."""
        stage, _, metric = monitor.partition("/")
        for prefix, direction in self.metric_directions.items():
            if metric == prefix or metric.startswith(prefix + "_"):
                if stage in ("train", "val"):
                    return direction
        known = [f"val/{p}" for p in self.metric_directions]
        close = difflib.get_close_matches(monitor, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise RecipeError(
            f"task.monitor {monitor!r} in {where} is not a {self.name} metric with a direction "
            f"(train/ or val/ followed by one of {list(self.metric_directions)}).{hint}"
        )

    # --- heavy: training and evaluation ---------------------------------------------
    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        """Build and check everything ``fit`` needs, before anything is written."""
        raise NotImplementedError

    def build_model(
        self,
        recipe: Recipe,
        *,
        bands: list[str] | None,
        pretrained: bool | None,
        allow_random_init: bool = False,
    ) -> Any:
        """The family's model for ``recipe`` (``pretrained=None`` follows the recipe)."""
        raise NotImplementedError

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        """The datamodule that tests ``trained`` with its own normalisation."""
        raise NotImplementedError

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        """The LightningModule that trains and scores ``model``."""
        raise NotImplementedError

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        """What ``model.json`` (and a published ``config.json``) records."""
        raise NotImplementedError

    def common_manifest(
        self, recipe: Recipe, encoder: Any, datamodule: Any, norm_source: str, *, task: dict
    ) -> dict[str, Any]:
        """The ``model.json`` fields every family records; families add their own.

        ``encoder`` is the backbone itself (under any adapter wrapper).
        """
        from dataclasses import asdict

        from eofm._version import __version__

        return {
            "eofm_version": __version__,
            "task": task,
            "bands": [],
            "mean": [float(v) for v in datamodule.mean],
            "std": [float(v) for v in datamodule.std],
            "normalisation_source": norm_source,
            "backbone": backbone_record(recipe, encoder),
            "adapter": asdict(recipe.adapter),
            "decoder": asdict(recipe.decoder),
        }

    def cache_key(self, recipe: Recipe) -> dict[str, Any]:
        """Family-specific parts of the latent-cache key."""
        return {"latent": None}

    def test_record(self, datamodule: Any) -> dict[str, Any]:
        """What ``test_metrics.json`` records about the test data besides the metrics."""
        return {"test_chips": list(getattr(datamodule, "splits", {}).get("test", []))}

    def evaluate(
        self, trained: Any, datamodule: Any, out_dir: Any, *, mc_samples: int = 0
    ) -> dict[str, Any]:
        """What ``eofm test`` records beyond the Lightning metrics (per-region scores,
        calibration, spread-skill of ``mc_samples`` dropout passes, ...), with its
        pictures written to ``out_dir`` when given."""
        if mc_samples:
            raise EofmError(f"--mc-dropout is for weather (regression) runs, not {self.name}.")
        return {}

    def check_calibratable(self, run_dir: Any) -> None:
        """Refuse, before the model loads, a run that ``eofm calibrate`` cannot calibrate."""
        raise EofmError(
            f"{run_dir} is a {self.name} run; eofm calibrate supports classifiers "
            "(segmentation, classification) only.",
            exit_code=2,
        )

    def calibrate(self, trained: Any, datamodule: Any) -> dict[str, Any]:
        """``eofm calibrate``: the temperature fitted on the validation split, with the
        validation scores before and after (what ``model.json`` records)."""
        raise EofmError(
            f"eofm calibrate supports classifiers (segmentation, classification), not "
            f"{self.name} runs."
        )

    # --- outputs ----------------------------------------------------------------------
    def check_predictable(self, model_spec: str) -> None:
        """Refuse, before any input is read, a model that ``eofm predict`` cannot run."""
        raise EofmError(
            f"{model_spec} is a {self.name} model; eofm predict (GeoTIFF scenes) supports "
            "segmentation, weather and fire-danger models."
        )

    def predict_own_inputs(
        self, load: Any, inputs: list[str], out_dir: Any, options: Any, echo: Any
    ) -> int | None:
        """A family whose inputs are not GeoTIFF scenes predicts them here (returns the exit
        code; ``load()`` gives the trained model); ``None`` means the GeoTIFF scene path."""
        return None

    def predictor(self, trained: Any, options: Any, members: Any = ()) -> Any:
        """The object that streams ``trained`` (with ensemble ``members``) over scenes."""
        raise NotImplementedError

    def check_publishable(self, run_dir: Any) -> None:
        """Refuse, before anything is written, what ``eofm publish`` cannot upload."""
        raise EofmError(
            f"{run_dir} is a {self.name} model; eofm publish supports segmentation models "
            "and weather runs so far."
        )

    def check_exportable(self, run_dir: Any) -> None:
        """Refuse what ``eofm export`` cannot write as one graph of image tiles."""
        raise EofmError(
            f"{run_dir} is a {self.name} model; eofm export writes models that map image "
            "tiles to per-pixel outputs (segmentation). Weather models cannot: their "
            "inputs are variable-and-level dictionaries with time steps and static fields "
            "rather than one tensor, and the encoders (Aurora, Prithvi WxC) run their own "
            "rollout and normalisation outside the network."
        )

    def publishes_trained_only(self, trained: Any) -> bool:
        """Whether ``eofm publish`` uploads only the trained weights (with a pointer to the
        pretrained backbone) even without ``--adapter-only``."""
        return False

    def model_card(self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any) -> str:
        """The README.md that ``eofm publish`` uploads."""
        raise NotImplementedError


def backbone_record(recipe: Recipe, encoder: Any) -> dict[str, Any]:
    """What ``model.json`` says of a backbone: its name, the repo, commit and file its
    weights came from, and whether pretrained weights were loaded at all."""
    manifest, source = encoder.manifest, encoder.source or {}
    return {
        "name": recipe.backbone.name,
        "repo": manifest.hub_repo,
        "revision": source.get("revision", manifest.revision),
        "file": manifest.hub_file,
        "pretrained_loaded": bool(source),
    }


def family_of(recipe: Recipe) -> TaskFamily:
    """The family that ``recipe.task.type`` names."""
    from eofm.registry import REGISTRY

    return REGISTRY.get("family", recipe.task.type).load()()
