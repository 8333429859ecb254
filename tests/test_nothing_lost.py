"""Nothing a user made is ever lost: one regression test per defect found by the probe."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eofm.atomic import atomic_output
from eofm.cli import main
from eofm.errors import EofmError
from tests.realdata import SHARED
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse

ROOT = Path(__file__).resolve().parents[1]
NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"


def one_epoch_fit(flood_root: Path, run: Path) -> list[str]:
    """The arguments of a one-epoch ``eofm fit demo`` on the flood chips into ``run``."""
    return [
        "fit",
        "demo",
        *overrides(flood_root, **{"trainer.max_epochs": 1}),
        "--run-dir",
        str(run),
    ]


@pytest.fixture(scope="module")
def fitted(flood_root: Path, tmp_path_factory) -> Path:
    """A run trained by ``eofm fit`` (so model.json has the training data's range)."""
    run = tmp_path_factory.mktemp("fitted") / "run"
    assert main(one_epoch_fit(flood_root, run)) == 0
    return run


def predict(*args: str) -> int:
    return main(["predict", *args, "--no-progress"])


def scene_copy(folder: Path, name: str = "scene.tif", source: Path = NIGERIA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_bytes(source.read_bytes())
    return target


# 1. the input is never overwritten ----------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_that_is_the_input_is_refused(
    fitted: Path, tmp_path: Path, capsys, overwrite: list[str]
) -> None:
    scene = scene_copy(tmp_path / "dir")
    before = scene.read_bytes()
    assert (
        predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "dir"), *overwrite) == 1
    )
    assert "would replace the input" in capsys.readouterr().err
    assert scene.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["scene.tif"]


# 2. no file the command did not create is overwritten ------------------------------------


def test_user_quicklook_and_vector_are_never_overwritten(
    fitted: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "Nigeria_812045_S1Hand.png").write_bytes(b"my picture")
    (out / "Nigeria_812045_S1Hand.geojson").write_text("my polygons")
    assert (
        predict("--model", str(fitted), str(NIGERIA), "--out", str(out), "--vector", "geojson") == 1
    )
    err = capsys.readouterr().err
    assert "Nigeria_812045_S1Hand.png" in err and "--overwrite" in err
    assert (out / "Nigeria_812045_S1Hand.png").read_bytes() == b"my picture"
    assert (out / "Nigeria_812045_S1Hand.geojson").read_text() == "my polygons"
    assert not (out / "Nigeria_812045_S1Hand.tif").exists()  # checked before anything was written


