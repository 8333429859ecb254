"""The one rule against silent random weights: download the pretrained weights, or fail.

Random initialisation happens only when the user asked for it (``--allow-random-init``),
and then with a warning nobody can miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from eofm.errors import EofmError

log = logging.getLogger(__name__)
T = TypeVar("T")

RANDOM_INIT_WARNING = (
    "\n" + "!" * 78 + "\n!! eofm: PRETRAINED WEIGHTS WERE NOT LOADED for {name}: {reason}\n"
    "!! --allow-random-init was given, so the backbone is RANDOMLY INITIALISED.\n"
    "!! Results will not reflect the pretrained model.\n" + "!" * 78
)


def fetch_or_random_init(name: str, fetch: Callable[[], T], allow_random_init: bool) -> T | tuple:
    """``fetch()``; on failure raise, or with ``allow_random_init`` warn loudly and
    return ``(None, None)``: the one rule against silent random weights."""
    try:
        return fetch()
    except EofmError as exc:
        if not allow_random_init:
            raise EofmError(
                f"{exc} Pass backbone.pretrained=false or --allow-random-init to train "
                "from random weights instead."
            ) from None
        log.warning(RANDOM_INIT_WARNING.format(name=name, reason=exc))
        return None, None
