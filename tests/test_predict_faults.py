"""Faults while predicting (issue 33): a full disk on every output path, kills that leave
partial files, and ``--overwrite`` next to a user's folder.

A full disk is a real write failure here, not a patched writer: the file-size limit of
the process (``RLIMIT_FSIZE``, with ``SIGXFSZ`` ignored) makes every write past it fail
with ``EFBIG`` inside GDAL, netCDF4/HDF5 and zarr, as ``ENOSPC`` does on a full disk.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio

from eofm.cli import main
from eofm.errors import EofmError
from eofm.predict.engine import Predictor
from eofm.predict.options import PredictOptions
from tests.test_predict import LANDSAT, crop
from tests.test_predict_pipeline import NIGERIA, trained_for

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def disk_full_past(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes of any file fail (``EFBIG``) within the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "extra",
    [{}, {"probabilities": True}, {"uncertainty": "entropy"}, {"vector": "geojson"}],
    ids=["classes", "probabilities", "entropy", "vectors"],
)
@pytest.mark.parametrize("background", [False, True])
def test_a_full_disk_is_one_error_on_every_output_path(
    tmp_path: Path, extra: dict, background: bool
) -> None:
    scene = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 300, 260)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    options = PredictOptions(tile=64, overlap=16, batch_size=4, quicklook=False, **extra)
    out = tmp_path / "out"
    predictor = Predictor(trained, options)
    with (
        disk_full_past(40_000),
        pytest.raises(EofmError, match=r"scene\.tif.*(File too large|No space left)"),
    ):
        predictor.predict(scene, out, background=background)
        predictor.wait()
    assert leftovers(out) == []


def test_a_full_disk_through_the_command_line_is_one_line(tmp_path: Path, capsys) -> None:
    from tests.runs import make_run_dir

    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    out = tmp_path / "out"
    args = ["predict", "--model", str(run), str(NIGERIA), "--out", str(out), "--no-progress"]
    for extra in (["--probabilities"], ["--uncertainty", "entropy"]):
        with disk_full_past(100_000):
            assert main([*args, *extra, "--tile", "64", "--overlap", "16"]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("eofm: error:")]
        assert len(errors) == 1 and f"Cannot write the prediction of {NIGERIA}" in errors[0]
        assert leftovers(out) == []


class WeatherRun:
    """What ``write_forecasts`` reads of a weather run: names, grid, times and fields."""

    names = ["t2m", "msl"]

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        return np.linspace(60.0, 30.0, 300), np.linspace(-10.0, 30.0, 400)

    def target_time(self, now: int) -> np.datetime64:
        return np.datetime64("2020-01-01T00:00") + np.timedelta64(6 * now, "h")

    def outputs(self, steps: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        rng = np.random.default_rng(0)
        for now in steps:
            yield now, rng.normal(280.0, 5.0, (2, 300, 400)).astype(np.float32)


TRAINED = SimpleNamespace(
    manifest={"backbone": {"repo": "x/y", "revision": "abc"}, "timing": {"lead_hours": 6}},
    recipe=SimpleNamespace(name="weather"),
)


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_a_full_disk_while_writing_weather_files_is_one_error(tmp_path: Path, fmt: str) -> None:
    from eofm.forecasts.weather_files import SUFFIXES, write_forecasts

    target = tmp_path / "out" / f"forecast{SUFFIXES[fmt]}"
    with disk_full_past(200_000), pytest.raises(EofmError, match=f"Cannot write {target}"):
        write_forecasts(TRAINED, WeatherRun(), list(range(4)), target, fmt)
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("fmt", ["netcdf", "zarr"])
def test_overwrite_never_replaces_a_folder_eofm_did_not_write(tmp_path: Path, fmt: str) -> None:
    from eofm.forecasts.weather_files import SUFFIXES, write_forecasts

    target = tmp_path / f"forecast{SUFFIXES[fmt]}"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "mine.txt").write_text("a user's work")
    with pytest.raises(EofmError, match=f"{target} is a folder that eofm did not write"):
        write_forecasts(TRAINED, WeatherRun(), [0, 1], target, fmt)
    assert (target / "notes" / "mine.txt").read_text() == "a user's work"
    assert leftovers(tmp_path) == [target.name]
    if fmt == "zarr":  # a store eofm wrote is replaced
        import shutil

        shutil.rmtree(target)
        write_forecasts(TRAINED, WeatherRun(), [0, 1], target, fmt)
        write_forecasts(TRAINED, WeatherRun(), [2, 3, 4], target, fmt)
        import xarray as xr

        assert xr.open_zarr(target).sizes["time"] == 3


def test_a_folder_named_like_a_geotiff_output_is_never_replaced(tmp_path: Path) -> None:
    scene = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 90, 70)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    out = tmp_path / "out"
    (out / "scene.tif").mkdir(parents=True)
    (out / "scene.tif" / "mine.txt").write_text("a user's work")
    options = PredictOptions(tile=32, overlap=8, quicklook=False, overwrite=True)
    with pytest.raises(EofmError, match=f"Output {out / 'scene.tif'} is a folder"):
        Predictor(trained, options).predict(scene, out)
    assert (out / "scene.tif" / "mine.txt").read_text() == "a user's work"


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partial_files_of_killed_runs_are_removed_by_the_next(tmp_path: Path) -> None:
    """Partial files and folders whose process is gone go; a live process's stay."""
    from eofm.forecasts.weather_files import write_forecasts

    dead, alive = a_dead_pid(), os.getppid()
    out = tmp_path / "out"
    out.mkdir()
    stale = [
        out / f".other.tif.partial-{dead}-0123abcd",
        out / f".other.tif.partial-{dead}-0123abcd.gtiff",
        out / f".forecast_2020.nc.partial-{dead}-89abcdef",
    ]
    for path in stale:
        path.write_bytes(b"half")
    zarr_partial = out / f".forecast.zarr.partial-{dead}-00ff00ff"
    (zarr_partial / "t2m").mkdir(parents=True)
    live = out / f".busy.tif.partial-{alive}-0123abcd"
    live.write_bytes(b"still being written")
    mine = out / ".notes.partial-x"
    mine.write_bytes(b"a user's file")
    write_forecasts(TRAINED, WeatherRun(), [0], out / "forecast.nc", "netcdf")
    assert leftovers(out) == sorted([live.name, mine.name, "forecast.nc"])
    stale[0].write_bytes(b"half")  # and the GeoTIFF engine sweeps its folder too
    scene = crop(LANDSAT, tmp_path / "scene.tif", 700, 900, 90, 70)
    trained = trained_for(["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3)
    Predictor(trained, PredictOptions(tile=32, overlap=8, quicklook=False)).predict(scene, out)
    assert leftovers(out) == sorted([live.name, mine.name, "forecast.nc", "scene.tif"])


def big_scene(path: Path, size: int = 1536) -> Path:
    profile = dict(driver="GTiff", width=size, height=size, count=2, dtype="float32")
    profile |= {"crs": "EPSG:32631", "transform": rasterio.transform.from_origin(5e5, 5e6, 10, 10)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.random.default_rng(0).normal(-12, 4, (2, size, size)).astype(np.float32))
        ds.descriptions = ("VV", "VH")
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_leave_no_partial_or_lock_file(tmp_path: Path, signum: int) -> None:
    from tests.runs import make_run_dir

    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    scene = big_scene(tmp_path / "scene.tif")
    out = tmp_path / "out"
    code = (  # SIGUSR1 dumps the child's threads, should it ever hang
        "import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1); "
        "from eofm.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["predict", "--model", str(run), str(scene), "--out", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args, "--probabilities", "--tile", "64"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(".partial-" in name for name in leftovers(out)):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signum)
    try:
        err = child.communicate(timeout=240)[1]
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)
        time.sleep(1)
        child.kill()
        pytest.fail("the child did not exit after the signal:\n" + child.communicate()[1][-6000:])
    assert child.returncode == 130, err
    assert "Traceback" not in err and "eofm: interrupted" in err
    assert leftovers(out) == []