def test_rerun_completes_a_scene_whose_quicklook_and_vector_are_missing(
    fitted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert predict("--model", str(fitted), str(NIGERIA), "--out", str(out), "--no-quicklook") == 0
    raster = out / "Nigeria_812045_S1Hand.tif"
    first = raster.read_bytes()
    mtime = raster.stat().st_mtime_ns
    assert (
        predict("--model", str(fitted), str(NIGERIA), "--out", str(out), "--vector", "geojson") == 0
    )
    assert raster.read_bytes() == first and raster.stat().st_mtime_ns == mtime
    assert (out / "Nigeria_812045_S1Hand.png").stat().st_size > 0
    assert (out / "Nigeria_812045_S1Hand.geojson").stat().st_size > 0


# 3. resuming keeps logs and metrics --------------------------------------------------------


def test_resume_keeps_the_csv_log_and_the_metrics(flood_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = one_epoch_fit(flood_root, run)
    assert main(args) == 0
    csv_log = run / "logs" / "csv" / "metrics.csv"
    rows = csv_log.read_text().splitlines()
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert len(rows) > 1 and metrics
    assert main(args) == 0  # resumes at the end: trains no further step
    assert "resuming from" in capsys.readouterr().out
    assert csv_log.read_text().splitlines()[: len(rows)] == rows
    assert json.loads((run / "metrics.json").read_text())["metrics"] == metrics
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    assert main(args) == 1  # a resume that fails keeps them too
    err = capsys.readouterr().err
    assert "last.ckpt" in err and "weights_only=False" not in err and "Traceback" not in err
    assert csv_log.read_text().splitlines()[: len(rows)] == rows


def test_a_run_dir_of_an_earlier_release_resumes(flood_root: Path, tmp_path: Path, capsys) -> None:
    """Releases before ``trainer.precision: auto`` and ``data.num_workers: auto`` wrote
    ``32-true`` and ``0`` (and no ``trainer.compile``): the same recipe still resumes.
    Settings that change what is trained are still refused, by name."""
    import yaml

    run = tmp_path / "run"
    args = one_epoch_fit(flood_root, run)
    assert main(args) == 0
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true"  # what it trained at, not "auto"
    older = dict(saved, data=dict(saved["data"], num_workers=0))
    older["trainer"] = {k: v for k, v in saved["trainer"].items() if k != "compile"}
    (run / "recipe.yaml").write_text(yaml.safe_dump(older, sort_keys=False))
    capsys.readouterr()
    assert main([*args, "data.num_workers=auto", "trainer.precision=32"]) == 0
    assert "resuming from" in capsys.readouterr().out

    recipe = (run / "recipe.yaml").read_text()
    assert main([*args, "optimizer.lr=0.5"]) == 1
    err = capsys.readouterr().err
    assert "different recipe" in err and "optimizer.lr" in err and "Traceback" not in err
    bf16 = yaml.safe_load(recipe)
    bf16["trainer"]["precision"] = "bf16-mixed"
    (run / "recipe.yaml").write_text(yaml.safe_dump(bf16, sort_keys=False))
    assert main(args) == 1  # this machine trains at 32-true: said, with the way to resume
    err = capsys.readouterr().err
    assert "trainer.precision=bf16-mixed" in err
    assert yaml.safe_load((run / "recipe.yaml").read_text()) == bf16  # left as it was


# 4. publish leaks no path of the machine -------------------------------------------------


def test_published_folder_holds_no_absolute_local_path(fitted: Path, tmp_path: Path) -> None:
    recipe = (fitted / "recipe.yaml").read_text()
    local_root = next(
        line.split(": ", 1)[1] for line in recipe.splitlines() if line.strip().startswith("root:")
    )
    assert Path(local_root).is_absolute()  # the run dir keeps it, so it works from anywhere
    folder = tmp_path / "bundle"
    assert main(["publish", str(fitted), "--repo", "me/flood", "--dry-run", str(folder)]) == 0
    needles = {local_root, str(tmp_path), str(fitted), os.getcwd(), str(Path.home()), str(ROOT)}
    for path in folder.iterdir():
        data = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in data, (path.name, needle)
    published = (folder / "recipe.yaml").read_text()
    assert "root: ''" in published


# 5. unknown band names are not fed by position --------------------------------------------


def test_unknown_band_names_are_an_error_naming_both_lists(
    fitted: Path, tmp_path: Path, capsys
) -> None:
    scene = tmp_path / "hh_hv.tif"
    with rasterio.open(NIGERIA) as ds:
        data, profile = ds.read(), ds.profile
    with rasterio.open(scene, "w", **profile) as out:
        out.write(data)
        out.set_band_description(1, "HH")
        out.set_band_description(2, "HV")
    assert predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "HH" in err and "HV" in err and "VV" in err and "VH" in err and "--bands" in err
    assert not (tmp_path / "o").exists()
    assert (
        predict(
            "--model", str(fitted), str(scene), "--out", str(tmp_path / "o"), "--bands", "VV,VH"
        )
        == 0
    )


# 6. values unlike the training data ----------------------------------------------------------


def test_scaled_integer_scene_warns_loudly_and_strict_refuses(
    fitted: Path, tmp_path: Path, caplog, capsys
) -> None:
    model = json.loads((fitted / "model.json").read_text())
    assert model["input_range"]["dtype"] == "float32" and len(model["input_range"]["p01"]) == 2
    scene = tmp_path / "db100.tif"
    with rasterio.open(NIGERIA) as ds:
        data, profile = ds.read(), ds.profile
    scaled = np.where(np.isfinite(data), data * 100, -32768).astype(np.int16)  # dB x 100
    with rasterio.open(scene, "w", **(profile | {"dtype": "int16", "nodata": -32768})) as out:
        out.write(scaled)
        out.descriptions = ("VV", "VH")
    assert predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "o")) == 0
    assert "does not look like the data the model was trained on" in caplog.text
    assert "int16" in caplog.text
    assert (
        predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "s"), "--strict") == 1
    )
    assert "--strict" in capsys.readouterr().err and not (tmp_path / "s").exists()
    caplog.clear()
    assert (
        predict("--model", str(fitted), str(NIGERIA), "--out", str(tmp_path / "ok"), "--strict")
        == 0
    )
    assert "does not look like" not in caplog.text


