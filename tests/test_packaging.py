"""A non-editable wheel ships tasks/, recipes/ and hub/, and eofm finds them there."""

from __future__ import annotations

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
