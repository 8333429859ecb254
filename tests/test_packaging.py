"""A non-editable wheel ships tasks/, recipes/ and hub/, and eofm finds them there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_recipes_tasks_and_hub(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("eofm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("recipes", "tasks", "hub"):
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).iterdir() if p.is_file()}
        packed = {
            n.removeprefix("eofm/_resources/")
            for n in names
            if n.startswith(f"eofm/_resources/{folder}/")
        }
        assert shipped and shipped == packed, folder
    assert "eofm/cli.py" in names
    assert "eofm/data/boundaries/ne_110m_countries.geojson" in names  # by: country splits
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "eofm = eofm.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # installed (non-editable) into a bare target, the CLI lists the packed recipes
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from eofm.cli import main; main(['recipes'])",
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert "sen1floods11_s2_prithvi_v2_300_tl_lora" in proc.stdout
    # the demo's bundled samples are in the wheel, and the demo recipe finds them there
    samples = {n for n in names if n.startswith("eofm/_resources/samples/sen1floods11/")}
    assert any(n.endswith("_S1Hand.tif") for n in samples)
    assert any(n.endswith("flood_valid_data.csv") for n in samples)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from eofm.recipe import load_recipe; "
            "r = load_recipe('demo'); r.data.check_files('demo'); print(r.data.root)",
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert Path(proc.stdout.strip()) == target / "eofm" / "_resources" / "samples" / "sen1floods11"


def test_demo_trains_from_another_folder(tmp_path: Path) -> None:
    """``eofm fit demo`` finds its bundled samples whatever the current folder (issue 33)."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    args = [
        "fit", "demo", "backbone.pretrained=false", "decoder.channels=8", "data.crop_size=64",
        "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false", "--run-dir", "run",
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "eofm", *args],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (work / "samples").exists()
