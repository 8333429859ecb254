"""The rasters one streamed pass of ``eofm predict`` writes, and how each is made from
the blended channels (``K`` class probabilities, then the members' expected entropy when
there is one).

- ``classes``: uint8 class map, 255 where the input is invalid (the first argmax);
- ``probabilities``: float32, one band per class, NaN where invalid;
- ``entropy``: float32 predictive entropy ``H(p) = -sum p log p`` in nats;
- ``mutual_information``: float32 ``H(p) - E[H]``, the members' disagreement, in nats;
- ``value``: float32, a regression model's value (its channel 0), NaN where invalid;
- ``std``: float32 ``sqrt(E[x^2] - E[x]^2)`` of the value over members, views or passes.

The class map is the primary output (``<stem>.tif``); the others are written beside
it as ``<stem>_<product>.tif`` (``--probabilities``: ``<stem>_probabilities.tif``, one
band per class, described by the class's name).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eofm.predict.blending import first_argmax

#: Class value of pixels without valid input.
CLASS_NODATA = 255


def products_for(
    options: Any, uncertainty: str | None, *, ensemble: bool, values: bool = False
) -> list[tuple[str, str]]:
    """``(product, file suffix)`` in writing order, for the options of a run."""
    if values:  # a regression model: its value, and their spread when sampled
        spread = ensemble or uncertainty in ("mc-dropout", "tta")
        return [("value", "")] + ([("std", "_std")] if spread else [])
    out = [("classes", "")]  # --probabilities adds a map beside it, never replaces it
    if ensemble or options.probabilities:
        out.append(("probabilities", "_probabilities"))
    if uncertainty == "entropy":
        out.append(("entropy", "_entropy"))
    elif ensemble or uncertainty in ("mc-dropout", "tta"):
        out.append(("mutual_information", "_mutual_information"))
    return out


def product_profile(kind: str, num_classes: int) -> dict[str, Any]:
    if kind == "classes":
        return {"count": 1, "dtype": "uint8", "nodata": CLASS_NODATA}
    return {"count": product_bands(kind, num_classes), "dtype": "float32", "nodata": float("nan")}


def _entropy(probs: np.ndarray) -> np.ndarray:
    safe = np.where(probs > 0, probs, 1.0)
    return -(probs * np.log(safe)).sum(axis=0)


def product_bands(kind: str, num_classes: int) -> int:
    return num_classes if kind == "probabilities" else 1


def empty_block(kind: str, num_classes: int, rows: int, width: int) -> np.ndarray:
    """An uninitialised ``(bands, rows, width)`` block of ``kind`` in its file's dtype."""
    dtype = np.uint8 if kind == "classes" else np.float32
    return np.empty((product_bands(kind, num_classes), rows, width), dtype)


def product_block(
    kind: str,
    channels: np.ndarray,
    valid: np.ndarray,
    num_classes: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The ``(bands, n, w)`` block of ``kind`` from blended ``channels (C, n, w)``, into
    ``out`` when given."""
    if out is None:
        out = empty_block(kind, num_classes, *valid.shape)
    invalid = ~valid
    probs = channels[:num_classes]
    if kind == "classes":
        first_argmax(probs, out=out[0])
        np.copyto(out[0], CLASS_NODATA, where=invalid)
        return out
    if kind == "probabilities":
        np.copyto(out, probs)  # other products read the same channels
        np.copyto(out, np.nan, where=invalid)
        return out
    if kind == "value":
        values = probs[0]
    elif kind == "std":
        values = np.sqrt(np.maximum(channels[num_classes] - np.square(probs[0]), 0.0))
    elif kind == "entropy":
        values = _entropy(probs)
    else:  # mutual information: predictive entropy minus the members' expected entropy
        values = np.maximum(_entropy(probs) - channels[num_classes], 0.0)
    np.copyto(out[0], values, casting="same_kind")
    np.copyto(out[0], np.nan, where=invalid)
    return out


class ProductRows:
    """The blocks of every product over one run of finished rows, filled chunk by chunk
    (the ``finish`` of ``BandBlender.end_strip``)."""

    def __init__(self, kinds: Sequence[str], num_classes: int) -> None:
        self.kinds, self.num_classes = list(kinds), num_classes
        self.blocks: dict[str, np.ndarray] = {}

    def __call__(self, channels: np.ndarray, valid: np.ndarray, first: int, total: int) -> None:
        if not self.blocks:
            width = valid.shape[1]
            self.blocks = {k: empty_block(k, self.num_classes, total, width) for k in self.kinds}
        for kind, block in self.blocks.items():
            rows = block[:, first : first + len(valid)]
            product_block(kind, channels, valid, self.num_classes, out=rows)


def describe(dataset: Any, kind: str, class_names: Sequence[str], *, primary: bool) -> None:
    """Band descriptions of the companion products (the primary map stays as it was,
    but a value map names what it holds)."""
    if kind == "value":
        dataset.set_band_description(1, class_names[0])
    elif kind == "std":
        dataset.set_band_description(1, f"standard deviation of {class_names[0]}")
    if primary:
        return
    if kind == "probabilities":
        for band, name in enumerate(class_names, start=1):
            dataset.set_band_description(band, name)
    elif kind == "entropy":
        dataset.set_band_description(1, "predictive entropy (nats)")
    elif kind == "mutual_information":
        dataset.set_band_description(1, "mutual information between members (nats)")
