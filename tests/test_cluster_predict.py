"""Predict across a Slurm job array and torchrun ranks (variables faked, on the CPU):
every scene once, outputs identical to one process, manifests, ``--summarize``, reruns."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.merge

from eofm.cli import main
from tests.runs import make_run_dir
from tests.test_predict import LANDSAT, crop

LAUNCHER_VARIABLES = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "RANK",
    "WORLD_SIZE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
)
OPTIONS = ["--tile", "32", "--overlap", "8", "--batch-size", "4", "--no-progress"]


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch) -> None:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run_dir(
        tmp_path_factory.mktemp("run") / "run",
        ["BLUE", "GREEN", "RED"],
        [9000.0, 8500.0, 8000.0],
        [1500.0] * 3,
    )


def make_scenes(folder: Path, count: int = 7) -> list[Path]:
    """Small crops of a real Landsat scene side by side; the last two in another CRS."""
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(count):
        changes = {"crs": "EPSG:32722"} if i >= count - 2 else {}
        scenes.append(crop(LANDSAT, folder / f"scene{i}.tif", 600 + 48 * i, 700, 48, 40, **changes))
    return scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    return make_scenes(tmp_path_factory.mktemp("scenes"))


def predict(
    run: Path, out: Path, inputs: list[str], env: dict[str, str], monkeypatch, *extra: str
) -> int:
    with monkeypatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return main(["predict", "--model", str(run), *inputs, "--out", str(out), *OPTIONS, *extra])


def outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if not p.name.startswith(("manifest-", "summary", "mosaic-"))
    }


def manifests(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("manifest-*-of-*.json"))]


def slurm(task: int, count: int, first: int = 1) -> dict[str, str]:
    return {
        "SLURM_ARRAY_TASK_ID": str(task + first),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(first),
        "SLURM_ARRAY_TASK_STEP": "1",
    }


def test_array_and_torchrun_cover_each_scene_once_as_one_process_does(
    run: Path, scenes: list[Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = str(scenes[0].parent)
    assert predict(run, tmp_path / "one", [folder], {}, monkeypatch) == 0
    single = outputs(tmp_path / "one")
    assert len(single) == 2 * len(scenes)  # class map and quicklook per scene
    assert not list((tmp_path / "one").glob("manifest-*"))  # an unsharded run writes none
    capsys.readouterr()
    launches = {
        "slurm": [slurm(i, 3) for i in range(3)],  # --array=1-3
        "torchrun": [{"RANK": str(r), "WORLD_SIZE": "2"} for r in range(2)],
    }
    for name, envs in launches.items():
        out = tmp_path / name
        for env in envs:
            assert predict(run, out, [folder], env, monkeypatch) == 0
        logged = capsys.readouterr().out
        source = "SLURM_ARRAY_TASK_ID=1 of 3" if name == "slurm" else "torchrun RANK=0"
        assert f"scene(s), shard 0/{len(envs)} ({source}" in logged
        assert outputs(out) == single  # byte for byte
        records = [s for m in manifests(out) for s in m["scenes"]]
        assert sorted(s["input"] for s in records) == sorted(str(p.absolute()) for p in scenes)
        assert {s["status"] for s in records} == {"done"}
        for record in records:
            assert [o["path"] for o in record["outputs"]][0] == Path(record["input"]).name
            for output in record["outputs"]:
                digest = hashlib.sha256((out / output["path"]).read_bytes()).hexdigest()
                assert output["sha256"] == digest
            assert record["seconds"] > 0 and record["error"] is None
        assert main(["predict", "--summarize", str(out)]) == 0


def test_summarize_names_missing_and_failed_scenes_and_a_rerun_does_only_those(
    run: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from eofm.errors import EofmError
    from eofm.predict import engine

    scenes = make_scenes(tmp_path / "scenes")
    listing = tmp_path / "scenes.txt"
    listing.write_text("# the run's scenes\n" + "\n".join(str(p) for p in scenes) + "\n")
    out = tmp_path / "out"
    inputs = ["--inputs-from", str(listing)]
    write_cog, open_scene = engine.write_cog, engine.Predictor.open_scene

    def disk_full_for_scene1(staging: Path, *args, **kwargs):  # in the background tail
        if staging.name.startswith(".scene1.tif"):
            raise OSError(28, "No space left on device")
        return write_cog(staging, *args, **kwargs)

    def unreadable_scene3(self, source: Path):  # while it streams
        if source.name == "scene3.tif":
            raise EofmError(f"Cannot read raster {source}: block 2 is corrupt")
        return open_scene(self, source)

    with monkeypatch.context() as patch:
        patch.setattr(engine, "write_cog", disk_full_for_scene1)
        patch.setattr(engine.Predictor, "open_scene", unreadable_scene3)
        codes = [predict(run, out, inputs, slurm(i, 3, first=0), monkeypatch) for i in range(3)]
    assert codes == [1, 1, 0]  # round robin: shards 0 and 1 hold a failing scene, and go on
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("eofm:")]
    assert "1 of 3 scene(s) of shard 0/3" in err[0] and "scene3.tif: Cannot read" in err[0]
    assert "1 of 2 scene(s) of shard 1/3" in err[1] and "No space left" in err[1]
    status = {Path(s["input"]).stem: s["status"] for m in manifests(out) for s in m["scenes"]}
    assert status == {f"scene{i}": "failed" if i in (1, 3) else "done" for i in range(7)}
    assert not (out / "scene1.tif").exists() and not (out / "scene3.tif").exists()
    # a node that died before its shard started, and a class map deleted since
    (out / "manifest-2-of-3.json").unlink()
    for name in ("scene2", "scene5"):  # shard 2's scenes
        for suffix in (".tif", ".png"):
            (out / f"{name}{suffix}").unlink()
    (out / "scene6.tif").unlink(), (out / "scene6.png").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["predict", "--summarize", str(out)]) == 1
    report = capsys.readouterr().out
    assert "2 done" in report and "2 failed" in report and "3 missing" in report
    assert "shard 2/3 wrote no manifest (2 scene(s))" in report
    assert "scene6.tif (an output was deleted)" in report
    assert "scene1.tif: Cannot write the prediction" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["failed"] == 2 and summary["missing_shards"][0]["shard"] == 2

    codes = [predict(run, out, inputs, slurm(i, 3, first=0), monkeypatch) for i in range(3)]
    assert codes == [0, 0, 0]  # the array again, the disk and the scene repaired
    status = {Path(s["input"]).stem: s["status"] for m in manifests(out) for s in m["scenes"]}
    redone = {"scene1", "scene2", "scene3", "scene5", "scene6"}
    assert {k for k, v in status.items() if v == "done"} == redone
    assert {k for k, v in status.items() if v == "skipped-existing"} == {"scene0", "scene4"}
    for name, mtime in before.items():  # nothing finished earlier was written again
        if name.startswith("scene") and name.split(".")[0] not in redone:
            assert (out / name).stat().st_mtime_ns == mtime, name
    single = tmp_path / "single"
    assert predict(run, single, [str(p) for p in scenes], {}, monkeypatch) == 0
    assert outputs(out) == outputs(single)
    capsys.readouterr()
    assert main(["predict", "--summarize", str(out)]) == 0
    assert "0 failed, 0 missing" in capsys.readouterr().out


def test_summarize_writes_a_vrt_mosaic_of_the_class_maps_per_crs(
    run: Path, scenes: list[Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    assert (
        predict(
            run,
            out,
            [str(scenes[0].parent / "*.tif")],
            {"RANK": "0", "WORLD_SIZE": "1"},
            monkeypatch,
        )
        == 0
    )
    assert main(["predict", "--summarize", str(out)]) == 0
    mosaics = sorted(p.name for p in out.glob("mosaic-*.vrt"))
    assert mosaics == ["mosaic-EPSG_32621.vrt", "mosaic-EPSG_32722.vrt"]
    for name, members in (
        ("mosaic-EPSG_32621.vrt", scenes[:5]),
        ("mosaic-EPSG_32722.vrt", scenes[5:]),
    ):
        maps = [out / p.name for p in members]
        assert str(out) not in (out / name).read_text()  # paths relative to the VRT
        moved = tmp_path / "moved"  # so the folder can be moved or shared as it is
        shutil.copytree(out, moved, dirs_exist_ok=True)
        expected, transform = rasterio.merge.merge([str(p) for p in maps], method="last")
        with rasterio.open(moved / name) as vrt, rasterio.open(maps[0]) as first:
            assert vrt.crs == first.crs and vrt.nodata == first.nodata == 255
            assert vrt.transform == transform and vrt.dtypes[0] == "uint8"
            assert np.array_equal(vrt.read(), expected)
        shutil.rmtree(moved)
    # the folder run again with two shards: all done before; the one-shard manifest set aside
    for index in range(2):
        assert (
            predict(run, out, [str(scenes[0].parent)], {}, monkeypatch, "--shard", f"{index}/2")
            == 0
        )
    capsys.readouterr()
    assert main(["predict", "--summarize", str(out)]) == 0
    report = capsys.readouterr().out
    assert "2 of 2 shard manifest(s), 7 scene(s): 0 done, 7 done before (skipped)" in report
    assert "set aside (an earlier run with other shards or inputs): manifest-0-of-1.json" in report


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("osgeo"), reason="GDAL's Python bindings absent"
)
def test_our_vrt_reads_as_gdals_own(
    scenes: list[Path], run: Path, tmp_path: Path, monkeypatch
) -> None:
    from eofm.cluster import vrt

    out = tmp_path / "out"
    assert predict(run, out, [str(p) for p in scenes[:5]], {}, monkeypatch) == 0
    maps = [out / p.name for p in scenes[:5]]
    vrt.build_vrt(maps, out / "gdal.vrt")
    ours = vrt._vrt_document(maps, out)
    import xml.etree.ElementTree as ET

    ET.ElementTree(ours).write(out / "ours.vrt")
    with rasterio.open(out / "gdal.vrt") as a, rasterio.open(out / "ours.vrt") as b:
        assert a.transform == b.transform and np.array_equal(a.read(), b.read())
    assert os.path.exists(out / "gdal.vrt")
