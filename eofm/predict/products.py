"""The rasters one streamed pass of ``eofm predict`` writes, and how each is made from
the blended channels (``K`` class probabilities, then the members' expected entropy when
there is one).

- ``classes``: uint8 class map, 255 where the input is invalid (the first argmax);
- ``probabilities``: float32, one band per class, NaN where invalid;
- ``entropy``: float32 predictive entropy ``H(p) = -sum p log p`` in nats;
- ``mutual_information``: float32 ``H(p) - E[H]``, the members' disagreement, in nats.

The first product is the primary output (``<stem>.tif``); the others are written beside
it as ``<stem>_<product>.tif``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eofm.predict.blending import first_argmax

#: Class value of pixels without valid input.
CLASS_NODATA = 255


def products_for(options: Any, uncertainty: str | None, *, ensemble: bool) -> list[tuple[str, str]]:
    """``(product, file suffix)`` in writing order, for the options of a run."""
    primary = "probabilities" if options.probabilities else "classes"
    out = [(primary, "")]
    if ensemble and primary != "probabilities":
        out.append(("probabilities", "_probabilities"))
    if uncertainty == "entropy":
        out.append(("entropy", "_entropy"))
    elif ensemble or uncertainty in ("mc-dropout", "tta"):
        out.append(("mutual_information", "_mutual_information"))
    return out


def product_profile(kind: str, num_classes: int) -> dict[str, Any]:
    if kind == "classes":
        return {"count": 1, "dtype": "uint8", "nodata": CLASS_NODATA}
    count = num_classes if kind == "probabilities" else 1
    return {"count": count, "dtype": "float32", "nodata": float("nan")}


def _entropy(probs: np.ndarray) -> np.ndarray:
    safe = np.where(probs > 0, probs, 1.0)
    return -(probs * np.log(safe)).sum(axis=0)


def product_block(
    kind: str, channels: np.ndarray, valid: np.ndarray, num_classes: int
) -> np.ndarray:
    """The ``(bands, n, w)`` block of ``kind`` from blended ``channels (C, n, w)``."""
    invalid = ~valid
    probs = channels[:num_classes]
    if kind == "classes":
        classes = first_argmax(probs)
        np.copyto(classes, CLASS_NODATA, where=invalid)
        return classes[None]
    if kind == "probabilities":
        block = probs.copy()  # other products read the same channels
        np.copyto(block, np.nan, where=invalid)
        return block
    if kind == "entropy":
        values = _entropy(probs)
    else:  # mutual information: predictive entropy minus the members' expected entropy
        values = np.maximum(_entropy(probs) - channels[num_classes], 0.0)
    values = values.astype(np.float32)
    np.copyto(values, np.nan, where=invalid)
    return values[None]


def describe(dataset: Any, kind: str, class_names: Sequence[str], *, primary: bool) -> None:
    """Band descriptions of the companion products (the primary map stays as it was)."""
    if primary:
        return
    if kind == "probabilities":
        for band, name in enumerate(class_names, start=1):
            dataset.set_band_description(band, f"probability of {name}")
    elif kind == "entropy":
        dataset.set_band_description(1, "predictive entropy (nats)")
    elif kind == "mutual_information":
        dataset.set_band_description(1, "mutual information between members (nats)")
