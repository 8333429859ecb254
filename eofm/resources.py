"""Where the shipped ``recipes/``, ``tasks/`` and ``hub/`` folders live.

In a source checkout they sit at the repository's top level; in an installed wheel they
are packed under ``eofm/_resources/`` (see ``pyproject.toml``).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from eofm.errors import RecipeError

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``recipes``, ``tasks`` or ``hub``) shipped with eofm."""
    packed = _PACKAGE_DIR / "_resources" / name
    if packed.is_dir():
        return packed
    return _PACKAGE_DIR.parent / name


def shipped_recipes() -> list[Path]:
    return sorted(resource_dir("recipes").glob("*.yaml"))


def find_recipe(spec: str) -> Path:
    """A recipe path, or the name of a shipped recipe (with or without ``.yaml``)."""
    path = Path(spec)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    shipped = {p.stem: p for p in shipped_recipes()}
    if stem in shipped and path.parent == Path("."):
        return shipped[stem]
    if stem in shipped and not path.exists():
        return shipped[stem]
    close = difflib.get_close_matches(stem, list(shipped), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else " Run 'eofm recipes' to list them."
    raise RecipeError(f"Recipe file {spec} does not exist and is not a shipped recipe.{hint}")


def find_task_definition(name: str) -> Path:
    """``tasks/<name>.yaml``; the error lists the definitions that exist."""
    folder = resource_dir("tasks")
    path = folder / f"{name.removesuffix('.yaml')}.yaml"
    if path.is_file():
        return path
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise RecipeError(f"Unknown task definition '{name}' (task.definition).{hint} Known: {known}.")