def _corner_crop(src: Path, dst: Path, size: int = 64) -> Path:
    """The top-left ``size`` px of a real chip (training saw only its centre crop)."""
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        window = Window(0, 0, size, size)
        profile = ds.profile | {"width": size, "height": size}
        profile |= {"transform": ds.window_transform(window), "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = ds.read(window=window)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def test_honest_scenes_from_other_regions_pass_strict(fitted: Path, tmp_path: Path) -> None:
    """Issue 34 item 2: held-out chips (Ghana_53713/83483 were never trained on) and the
    corners of the others are real dB scenes from other places: no warning, even --strict."""
    from eofm.predict.scenes import inspect_scene

    expected = json.loads((fitted / "model.json").read_text())["input_range"]
    assert {"p25", "p50", "p75"} <= set(expected)  # the robust statistics are recorded
    scenes = [SHARED / "S1Hand" / f"Ghana_{i}_S1Hand.tif" for i in (53713, 83483)]
    for chip in SHARED.joinpath("S1Hand").glob("*_S1Hand.tif"):
        if not chip.name.startswith("Paraguay"):  # entirely NaN: nothing to compare
            scenes.append(_corner_crop(chip, tmp_path / chip.name))
    for scene in scenes:
        inspect_scene(scene, ["VV", "VH"], None, input_range=expected, strict=True)


def test_linear_power_scene_warns_and_strict_refuses(
    fitted: Path, tmp_path: Path, caplog, capsys
) -> None:
    """Issue 34 item 2: a real chip converted from dB to linear power (10^(dB/10))."""
    scene = tmp_path / "linear.tif"
    with rasterio.open(NIGERIA) as ds:
        data, profile = ds.read(), ds.profile
    with rasterio.open(scene, "w", **profile) as out:
        out.write((10.0 ** (data / 10.0)).astype(np.float32))
        out.descriptions = ("VV", "VH")
    assert predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "o")) == 0
    assert "does not look like the data the model was trained on" in caplog.text
    assert "band VV" in caplog.text and "band VH" in caplog.text
    assert (
        predict("--model", str(fitted), str(scene), "--out", str(tmp_path / "s"), "--strict") == 1
    )
    assert "dB vs linear" in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_old_model_json_with_p1_p99_only_still_checks(fitted: Path, tmp_path: Path) -> None:
    """Runs fitted before the quartiles were recorded keep working (IQR estimated)."""
    from eofm.predict.scenes import inspect_scene

    expected = json.loads((fitted / "model.json").read_text())["input_range"]
    old = {k: expected[k] for k in ("dtype", "bands", "p01", "p99")}
    inspect_scene(NIGERIA, ["VV", "VH"], None, input_range=old, strict=True)
    scene = tmp_path / "linear.tif"
    with rasterio.open(NIGERIA) as ds:
        data, profile = ds.read(), ds.profile
    with rasterio.open(scene, "w", **profile) as out:
        out.write((10.0 ** (data / 10.0)).astype(np.float32))
    with pytest.raises(EofmError, match="--strict"):
        inspect_scene(scene, ["VV", "VH"], None, input_range=old, strict=True)


LANDSAT8 = SHARED.parent / "landsat" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"


def _landsat_window(col: int, row: int, size: int = 256) -> np.ndarray:
    from rasterio.windows import Window

    with rasterio.open(LANDSAT8) as ds:
        return ds.read(window=Window(col, row, size, size)).astype(np.float64)


