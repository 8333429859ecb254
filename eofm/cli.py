"""The ``eofm`` command line.

Only the standard library and eofm's light modules are imported at start-up; torch,
lightning, timm and peft are imported inside the command that needs them, after the
recipe and arguments have been validated.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eofm import __version__
from eofm.errors import EofmError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eofm",
        description="Fine-tune Earth-observation and weather foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"eofm {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never contact the Hugging Face Hub; use its local cache only (as HF_HUB_OFFLINE=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    recipes = sub.add_parser("recipes", help="list the shipped recipes, or the keys of a section")
    recipes.add_argument(
        "--keys",
        metavar="NAME",
        help="list the keys (type, default, help) of a dataset (e.g. sen1floods11), a family's "
        "task keys (e.g. regression), a recipe section (e.g. trainer), or 'datasets' / "
        "'families' (with their commands) / 'decoders' for the registered names",
    )
    sub.add_parser("backbones", help="list the registered backbones")

    fit = sub.add_parser("fit", help="fine-tune a model from a recipe")
    fit.add_argument("recipe", help="recipe file, or the name of a shipped recipe")
    _overrides_argument(fit, help="dotted overrides (YAML values)")
    fit.add_argument("--run-dir", type=Path, help="output folder (default: runs/<name>-<time>)")
    fit.add_argument(
        "--allow-random-init",
        action="store_true",
        help="if the pretrained weights cannot be loaded, continue from random weights (warns loudly)",
    )

    test = sub.add_parser(
        "test", help="evaluate a run (or a published hf:// model) on a test split"
    )
    test.add_argument("run_dir", help="a run dir written by 'eofm fit', or hf://ORG/NAME[@REV]")
    _overrides_argument(test)
    test.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        help="which checkpoint of the run dir (default: best if the run has one, else last)",
    )
    test.add_argument("--output", type=Path, help="write the metrics JSON here")
    test.add_argument(
        "--mc-dropout",
        type=int,
        default=None,
        metavar="N",
        help="weather runs: N dropout passes of the decoders; reports their spread-skill ratio",
    )
    test.add_argument(
        "--tiled",
        metavar="TILE[,OVERLAP]",
        help="score the test split's whole scenes tiled as 'eofm predict --tile TILE --overlap "
        "OVERLAP' does, by the same engine (as eval.tiled.tile/overlap; overlap default 32)",
    )
    test.add_argument(
        "--tta", choices=("flip",), help="with --tiled: test-time augmentation, as eofm predict"
    )
    test.add_argument(
        "--maps",
        type=Path,
        metavar="DIR",
        help="with --tiled: keep the scored class maps in DIR (a new or empty folder)",
    )

    publish = sub.add_parser("publish", help="put a run on the Hugging Face Hub with a model card")
    publish.add_argument("run_dir", type=Path, help="a run dir written by 'eofm fit'")
    publish.add_argument("--repo", required=True, help="ORG/NAME on the Hub")
    publish.add_argument("--revision", help="branch to commit to (created if missing)")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument(
        "--adapter-only", action="store_true", help="upload only the LoRA adapter and the head"
    )
    publish.add_argument(
        "--license", default="apache-2.0", help="licence id for the card (default apache-2.0)"
    )
    publish.add_argument(
        "--with-onnx",
        type=int,
        nargs="?",
        const=224,
        metavar="TILE",
        help="also upload the run exported as ONNX (eofm export; tiles of TILE px, default 224)",
    )
    publish.add_argument(
        "--dry-run",
        type=Path,
        metavar="DIR",
        help="write the folder that would be uploaded, upload nothing",
    )

    export = sub.add_parser(
        "export", help="write a run as one ONNX or torch.export graph (adapter merged)"
    )
    export.add_argument(
        "run_dir", help="a run dir written by 'eofm fit', or one of its checkpoints"
    )
    export.add_argument("--format", required=True, choices=("onnx", "pt2"), dest="fmt")
    export.add_argument(
        "--output", type=Path, help="the file to write (default RUN_DIR/export/model.FORMAT)"
    )
    export.add_argument("--tile", type=int, default=224, help="tile size in pixels (default 224)")
    export.add_argument(
        "--dynamic-batch", action="store_true", help="let the batch size vary at inference"
    )
    predict = sub.add_parser("predict", help="stream a model over GeoTIFF scenes of any size")
    predict.add_argument(
        "--model",
        help="a run dir, one of its checkpoints (.ckpt), or a published model hf://ORG/NAME[@REV]",
    )
    predict.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="GeoTIFF files, folders or globs (quoted globs are expanded by eofm; ** descends)",
    )
    predict.add_argument(
        "--inputs-from",
        type=Path,
        metavar="FILE",
        help="also predict the inputs listed in FILE, one path or glob a line (# comments)",
    )
    predict.add_argument(
        "--summarize",
        type=Path,
        metavar="DIR",
        help="merge the manifest-<i>-of-<n>.json of a sharded run in DIR: list missing and "
        "failed scenes (exit 1 if any), write a VRT mosaic of the class maps per CRS",
    )
    _streaming_options(predict, out_required=False)
    predict.add_argument("--start", help="weather runs: first target time, e.g. 2020-01-01T12")
    predict.add_argument("--end", help="weather runs: last target time")
    predict.add_argument(
        "--format",
        choices=("netcdf", "zarr"),
        help="weather runs: one NetCDF file (default) or a zarr store",
    )
    predict.add_argument(
        "--uncertainty",
        metavar="entropy|mc-dropout:N|tta",
        help="also write <stem>_entropy.tif (predictive entropy) or, from N dropout passes or "
        "the four flips, <stem>_mutual_information.tif (float32, nats)",
    )

    ensemble = sub.add_parser(
        "ensemble",
        help="average several runs over GeoTIFF scenes: class map, mean probabilities and "
        "mutual information (deep ensembles)",
    )
    ensemble.add_argument(
        "models", nargs="+", metavar="RUN", help="run dirs or hf:// models (same classes, bands)"
    )
    ensemble.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        metavar="INPUT",
        help="GeoTIFF files, folders or globs",
    )
    _streaming_options(ensemble)

    calibrate = sub.add_parser(
        "calibrate",
        help="fit temperature scaling on the validation split (recorded in model.json; "
        "predict, test and publish use it)",
    )
    calibrate.add_argument("run_dir", help="a run dir written by 'eofm fit'")
    _overrides_argument(calibrate)
    calibrate.add_argument(
        "--checkpoint", choices=("best", "last"), help="which checkpoint (default: best, else last)"
    )

    climatology = sub.add_parser(
        "climatology",
        help="write the training-split mean of a weather recipe's targets (for ACC: "
        "task.climatology=FILE)",
    )
    climatology.add_argument("recipe", help="recipe file, shipped recipe name, or a run dir")
    _overrides_argument(climatology)
    climatology.add_argument("--out", type=Path, required=True, help="NetCDF file to write")

    report = sub.add_parser(
        "report",
        help="write RUN/report.html: recipe, data, metrics, regions and pictures (offline, no JS)",
    )
    report.add_argument("run_dir", type=Path, help="a run dir written by 'eofm fit'")
    report.add_argument("--output", type=Path, help="where to write it (default RUN/report.html)")

    prepare = sub.add_parser(
        "prepare", help="convert raw downloads to a model's input layout (merra2: Prithvi WxC)"
    )
    prepare.add_argument("dataset", choices=["merra2"], help="what the raw files are")
    prepare.add_argument("raw_dir", type=Path, help="folder of the raw files, as downloaded")
    prepare.add_argument("--out", type=Path, required=True, help="folder to write")
    return parser


def _overrides_argument(
    parser: argparse.ArgumentParser, help: str = "dotted overrides, e.g. data.root=..."
) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=help)


def _streaming_options(parser: argparse.ArgumentParser, out_required: bool = True) -> None:
    """The options of the streaming engine, shared by predict and ensemble."""
    parser.add_argument("--out", required=out_required, type=Path, help="output folder")
    parser.add_argument("--bands", help="names of the input's bands in file order, e.g. VV,VH")
    parser.add_argument(
        "--resolution",
        type=float,
        metavar="METRES",
        help="grid of Sentinel-2 products, per-band folders and STAC items (default 10 m; "
        "coarser bands are resampled bilinearly)",
    )
    parser.add_argument(
        "--gsd",
        type=float,
        metavar="METRES",
        help="Scale-MAE models: the inputs' metres per pixel (default: from each raster's "
        "CRS and resolution; needed for a raster without CRS)",
    )
    parser.add_argument("--tile", type=int, default=224, help="tile size in pixels (default 224)")
    parser.add_argument(
        "--overlap", type=int, default=32, help="overlap between tiles (default 32)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="tiles per forward pass (default 8)"
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <stem>_probabilities.tif (float32, one band per class) beside the map",
    )
    parser.add_argument(
        "--vector",
        choices=("parquet", "geoparquet", "geojson"),
        help="also write polygons: <stem>.parquet (GeoParquet; 'geoparquet' is the same) or "
        "<stem>.geojson",
    )
    parser.add_argument("--tta", choices=("flip",), help="test-time augmentation")
    parser.add_argument("--no-quicklook", action="store_true", help="skip the PNG quicklook")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never an input)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse scenes whose data type or values are far from the training data "
        "(default: warn loudly)",
    )
    parser.add_argument(
        "--shard",
        metavar="i/n",
        help="predict every n-th of the sorted inputs from the i-th, and write "
        "manifest-<i>-of-<n>.json; default: the Slurm array task (SLURM_ARRAY_TASK_ID), "
        "else torchrun's RANK/WORLD_SIZE, else srun's SLURM_PROCID/SLURM_NTASKS; a given "
        "--shard wins over them all",
    )
    parser.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="acquisition date for time-location (TL) models, when the scene's tags lack one",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present), cpu, cuda, cuda:N or mps; under torchrun/SLURM "
        "'cuda' is the rank's local GPU",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp16", "fp32"),
        help="auto: bf16 on GPUs that support it, fp32 on CPU",
    )
    parser.add_argument(
        "--workers",
        default="auto",
        help="threads that read, normalise and cut tiles beside the model (default auto: "
        "1 on up to 4 cores, then about a quarter of the cores, at most 8)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _echo(text: str) -> None:
    print(text, flush=True)


def _cmd_recipes(args: argparse.Namespace) -> int:
    if args.keys:
        return _print_keys(args.keys)
    from eofm.recipe import read_yaml_mapping
    from eofm.resources import shipped_recipes

    rows = []
    for path in shipped_recipes():
        data = read_yaml_mapping(path, what="recipe")
        rows.append((path.stem, str(data.get("description", "")).strip().splitlines()[0:1]))
    width = max((len(name) for name, _ in rows), default=0)
    for name, desc in rows:
        print(f"{name:<{width}}  {desc[0] if desc else ''}")
    return 0


def _print_keys(name: str) -> int:
    """``eofm recipes --keys NAME``: generated from the config dataclasses and the registry."""
    import dataclasses
    import typing

    from eofm.recipe import Recipe
    from eofm.registry import REGISTRY
    from eofm.typed_config import describe_keys

    kinds = {"datasets": "dataset", "decoders": "decoder"}
    if name in kinds:
        print("\n".join(REGISTRY.names(kinds[name])))  # type: ignore[arg-type]
        return 0
    if name == "families":  # each with its commands; --keys FAMILY lists its task keys
        families = [(e.name, e.load()) for e in REGISTRY.entries("family")]
        width = max(len(n) for n, _ in families)
        for family_name, family in families:
            print(f"{family_name:<{width}}  {', '.join(sorted(family.commands))}")
        return 0
    sections = {f.name: f for f in dataclasses.fields(Recipe)}
    hints = typing.get_type_hints(Recipe)
    if name in REGISTRY.names("dataset"):
        cls, prefix = REGISTRY.get("dataset", name).load_meta("config"), "data."
    elif name in REGISTRY.names("family"):
        cls, prefix = REGISTRY.get("family", name).load().task_config, "task."
    elif name in sections and dataclasses.is_dataclass(hints[name]):
        cls, prefix = hints[name], f"{name}."
    else:
        known = (
            REGISTRY.names("dataset")
            + REGISTRY.names("family")
            + [n for n in sections if dataclasses.is_dataclass(hints[n])]
        )
        raise EofmError(
            f"--keys {name}: not a dataset, a family or a recipe section; use one of {known}, or "
            "datasets / families / decoders.",
            exit_code=2,
        )
    rows = [("key", "type", "default", "help"), *describe_keys(cls, prefix)]
    widths = [min(max(len(r[i]) for r in rows), 36) for i in range(3)]
    for row in rows:
        print(
            "  ".join(f"{cell:<{w}}" for cell, w in zip(row[:3], widths, strict=True))
            + f"  {row[3]}"
        )
    return 0


def _cmd_backbones(_: argparse.Namespace) -> int:
    from eofm.registry import REGISTRY

    rows = [("name", "hub repo@revision", "bands", "params", "licence")]
    for entry in REGISTRY.entries("backbone"):
        m = entry.meta["manifest"]
        if m.family in ("aurora", "prithvi_wxc"):
            params = m.params_millions
        else:
            params = m.config.num_params() / 1e6
            if m.family == "scalemae":  # plus the stored (unused) positional table
                grid = m.config.img_size // m.config.patch_size[-1]
                params += (1 + grid * grid) * m.config.embed_dim / 1e6
        licence = m.licence or "see its card"
        rows.append((m.name, m.hub_ref, ",".join(m.bands), f"{params:.1f}M", licence))
    for entry in REGISTRY.prefix_entries("backbone"):  # catalogues such as torchgeo:
        rows += [(n, ref, bands, "", lic) for n, ref, bands, lic in entry.load_meta("catalogue")()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>7}  {r[4]}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from eofm.commands.export import check_output

    run = Path(args.run_dir)
    out = (
        args.output or (run if run.is_dir() else run.parent.parent) / "export" / f"model.{args.fmt}"
    )
    check_output(out, args.fmt)  # before any heavy import
    from eofm.commands.export import export_run

    result = export_run(
        args.run_dir, args.fmt, out, tile=args.tile, dynamic_batch=args.dynamic_batch
    )
    _echo(
        f"Exported {result.path} (max |diff| vs PyTorch {result.max_abs_diff:.1e}); "
        f"inference settings in {result.sidecar}"
    )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from eofm.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # validated before heavy imports
    from eofm.commands.fit import fit
    from eofm.train.rundir import METRICS_FILE, read_json

    run_dir = fit(
        recipe, run_dir=args.run_dir, allow_random_init=args.allow_random_init, echo=_echo
    )
    from eofm.train.distributed import is_global_zero

    if not is_global_zero():  # DDP: rank 0 writes and reports the run
        return 0
    metrics = read_json(run_dir / METRICS_FILE)["metrics"]
    _print_table(f"validation metrics ({run_dir / METRICS_FILE})", metrics, prefix="val/")
    _echo(f"eofm fit: run dir {run_dir}")
    return 0


def _tiled_overrides(args: argparse.Namespace) -> list[str]:
    """``--tiled TILE[,OVERLAP]`` and ``--tta`` as the ``eval.tiled`` overrides they stand for."""
    if args.tiled is None:
        return [f"eval.tiled.tta={args.tta}"] if args.tta else []
    parts = args.tiled.split(",")
    if len(parts) > 2 or not all(p.strip().isdigit() for p in parts):
        raise EofmError(
            f"--tiled must be TILE or TILE,OVERLAP in pixels (e.g. 224,32), got {args.tiled!r}.",
            exit_code=2,
        )
    keys = ("eval.tiled.tile", "eval.tiled.overlap")
    out = [f"{key}={int(part)}" for key, part in zip(keys, parts, strict=False)]
    return out + ([f"eval.tiled.tta={args.tta}"] if args.tta else [])


def _check_maps_dir(maps: Path | None, recipe: Any) -> None:
    """``--maps`` only with a tiled evaluation, into a folder holding nothing yet."""
    if maps is None:
        return
    if recipe is not None and recipe.eval.tiled.tile is None:
        raise EofmError(
            "--maps keeps the class maps of --tiled (eval.tiled); give --tiled.", exit_code=2
        )
    if maps.exists() and (not maps.is_dir() or any(maps.iterdir())):
        raise EofmError(
            f"--maps {maps} exists and is not an empty folder; eofm never replaces files "
            "there. Give a new folder.",
            exit_code=2,
        )


def _cmd_test(args: argparse.Namespace) -> int:
    from eofm.publishing.hub import is_hub_uri, parse_hub_uri
    from eofm.train.distributed import refuse_distributed_launch

    refuse_distributed_launch("test")  # before anything heavy

    args.overrides = [*args.overrides, *_tiled_overrides(args)]
    recipe = None
    if is_hub_uri(args.run_dir):
        parse_hub_uri(args.run_dir)  # a malformed name fails before the heavy imports
    else:
        from eofm.families.base import family_of
        from eofm.train.rundir import MODEL_FILE, load_run_recipe, read_json

        recipe = load_run_recipe(Path(args.run_dir), args.overrides)  # validated first
        family = family_of(recipe)
        if recipe.eval.tiled.tile is not None:  # the model's patch size, from model.json
            patch = (read_json(Path(args.run_dir) / MODEL_FILE).get("backbone") or {}).get(
                "patch_size"
            )
            family.check_tiled_eval(recipe, str(args.run_dir), int(patch[-1]) if patch else None)
        if args.mc_dropout and not family.tests_mc_dropout:
            raise EofmError(
                f"--mc-dropout is for weather (regression) runs; {args.run_dir} is a "
                f"{family.name} run.",
                exit_code=2,
            )
    if args.mc_dropout is not None and args.mc_dropout < 2:
        raise EofmError(
            f"--mc-dropout needs at least 2 passes, got {args.mc_dropout}.", exit_code=2
        )
    _check_maps_dir(args.maps, recipe)
    from eofm.commands.evaluate import metrics_target, run_test

    payload = run_test(
        args.run_dir,
        args.overrides,
        checkpoint=args.checkpoint,
        output=args.output,
        mc_samples=args.mc_dropout or 0,
        maps_dir=args.maps,
    )
    target = metrics_target(args.run_dir, args.output)
    if payload.get("warning"):
        print(f"\nWARNING: {payload['warning']}")
    _print_table(f"test metrics ({target or args.run_dir})", payload["metrics"], prefix="test/")
    _print_evaluation(payload)
    return 0


def _shown(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``n/a`` where it is missing (JSON null)."""
    return "n/a" if value is None else format(value, spec)


