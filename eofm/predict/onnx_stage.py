"""The model stage of ``eofm predict`` on an exported ONNX graph: numpy and onnxruntime
only, so that predicting from ``model.onnx`` never imports torch.

It computes what :class:`~eofm.predict.members.TileModel` computes for one model: the
softmax of the logits divided by the calibration temperature (or the raw values of a
regression), averaged over the test-time flips (``--tta flip``, or ``--uncertainty tta``
with the views' expected entropy; the entropy of a distribution uses ``0 log 0 = 0``),
then multiplied by the blending window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eofm.models.trained import TrainedModel
from eofm.predict.options import PredictOptions
from eofm.predict.strips import TileBatch

#: the axes each test-time view flips, as ``members._flips``: none, columns, rows, both
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _flipped(x: np.ndarray, view: int) -> np.ndarray:
    return np.flip(x, axis=_FLIPS[view]) if _FLIPS[view] else x


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _entropy(probs: np.ndarray) -> np.ndarray:
    """``-sum p log p`` over the classes, with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -terms.sum(axis=1)


class OnnxStage:
    """Weighted probabilities of batches of tiles from the graph, on the CPU."""

    depth = 0  # onnxruntime's run returns when the batch is done

    def __init__(
        self,
        trained: TrainedModel,
        members: Sequence[TrainedModel],
        options: PredictOptions,
        weights: np.ndarray,
        *,
        values: bool = False,
    ) -> None:
        from eofm.errors import EofmError
        from eofm.predict.options import parse_uncertainty

        if members:
            raise EofmError(
                f"{trained.source}: an exported graph cannot be averaged in an ensemble."
            )
        self.network, self.values, self.weights = trained.model, values, weights
        self.temperature = trained.temperature
        self.uncertainty = parse_uncertainty(options.uncertainty)[0]
        views = 4 if self.uncertainty == "tta" else 2 if options.tta_flip else 1
        self.views = list(range(views))
        self.expected_entropy = self.uncertainty == "tta"
        self.channels = len(trained.class_names) + (1 if self.expected_entropy else 0)

    @staticmethod
    def host_tiles(tiles: TileBatch) -> np.ndarray:
        return np.ascontiguousarray(tiles.host())  # onnxruntime reads contiguous arrays

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch of tiles (then the views' expected entropy)."""
        outputs = []
        for view in self.views:
            logits = self.network(np.ascontiguousarray(_flipped(batch, view)))
            logits = logits.astype(np.float32, copy=False)
            if not self.values:
                logits = _softmax(logits / self.temperature if self.temperature != 1.0 else logits)
            outputs.append(_flipped(logits, view))
        if len(outputs) == 1:
            return np.ascontiguousarray(outputs[0])
        if not self.expected_entropy:  # --tta flip: one averaged prediction
            return np.mean(outputs, axis=0, dtype=np.float32)
        mean = np.mean(outputs, axis=0, dtype=np.float32)
        if self.values:  # the second moment, from which the products take the spread
            second = np.mean(np.square(outputs), axis=0, dtype=np.float32)
            return np.concatenate([mean, second], axis=1)
        entropy = np.mean([_entropy(p) for p in outputs], axis=0, dtype=np.float32)
        return np.concatenate([mean, entropy[:, None]], axis=1)

    def weighted(self, batch: np.ndarray, coords: dict | None = None) -> tuple[np.ndarray, None]:
        """Probabilities times the blending window; ``coords`` are not inputs of the graph."""
        probs = self.probabilities(batch)
        probs *= self.weights
        return probs, None

    @staticmethod
    def collect(result: Any) -> tuple[np.ndarray, None]:
        return result

    def give_back(self, buffer: Any) -> None:  # no pooled buffers
        pass
