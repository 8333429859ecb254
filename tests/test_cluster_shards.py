"""Where a process's shard comes from, and ``--inputs-from`` (no model, no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eofm.cluster.inputs import read_input_list
from eofm.cluster.shards import select_shard
from eofm.errors import EofmError

ROOT = Path(__file__).resolve().parents[1]


def test_shard_sources_in_their_order() -> None:
    array = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    torchrun = {"RANK": "1", "WORLD_SIZE": "2"}
    srun = {"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}
    assert (select_shard(None, {}).index, select_shard(None, {}).count) == (0, 1)
    assert not select_shard(None, {}).sharded
    shard = select_shard(None, array | srun)
    assert (shard.index, shard.count) == (3 * 3 + 2, 12)  # srun splits each array task
    assert "SLURM_ARRAY_TASK_ID=3" in shard.source and "srun" in shard.source
    shard = select_shard(None, array | {"RANK": "0", "WORLD_SIZE": "1"})
    assert (shard.index, shard.count, shard.source) == (3, 4, "SLURM_ARRAY_TASK_ID=3 of 4")
    shard = select_shard(None, torchrun | srun)
    assert (shard.index, shard.count) == (1, 2) and "torchrun" in shard.source
    assert (select_shard(None, srun).index, select_shard(None, srun).count) == (2, 3)
    given = select_shard("0/5", array | torchrun | srun)  # typed by hand: it wins
    assert (given.index, given.count, given.source) == (0, 5, "--shard")
    assert given.sharded and str(given) == "shard 0/5 (--shard)"
    with pytest.raises(EofmError, match="out of range"):
        select_shard("3/2", {})
    with pytest.raises(EofmError, match="i/n"):
        select_shard("half", {})


def test_array_ids_count_from_the_arrays_first_index_in_its_steps() -> None:
    def shard(task: int, first: int, step: int = 1, count: int = 4) -> int:
        env = {
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_ARRAY_TASK_COUNT": str(count),
            "SLURM_ARRAY_TASK_MIN": str(first),
            "SLURM_ARRAY_TASK_STEP": str(step),
        }
        return select_shard(None, env).index

    assert [shard(t, 1) for t in (1, 2, 3, 4)] == [0, 1, 2, 3]  # --array=1-4
    assert [shard(t, 0, 2) for t in (0, 2, 4, 6)] == [0, 1, 2, 3]  # --array=0-6:2
    with pytest.raises(EofmError, match="range"):
        shard(3, 0, 2)  # not on the array's steps
    with pytest.raises(EofmError, match="SLURM_ARRAY_TASK_ID"):
        select_shard(None, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})


def test_round_robin_covers_every_scene_once() -> None:
    scenes = [f"s{i:02d}" for i in range(11)]
    taken = [select_shard(f"{i}/3", {}).take(scenes) for i in range(3)]
    assert sorted(s for part in taken for s in part) == scenes
    assert taken[1] == ["s01", "s04", "s07", "s10"]


def test_inputs_from_a_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.tif", "b.tif", "sub/c.tif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "scenes.txt"
    listing.write_text("# scenes of the run\n\na.tif\n  b.tif  \n**/c.tif\n")
    assert read_input_list(listing) == ["a.tif", "b.tif", "**/c.tif"]
    listing.write_text("a.tif\ngone.tif\n# x\nalso-gone-*.tif\n")
    with pytest.raises(EofmError) as caught:
        read_input_list(listing)
    message = str(caught.value)
    assert str(listing) in message and "line 2: gone.tif" in message
    assert "line 4: also-gone-*.tif" in message and "a.tif;" not in message
    listing.write_text("# nothing\n\n")
    with pytest.raises(EofmError, match="lists no input"):
        read_input_list(listing)
    with pytest.raises(EofmError, match="no such file"):
        read_input_list(tmp_path / "absent.txt")


def test_inputs_from_and_summarize_errors_come_at_once_without_torch(tmp_path: Path) -> None:
    listing = tmp_path / "scenes.txt"
    listing.write_text("missing.tif\n")
    code = (  # CPU seconds of main() itself, as tests/test_errors_before_torch.py measures
        "import sys, time; from eofm.cli import main; cpu = time.process_time(); "
        "rc = main(sys.argv[1:]); print(time.process_time() - cpu); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    cases = [
        (["--model", "run", "--inputs-from", str(listing), "--out", "o"], "line 1: missing.tif"),
        (["--summarize", str(tmp_path)], "No manifest-<i>-of-<n>.json"),
        (["--summarize", str(tmp_path), "--model", "run"], "without --model"),
        (["--model", "run", "--out", "o"], "needs inputs"),
    ]
    for args, expected in cases:
        proc = subprocess.run(
            [sys.executable, "-c", code, "predict", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr and "Traceback" not in proc.stderr
        assert float(proc.stdout.strip()) < 1.0, proc.stdout