def _calibration_scores(values: dict) -> str:
    return "  ".join(f"{key} {_shown(values[key], '.4f')}" for key in ("ECE", "NLL", "Brier"))


def _print_evaluation(payload: dict) -> None:
    """Calibration and the per-region table of ``eofm test``, when it has them."""
    calibration = payload.get("calibration")
    if calibration:
        print("\ncalibration (test split)")
        for label, key in (("uncalibrated", "uncalibrated"), ("calibrated", "calibrated")):
            if key in calibration:
                values = calibration[key]
                temperature = calibration["temperature"] if key == "calibrated" else 1.0
                print(f"  {label:<13} T={temperature:<6.3g} {_calibration_scores(values)}")
    spread = payload.get("spread_skill")
    if spread:
        print(f"\nspread-skill ({spread['members']} {spread['method']} members; 1 is calibrated)")
        for name, values in spread.items():
            if isinstance(values, dict):
                print(
                    f"  {name:<10} spread {values['spread']:.4g}  RMSE of mean "
                    f"{values['rmse_of_mean']:.4g}  ratio {_shown(values['ratio'], '.3f')}"
                )
    regions = payload.get("regions")
    if regions:
        print("\nper region")
        print(f"  {'region':<24} {'role':<16} {'chips':>5} {'pixels':>10} {'mIoU':>7} {'acc':>7}")
        for row in regions["rows"]:
            print(
                f"  {row['region']:<24} {row['role']:<16} {row['chips']:>5} {row['pixels']:>10,} "
                f"{row['mIoU']:>7.4f} {row['accuracy']:>7.4f}"
            )
        for role, values in regions["summary"].items():
            print(
                f"  {role:<41} {'':>10} {values['mIoU']:>+7.4f} {values['accuracy']:>+7.4f}"
                if role == "gap"
                else f"  {role + ' (all)':<41} {'':>10} {values['mIoU']:>7.4f} {values['accuracy']:>7.4f}"
            )


