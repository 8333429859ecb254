"""Bad input fails at once: one ``eofm: error:`` line, exit 2, before torch or the model.

Issue 33, "Errors that come too late" (and the refusals of its items 2 and 6): each bad
input below used to cost 3 to 35 s (torch, the datamodule, the model, sometimes a whole
epoch) before it failed. Each now fails from metadata alone: file lists, headers, a
cube's time axis, ``recipe.yaml`` and ``model.json``.

All cases run in ONE child process (``eofm.cli.main`` per case) that reports, per case,
the exit code, stderr, the CPU and wall seconds from the start of ``main`` to its return,
and which heavy modules were imported by then. CPU time is the budget asserted (< 1 s;
importing torch alone costs more), since wall time on a shared, loaded CI machine says
more about the neighbours than about eofm; wall time gets a looser bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eofm.predict.device import nvidia_driver_present
from tests.firecube import make_cube
from tests.hls import make_hls_root
from tests.realdata import SHARED
from tests.runs import make_run_dir
from tests.test_training import flood_root  # noqa: F401 - fixture reuse
from tests.weather import regression_recipe

HEAVY = ("torch", "lightning", "timm", "peft", "torchgeo")
NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
ERA5 = SHARED.parent / "era5"

CHILD = r"""
HEAVY = %r
import contextlib, io, json, sys, time
from eofm.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    cpu, wall = time.process_time(), time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    results.append({
        "rc": rc,
        "stderr": err.getvalue(),
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "heavy": [m for m in HEAVY if m in sys.modules],
    })
