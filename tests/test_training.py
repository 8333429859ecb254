"""``eofm fit`` / ``eofm test`` end to end on real Sen1Floods11 chips (cropped to 64 px)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from eofm.cli import main
from tests.realdata import CHIPS, SHARED, crop_chip, make_s2hand_chips

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flood_root(tmp_path_factory) -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"Test data folder {SHARED} is missing (CI provides ../shared/data).")
    root = tmp_path_factory.mktemp("sen1floods11")
    for chip in CHIPS:
        crop_chip(SHARED / "S1Hand" / f"{chip}_S1Hand.tif", root / "S1Hand" / f"{chip}_S1Hand.tif")
        crop_chip(
            SHARED / "LabelHand" / f"{chip}_LabelHand.tif",
            root / "LabelHand" / f"{chip}_LabelHand.tif",
        )
    return root


def overrides(root: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root),
        "data.split_csv": "null",  # split by event
        "data.train_repeats": 1,
        "backbone.pretrained": "false",
        "decoder.channels": 16,
        "data.crop_size": 32,
        "data.batch_size": 2,
        "trainer.max_epochs": 2,
        "trainer.enable_progress_bar": "false",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_fit_then_test_writes_a_complete_run_dir(flood_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "fit",
                "demo",
                *overrides(flood_root, **{"adapter.mode": "lora"}),
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "trainable of" in out and "parameters" in out
    for name in (
        "recipe.yaml",
        "model.json",
        "metrics.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
    ):
        assert (run / name).is_file(), name
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert list((run / "logs").rglob("metrics.csv"))
    assert list((run / "logs").rglob("events.out.tfevents*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] > 0
    assert 0.0 <= metrics["metrics"]["val/mIoU"] <= 1.0
    model = json.loads((run / "model.json").read_text())
    assert model["bands"] == ["VV", "VH"]
    assert model["normalisation_source"].startswith("training-split")
    assert all(isinstance(v, float) for v in model["mean"] + model["std"])
    assert model["backbone"]["band_mapping"]["new"] == ["VV", "VH"]

    assert main(["test", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test metrics" in out and "IoU_water" in out
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert test_metrics["test_chips"]
    assert 0.0 <= test_metrics["metrics"]["test/accuracy"] <= 1.0


def test_s2_lora_upernet_recipe_runs_on_s2hand_chips(tmp_path: Path) -> None:
    """The shipped S2 recipe (with the tiny backbone) on S2Hand chips in the real format."""
    root = make_s2hand_chips(tmp_path / "HandLabeled")
    run = tmp_path / "run"
    args = overrides(
        root,
        **{
            "backbone.name": "prithvi_eo_v2_tiny_tl",
            "trainer.max_epochs": 1,
            "trainer.precision": "32-true",
            "trainer.accelerator": "cpu",
            "data.num_workers": 0,
            "decoder.channels": 16,
            "data.crop_size": 64,
        },
    )
    assert (
        main(["fit", "sen1floods11_s2_prithvi_v2_300_tl_lora", *args, "--run-dir", str(run)]) == 0
    )
    model = json.loads((run / "model.json").read_text())
    assert model["normalisation_source"] == "backbone manifest"
    assert model["mean"] == [1087.0, 1342.0, 1433.0, 2734.0, 1958.0, 1363.0]
    assert model["decoder"]["name"] == "upernet"


def _cli(*args: str, cwd: Path = ROOT, log: Path | None = None) -> subprocess.Popen:
    """``eofm ARGS`` in a child process; its output piped, or written to ``log``."""
    code = "import sys; from eofm.cli import main; sys.exit(main(sys.argv[1:]))"
    output = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def _csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "logs" / "csv" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _logged_epochs(run: Path) -> set[int]:
    log = run / "logs" / "csv" / "metrics.csv"
    if not log.is_file():
        return set()
    return {int(float(row["epoch"])) for row in _csv_rows(run) if row.get("epoch")}


def test_killed_fit_resumes_where_it_stopped_and_ends_as_an_uninterrupted_run(
    flood_root: Path, tmp_path: Path
) -> None:
    """kill -9 in the third of four epochs: the resumed run starts at the third epoch, keeps
    every earlier CSV row once, and ends with an uninterrupted run's metrics."""
    settings = {"trainer.max_epochs": 4, "data.train_repeats": 6}
    run, whole = tmp_path / "run", tmp_path / "uninterrupted"
    args = ["fit", "demo", *overrides(flood_root, **settings), "--run-dir", str(run)]
    uninterrupted = _cli(*args[:-1], str(whole), log=tmp_path / "uninterrupted.log")
    proc = _cli(*args)
    deadline = time.time() + 240
    while 2 not in _logged_epochs(run) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # checkpoints are renamed into place: never half-written
    proc.wait()
    assert not (run / "metrics.json").exists(), "the run finished before it was killed"
    killed_in = max(_logged_epochs(run))
    finished = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] + 1
    assert finished >= killed_in  # every epoch before the one killed is in last.ckpt

    again = _cli(*args)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert f"at epoch {finished + 1}" in out

    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "uninterrupted.log").read_text()
    resumed, reference = (json.loads((r / "metrics.json").read_text()) for r in (run, whole))
    assert resumed["epochs"] == reference["epochs"] == 4
    assert resumed["global_step"] == reference["global_step"]
    assert resumed["metrics"].keys() == reference["metrics"].keys()
    for key, value in reference["metrics"].items():
        assert resumed["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key

    def rows_by_epoch_and_step(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
        keys = sorted(k for k in rows[0] if k not in ("epoch", "step"))
        return sorted(
            (row["epoch"], row["step"], ",".join(k for k in keys if row[k])) for row in rows
        )

    # each (epoch, step, metrics logged) row once, as in the uninterrupted run
    assert rows_by_epoch_and_step(_csv_rows(run)) == rows_by_epoch_and_step(_csv_rows(whole))


def test_last_checkpoint_follows_every_epoch_when_the_metric_does_not_improve(
    flood_root: Path, tmp_path: Path
) -> None:
    """With lr 0 the monitored metric never improves after the first epoch: ``last.ckpt``
    must still be the last epoch's (Lightning's save_last only followed best.ckpt)."""
    run = tmp_path / "run"
    settings = {"trainer.max_epochs": 3, "optimizer.lr": 0.0, "optimizer.warmup_steps": 0}
    assert main(["fit", "demo", *overrides(flood_root, **settings), "--run-dir", str(run)]) == 0
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert (
        last["epoch"] == 2
        and last["global_step"] == json.loads((run / "metrics.json").read_text())["global_step"]
    )
    assert best["epoch"] == 0


def test_run_dir_with_other_recipe_is_refused(flood_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: something-else\n")
    assert main(["fit", "demo", *overrides(flood_root), "--run-dir", str(run)]) == 1
    assert "different recipe" in capsys.readouterr().err
    assert (run / "recipe.yaml").read_text() == "name: something-else\n"


def _assert_clean_failure(args: list[str], needle: str, run: Path, capsys) -> None:
    code = main([*args, "--run-dir", str(run)])
    err = capsys.readouterr().err
    assert code != 0
    assert needle in err, err
    assert "Traceback" not in err
    assert not run.exists()


def test_bad_input_wrong_band(flood_root: Path, tmp_path: Path, capsys) -> None:
    _assert_clean_failure(
        ["fit", "demo", *overrides(flood_root), "data.bands=[VV, VW]"],
        "'VW'",
        tmp_path / "run",
        capsys,
    )


def test_bad_input_corrupt_tiff(flood_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(flood_root, root)
    victim = root / "S1Hand" / "Spain_6860600_S1Hand.tif"
    victim.write_bytes(victim.read_bytes()[:300])
    _assert_clean_failure(
        ["fit", "demo", *overrides(root)], "Spain_6860600_S1Hand.tif", tmp_path / "run", capsys
    )


def test_bad_input_missing_label(flood_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    root = tmp_path / "data"
    shutil.copytree(flood_root, root)
    (root / "LabelHand" / "India_900498_LabelHand.tif").unlink()
    _assert_clean_failure(
        ["fit", "demo", *overrides(root)], "India_900498_LabelHand.tif", tmp_path / "run", capsys
    )


def test_bad_input_empty_data_root(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_clean_failure(["fit", "demo", *overrides(empty)], str(empty), tmp_path / "run", capsys)


def test_bad_input_recipe_typo(flood_root: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code = main(
        ["fit", "demo", *overrides(flood_root), "trainer.max_epohcs=3", "--run-dir", str(run)]
    )
    assert code == 2
    assert "trainer.max_epochs" in capsys.readouterr().err
    assert not run.exists()