def _cmd_publish(args: argparse.Namespace) -> int:
    from eofm.publishing.hub import validate_repo_id

    validate_repo_id(args.repo)
    from eofm.commands.publish import check_publish_request, publish

    check_publish_request(args.run_dir, adapter_only=args.adapter_only)

    result = publish(
        args.run_dir,
        args.repo,
        revision=args.revision,
        private=args.private,
        adapter_only=args.adapter_only,
        license_id=args.license,
        dry_run=args.dry_run,
        onnx_tile=args.with_onnx,
    )
    if args.dry_run:
        print(f"eofm publish: dry run, wrote {result}:")
        for path in sorted(Path(result).iterdir()):
            print(f"  {path.name:<28} {path.stat().st_size:>10,} bytes")
    else:
        print(f"eofm publish: hf://{args.repo}@{result}")
        print(f"  eofm predict --model hf://{args.repo}@{result} SCENE.tif --out predictions/")
    return 0


def _streaming_predict_options(args: argparse.Namespace, uncertainty: str | None = None) -> Any:
    from eofm.predict.options import PredictOptions

    return PredictOptions(
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        probabilities=args.probabilities,
        tta_flip=args.tta == "flip",
        vector=args.vector,
        quicklook=not args.no_quicklook,
        overwrite=args.overwrite,
        bands=[b.strip() for b in args.bands.split(",")] if args.bands else None,
        strict=args.strict,
        date=args.date,
        device=args.device,
        precision=args.precision,
        workers=args.workers,
        uncertainty=uncertainty,
        gsd_m=args.gsd,
        resolution_m=args.resolution,
    )


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.summarize:
        if args.model or args.inputs or args.inputs_from or args.out:
            raise EofmError(
                "--summarize DIR reads the manifests a sharded run left in DIR; give it "
                "without --model, inputs or --out.",
                exit_code=2,
            )
        from eofm.cluster.summary import summarize

        return summarize(args.summarize, echo=_echo)
    if args.inputs_from:
        from eofm.cluster.inputs import read_input_list

        args.inputs = [*args.inputs, *read_input_list(args.inputs_from)]
    missing = [name for name, given in (("--model", args.model), ("--out", args.out)) if not given]
    if missing or not args.inputs:
        raise EofmError(
            f"eofm predict needs {', '.join(missing) or 'inputs'}"
            f"{' and inputs' if missing and not args.inputs else ''}: --model RUN INPUT... "
            "(or --inputs-from FILE) --out DIR; or --summarize DIR alone.",
            exit_code=2,
        )

    if args.start and args.end:  # before anything is loaded
        from eofm.forecasts.weather_files import parse_time

        if parse_time(args.start, "--start") > parse_time(args.end, "--end"):
            raise EofmError(
                f"--start {args.start} is after --end {args.end}: give the earlier time first.",
                exit_code=2,
            )
    from eofm.commands.predict import run_predict

    family_options = {  # the options only some families read, when given
        f"--{name}": value
        for name in ("start", "end", "format")
        if (value := getattr(args, name)) is not None
    }
    return run_predict(
        args.model,
        args.inputs,
        args.out,
        _streaming_predict_options(args, args.uncertainty),
        shard=args.shard,
        progress=not args.no_progress,
        echo=_echo,
        family_options=family_options,
    )


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from eofm.commands.predict import run_predict

    if len(args.models) < 2:
        raise EofmError("eofm ensemble needs at least two runs.", exit_code=2)
    return run_predict(
        args.models[0],
        args.inputs,
        args.out,
        _streaming_predict_options(args),
        shard=args.shard,
        progress=not args.no_progress,
        echo=_echo,
        members=args.models[1:],
    )


