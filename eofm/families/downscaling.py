"""Downscaling: fine-grid fields from coarse-grid ones, optionally under hard constraints.

Model: a super-resolution decoder on the coarse fields (:mod:`eofm.decoders.pixel_shuffle`)
with constraint layers that make every coarse cell's fine prediction average to its
coarse value (:mod:`eofm.models.constraints`; Harder et al., JMLR 2023); task: masked MSE
with RMSE, bias, Pearson r, CSI, the power-spectrum ratio and the mass violation
(:mod:`eofm.lightning_tasks.downscaling`); data: ERA5 coarsened from itself
(:mod:`eofm.data.era5_downscaling`), with geographic splits for the shift of RainShift.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from eofm.data.era5_downscaling_config import ERA5DownscalingConfig
from eofm.data.merra2_downscaling_config import MERRA2DownscalingConfig
from eofm.errors import EofmError, RecipeError
from eofm.families.base import FitSetup, TaskFamily, backbone_record
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option


@dataclass
class DownscalingTaskConfig(TaskConfig):
    """The ``task`` keys of a downscaling recipe."""

    targets: list[str] = option(help="fine-grid variables to predict", factory=list)
    constraints: dict[str, Literal["additive", "multiplicative", "softmax"]] = option(
        help="target -> additive | multiplicative | softmax hard constraint "
        "(eofm.models.constraints.KINDS)",
        factory=dict,
    )
    thresholds: dict[str, list[float]] = option(
        help="target -> thresholds (physical units) for CSI", factory=dict
    )


class DownscalingFamily(TaskFamily):
    name = "downscaling"
    task_config = DownscalingTaskConfig
    decoder_input = "coarse"
    metric_directions = {
        "loss": "min",
        "rmse": "min",
        "mae": "min",
        "pearson": "max",
        "csi": "max",
        "mass_violation": "min",
    }

    def metric_names(self, recipe: Recipe) -> list[str]:
        """As ``tasks/downscaling.py`` logs them: per target, CSI per target threshold."""
        task = recipe.task
        scores = ("rmse", "mae", "bias", "pearson", "mass_violation", "spectrum_ratio")
        return [
            "loss",
            *(f"{s}_{t}" for s in scores for t in task.targets),
            *(f"csi_{t}_{x:g}" for t in task.targets for x in task.thresholds.get(t, [])),
        ]

    def check_recipe(self, recipe: Recipe, where: str) -> None:
        super().check_recipe(recipe, where)
        data, task = recipe.data, recipe.task
        if not isinstance(data, (ERA5DownscalingConfig, MERRA2DownscalingConfig)):
            raise RecipeError(
                f"A downscaling recipe ({where}) needs coarse and fine fields (data.name: "
                f"era5_downscaling), not data.name: {data.name}."
            )
        if not task.targets:
            raise RecipeError(f"task.targets in {where} must name at least one variable.")
        for name in task.constraints:  # the kinds are checked with the keys' types
            if name not in task.targets:
                raise RecipeError(f"task.constraints.{name} in {where}: {name} is not a target.")
            if isinstance(data, ERA5DownscalingConfig) and name not in data.inputs:
                raise RecipeError(
                    f"task.constraints.{name} in {where}: {name} has no coarse counterpart "
                    f"(data.inputs {data.inputs}), so there is nothing to conserve."
                )
        strays = [k for k in task.thresholds if k not in task.targets]
        if strays:
            raise RecipeError(f"task.thresholds {strays} in {where} are not task.targets.")

    def build_datamodule(
        self, recipe: Recipe, manifest: dict | None = None, backbone: Any = None
    ) -> Any:
        """The dataset of ``recipe`` (with a backbone, on that backbone's variables)."""
        from eofm.data.loading import resolve_workers
        from eofm.registry import REGISTRY

        data = recipe.data
        if not data.root:
            raise EofmError("data.root is empty: set it in the recipe or with data.root=...")
        stats = {}
        if manifest is not None:  # a trained run normalises exactly as in training
            stats = {"target_mean": manifest["mean"], "target_std": manifest["std"]}
            if "mean" in manifest["inputs"]:
                stats |= {
                    "input_mean": manifest["inputs"]["mean"],
                    "input_std": manifest["inputs"]["std"],
                }
        options = {
            k: v for k, v in asdict(data).items() if k not in ("name", "root", "num_workers")
        }
        if backbone is not None:
            options["variables"] = backbone.config
        return REGISTRY.get("dataset", data.name).load()(
            data.root,
            **options,
            targets=recipe.task.targets,
            num_workers=resolve_workers(data.num_workers),
            seed=recipe.seed,
            **stats,
        )

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        import torch

        model = self.build_model(
            recipe, bands=None, pretrained=None, allow_random_init=allow_random_init
        )
        datamodule = self.build_datamodule(recipe, backbone=model.backbone)
        with torch.no_grad():
            model.mean.copy_(torch.tensor(datamodule.mean).view_as(model.mean))
            model.std.copy_(torch.tensor(datamodule.std).view_as(model.std))
        return FitSetup(datamodule, model, "training-split statistics")

    def build_model(
        self,
        recipe: Recipe,
        *,
        bands: list[str] | None,
        pretrained: bool | None,
        allow_random_init: bool = False,
    ) -> Any:
        from eofm.models.downscaling import DownscalingModel
        from eofm.registry import REGISTRY

        data, task = recipe.data, recipe.task
        backbone = self.build_backbone(recipe, pretrained, allow_random_init)
        inputs = backbone.latent_dim if backbone is not None else len(data.inputs)
        factor = backbone.patch if backbone is not None else data.factor
        decoder = REGISTRY.get("decoder", recipe.decoder.name).load()(
            inputs,
            recipe.decoder.channels,
            len(task.targets),
            factor,
            dropout=recipe.decoder.dropout,
        )
        ones = [1.0] * len(task.targets)
        return DownscalingModel(
            decoder,
            task.targets,
            [0.0] * len(ones),
            ones,
            task.constraints,
            data.factor,
            backbone=backbone,
        )

    @staticmethod
    def build_backbone(recipe: Recipe, pretrained: bool | None, allow_random_init: bool) -> Any:
        """Prithvi WxC for MERRA-2 downscaling (frozen unless adapter.mode is full)."""
        if not isinstance(recipe.data, MERRA2DownscalingConfig):
            return None
        from eofm.backbones.loading import resolve_manifest
        from eofm.backbones.manifest import WxCManifest
        from eofm.backbones.prithvi_wxc import load_wxc_backbone

        manifest = resolve_manifest(recipe.backbone.name)
        if not isinstance(manifest, WxCManifest):
            raise EofmError(
                f"MERRA-2 downscaling needs a Prithvi WxC backbone, not {recipe.backbone.name}."
            )
        if recipe.adapter.mode == "lora":
            raise EofmError(
                "adapter.mode lora is not supported for Prithvi WxC; use frozen or full."
            )
        wanted = recipe.backbone.pretrained if pretrained is None else pretrained
        backbone = load_wxc_backbone(
            manifest, pretrained=wanted, allow_random_init=allow_random_init
        )
        for parameter in backbone.parameters():
            parameter.requires_grad = recipe.adapter.mode == "full"
        return backbone

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        return self.build_datamodule(recipe, trained.manifest, trained.model.backbone)

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        from eofm.lightning_tasks.downscaling import DownscalingTask

        return DownscalingTask(
            model,
            targets=recipe.task.targets,
            target_mean=datamodule.mean,
            target_std=datamodule.std,
            lat=datamodule.lat,
            factor=recipe.data.factor,
            thresholds=recipe.task.thresholds,
            **asdict(recipe.optimizer),
        )

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        from eofm._version import __version__

        data, task = recipe.data, recipe.task
        backbone: dict[str, Any] = {"name": "none", "patch_size": [1, 1, 1]}
        if model.backbone is not None:
            patch = model.backbone.patch
            backbone = {**backbone_record(recipe, model.backbone), "patch_size": [1, patch, patch]}
        inputs = getattr(datamodule, "input_stats", None)
        return {
            "eofm_version": __version__,
            "task": {
                "type": self.name,
                "targets": list(task.targets),
                "constraints": dict(task.constraints),
                "class_names": [],
            },
            "bands": list(task.targets),
            "mean": list(datamodule.mean),
            "std": list(datamodule.std),
            "normalisation_source": norm_source,
            "inputs": (
                {"variables": list(data.inputs), "mean": inputs[0], "std": inputs[1]}
                if inputs
                else {"variables": list(model.backbone.config["surface_vars"])}
            ),
            "factor": data.factor,
            "grid": {"lat": datamodule.lat.tolist(), "lon": datamodule.lon.tolist()},
            "backbone": backbone,
            "adapter": asdict(recipe.adapter),
            "decoder": asdict(recipe.decoder),
        }

    def test_record(self, datamodule: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"test_times": len(datamodule.splits["test"])}
        if datamodule.regions:
            test = datamodule.masks["test"]
            record["test_cells"] = int(test.sum()) if test is not None else None
        return record