def test_eight_bit_preview_of_a_16_bit_scene_warns(tmp_path: Path, caplog) -> None:
    """Issue 34 item 2: a model trained on a real Landsat 8 scene's reflectance x10000
    (blue, green, red; Collection 1 rescaling REFLECTANCE_MULT 2.0E-05, ADD -0.1, without
    the sun-angle term; 0 is fill) is given an 8-bit RGB preview of another part of the
    scene (a 2..98 % stretch to 1..255, as quicklooks are made): both are integers, so
    only the values tell them apart. The same part as reflectance x10000 passes."""
    from eofm.data.geotiff import band_statistics
    from eofm.predict.scenes import check_input_range

    def reflectance(dn: np.ndarray) -> np.ndarray:
        return np.where(dn > 0, 10000 * (2.0e-5 * dn - 0.1), 0.0).round()

    train = reflectance(_landsat_window(600, 600, 512)).reshape(3, -1)
    train[train == 0] = np.nan
    expected = {"dtype": "uint16", "bands": ["BLUE", "GREEN", "RED"], **band_statistics(train)}
    other = _landsat_window(1200, 1200)
    assert (other > 0).mean() > 0.9
    lo, hi = np.percentile(other, [2, 98], axis=(1, 2), keepdims=True)
    preview = np.clip(1 + 254 * (other - lo) / (hi - lo), 1, 255).astype(np.uint8)
    bands = expected["bands"]
    honest = np.ma.masked_equal(reflectance(other), 0)
    check_input_range(tmp_path, ["uint16"] * 3, honest, bands, expected, strict=True)
    check_input_range(
        tmp_path, ["uint8"] * 3, np.ma.masked_array(preview), bands, expected, strict=False
    )
    assert all(f"band {band} has median" in caplog.text for band in bands)
    with pytest.raises(EofmError, match="reflectance x10000"):
        check_input_range(
            tmp_path, ["uint8"] * 3, np.ma.masked_array(preview), bands, expected, strict=True
        )


