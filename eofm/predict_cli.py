"""``eofm predict``: inputs -> shards -> streaming predictions, with a progress bar."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from eofm.errors import EofmError

log = logging.getLogger(__name__)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``i/n`` from ``--shard``, else the launcher's rank and world size, else ``0/1``.

    Understood launchers: torchrun (``RANK``/``WORLD_SIZE``) and SLURM
    (``SLURM_PROCID``/``SLURM_NTASKS``).
    """
    if text:
        try:
            index, count = (int(v) for v in text.split("/"))
        except ValueError:
            raise EofmError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
    elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        index, count = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    elif "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        index, count = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    else:
        index, count = 0, 1
    if count < 1 or not 0 <= index < count:
        raise EofmError(f"Shard {index}/{count} is out of range: need 0 <= i < n.")
    return index, count


def run_predict(
    model_spec: str,
    inputs: Sequence[str],
    out_dir: Path,
    options,
    *,
    shard: str | None = None,
    progress: bool = True,
) -> int:
    from eofm.inference import Predictor, count_tiles, expand_inputs
    from eofm.outputs import check_output_dir

    scenes = expand_inputs(inputs)
    stems: dict[str, Path] = {}
    for scene in scenes:
        other = stems.setdefault(scene.stem, scene)
        if other != scene:
            raise EofmError(
                f"Inputs {other} and {scene} would both write {scene.stem}.tif; predict them into different --out folders."
            )
    index, count = parse_shard(shard)
    mine = scenes[index::count]
    out_dir = check_output_dir(out_dir)
    if options.vector not in (None, "geoparquet", "geojson"):
        raise EofmError(f"--vector must be geoparquet or geojson, got {options.vector!r}.")

    from eofm.trained import load_trained

    trained = load_trained(model_spec)
    if trained.recipe.task.type != "segmentation":
        raise EofmError(
            f"{model_spec} is a {trained.recipe.task.type} model; eofm predict (GeoTIFF scenes) supports "
            "segmentation models so far (use 'eofm test' for weather models)."
        )
    predictor = Predictor(trained, options)
    # validate every scene (readable, bands) before writing anything, and size the work
    totals, sizes = {}, {}
    for scene in mine:
        reader = predictor.open_scene(scene)
        height, width = reader.ds.height, reader.ds.width
        reader.close()
        totals[scene] = count_tiles(height, width, options.tile, options.overlap)
        sizes[scene] = height * width
    print(
        f"eofm predict: {len(mine)} of {len(scenes)} scene(s) (shard {index}/{count}), "
        f"{sum(totals.values())} tiles of {options.tile} px, model {trained.source}",
        flush=True,
    )
    started = time.perf_counter()
    pixels = 0
    with _progress(progress) as bar:
        scenes_task = bar.add_task("scenes", total=len(mine))
        for scene in mine:
            tiles_task = bar.add_task(scene.name, total=totals[scene])
            result = predictor.predict(
                scene, out_dir, on_tiles=lambda n, t=tiles_task: bar.advance(t, n)
            )
            bar.remove_task(tiles_task)
            bar.advance(scenes_task)
            if result.skipped:
                print(
                    f"  {scene}: skipped, {out_dir / (scene.stem + '.tif')} exists (use --overwrite)",
                    flush=True,
                )
                continue
            pixels += sizes[scene]
            for output in result.outputs:
                print(f"  {output}", flush=True)
    seconds = time.perf_counter() - started
    if pixels:
        print(
            f"eofm predict: {pixels / 1e6:.2f} MP in {seconds:.1f} s ({pixels / 1e6 / seconds:.2f} MP/s)",
            flush=True,
        )
    return 0


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, *args: object) -> None:
        return None

    def remove_task(self, *args: object) -> None:
        return None


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