def _units(record: dict) -> str:
    """``, from N chips`` (or samples) of a calibration record."""
    return "".join(f" from {record[k]:,} {k}" for k in ("chips", "samples") if k in record)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from eofm.families.base import family_of
    from eofm.train.distributed import refuse_distributed_launch

    refuse_distributed_launch("calibrate")  # before anything heavy
    from eofm.train.rundir import load_run_recipe, locate_run

    run_dir, _ = locate_run(args.run_dir, args.checkpoint)
    recipe = load_run_recipe(run_dir, args.overrides)  # validated before heavy imports
    family = family_of(recipe)
    family.require("calibrate", run_dir)  # the family lists its commands
    family.check_data(recipe, str(run_dir / "recipe.yaml"))  # its validation split
    from eofm.commands.calibrate import calibrate

    record = calibrate(args.run_dir, args.overrides, checkpoint=args.checkpoint)
    print(
        f"\ntemperature {record['temperature']:.4f} (fitted on {record['fitted_on']}, "
        f"{record['pixels']:,} labelled values{_units(record)}), recorded in "
        f"{run_dir / 'model.json'}"
    )
    for label in ("before", "after"):
        values = record[label]
        print(f"  {label:<7} {_calibration_scores(values)}")
    if record.get("warning"):
        print(f"WARNING: {record['warning']}")
    return 0


