"""eofm: fine-tune Earth-observation and weather foundation models.

Heavy dependencies (torch, lightning, timm, peft) are imported lazily so that the
command line starts in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eofm._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from eofm.backbones.loading import load_backbone


def __getattr__(name: str) -> Any:
    if name == "load_backbone":
        from eofm.backbones.loading import load_backbone

        return load_backbone
    raise AttributeError(f"module 'eofm' has no attribute {name!r}")


__all__ = ["__version__", "load_backbone"]