# 7. invalid numbers fail at once and leave nothing ------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fit", "demo", "data.batch_size=0"], "data.batch_size"),
        (["fit", "demo", "data.batch_size=-2"], "data.batch_size"),
        (
            ["predict", "--model", "RUN", str(NIGERIA), "--out", "OUT", "--batch-size", "0"],
            "--batch-size",
        ),
        (["predict", "--model", "RUN", str(NIGERIA), "--out", "OUT", "--tile", "0"], "--tile"),
    ],
)
def test_invalid_numbers_fail_at_once_without_torch(
    fitted: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    args = [str(fitted) if a == "RUN" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    if args[0] == "fit":
        args += ["--run-dir", str(tmp_path / "run")]
    code = (
        "import sys\nfrom eofm.cli import main\nrc = main(sys.argv[1:])\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'lightning') if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert "HEAVY:\n" in proc.stderr  # answered before the model or torch was loaded
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_a_fit_that_fails_leaves_no_run_dir_blocking_the_rerun(
    flood_root: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    import lightning as L

    run = tmp_path / "run"

    def broken_fit(*args, **kwargs):
        raise EofmError("the data went away mid-run")

    monkeypatch.setattr(L.Trainer, "fit", broken_fit)
    args = one_epoch_fit(flood_root, run)
    assert main(args) == 1
    assert not run.exists()
    monkeypatch.undo()
    assert main([*args[:-2], "decoder.channels=8", "--run-dir", str(run)]) == 0  # corrected rerun


# 8. failures end in one error line ---------------------------------------------------------


def test_full_disk_during_predict_is_one_error_and_leaves_nothing(
    fitted: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rasterio.shutil.copy", disk_full)
    out = tmp_path / "out"
    assert predict("--model", str(fitted), str(NIGERIA), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


# 9. usability --------------------------------------------------------------------------------


def test_overrides_may_follow_options() -> None:
    from eofm.cli import _parse

    args = _parse(["fit", "demo", "--run-dir", "R", "trainer.max_steps=2", "seed=3"])
    assert args.overrides == ["trainer.max_steps=2", "seed=3"] and str(args.run_dir) == "R"
    args = _parse(["test", "RUN", "--checkpoint", "last", "data.root=/x"])
    assert args.overrides == ["data.root=/x"] and args.checkpoint == "last"
    with pytest.raises(SystemExit):
        _parse(["fit", "demo", "--run-dir", "R", "stray"])


def test_run_dir_works_from_another_folder_and_test_falls_back_to_last(
    flood_root: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    for sub in ("S1Hand", "LabelHand"):
        os.symlink(flood_root / sub, work / "data" / sub)
    monkeypatch.chdir(work)
    args = overrides(Path("data"), **{"trainer.max_epochs": 1, "task.monitor": "val/IoU_water"})
    assert main(["fit", "demo", *args, "--run-dir", "run"]) == 0
    run = work / "run"
    (run / "checkpoints" / "best.ckpt").unlink()  # a short run may have no best checkpoint
    monkeypatch.chdir(tmp_path)
    assert main(["test", str(run)]) == 0
    assert (
        json.loads((run / "test_metrics.json").read_text())["checkpoint"] == "checkpoints/last.ckpt"
    )
    assert "last.ckpt" in capsys.readouterr().err


# 10. partial files --------------------------------------------------------------------------


def test_cleanup_uses_exact_names_not_glob_patterns(tmp_path: Path) -> None:
    other = tmp_path / ".a.tif.partial-999-cafe"  # another scene's partial file
    other.write_bytes(b"in progress")
    with atomic_output(tmp_path / "[ab].tif") as tmp:
        tmp.write_bytes(b"done")
    assert other.read_bytes() == b"in progress"
    assert (tmp_path / "[ab].tif").read_bytes() == b"done"


def test_two_writers_of_one_output_do_not_collide(tmp_path: Path) -> None:
    target = tmp_path / "scene.tif"
    with atomic_output(target) as first:
        first.write_bytes(b"first")
        with pytest.raises(EofmError, match="Another process is writing"):
            with atomic_output(target):
                pass
        assert first.read_bytes() == b"first"  # the second writer removed nothing
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


# 11. predict checks before it loads the model -----------------------------------------------


def test_predict_input_errors_come_before_the_model_and_the_folder(
    fitted: Path, tmp_path: Path
) -> None:
    code = (
        "import sys\nfrom eofm.cli import main\nrc = main(sys.argv[1:])\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'lightning') if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(rc)"
    )
    out = tmp_path / "out"
    missing = tmp_path / "nope.tif"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "predict",
            "--model",
            str(fitted),
            str(missing),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and str(missing) in proc.stderr
    assert "HEAVY:\n" in proc.stderr and not out.exists()


# 12. quiet and offline ----------------------------------------------------------------------


def test_fit_output_has_no_adverts_or_deprecation_noise(flood_root: Path, tmp_path: Path) -> None:
    code = "import sys; from eofm.cli import main; sys.exit(main(sys.argv[1:]))"
    args = overrides(flood_root, **{"trainer.max_epochs": 1})
    proc = subprocess.run(
        [sys.executable, "-c", code, "fit", "demo", *args, "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert "Tip:" not in text and "LeafSpec" not in text


def test_unreachable_hub_is_detected_at_once(monkeypatch, caplog) -> None:
    import socket

    from eofm.publishing import hub

    with socket.socket() as sock:  # a port on loopback that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_PROBED", {})
    assert hub.hub_offline() is True
    assert "unreachable" in caplog.text
    with pytest.raises(EofmError, match="unreachable"):
        hub.list_files("org/repo", "main")


def test_offline_flag_sets_the_clients_offline_mode(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored (removed) after the test
    main(["--offline", "recipes"])
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_predict_help_shows_hub_models_and_every_option_has_help() -> None:
    from eofm.cli import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["predict"]
    assert "hf://" in sub.format_help()
    missing = [a.dest for a in sub._actions if a.dest != "help" and not a.help]
    assert missing == []


def test_run_dir_and_published_files_share_one_mode(fitted: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    assert main(["publish", str(fitted), "--repo", "me/modes", "--dry-run", str(folder)]) == 0
    files = [p for p in fitted.rglob("*") if p.is_file()] + list(folder.iterdir())
    modes = {stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == {0o644}, {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
