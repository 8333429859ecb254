"""One stage loop for every task family's LightningModule.

After torchgeo's ``BaseTask``: one ``_step`` serves train, validation and test; each
stage has its own clone of the family's metrics; the epoch end logs what they computed;
the optimizer is AdamW on the trainable parameters with a warm-up and cosine schedule.
Under DDP the metrics' states are summed over the ranks when they compute (torchmetrics'
``sync_on_compute``). The evaluation losses are torchmetrics means too: the ranks may
score unequal shares (:class:`eofm.data.sampling.InOrderShard`), and Lightning's
``sync_dist`` mean divides the summed batch sizes by the world size in integers on gloo
(``lightning.fabric.utilities.distributed._sync_ddp``: 3 samples on 2 ranks count as 2).
A family's task says only what differs: its loss, its metrics, and how they report.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from eofm.checkpoint_format import BASE_KEY

STAGES = ("train", "val", "test")


class StageTask(L.LightningModule):
    """Train, validate and test a :class:`~eofm.models.base.LatentModel`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        algorithm: str = "adamw",
        step_epochs: int = 15,
        step_gamma: float = 0.1,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay = lr, weight_decay
        self.scheduler, self.warmup_steps = scheduler, warmup_steps
        self.algorithm, self.step_epochs, self.step_gamma = algorithm, step_epochs, step_gamma
        self.base_pointer: dict | None = None

    # --- light checkpoints -------------------------------------------------------------
    def keep_base_out_of_checkpoints(self, pointer: dict) -> None:
        """Checkpoints leave out the frozen weights of the pretrained backbone and keep
        ``pointer`` (its repo, revision and file) instead: a frozen Aurora-small run stores
        megabytes, not 440 MB per checkpoint. Resuming puts the weights back from the model
        in memory, which was built from that same base."""
        self.base_pointer = dict(pointer)

    def frozen_base_keys(self) -> list[str]:
        return [
            name
            for name, p in self.named_parameters()
            if name.startswith("model.backbone.") and not p.requires_grad
        ]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        frozen = self.frozen_base_keys() if self.base_pointer else []
        if not frozen:
            return
        state = checkpoint["state_dict"]
        for name in frozen:
            state.pop(name, None)
        checkpoint[BASE_KEY] = {**self.base_pointer, "frozen_parameters": len(frozen)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if BASE_KEY not in checkpoint:
            return
        state, own = checkpoint["state_dict"], self.state_dict()
        for name in self.frozen_base_keys():
            state.setdefault(name, own[name])

    # --- what a family defines ------------------------------------------------------
    def make_metrics(self) -> nn.ModuleDict:
        """The metrics of one stage, by name (made once per stage)."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def update_metrics(self, metrics: nn.ModuleDict, outputs: torch.Tensor, batch: dict) -> None:
        raise NotImplementedError

    def epoch_scores(self, metrics: nn.ModuleDict, stage: str) -> dict[str, torch.Tensor]:
        """``{"<stage>/<name>": value}``; empty when the stage saw nothing to score."""
        raise NotImplementedError

    def batch_size(self, batch: dict) -> int:
        raise NotImplementedError

    # --- the shared loop ------------------------------------------------------------
    def setup_metrics(self) -> None:
        """Call at the end of ``__init__``: one metric set per stage."""
        for stage in STAGES:  # attributes, not a ModuleDict: "train" is a Module method
            setattr(self, f"{stage}_metrics", self.make_metrics())
        for stage in ("val", "test"):  # see _step
            setattr(self, f"{stage}_loss", MeanMetric())

    def metrics_of(self, stage: str) -> nn.ModuleDict:
        return getattr(self, f"{stage}_metrics")

    def forward(self, *args: Any) -> torch.Tensor:
        return self.model(*args)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        outputs = self.model.predict_batch(batch)
        loss = self.loss(outputs, batch)
        self.update_metrics(self.metrics_of(stage), outputs.detach(), batch)
        size = self.batch_size(batch)
        if stage == "train":  # every DDP rank takes the same batches: Lightning's mean holds
            self.log(
                "train/loss",
                loss,
                on_step=True,
                on_epoch=True,
                prog_bar=True,
                batch_size=size,
                sync_dist=True,
            )
        else:
            mean = getattr(self, f"{stage}_loss")
            mean.update(loss.detach(), size)
            self.log(f"{stage}/loss", mean, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metrics = self.metrics_of(stage)
        scores = self.epoch_scores(metrics, stage)
        if scores:  # torchmetrics synced their states across DDP ranks: the same values
            self.log_dict(scores, sync_dist=True)
        for metric in metrics.values():
            metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        """AdamW (or Adam) on the trainable parameters, with optional warmup + cosine decay
        per step (Loshchilov & Hutter, ICLR 2017 and 2019) or a StepLR decay per epoch."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = bool(params) and all(p.is_cuda for p in params)  # one kernel for all params
        kind = torch.optim.Adam if self.algorithm == "adam" else torch.optim.AdamW
        optimizer = kind(
            params, lr=self.lr, weight_decay=self.weight_decay, **({"fused": True} if fused else {})
        )
        if self.scheduler == "none":
            return optimizer
        if self.scheduler == "step":  # StepLR per epoch, as the Mesogeos baselines train
            step = torch.optim.lr_scheduler.StepLR(optimizer, self.step_epochs, self.step_gamma)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": step, "interval": "epoch"},
            }
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(self.warmup_steps, total - 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
