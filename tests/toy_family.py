"""A toy task family, to show (and test) that a family is one module plus one registry line.

Per-pixel regression of a value from a few bands with a 1x1 convolution, on ``.npy``
arrays: ``data.root`` holds ``x.npy`` (samples, bands, height, width) and ``y.npy``
(samples, height, width); ``eofm predict`` reads one ``(bands, height, width)`` array per
input and writes ``<stem>_toy.npy``. The tests register it with
``REGISTRY.add("family", "toy", "tests.toy_family:ToyFamily")``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from eofm.errors import EofmError
from eofm.families.base import FitSetup, PredictRequest, TaskFamily
from eofm.recipe import Recipe, TaskConfig
from eofm.typed_config import option


@dataclass
class ToyTaskConfig(TaskConfig):
    """The toy family's own ``task`` keys."""

    loss: Literal["mse", "l1"] = option("mse", "mse or l1 per pixel")


class ToyFamily(TaskFamily):
    name = "toy"
    task_config = ToyTaskConfig
    commands = frozenset({"fit", "test", "predict"})
    decoder_input = "maps"
    metric_directions = {"loss": "min", "mae": "min"}

    def check_data(self, recipe: Recipe, where: str) -> None:
        if not (Path(recipe.data.root) / "x.npy").is_file():
            raise EofmError(f"data.root in {where} holds no x.npy.", exit_code=2)

    def setup_fit(self, recipe: Recipe, *, allow_random_init: bool) -> FitSetup:
        datamodule = self.build_eval_datamodule(recipe, None)
        model = self.build_model(recipe, bands=datamodule.bands, pretrained=False)
        return FitSetup(datamodule, model, "training arrays")

    def build_model(
        self,
        recipe: Recipe,
        *,
        bands: list[str] | None,
        pretrained: bool | None,
        allow_random_init: bool = False,
    ) -> Any:
        from torch import nn

        class PixelModel(nn.Module):
            cacheable = False

            def __init__(self, channels: int) -> None:
                super().__init__()
                self.head = nn.Conv2d(channels, 1, 1)

            def forward(self, x: Any) -> Any:
                return self.head(x)[:, 0]

            def predict_batch(self, batch: dict) -> Any:
                return self(batch["image"])

        return PixelModel(len(bands or []))

    def build_eval_datamodule(self, recipe: Recipe, trained: Any) -> Any:
        import lightning as L
        import numpy as np
        import torch
        from torch.utils.data import DataLoader

        root = Path(recipe.data.root)
        x = torch.from_numpy(np.load(root / "x.npy")).float()
        y = torch.from_numpy(np.load(root / "y.npy")).float()
        cut = [int(round(f * len(x))) for f in np.cumsum(recipe.data.split_fractions)]
        parts = dict(
            zip(("train", "val", "test"), np.split(np.arange(len(x)), cut[:2]), strict=True)
        )

        class Arrays(L.LightningDataModule):
            bands = [f"b{i}" for i in range(x.shape[1])]
            mean, std = [0.0] * x.shape[1], [1.0] * x.shape[1]

            def loader(self, split: str) -> DataLoader:
                samples = [{"image": x[i], "target": y[i]} for i in parts[split]]
                return DataLoader(samples, batch_size=recipe.data.batch_size)

            def train_dataloader(self) -> DataLoader:
                return self.loader("train")

            def val_dataloader(self) -> DataLoader:
                return self.loader("val")

            def test_dataloader(self) -> DataLoader:
                return self.loader("test")

        return Arrays()

    def build_task(self, recipe: Recipe, model: Any, datamodule: Any) -> Any:
        import torch
        from torch import nn
        from torchmetrics import MeanAbsoluteError

        from eofm.lightning_tasks.base import StageTask

        loss = recipe.task.loss

        class PixelTask(StageTask):
            def __init__(self) -> None:
                super().__init__(model, **asdict(recipe.optimizer))
                self.setup_metrics()

            def make_metrics(self) -> nn.ModuleDict:
                return nn.ModuleDict({"mae": MeanAbsoluteError()})

            def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
                error = outputs - batch["target"]
                return (error**2).mean() if loss == "mse" else error.abs().mean()

            def update_metrics(self, metrics: nn.ModuleDict, outputs: Any, batch: dict) -> None:
                metrics["mae"].update(outputs, batch["target"])

            def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict:
                return {f"{stage}/mae": metrics["mae"].compute()}

            def batch_size(self, batch: dict) -> int:
                return len(batch["image"])

        return PixelTask()

    def model_manifest(
        self, recipe: Recipe, model: Any, datamodule: Any, norm_source: str
    ) -> dict[str, Any]:
        return {
            "task": {"type": self.name, "loss": recipe.task.loss},
            "bands": list(datamodule.bands),
            "mean": datamodule.mean,
            "std": datamodule.std,
            "normalisation_source": norm_source,
            "backbone": {"name": "none", "patch_size": [1, 1, 1]},
        }

    def predict(self, request: PredictRequest) -> int:
        import numpy as np
        import torch

        inputs = [Path(p) for p in request.inputs]
        bands = len(request.manifest["bands"])
        for path in inputs:  # every input and output checked before the model loads
            if not path.is_file() or np.load(path, mmap_mode="r").shape[0] != bands:
                raise EofmError(f"{path}: not a ({bands}, height, width) .npy array.")
            if (request.out_dir / f"{path.stem}_toy.npy").exists():
                raise EofmError(f"{path.stem}_toy.npy exists in {request.out_dir}.")
        trained = request.load()
        request.out_dir.mkdir(parents=True, exist_ok=True)
        for path in inputs:
            with torch.no_grad():
                values = trained.model(torch.from_numpy(np.load(path)).float()[None])[0]
            target = request.out_dir / f"{path.stem}_toy.npy"
            np.save(target, values.numpy())
            request.echo(f"  {target}")
        return 0
