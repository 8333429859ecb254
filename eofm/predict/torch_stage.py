"""The model stage of ``eofm predict`` on PyTorch: batches of tiles in, weighted
probabilities out, on the chosen device.

Batches are predicted under ``torch.inference_mode``: on CUDA from pinned host memory with
non-blocking copies and one batch in flight, under autocast in the chosen precision
(:mod:`eofm.predict.device`); the softmax (or ensemble, views, passes:
:class:`~eofm.predict.members.TileModel`) and the blending window are applied on the
device. On the CPU the probabilities are written into reused buffers, handed back once
blended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from eofm.errors import EofmError
from eofm.models.trained import TrainedModel
from eofm.predict.device import autocast_context, resolve_device, resolve_precision
from eofm.predict.options import PredictOptions
from eofm.predict.strips import Recycler, TileBatch


class TorchStage:
    """Weighted probabilities of batches of tiles from the run's network (and members)."""

    def __init__(
        self,
        trained: TrainedModel,
        members: Sequence[TrainedModel],
        options: PredictOptions,
        weights: np.ndarray,
        *,
        values: bool = False,
    ) -> None:
        from eofm.predict.members import TileModel
        from eofm.predict.options import parse_uncertainty

        kind, passes = parse_uncertainty(options.uncertainty)
        self.options = options
        self.device = resolve_device(options.device)
        self.precision = resolve_precision(options.precision, self.device)
        self.tile_model = TileModel(
            [trained, *members],
            tta_flip=options.tta_flip,
            uncertainty=kind,
            passes=passes,
            values=values,
        ).to(self.device)
        self.channels = self.tile_model.channels
        self._weights_on_device = torch.from_numpy(weights).to(self.device)
        shape = (options.batch_size, self.channels, options.tile, options.tile)
        self._outputs = Recycler(lambda: torch.empty(shape, dtype=torch.float32))
        #: batches queued on the device while the previous one is collected
        self.depth = 1 if self.device.type == "cuda" else 0

    def host_tiles(self, tiles: TileBatch) -> np.ndarray:
        """What the model reads: views of the strip on the CPU, a pinned copy for CUDA."""
        return tiles.pinned() if self.device.type == "cuda" else tiles.host()

    def _device_probabilities(
        self, batch: np.ndarray, coords: dict | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class probabilities of a batch of tiles (and the members' expected entropy, when
        an uncertainty needs it), on the model's device, in float32 (in ``out`` when the
        model stage can write them there).

        ``coords`` holds the TL model's ``temporal``/``location`` arrays for the batch."""
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":  # batches are staged in pinned memory already
            x = (x if x.is_pinned() else x.pin_memory()).to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            x = x.to(self.device)
        given = {
            k: torch.from_numpy(v).to(self.device)
            for k, v in (coords or {}).items()
            if v is not None
        }
        extra = [given.get("temporal"), given.get("location")]
        extra = extra if any(e is not None for e in extra) else []
        kwargs = {"gsd_m": given["gsd_m"]} if "gsd_m" in given else {}
        try:
            with autocast_context(self.device, self.precision):
                probs = self.tile_model(x, extra, kwargs, out=out)
        except torch.OutOfMemoryError:
            raise EofmError(
                f"The {self.device} ran out of memory on a batch of {len(batch)} tiles of "
                f"{self.options.tile} px; lower --batch-size (or --tile)."
            ) from None
        return probs

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of tiles, on the host."""
        return self._device_probabilities(batch).cpu().numpy()

    @torch.inference_mode()
    def weighted(self, batch: np.ndarray, coords: dict | None = None) -> Any:
        """Probabilities times the blending window (what the accumulators add): on the CPU
        ``(array, buffer to give back once added, or None)``, or on CUDA a pending copy
        into pinned host memory (:meth:`collect` waits for it), so that the next batch is
        queued on the GPU while this one is still computing."""
        if self.device.type == "cpu":
            buffer = self._outputs.take()
            probs = self._device_probabilities(batch, coords, out=buffer[: len(batch)])
            probs.mul_(self._weights_on_device)
            pooled = probs.data_ptr() == buffer.data_ptr()
            if not pooled:
                self._outputs.give_back(buffer)
            return probs.numpy(), buffer if pooled else None
        probs = self._device_probabilities(batch, coords).mul_(self._weights_on_device)
        if self.device.type != "cuda":
            return probs.cpu().numpy(), None
        host = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        host.copy_(probs, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    @staticmethod
    def collect(result: Any) -> tuple[np.ndarray, Any]:
        """``(weighted probabilities, pooled buffer holding them or None)``."""
        first, second = result
        if isinstance(second, torch.cuda.Event):
            second.synchronize()
            return first.numpy(), None
        return first, second

    def give_back(self, buffer: Any) -> None:
        """A buffer of :meth:`weighted`, once its probabilities are blended."""
        self._outputs.give_back(buffer)