def _cmd_climatology(args: argparse.Namespace) -> int:
    from eofm.recipe import load_recipe

    if Path(args.recipe).is_dir():
        from eofm.train.rundir import load_run_recipe

        recipe = load_run_recipe(Path(args.recipe), args.overrides)
    else:
        recipe = load_recipe(args.recipe, args.overrides)
    if args.out.exists():
        raise EofmError(f"{args.out} exists; eofm climatology never replaces a file.", exit_code=2)
    from eofm.commands.climatology import write_climatology

    target = write_climatology(recipe, args.out)
    print(f"eofm climatology: {target} (use task.climatology={target})")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from eofm.commands.prepare import prepare

    written = prepare(args.dataset, args.raw_dir, args.out)
    print(f"eofm prepare: {len(written)} file(s) in {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from eofm.commands.report import write_report

    target = write_report(args.run_dir, args.output)
    print(f"eofm report: {target}")
    return 0


def _print_table(title: str, metrics: dict[str, float | None], *, prefix: str) -> None:
    import math

    rows = [(k[len(prefix) :], v) for k, v in sorted(metrics.items()) if k.startswith(prefix)]
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 12))
    for key, value in rows:
        shown = (
            "n/a"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else (f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}")
        )
        print(f"{key:<{width}}  {shown:>9}")
    print("-" * (width + 12), flush=True)


