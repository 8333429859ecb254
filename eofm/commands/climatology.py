"""``eofm climatology RECIPE --out FILE``: the targets' climatology for ACC.

The anomaly correlation coefficient compares anomalies from a climatology; this helper
writes one that matches what a weather recipe predicts: the mean of each target, as the
recipe defines it (accumulated variables summed over the lead window), over the samples
of the training split only (so that no test information leaks in), on the data's grid.
Point ``task.climatology`` at the file to score ACC in ``eofm fit`` and ``eofm test``.
"""

from __future__ import annotations

from pathlib import Path

from eofm.families.base import family_of
from eofm.recipe import Recipe


def write_climatology(recipe: Recipe, target: Path) -> Path:
    """Write the training-split mean of ``recipe``'s targets to ``target`` (NetCDF)."""
    family = family_of(recipe)
    family.require("climatology", f"recipe {recipe.name}")
    return family.climatology(recipe, Path(target))
