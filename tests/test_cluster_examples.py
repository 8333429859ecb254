"""The cluster examples run: their eofm command lines, read from the files (so that a
changed example is what is tested), with the Slurm / torchrun variables faked, on CPU."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from eofm.cli import main
from tests.runs import make_run_dir
from tests.test_cluster_predict import LAUNCHER_VARIABLES, make_scenes, slurm

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "examples" / "slurm" / "predict_array.sbatch"
TORCHRUN = ROOT / "examples" / "torchrun_predict.sh"


def commands(script: Path) -> list[list[str]]:
    """The script's commands (continued lines joined, comments and shell set-up left out)."""
    text = re.sub(r"\\\n\s*", " ", script.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(("eofm ", "torchrun "))]


def eofm_argv(command: list[str], env: dict[str, str]) -> list[str]:
    """The arguments after ``eofm``, with the script's variables expanded from ``env``."""
    start = command.index("eofm")
    expanded = [re.sub(r"\$(\w+)", lambda m: env[m.group(1)], a) for a in command[start + 1 :]]
    return expanded


@pytest.fixture
def setting(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    run = make_run_dir(
        tmp_path / "run", ["BLUE", "GREEN", "RED"], [9000.0, 8500.0, 8000.0], [1500.0] * 3
    )
    scenes = make_scenes(tmp_path / "scenes", count=5)
    listing = tmp_path / "scenes.txt"
    listing.write_text("\n".join(str(p) for p in scenes) + "\n")
    return {"RUN": str(run), "SCENES": str(listing), "OUT": str(tmp_path / "out"), "NPROC": "2"}


def covered(out: Path) -> list[str]:
    found = [
        Path(s["input"]).name
        for m in sorted(out.glob("manifest-*-of-*.json"))
        for s in json.loads(m.read_text())["scenes"]
        if s["status"] == "done"
    ]
    return sorted(found)


def test_scripts_are_valid_bash() -> None:
    for script in (SBATCH, TORCHRUN):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_slurm_array_example(setting: dict[str, str], monkeypatch) -> None:
    directives = re.findall(r"^#SBATCH --array=(\d+)-(\d+)$", SBATCH.read_text(), re.M)
    assert directives, "the example submits a job array"
    (predict,) = commands(SBATCH)
    assert predict[:2] == ["eofm", "predict"]
    tasks = 3  # the array's size is the scheduler's business; three tasks here, from 0 as there
    first = int(directives[0][0])
    for task in range(tasks):
        with monkeypatch.context() as patch:
            for name, value in (setting | slurm(task, tasks, first=first)).items():
                patch.setenv(name, value)
            assert main(eofm_argv(predict, setting)) == 0
    out = Path(setting["OUT"])
    assert covered(out) == [f"scene{i}.tif" for i in range(5)]
    assert sorted(p.name for p in out.glob("manifest-*")) == [
        f"manifest-{i}-of-{tasks}.json" for i in range(tasks)
    ]


def test_torchrun_example(setting: dict[str, str], monkeypatch) -> None:
    from torch.distributed.run import get_args_parser

    launch, summarize = commands(TORCHRUN)
    assert launch[0] == "torchrun" and summarize[:3] == ["eofm", "predict", "--summarize"]
    options = get_args_parser().parse_args(eofm_argv(["eofm", *launch[1:]], setting))
    assert options.no_python and options.training_script == "eofm"  # torchrun takes them
    world = int(options.nproc_per_node)
    for rank in range(world):
        env = setting | {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            assert main(eofm_argv(launch, setting)) == 0
    assert covered(Path(setting["OUT"])) == [f"scene{i}.tif" for i in range(5)]
    assert main(eofm_argv(summarize, setting)) == 0
    assert sorted(p.name for p in Path(setting["OUT"]).glob("mosaic-*.vrt")) == [
        "mosaic-EPSG_32621.vrt",
        "mosaic-EPSG_32722.vrt",
    ]
    assert os.path.isfile(Path(setting["OUT"]) / "summary.json")
