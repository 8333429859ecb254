"""``eofm predict``: inputs -> checks -> shards -> streaming predictions, with progress.

Everything that can be wrong with the options, the inputs or the outputs is found
before the model is loaded and before the output folder is created: such errors cost
well under a second and leave nothing behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eofm.atomic import unwinding_on_sigterm
from eofm.errors import EofmError
from eofm.predict.options import PredictOptions

log = logging.getLogger(__name__)


def describe_model(spec: str) -> tuple[Any, dict]:
    """The recipe and ``model.json`` of a run dir, or the recipe and ``config.json`` of a
    published model, without loading any weight (fast)."""
    from eofm.predict.onnx_model import describe_onnx, is_onnx_model
    from eofm.publishing.hub import is_hub_uri

    if is_onnx_model(spec):  # a graph written by 'eofm export', run in onnxruntime
        return describe_onnx(spec)
    if is_hub_uri(spec):
        from eofm.publishing.hub import parse_hub_uri

        parse_hub_uri(spec)  # a malformed name fails before the heavy import below
        from eofm.families.published import published_manifest

        return published_manifest(spec)
    from eofm.train.model_json import read_model_json
    from eofm.train.rundir import MODEL_FILE, load_run_recipe, locate_run

    run_dir, _ = locate_run(spec)
    return load_run_recipe(run_dir), read_model_json(run_dir / MODEL_FILE)


@unwinding_on_sigterm  # SIGTERM removes partial files as Ctrl-C does
def run_predict(
    model_spec: str,
    inputs: Sequence[str],
    out_dir: Path,
    options: PredictOptions,
    *,
    shard: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = log.info,
    members: Sequence[str] = (),
) -> int:
    """Predict ``inputs`` with ``model_spec`` (averaged with the ``members`` of an
    ensemble: same classes and bands, checked before any weight is loaded)."""
    from eofm.families.base import family_of
    from eofm.predict.options import parse_uncertainty
    from eofm.predict.plan import expand_inputs, parse_shard, plan_scene
    from eofm.predict.products import products_for
    from eofm.predict.scenes import inspect_scene

    options.validate()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EofmError(f"Output folder {out_dir} exists and is not a folder.")
    check_writable(out_dir)
    recipe, manifest = describe_model(model_spec)
    family = family_of(recipe)
    family.check_predictable(model_spec)
    check_supported(model_spec, recipe, family, options, ensemble=bool(members))
    for member in members:
        check_same_outputs(model_spec, recipe, manifest, member)
    from eofm.predict.onnx_model import check_onnx_options, is_onnx_model

    if is_onnx_model(model_spec):
        check_onnx_options(model_spec, options)

    def load() -> Any:  # torch is imported only once inputs and options are checked
        from eofm.families.trained import load_trained
        from eofm.predict.onnx_model import is_onnx_model, load_onnx_model

        return (
            load_onnx_model(model_spec) if is_onnx_model(model_spec) else load_trained(model_spec)
        )

    handled = family.predict_own_inputs(load, list(inputs), out_dir, options, echo)
    if handled is not None:
        return handled
    scenes = expand_inputs(inputs, options.resolution_m)
    index, count = parse_shard(shard)
    mine = scenes[index::count]
    options.validate(int(manifest["backbone"]["patch_size"][-1]))
    products = products_for(
        options, parse_uncertainty(options.uncertainty)[0], ensemble=bool(members)
    )
    needs_gsd = bool(((manifest.get("backbone") or {}).get("coords") or {}).get("gsd"))
    check_gsd_option(model_spec, options, needs_gsd)
    infos, plans = {}, {}
    for scene in mine:  # every scene and every output, before anything is written
        infos[scene] = inspect_scene(
            scene,
            manifest["bands"],
            options.bands,
            input_range=manifest.get("input_range"),
            strict=options.strict,
        )
        if needs_gsd and options.gsd_m is None:
            check_scene_gsd(scene)
        plans[scene] = plan_scene(
            scene,
            out_dir,
            quicklook=options.quicklook,
            vector=options.vector,
            overwrite=options.overwrite,
            inputs=scenes,
            companions=[suffix for _, suffix in products[1:]],
        )

    from eofm.families.trained import load_trained
    from eofm.predict.grid import count_tiles

    trained = load()
    predictor = family.predictor(trained, options, [load_trained(m) for m in members])
    todo = [s for s in mine if plans[s].write_raster]
    tiles = {
        s: count_tiles(infos[s].height, infos[s].width, options.tile, options.overlap) for s in todo
    }
    echo(
        f"eofm predict: {len(mine)} of {len(scenes)} scene(s) (shard {index}/{count}), "
        f"{sum(tiles.values())} tiles of {options.tile} px, model {trained.source}"
    )
    started = time.perf_counter()
    pixels = 0
    with _progress(progress) as bar:
        scenes_task = bar.add_task("scenes", total=len(mine))
        for scene in mine:
            plan = plans[scene]
            tiles_task = bar.add_task(scene.name, total=tiles.get(scene, 0))
            result = predictor.predict(
                scene,
                out_dir,
                plan=plan,
                on_tiles=lambda n, t=tiles_task: bar.advance(t, n),
                background=True,  # its COGs are finished while the next scene streams
            )
            bar.remove_task(tiles_task)
            bar.advance(scenes_task)
            if result.skipped:
                echo(f"  {scene}: skipped, {plan.raster} exists (use --overwrite)")
                continue
            if plan.write_raster:
                pixels += infos[scene].height * infos[scene].width
            for output in result.outputs:
                echo(f"  {output}")
        predictor.wait()
    seconds = time.perf_counter() - started
    if pixels:
        echo(
            f"eofm predict: {pixels / 1e6:.2f} MP in {seconds:.1f} s ({pixels / 1e6 / seconds:.2f} MP/s)"
        )
    return 0


def check_supported(
    model_spec: str, recipe: Any, family: Any, options: PredictOptions, *, ensemble: bool
) -> None:
    """Refuse, from the recipe alone, what the family's predictor would silently ignore:
    an ensemble it does not average, an uncertainty it does not write, MC dropout on a
    model without dropout."""
    from eofm.predict.options import parse_uncertainty

    if ensemble and not family.averages_ensembles:
        raise EofmError(
            f"eofm ensemble averages segmentation runs; {model_spec} is a {family.name} run, "
            "whose members it would not average. Predict each run on its own.",
            exit_code=2,
        )
    kind = parse_uncertainty(options.uncertainty)[0]
    if kind and kind not in family.predict_uncertainties:
        raise EofmError(
            f"--uncertainty {options.uncertainty}: {model_spec} is a {family.name} run, whose "
            f"predictions write no uncertainty map (supported: "
            f"{list(family.predict_uncertainties) or 'none'}).",
            exit_code=2,
        )
    lora_dropout = recipe.adapter.mode == "lora" and recipe.adapter.dropout > 0
    if kind == "mc-dropout" and recipe.decoder.dropout <= 0 and not lora_dropout:
        raise EofmError(
            f"--uncertainty {options.uncertainty}: {model_spec} has no dropout to sample "
            f"(decoder.dropout {recipe.decoder.dropout}, adapter.mode {recipe.adapter.mode}); "
            "use entropy or tta, or train with decoder.dropout > 0.",
            exit_code=2,
        )


def check_gsd_option(model_spec: str, options: PredictOptions, needs_gsd: bool) -> None:
    """``--gsd`` only for a model that reads each input's GSD (Scale-MAE with
    ``backbone.gsd: null``); any other model would silently ignore it."""
    if options.gsd_m is not None and not needs_gsd:
        raise EofmError(
            f"--gsd: {model_spec} does not take the inputs' ground sample distance (only "
            "Scale-MAE runs fitted with backbone.gsd: null do); leave --gsd out.",
            exit_code=2,
        )


def check_scene_gsd(scene: Path) -> None:
    """A Scale-MAE model needs each scene's metres per pixel: a raster without a CRS
    cannot give it, so it is refused here, before the model loads, naming ``--gsd``."""
    from eofm.data.coords import metres_per_pixel

    try:
        metres_per_pixel(scene)
    except EofmError:
        raise EofmError(
            f"{scene} has no CRS, so its ground sample distance in metres is unknown and "
            "this Scale-MAE model needs it; give it with --gsd METRES (e.g. --gsd 10 for "
            "Sentinel-2's 10 m bands)."
        ) from None


def check_writable(out_dir: Path) -> None:
    """``--out`` (or, while it does not exist, the nearest folder above it) must take a
    file: probed with a temporary file, removed at once, so that a read-only folder is
    refused before the model loads and nothing is created."""
    import os
    import tempfile

    folder = out_dir.absolute()
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".eofm-write-probe-")
    except OSError as exc:
        where = "" if folder == out_dir.absolute() else f" ({folder} is not writable)"
        raise EofmError(
            f"Output folder {out_dir} (--out) cannot be written{where}: {exc.strerror or exc}.",
            exit_code=2,
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_same_outputs(first: str, recipe: Any, manifest: dict, other: str) -> None:
    """Ensemble members must predict the same classes from the same bands."""
    other_recipe, other_manifest = describe_model(other)
    from eofm.families.base import family_of

    if family_of(other_recipe).name != family_of(recipe).name:
        raise EofmError(
            f"Ensemble members are of different task families: {first} is "
            f"{family_of(recipe).name}, {other} is {family_of(other_recipe).name}.",
            exit_code=2,
        )
    if list(other_recipe.task.class_names) != list(recipe.task.class_names):
        raise EofmError(
            f"Ensemble members predict different classes: {first} "
            f"{list(recipe.task.class_names)} vs {other} {list(other_recipe.task.class_names)}.",
            exit_code=2,
        )
    if list(other_manifest["bands"]) != list(manifest["bands"]):
        raise EofmError(
            f"Ensemble members read different bands: {first} {manifest['bands']} vs {other} "
            f"{other_manifest['bands']}.",
            exit_code=2,
        )


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
