"""``model.json``, read through one typed schema: what inference trusts is checked once.

A run dir's ``model.json`` may be edited by hand (a temperature typed in, statistics
pasted from elsewhere). Every field that predictions divide by or index with is checked
here, and a bad one is one error naming the file and the field, not an all-NaN map or a
traceback later: ``bands`` a non-empty list of names; ``mean`` and ``std`` lists of finite
numbers of one length, each ``std`` > 0 (the input is divided by it); a calibration
``temperature`` a finite number > 0 (logits are divided by it; Guo et al., ICML 2017);
``backbone`` a mapping. Light: standard library only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eofm.errors import EofmError


@dataclass(frozen=True)
class ModelJson:
    """The checked fields of a ``model.json``; ``manifest`` is the whole mapping."""

    bands: list[str]
    mean: list[float]
    std: list[float]
    temperature: float
    pretrained_loaded: bool
    manifest: dict[str, Any]

    @classmethod
    def parse(cls, data: Any, path: Path | str) -> ModelJson:
        def bad(field: str, message: str) -> EofmError:
            return EofmError(f"{path}: field '{field}' {message}", exit_code=2)

        if not isinstance(data, dict):
            raise EofmError(f"{path} must hold a JSON object, not {type(data).__name__}.")
        bands = data.get("bands")
        if not isinstance(bands, list) or not bands:
            raise bad("bands", f"must be a non-empty list of band names, got {bands!r}.")
        if not all(isinstance(b, str) and b for b in bands):
            raise bad("bands", f"must hold band names (strings), got {bands!r}.")
        mean = _numbers(data.get("mean"), "mean", bad)
        std = _numbers(data.get("std"), "std", bad)
        if len(mean) != len(std):
            raise bad("std", f"has {len(std)} values for the {len(mean)} of 'mean'.")
        for i, value in enumerate(std):
            if value <= 0:
                raise bad("std", f"must hold numbers > 0 (inputs are divided by them); "
                          f"entry {i} is {value!r}.")  # fmt: skip
        backbone = data.get("backbone", {})
        if not isinstance(backbone, dict):
            raise bad("backbone", f"must be an object, got {backbone!r}.")
        calibration = data.get("calibration") or {}
        if not isinstance(calibration, dict):
            raise bad("calibration", f"must be an object, got {calibration!r}.")
        temperature = calibration.get("temperature", 1.0)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise bad(
                "calibration.temperature",
                f"must be a finite number > 0 (logits are divided by it), got {temperature!r}; "
                "run 'eofm calibrate' again, or remove 'calibration'.",
            )
        return cls(
            bands=list(bands),
            mean=mean,
            std=std,
            temperature=float(temperature),
            pretrained_loaded=bool(backbone.get("pretrained_loaded")),
            manifest=data,
        )


def _numbers(value: Any, field: str, bad: Any) -> list[float]:
    if not isinstance(value, list) or not value:
        raise bad(field, f"must be a non-empty list of numbers, got {value!r}.")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise bad(field, f"must hold numbers; entry {i} is {item!r}.")
        if not math.isfinite(item):
            raise bad(field, f"must hold finite numbers; entry {i} is {item!r}.")
    return [float(v) for v in value]


def load_model_json(path: Path) -> ModelJson:
    """Read and check ``path`` (a run dir's ``model.json``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EofmError(
            f"{path} does not exist; is {Path(path).parent} a run dir written by 'eofm fit'?"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EofmError(f"{path} is not valid JSON: {exc}", exit_code=2) from None
    return ModelJson.parse(data, path)


def read_model_json(path: Path) -> dict[str, Any]:
    """The checked ``model.json`` mapping, for the code that reads its other fields."""
    return load_model_json(path).manifest
