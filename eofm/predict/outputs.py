"""The output folder of ``eofm predict``, and PNG quicklooks of its maps (every output is
written atomically: :mod:`eofm.atomic`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_quicklook(
    raster: Path,
    target: Path,
    num_classes: int,
    *,
    probabilities: bool,
    class_names: Sequence[str] | None = None,
    backdrop: tuple[Path, Sequence[int]] | None = None,
    max_side: int = 1024,
) -> None:
    """A PNG of the map, read from its overviews: the classes over the input's backdrop
    (``backdrop``: the scene and the 1-based indexes of its RGB, or one grey, band) with
    a legend, or the last class's probability."""
    import rasterio

    from eofm.evaluation.pictures import downsample_shape, map_quicklook

    names = list(class_names or [f"class {i}" for i in range(num_classes)])
    with rasterio.open(raster) as ds:
        shape = downsample_shape(ds.height, ds.width, max_side)
        if probabilities:
            layer, classes = ds.read(num_classes, out_shape=shape), None
        else:
            layer, classes = None, ds.read(1, out_shape=shape)
    image = None
    if backdrop is not None:
        scene, indexes = backdrop
        with rasterio.open(scene) as ds:
            image = ds.read(list(indexes), out_shape=(len(indexes), *shape)).astype(np.float64)
            if ds.nodata is not None:
                image[image == ds.nodata] = np.nan
    title = f"{Path(raster).name}: {names[-1]} probability" if probabilities else Path(raster).name
    map_quicklook(image, classes, names, target, probability=layer, title=title)