COMMANDS = {
    "recipes": _cmd_recipes,
    "backbones": _cmd_backbones,
    "export": _cmd_export,
    "fit": _cmd_fit,
    "test": _cmd_test,
    "predict": _cmd_predict,
    "ensemble": _cmd_ensemble,
    "calibrate": _cmd_calibrate,
    "climatology": _cmd_climatology,
    "report": _cmd_report,
    "publish": _cmd_publish,
    "prepare": _cmd_prepare,
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be replaced after set-up)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _configure_logging(level: int) -> None:
    """eofm's messages to stderr, once each; Lightning keeps its own handler.

    The handler sits on the root logger: a library that logs through the root (absl's
    ``logging.info``, a module-level ``logging.warning``) would otherwise call
    ``logging.basicConfig()`` and add a second handler that prints every eofm message
    again as ``INFO:eofm.module:...``; with a root handler in place that call does
    nothing. Other libraries' records pass at WARNING and above, as Python's last-resort
    handler showed them before.
    """
    logging.getLogger("eofm").setLevel(level)
    root = logging.getLogger()
    if not any(getattr(h, "_eofm", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_LineFormatter())
        handler.addFilter(_eofm_or_warning)
        handler._eofm = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def _eofm_or_warning(record: logging.LogRecord) -> bool:
    return record.name == "eofm" or record.name.startswith("eofm.") or record.levelno >= 30


class _LineFormatter(logging.Formatter):
    """``LEVEL eofm: message`` (``LEVEL name: message`` for other libraries), on every
    line of a message of several lines; no line without text."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).strip("\n")
        eofm = record.name == "eofm" or record.name.startswith("eofm.")
        prefix = f"{record.levelname} {'eofm' if eofm else record.name}:"
        return "\n".join(f"{prefix} {line}" for line in text.splitlines() if line.strip())


class _NoAdverts(logging.Filter):
    """Drops Lightning's promotional tips from eofm's own commands."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def _quiet_third_parties() -> None:
    """No adverts, and no deprecation noise that users can do nothing about."""
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NoAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated.*")


#: Commands whose positional ``key=value`` overrides may come after options too.
_TAKES_OVERRIDES = ("fit", "test", "calibrate", "climatology")


#: Options of ``eofm`` itself that may also come after the command (``eofm fit r.yaml --offline``).
_GLOBAL_FLAGS = {"--offline": "offline", "-q": "quiet", "--quiet": "quiet"}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    for flag in [a for a in extra if a in _GLOBAL_FLAGS]:
        setattr(args, _GLOBAL_FLAGS[flag], True)
        extra.remove(flag)
    if extra:
        overrides = [a for a in extra if "=" in a and not a.startswith("-")]
        if args.command not in _TAKES_OVERRIDES or len(overrides) != len(extra):
            parser.error(
                f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides) or ' '.join(extra)}"
            )
        args.overrides = [*args.overrides, *overrides]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _configure_logging(logging.WARNING if args.quiet else logging.INFO)
    _quiet_third_parties()
    if args.offline:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        return COMMANDS[args.command](args)
    except EofmError as exc:
        print(f"eofm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a full disk, a vanished folder: one line, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"eofm: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("eofm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
