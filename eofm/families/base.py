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
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from eofm.errors import EofmError, RecipeError
from eofm.recipe import Recipe, TaskConfig

Direction = Literal["min", "max"]

log = logging.getLogger(__name__)


@dataclass
class FitSetup:
    """What ``fit`` trains: the datamodule, the model, and where normalisation came from."""

    datamodule: Any
    model: Any
    norm_source: str


@dataclass
class PredictRequest:
    """What ``eofm predict`` (and ``eofm ensemble``) hands a family's :meth:`TaskFamily.predict`.

    ``recipe`` and ``manifest`` are read without any weight; ``load()`` gives the trained
    model, to be called only once the inputs and options are checked. ``members`` are the
    other models of an ensemble (already checked by :meth:`TaskFamily.check_ensemble_member`).
    """

    model_spec: str
    recipe: Recipe
    manifest: dict
    inputs: list[str]
    out_dir: Path
    options: Any
    load: Callable[[], Any]
    members: Sequence[str] = ()
    shard: str | None = None
    progress: bool = True
    echo: Callable[[str], None] = log.info
    #: The family's own options that were given (:attr:`TaskFamily.predict_options`).
    family_options: dict[str, Any] = field(default_factory=dict)


class TaskFamily:
    """The hooks of one task family. Subclasses set the class attributes and hooks."""

    name: ClassVar[str] = ""
    #: The ``task`` keys of the family (``task.type`` selects it): a dataclass extending
    #: :class:`eofm.recipe.TaskConfig`.
    task_config: ClassVar[type[TaskConfig]] = TaskConfig
    #: The commands that work on the family's runs; any other is refused at once, before a
    #: model loads (``fit``, ``test``, ``predict``, ``ensemble``, ``calibrate``,
    #: ``climatology``, ``publish``).
    commands: ClassVar[frozenset[str]] = frozenset({"fit", "test"})
    #: The options of ``eofm predict`` that only this family reads (option -> help),
    #: besides the streaming engine's (:class:`eofm.predict.options.PredictOptions`).
    predict_options: ClassVar[Mapping[str, str]] = {}
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
    #: Whether ``eofm fit`` runs the family on several processes (Lightning's DDP), tested
    #: as such; else a multi-process ``trainer`` is refused when the recipe loads.
    fits_distributed: ClassVar[bool] = False
    #: Whether ``eofm test`` scores the family's runs on whole test scenes through the
    #: streaming engine of ``eofm predict`` (``eval.tiled``, ``--tiled``; else refused).
    tests_tiled: ClassVar[bool] = False
    #: What the graph ``eofm export`` writes for the family's runs outputs (the sidecar's
    #: ``output``); ``None``: its runs are not one graph of image tiles (refused).
    export_output: ClassVar[str | None] = None
    #: Whether ``eofm predict --model model.onnx`` runs the family's exported graphs
    #: (through the streaming engine's onnxruntime stage).
    predicts_from_graph: ClassVar[bool] = False

    # --- light: what the family supports and recipe checks ----------------------------
    def require(self, command: str, what: object) -> None:
        """Refuse ``eofm <command>`` on ``what`` (a run, model or recipe of this family)
        unless the family lists the command (:attr:`commands`)."""
        if command in self.commands:
            return
        from eofm.registry import REGISTRY

        able = [e.name for e in REGISTRY.entries("family") if command in e.load().commands]
        names = ", ".join(able[:-1]) + " and " + able[-1] if len(able) > 1 else "".join(able)
        runs = f"{names} runs" if able else "no task family yet"
        raise EofmError(
            f"eofm {command} does not work on {what}: it is a {self.name} run, and eofm "
            f"{command} supports {runs}.",
            exit_code=2,
        )

    def check_data(self, recipe: Recipe, where: str) -> None:
        """The data the recipe names, checked from metadata only (file lists, headers,
        time axes) before torch loads: the dataset config's own ``check_files``."""
        recipe.data.check_files(where)

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
        self.check_distributed(recipe, where)
        from eofm.publishing.hub import is_hub_uri, parse_hub_uri

        if is_hub_uri(recipe.backbone.name):
            try:
                parse_hub_uri(recipe.backbone.name)
            except EofmError as exc:
                raise RecipeError(f"backbone.name in {where}: {exc}") from None

    def check_distributed(self, recipe: Recipe, where: str) -> None:
        """Refuse a multi-process fit (``trainer.strategy: ddp``, several ``devices`` or
        ``num_nodes``) for a family not tested under DDP (:attr:`fits_distributed`)."""
        trainer = recipe.trainer
        devices = trainer.devices
        many = (isinstance(devices, int) and devices > 1) or (
            isinstance(devices, list) and len(devices) > 1
        )
        if self.fits_distributed or not (
            trainer.strategy != "auto" or trainer.num_nodes > 1 or many
        ):
            return
        raise RecipeError(
            f"trainer in {where} asks for a multi-process (DDP) fit, which eofm runs and tests "
            f"for segmentation only, not for a {self.name} run: set trainer.devices=1, "
            "trainer.num_nodes=1 and trainer.strategy=auto."
        )

    def check_tiled_eval(self, recipe: Recipe, where: str, patch_size: int | None = None) -> None:
        """Refuse ``eval.tiled`` (``eofm test --tiled``) for a family that does not declare
        :attr:`tests_tiled`, and a tile that is not a multiple of the model's patch size."""
        from eofm.typed_config import where_of

        tile = recipe.eval.tiled.tile
        if tile is None:
            return
        where = where_of(where, "eval.tiled.tile")
        if not self.tests_tiled:
            from eofm.registry import REGISTRY

            able = [e.name for e in REGISTRY.entries("family") if e.load().tests_tiled]
            raise RecipeError(
                f"eval.tiled in {where}: a {self.name} run cannot be scored on whole scenes by "
                f"tiles (tiled evaluation scores {' and '.join(able) or 'no'} runs); leave "
                "eval.tiled.tile (--tiled) unset."
            )
        if patch_size and tile % patch_size:
            raise RecipeError(
                f"eval.tiled.tile {tile} in {where} must be a multiple of the model's patch "
                f"size {patch_size}."
            )

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

    def evaluate_tiled(
        self, trained: Any, datamodule: Any, out_dir: Any, maps_dir: Path | None = None
    ) -> dict[str, Any]:
        """``eofm test`` with ``eval.tiled``: the test split's whole scenes predicted by
        ``eofm predict``'s engine (their class maps kept in ``maps_dir`` when given) and
        scored; ``metrics`` holds the ``test/`` metrics, with pictures in ``out_dir``.
        Only families that declare :attr:`tests_tiled` are asked."""
        raise NotImplementedError

    def calibrate(self, trained: Any, datamodule: Any) -> dict[str, Any]:
        """``eofm calibrate``: the temperature fitted on the validation split, with the
        validation scores before and after (what ``model.json`` records)."""
        raise NotImplementedError

    def climatology(self, recipe: Recipe, target: Path) -> Path:
        """``eofm climatology``: write the climatology of the recipe's targets to ``target``."""
        raise NotImplementedError

    def weather_run(self, trained: Any, root: str | None = None) -> Any:
        """The trained weather run over data at ``root`` (default: where it trained), which
        other families read as features."""
        raise EofmError(f"it is a {self.name} run, not a weather run (a regression run on ERA5).")

    # --- outputs ----------------------------------------------------------------------
    def check_predict_options(self, given: Mapping[str, Any], what: object) -> None:
        """Refuse an option of another family's ``predict`` (e.g. ``--start`` for a
        segmentation model) before anything is read."""
        from eofm.registry import REGISTRY

        for option_name in given:
            if option_name in self.predict_options:
                continue
            owners = [
                e.name
                for e in REGISTRY.entries("family")
                if option_name in e.load().predict_options
            ]
            raise EofmError(
                f"{option_name} is an option of {' and '.join(owners) or 'no'} runs; {what} is a "
                f"{self.name} run.",
                exit_code=2,
            )

    def predict(self, request: PredictRequest) -> int:
        """``eofm predict``: check the inputs and options, then ``request.load()`` the model
        and write the family's outputs (returns the exit code)."""
        raise NotImplementedError

    def check_ensemble_member(
        self, first: str, recipe: Recipe, manifest: dict, other: str, other_recipe: Recipe,
        other_manifest: dict,
    ) -> None:  # fmt: skip
        """Refuse, before any weight loads, an ensemble member unlike the first model."""
        raise NotImplementedError

    def check_exportable(self, run_dir: Any) -> None:
        """Refuse what ``eofm export`` cannot write as one graph of image tiles."""
        if self.export_output is not None:
            return
        raise EofmError(
            f"{run_dir} is a {self.name} model; eofm export writes models that map image "
            "tiles to classes or values (segmentation, pixel_regression, "
            "scene_classification). Weather models cannot: their "
            "inputs are variable-and-level dictionaries with time steps and static fields "
            "rather than one tensor, and the encoders (Aurora, Prithvi WxC) run their own "
            "rollout and normalisation outside the network."
        )

    def publishes_trained_only(self, trained: Any) -> bool:
        """Whether ``eofm publish`` uploads only the trained weights (with a pointer to the
        pretrained backbone) even without ``--adapter-only``."""
        return False

    def card_section(self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any) -> Any:
        """The family's part of the model card (an :class:`eofm.publishing.card.CardSection`):
        its template, metadata, model-index result and the template's fields. ``card``
        holds ``repo_id``, ``license_id``, ``quicklook`` and ``revision``."""
        raise NotImplementedError

    def model_card(self, config: dict, recipe: Recipe, metrics: dict | None, **card: Any) -> str:
        """The README.md that ``eofm publish`` uploads: the family's section, rendered."""
        from eofm.publishing.card import render_card

        section = self.card_section(config, recipe, metrics, **card)
        return render_card(config, section, repo_id=card["repo_id"], license_id=card["license_id"])


def backbone_record(recipe: Recipe, encoder: Any) -> dict[str, Any]:
    """What ``model.json`` says of a backbone: its name, the repo, commit and file its
    weights came from, their licence, and whether pretrained weights were loaded at all."""
    manifest, source = encoder.manifest, encoder.source or {}
    return {
        "name": recipe.backbone.name,
        "repo": manifest.hub_repo,
        "revision": source.get("revision", manifest.revision),
        "file": manifest.hub_file,
        "licence": manifest.licence or None,  # of the pretrained weights (null: unstated)
        "pretrained_loaded": bool(source),
    }


def family_of(recipe: Recipe) -> TaskFamily:
    """The family that ``recipe.task.type`` names."""
    from eofm.registry import REGISTRY

    return REGISTRY.get("family", recipe.task.type).load()()
