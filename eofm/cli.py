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

from eofm import __version__
from eofm.errors import EofmError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eofm",
        description="Fine-tune Earth-observation and weather foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"eofm {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("recipes", help="list the shipped recipes")
    sub.add_parser("backbones", help="list the registered backbones")

    fit = sub.add_parser("fit", help="fine-tune a model from a recipe")
    fit.add_argument("recipe", help="recipe file, or the name of a shipped recipe")
    fit.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides (YAML values)"
    )
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
    test.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. data.root=..."
    )
    test.add_argument("--checkpoint", choices=("best", "last"), default="best")
    test.add_argument("--output", type=Path, help="write the metrics JSON here")

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
        "--dry-run",
        type=Path,
        metavar="DIR",
        help="write the folder that would be uploaded, upload nothing",
    )

    predict = sub.add_parser("predict", help="stream a model over GeoTIFF scenes of any size")
    predict.add_argument("--model", required=True, help="a run dir or a checkpoint (.ckpt)")
    predict.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="GeoTIFF files, folders or globs"
    )
    predict.add_argument("--out", required=True, type=Path, help="output folder")
    predict.add_argument("--bands", help="names of the input's bands in file order, e.g. VV,VH")
    predict.add_argument("--tile", type=int, default=224, help="tile size in pixels (default 224)")
    predict.add_argument(
        "--overlap", type=int, default=32, help="overlap between tiles (default 32)"
    )
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument(
        "--probabilities", action="store_true", help="write class probabilities (float32)"
    )
    predict.add_argument("--vector", choices=("geoparquet", "geojson"), help="also write polygons")
    predict.add_argument("--tta", choices=("flip",), help="test-time augmentation")
    predict.add_argument("--no-quicklook", action="store_true", help="skip the PNG quicklook")
    predict.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    predict.add_argument(
        "--shard", help="i/n: process every n-th input from the i-th (default: launcher rank)"
    )
    predict.add_argument("--no-progress", action="store_true")
    return parser


def _cmd_recipes(_: argparse.Namespace) -> int:
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


def _cmd_backbones(_: argparse.Namespace) -> int:
    from eofm.registry import REGISTRY

    rows = [("name", "hub repo@revision", "bands", "params")]
    for entry in REGISTRY.entries("backbone"):
        m = entry.meta["manifest"]
        params = m.params_millions if m.family == "aurora" else m.config.num_params() / 1e6
        rows.append((m.name, m.hub_ref, ",".join(m.bands), f"{params:.1f}M"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>7}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from eofm.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)  # validated before heavy imports
    from eofm.training import fit

    fit(recipe, run_dir=args.run_dir, allow_random_init=args.allow_random_init)
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    if not args.run_dir.startswith("hf://"):
        from eofm.rundir import load_run_recipe

        load_run_recipe(Path(args.run_dir), args.overrides)  # validated before heavy imports
    from eofm.training import test

    test(args.run_dir, args.overrides, checkpoint=args.checkpoint, output=args.output)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from eofm.hub import validate_repo_id

    validate_repo_id(args.repo)
    from eofm.publish import publish

    result = publish(
        args.run_dir,
        args.repo,
        revision=args.revision,
        private=args.private,
        adapter_only=args.adapter_only,
        license_id=args.license,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        print(f"eofm publish: dry run, wrote {result}:")
        for path in sorted(Path(result).iterdir()):
            print(f"  {path.name:<28} {path.stat().st_size:>10,} bytes")
    else:
        print(f"eofm publish: hf://{args.repo}@{result}")
        print(f"  eofm predict --model hf://{args.repo}@{result} SCENE.tif --out predictions/")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from eofm.inference import PredictOptions
    from eofm.predict_cli import run_predict

    options = PredictOptions(
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        probabilities=args.probabilities,
        tta_flip=args.tta == "flip",
        vector=args.vector,
        quicklook=not args.no_quicklook,
        overwrite=args.overwrite,
        bands=[b.strip() for b in args.bands.split(",")] if args.bands else None,
    )
    return run_predict(
        args.model, args.inputs, args.out, options, shard=args.shard, progress=not args.no_progress
    )


COMMANDS = {
    "recipes": _cmd_recipes,
    "backbones": _cmd_backbones,
    "fit": _cmd_fit,
    "test": _cmd_test,
    "predict": _cmd_predict,
    "publish": _cmd_publish,
}


def _configure_logging(level: int) -> None:
    """eofm's own messages to stderr; Lightning keeps its own handler (no duplicates)."""
    logger = logging.getLogger("eofm")
    logger.setLevel(level)
    if not any(getattr(h, "_eofm", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s eofm: %(message)s"))
        handler._eofm = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(logging.WARNING if args.quiet else logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except EofmError as exc:
        print(f"eofm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("eofm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
