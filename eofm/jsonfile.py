"""The one way eofm turns data into JSON text: strict JSON (RFC 8259), never NaN or inf.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no other JSON reader
accepts (``model.json`` with a NaN mean could not be read back). Every file eofm writes
goes through :func:`json_text`, which refuses non-finite numbers and names where they
are. A value that may legitimately be missing (a metric with nothing to score) is mapped
to ``null`` explicitly by its producer with :func:`finite_or_none`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from eofm.errors import EofmError


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None (JSON ``null``) when it is missing, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def json_text(data: Any, what: str, **options: Any) -> str:
    """``data`` as JSON text (``options`` as for :func:`json.dumps`); a NaN or infinite
    number anywhere is an error naming its place in ``what`` (a file name)."""
    try:
        return json.dumps(data, allow_nan=False, **options)
    except ValueError as exc:
        place = _non_finite(data, "")
        if place is None:
            raise
        raise EofmError(
            f"Refusing to write {place[1]} at {place[0] or 'the top'} of {what}: JSON has no "
            "NaN or infinity, and this value is not one that may be missing."
        ) from exc


def _non_finite(data: Any, path: str) -> tuple[str, float] | None:
    """The first ``(path, value)`` in ``data`` holding a non-finite float."""
    if isinstance(data, float) and not math.isfinite(data):
        return path, data
    if isinstance(data, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in data.items())
    elif isinstance(data, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    for where, value in items:
        found = _non_finite(value, where)
        if found is not None:
            return found
    return None
