"""``eofm climatology RECIPE --out FILE``: the targets' climatology for ACC.

The anomaly correlation coefficient compares anomalies from a climatology; this helper
writes one that matches what a weather recipe predicts: the mean of each target, as the
recipe defines it (accumulated variables summed over the lead window), over the samples
of the training split only (so that no test information leaks in), on the data's grid.
Point ``task.climatology`` at the file to score ACC in ``eofm fit`` and ``eofm test``.
"""

from __future__ import annotations

from pathlib import Path

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.recipe import Recipe


def write_climatology(recipe: Recipe, target: Path) -> Path:
    """Write the training-split mean of ``recipe``'s targets to ``target`` (NetCDF)."""
    family = family_of(recipe)
    family.require("climatology", f"recipe {recipe.name}")
    target = Path(target)
    made = _make_folder(target.parent)
    try:
        return family.climatology(recipe, target)
    except BaseException:
        for folder in made:  # the folders made for it go with it
            folder.rmdir()
        raise


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents (an error names the one that cannot be
    made); returns the folders made, deepest first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        for made in missing:
            if made.is_dir():
                made.rmdir()
        raise EofmError(
            f"Cannot create the folder {folder} for the climatology: {exc.strerror}.",
            exit_code=2,
        ) from None
    return missing