print(json.dumps(results))
""" % (HEAVY,)  # noqa: UP031


def _write_run(run: Path, recipe: dict, model: dict) -> Path:
    """A run dir as ``fit`` leaves it, less the weights: these refusals must come before
    any weight is read, so the checkpoint is an empty file that would fail to load."""
    from eofm.recipe import dump_recipe, load_recipe

    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    (run / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe)))
    (run / "model.json").write_text(json.dumps(model))
    return run


def _backbone(**extra: object) -> dict:
    return {
        "name": "x", "repo": "tester/x", "revision": "0" * 40, "file": "x.ckpt",
        "pretrained_loaded": True, **extra,
    }  # fmt: skip


def weather_run(folder: Path) -> Path:
    recipe = regression_recipe(ERA5, "hydrology")
    return _write_run(
        folder,
        recipe,
        {
            "task": {"type": "regression", "targets": ["tp", "e"]},
            "bands": ["tp", "e"],
            "mean": [0.0, 0.0],
            "std": [1.0, 1.0],
            "backbone": _backbone(patch_size=[4]),
        },
    )


def fire_run(folder: Path, cube: Path) -> Path:
    from eofm.recipe import load_recipe

    overrides = [f"data.root={cube}", "data.lag_days=5"]
    shipped = load_recipe("mesogeos_fire_danger_gru", overrides)
    recipe = shipped.to_dict()
    dynamic, static = shipped.data.dynamic_vars, shipped.data.static_vars
    return _write_run(
        folder,
        recipe,
        {
            "task": {"type": "classification"},
            "bands": [*dynamic, *static],
            "mean": [0.0] * (len(dynamic) + len(static)),
            "std": [1.0] * (len(dynamic) + len(static)),
            "backbone": _backbone(patch_size=[1]),
            "inputs": {"dynamic_vars": dynamic, "static_vars": static, "lag_days": 5, "patch": 1},
        },
    )


#: issue 33 item 7: hand edits of model.json, each refused naming the field
EDITS = {
    "std [0, 0]": lambda m: m.update(std=[0, 0]),
    "std NaN": lambda m: m.update(std=[float("nan"), 1.0]),
    "std negative": lambda m: m.update(std=[-4.0, 5.0]),
    "std null": lambda m: m.update(std=None),
    "temperature 0": lambda m: m.update(calibration={"temperature": 0}),
    "temperature NaN": lambda m: m.update(calibration={"temperature": float("nan")}),
    "temperature negative": lambda m: m.update(calibration={"temperature": -1.5}),
    "temperature a string": lambda m: m.update(calibration={"temperature": "1.2"}),
    "bands empty": lambda m: m.update(bands=[]),
}
EDITED_FIELD = {
    "std": "'std'", "temperature": "'calibration.temperature'", "bands": "'bands'",
}  # fmt: skip


def _edited_copy(run: Path, target: Path, change) -> Path:
    import shutil

    shutil.copytree(run, target)
    manifest = json.loads((target / "model.json").read_text())
    change(manifest)
    (target / "model.json").write_text(json.dumps(manifest))  # NaN as JSON's NaN token
    return target


@pytest.fixture(scope="module")
def setup(flood_root: Path, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    import geopandas as gpd
    import shapely

    tmp = tmp_path_factory.mktemp("errors")
    stats = ([-11.0, -18.0], [4.0, 5.0])
    seg = make_run_dir(tmp / "seg", ["VV", "VH"], *stats)
    lora = make_run_dir(tmp / "lora_random", ["VV", "VH"], *stats)  # random init (not pretrained)
    text = (lora / "recipe.yaml").read_text()
    (lora / "recipe.yaml").write_text(text.replace("mode: frozen", "mode: lora", 1))
    no_dropout = make_run_dir(tmp / "no_dropout", ["VV", "VH"], *stats, dropout=0.0)
    cube = make_cube(tmp / "cube.zarr", days_per_year=10)
    regions = tmp / "regions"
    regions.mkdir()
    box = shapely.box(-180, -90, 180, 90)
    (regions / "empty.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (regions / "zero.geojson").write_bytes(b"")
    gpd.GeoDataFrame({"basin": ["A"]}, geometry=[box], crs="EPSG:4326").to_file(
        regions / "nocolumn.geojson"
    )
    gpd.GeoDataFrame({"name": ["A"]}, geometry=[box]).to_parquet(regions / "nocrs.parquet")
    gpd.GeoDataFrame({"name": ["A"]}, geometry=[box], crs="EPSG:4326").to_parquet(
        regions / "good.parquet"
    )
    antarctica = shapely.box(-180, -90, 180, -80)  # a region named in the file, holding no chip
    gpd.GeoDataFrame(
        {"name": ["World", "Antarctica"]}, geometry=[shapely.box(-180, -80, 180, 90), antarctica]
    ).set_crs("EPSG:4326").to_parquet(regions / "two.parquet")
    (tmp / "empty").mkdir()
    hls = make_hls_root(tmp / "hls")
    readonly = tmp / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.access(readonly, os.W_OK):  # root writes anywhere: use a folder no one can write
        readonly = Path("/proc")
    edited = {name: _edited_copy(seg, tmp / name, change) for name, change in EDITS.items()}
    return {
        **edited,
        "tmp": tmp,
        "flood": flood_root,
        "seg": seg,
        "lora_random": lora,
        "no_dropout": no_dropout,
        "weather": weather_run(tmp / "weather"),
        "weather2": weather_run(tmp / "weather2"),
        "cube": cube,
        "fire": fire_run(tmp / "fire", cube),
        "fire2": fire_run(tmp / "fire2", cube),
        "regions": regions,
        "readonly": readonly,
        "hls": hls,
    }


def _region_split(path: Path, column: str = "name", test: str = "A") -> str:
    return f"data.split={{by: region, regions: {path}, column: {column}, test: [{test}]}}"


def cases(s: dict[str, Path]) -> dict[str, tuple[list[str], str, Path]]:
    """id -> (argv, a word the error must hold, a path that must not exist afterwards)."""
    tmp, flood, regions = s["tmp"], s["flood"], s["regions"]
    run = tmp / "new_run"
    out = tmp / "out"
    fit = ["fit", "demo", f"data.root={flood}", "data.split_csv=null", "--run-dir", str(run)]
    fire_fit = ["fit", "mesogeos_fire_danger_gru", "--run-dir", str(run)]
    predict = ["predict", "--model", str(s["seg"]), str(NIGERIA), "--no-progress"]
    cpu_only = [] if not nvidia_driver_present() else ["--device", "cpu"]
    return {
        "missing data.root": ([*fit, f"data.root={tmp / 'nowhere'}"], "data.root", run),
        "empty fire data.root": (
            [*fire_fit, f"data.root={tmp / 'empty'}"],
            "data.root",
            run,
        ),
        "missing split CSV": (
            ["fit", "demo", f"data.root={flood}", "--run-dir", str(run)],
            "data.split_csv=null",
            run,
        ),
        "empty regions file": (
            [*fit, _region_split(regions / "empty.geojson")],
            "holds no regions",
            run,
        ),
        "0-byte regions file": ([*fit, _region_split(regions / "zero.geojson")], "0 bytes", run),
        "regions file without the column": (
            [*fit, _region_split(regions / "nocolumn.geojson")],
            "data.split.column",
            run,
        ),
        "regions file without a CRS": (
            [*fit, _region_split(regions / "nocrs.parquet")],
            "no CRS",
            run,
        ),
        "a split left empty": (
            [*fit, _region_split(regions / "good.parquet", test="Atlantis")],
            "left empty",
            run,
        ),
        "a region holding no chip": (
            [*fit, _region_split(regions / "two.parquet", test="Antarctica")],
            "Antarctica",
            run,
        ),
        "fire --date outside the cube": (
            [
                "predict",
                "--model",
                str(s["fire"]),
                str(s["cube"]),
                "--date",
                "2030-01-01",
                "--out",
                str(out),
            ],
            "not in the cube",
            out,
        ),  # fmt: skip
        "read-only --out": (
            [*predict, "--out", str(s["readonly"] / "eofm-out" / "maps")],
            "--out",
            s["readonly"] / "eofm-out",
        ),
        "--precision fp16 on CPU": (
            [*predict, "--out", str(out), "--precision", "fp16", *cpu_only],
            "fp16",
            out,
        ),
        "calibrate on a weather run": (["calibrate", str(s["weather"])], "calibrate", run),
        "invalid hf:// name (test)": (["test", "hf://bad..name/x"], "Hub repo id", run),
        "invalid hf:// name (predict)": (
            ["predict", "--model", "hf://a/b--c", str(NIGERIA), "--out", str(out)],
            "Hub repo id",
            out,
        ),
        "invalid hf:// backbone": (
            [*fit, "backbone.name=hf://only-one-part"],
            "backbone.name",
            run,
        ),
        "empty validation split (fire years)": (
            [
                *fire_fit,
                f"data.root={s['cube']}",
                "data.split_years={train: [2019], val: [1999], test: [2021]}",
            ],
            "val split",
            run,
        ),
        "empty validation split": (
            [*fit, "data.split_fractions=[0.8, 0, 0.2]"],
            "val split",
            run,
        ),
        "empty validation split (HLS Burn Scars)": (
            [
                "fit",
                "hls_burn_scars_tiny",
                f"data.root={s['hls']}",
                "data.split_fractions=[0.8, 0, 0.2]",
                "--run-dir",
                str(run),
            ],
            "val split",
            run,
        ),
        "--adapter-only on a random-init run": (
            [
                "publish",
                str(s["lora_random"]),
                "--repo",
                "tester/x",
                "--adapter-only",
                "--dry-run",
                str(out),
            ],
            "pretrained_loaded",
            out,
        ),  # fmt: skip
        "task.monitor typo (class name)": ([*fit, "task.monitor=val/IoU_watr"], "IoU_water", run),
        "task.monitor typo (metric)": ([*fit, "task.monitor=val/IoU"], "val/IoU_water", run),
        # issue 38 item 1: the DDP keys are checked like every key
        "trainer.strategy not DDP": (
            [*fit, "trainer.strategy=fsdp"],
            "'trainer.strategy' in the command-line overrides must be one of ['auto', 'ddp'",
            run,
        ),
        "trainer.num_nodes 0": (
            [*fit, "trainer.num_nodes=0"],
            "'trainer.num_nodes' in the command-line overrides must be > 0",
            run,
        ),
        "trainer.sync_batchnorm on CPU": (
            [*fit, "trainer.accelerator=cpu", "trainer.sync_batchnorm=true"],
            "SyncBatchNorm",
            run,
        ),
        "DDP fit of a family not tested under DDP": (
            [*fire_fit, f"data.root={s['cube']}", "trainer.devices=2", "trainer.strategy=ddp"],
            "segmentation only",
            run,
        ),
        # issue 33 item 2: ensembles a family does not average are refused, naming it
        "ensemble of weather runs": (
            [
                "ensemble",
                str(s["weather"]),
                str(s["weather2"]),
                "--inputs",
                str(ERA5),
                "--out",
                str(out),
            ],
            "regression",
            out,
        ),  # fmt: skip
        "ensemble of fire-danger runs": (
            [
                "ensemble",
                str(s["fire"]),
                str(s["fire2"]),
                "--inputs",
                str(s["cube"]),
                "--out",
                str(out),
                "--date",
                "2019-07-05",
            ],
            "classification",
            out,
        ),  # fmt: skip
        "ensemble of a segmentation and a weather run": (
            [
                "ensemble",
                str(s["seg"]),
                str(s["weather"]),
                "--inputs",
                str(NIGERIA),
                "--out",
                str(out),
            ],
            "regression",
            out,
        ),  # fmt: skip
        # issue 33 item 6: options a run would silently ignore are refused, with the reason
        "--uncertainty on a weather run": (
            [
                "predict",
                "--model",
                str(s["weather"]),
                str(ERA5),
                "--out",
                str(out),
                "--uncertainty",
                "entropy",
            ],
            "no uncertainty map",
            out,
        ),  # fmt: skip
        "mc-dropout on a model without dropout": (
            [
                "predict",
                "--model",
                str(s["no_dropout"]),
                str(NIGERIA),
                "--out",
                str(out),
                "--uncertainty",
                "mc-dropout:4",
            ],
            "no dropout",
            out,
        ),  # fmt: skip
        **{
            f"model.json {name}": (
                ["predict", "--model", str(s[name]), str(NIGERIA), "--out", str(out)],
                EDITED_FIELD[name.split()[0]],
                out,
            )
            for name in EDITS
        },
        "test --mc-dropout on a segmentation run": (
            ["test", str(s["seg"]), "--mc-dropout", "4"],
            "regression",
            run,
        ),
        "test --mc-dropout 0": (
            ["test", str(s["weather"]), "--mc-dropout", "0"],
            "--mc-dropout",
            run,
        ),
        # issue 36 item 4: whole-scene (tiled) evaluation, checked before torch
        "test --tiled on a weather run": (
            ["test", str(s["weather"]), "--tiled", "64"],
            "regression",
            run,
        ),
        "eval.tiled on a fire-danger recipe": (
            [*fire_fit, f"data.root={s['cube']}", "eval.tiled.tile=32"],
            "classification",
            run,
        ),
        "test --tiled not a multiple of the patch size": (
            ["test", str(s["seg"]), "--tiled", "40"],
            "patch size",
            run,
        ),
        "test --tiled overlap >= tile": (
            ["test", str(s["seg"]), "--tiled", "32,32"],
            "eval.tiled.overlap",
            run,
        ),
        "test --tiled not numbers": (["test", str(s["seg"]), "--tiled", "a,b"], "--tiled", run),
        "eval.tiled key typo": (
            ["test", str(s["seg"]), "eval.tiled.tiles=32"],
            "eval.tiled.tile",
            run,
        ),
        "test --maps into a non-empty folder": (
            ["test", str(s["seg"]), "--tiled", "64", "--maps", str(s["regions"])],
            "--maps",
            run,
        ),
    }


@pytest.fixture(scope="module")
def outcomes(setup: dict[str, Path]) -> dict[str, dict]:
    table = cases(setup)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([argv for argv, _, _ in table.values()])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        name: {**result, "case": table[name]} for name, result in zip(table, results, strict=True)
    }


CASE_IDS = list(cases({k: Path("/x") for k in ("tmp", "flood", "regions", "seg", "lora_random",
    "no_dropout", "weather", "weather2", "cube", "fire", "fire2", "readonly", "hls", *EDITS)}))  # fmt: skip


@pytest.mark.parametrize("name", CASE_IDS)
def test_bad_input_fails_in_one_line_before_torch(name: str, outcomes: dict[str, dict]) -> None:
    result = outcomes[name]
    _, needle, leftover = result["case"]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("eofm: error:")]
    assert result["rc"] == 2, result["stderr"]
    assert len(errors) == 1 and needle in errors[0], result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["heavy"] == [], f"{name} imported {result['heavy']}"
    assert result["cpu"] < 1.0, f"{name} took {result['cpu']:.2f} s of CPU"
    assert result["wall"] < 5.0, f"{name} took {result['wall']:.2f} s"
    assert not Path(leftover).exists(), f"{name} left {leftover}"
