"""``eofm climatology RECIPE --out FILE``: the targets' climatology for ACC.

The anomaly correlation coefficient compares anomalies from a climatology; this helper
writes one that matches what a weather recipe predicts: the mean of each target, as the
recipe defines it (accumulated variables summed over the lead window), over the samples
of the training split only (so that no test information leaks in), on the data's grid.
Point ``task.climatology`` at the file to score ACC in ``eofm fit`` and ``eofm test``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.recipe import Recipe


def write_climatology(recipe: Recipe, target: Path) -> Path:
    """Write the training-split mean of ``recipe``'s targets to ``target`` (NetCDF)."""
    import xarray as xr

    from eofm.atomic import atomic_path
    from eofm.data.variables import describe_variable

    family = family_of(recipe)
    if not hasattr(family, "weather_spec"):
        raise EofmError(
            f"eofm climatology is for weather (regression) recipes; {recipe.name} is a "
            f"{family.name} recipe."
        )
    datamodule = family.build_datamodule(recipe)
    dataset = datamodule.dataset("train")
    rows = len(datamodule.lat)
    fields = {}
    for name in recipe.task.targets:
        total = np.zeros((rows, len(datamodule.lon)))
        count = np.zeros_like(total)
        for now in dataset.now:
            values = dataset.target_field(name, now)[:rows].astype(np.float64)
            finite = np.isfinite(values)
            total[finite] += values[finite]
            count += finite
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
        attrs = describe_variable(name, datamodule.source.fields[("surf", name)].array.attrs)
        attrs["cell_methods"] = f"time: mean over {len(dataset.now)} training samples"
        fields[name] = (("latitude", "longitude"), mean, attrs)
    out = xr.Dataset(
        {k: xr.Variable(dims, values, attrs) for k, (dims, values, attrs) in fields.items()},
        coords={
            "latitude": ("latitude", datamodule.lat.numpy().astype(np.float64)),
            "longitude": ("longitude", datamodule.lon.numpy().astype(np.float64)),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": f"Climatology of {', '.join(recipe.task.targets)} for {recipe.name}",
            "source": "eofm climatology: mean of the training split's targets",
        },
    )
    target = Path(target)
    made = _make_folder(target.parent)
    try:
        with atomic_path(target) as tmp:
            out.to_netcdf(tmp)
    except BaseException:
        for folder in made:  # the folders made for it go with it
            folder.rmdir()
        raise
    return target


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
