"""Keeping the machine's paths out of what is published.

A run dir stores absolute local paths (so that it works from any folder); a published
folder must not carry them: they say nothing useful to others and can reveal user names
and folder layouts. ``data.root`` becomes empty (``eofm test hf://...`` asks for
``data.root=``), other local paths keep only their file name, and the cache folder goes.
"""

from __future__ import annotations

import re
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import Any

_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def is_local_absolute(value: str) -> bool:
    return value.startswith(("/", "~")) or bool(_WINDOWS_ABSOLUTE.match(value))


def public_path(value: str | None) -> str:
    """A path as it may appear in public: absolute local paths reduced to their name."""
    if not value:
        return ""
    if not is_local_absolute(value):
        return value
    path: PurePath = (
        PureWindowsPath(value) if _WINDOWS_ABSOLUTE.match(value) else PurePosixPath(value)
    )
    return path.name


def scrub_recipe(tree: dict[str, Any]) -> dict[str, Any]:
    """A resolved recipe (as a dict) with no absolute local path left in it."""

    def scrub(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v, f"{key}.{k}" if key else k) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v, key) for v in node]
        if isinstance(node, str) and is_local_absolute(node):
            if key == "data.root":
                return ""
            if key == "cache.dir":
                return None
            return public_path(node)
        return node

    return scrub(tree, "")
