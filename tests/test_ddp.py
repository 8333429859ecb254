"""``eofm fit`` on two processes with Lightning's DDP (CPU, gloo), and what it shares out.

Issue 38 items 1 and 2. One DDP run, in two sessions, checks the whole list: the first
session trains epoch 0 and dies in epoch 1, when rank 1 alone cannot read a chip; the
second resumes it. Lightning's subprocess launcher starts rank 1 by running the same
command again (``tests/ddp_driver.py`` records what each rank reads and writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from eofm.cli import main
from eofm.data import sampling
from eofm.data.sampling import EpochShuffle, InOrderShard
from eofm.errors import EofmError
from tests.realdata import make_s2hand_chips

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["India_900498", "Nigeria_812045", "Spain_6860600", "Sri-Lanka_534068"]
VAL = ["India_900498", "Spain_6860600", "Sri-Lanka_534068"]  # 3: one rank gets 2, one 1
REPEATS, BATCH, EPOCHS, WORLD = 2, 2, 2, 2


def _shares(monkeypatch, sampler, world: int) -> list[list[int]]:
    shares = []
    for rank in range(world):
        monkeypatch.setattr(sampling, "process_share", lambda rank=rank: (rank, world))
        shares.append(list(sampler))
        assert len(sampler) == len(shares[-1])
    return shares


@pytest.mark.parametrize("size", [8, 7])
def test_epoch_shuffle_shares_each_epoch_between_the_ranks(monkeypatch, size: int) -> None:
    """Every rank draws the single process's permutation of (seed, epoch) and keeps its
    stride of it; the ranks take equal steps (padded as DistributedSampler pads)."""
    sampler = EpochShuffle(size, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        whole = list(sampler)  # no process group: one process
        shares = _shares(monkeypatch, sampler, WORLD)
        assert len(shares[0]) == len(shares[1]) == -(-size // WORLD)
        seen = Counter(shares[0] + shares[1])
        assert set(seen) == set(range(size))
        assert sum(seen.values()) - size == (-size) % WORLD  # padding only to even out
        assert [i for pair in zip(*shares, strict=True) for i in pair][:size] == whole
        monkeypatch.setattr(sampling, "process_share", lambda: (0, 1))


def test_evaluation_is_shared_by_whole_batches_without_padding(monkeypatch) -> None:
    sampler = InOrderShard(5, seed=0, batch_size=2)
    assert _shares(monkeypatch, sampler, WORLD) == [[0, 1, 4], [2, 3]]
    with pytest.raises(EofmError, match="fewer than the 4 processes"):
        _shares(monkeypatch, sampler, 4)


class _Encoder(torch.nn.Module):
    """The least a model needs for the latent cache: ``encode_batch`` and ``INPUT_KEYS``."""

    INPUT_KEYS = ("image",)

    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0

    def encode_batch(self, batch: dict) -> dict:
        self.encoded += len(batch["image"])
        return {"latent": batch["image"] * 2}


class _Data:
    batch_size, num_workers, seed = 2, 0, 0

    def fingerprint(self, split: str) -> dict:
        return {"split": split, "files": []}

    def dataset(self, split: str) -> list[dict]:
        return [{"image": torch.full((2,), float(i))} for i in range(3)]

    @staticmethod
    def collate(samples: list[dict]) -> dict:
        return {"image": torch.stack([s["image"] for s in samples])}


def test_latent_cache_is_built_by_local_rank_zero_while_the_others_wait(tmp_path: Path) -> None:
    """A rank that does not build (``builds=False``, as ranks > 0 are) waits for the
    entry under its file lock, then reads it; the builder encodes every sample once."""
    from eofm.train.cache import CachedDataModule, LatentCache

    cache = LatentCache(tmp_path / "cache")
    waiter_model, builder_model = _Encoder(), _Encoder()
    found: dict[str, CachedDataModule] = {}
    waiter = threading.Thread(
        target=lambda: found.setdefault(
            "waiter",
            CachedDataModule(
                _Data(), waiter_model, cache, {"b": 1}, splits=["train"], builds=False
            ),
        )
    )
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and not cache.entries()  # waiting: nothing was built
    built = CachedDataModule(_Data(), builder_model, cache, {"b": 1}, splits=["train"])
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert (builder_model.encoded, waiter_model.encoded) == (3, 0)
    assert built.hits == {"train": False} and found["waiter"].hits == {"train": True}
    assert torch.equal(
        found["waiter"].datasets["train"].tensors["latent"],
        built.datasets["train"].tensors["latent"],
    )
    assert len(cache.entries()) == 1


def test_a_ranks_collective_error_is_one_line_naming_the_way_out() -> None:
    """A peer's death and DDP's unused-parameter refusal (a TL backbone fed no
    coordinates has two such parameters) each end a rank with one line."""
    from eofm.train.distributed import stopped_by_another_rank

    peer = RuntimeError("[pair.cc:561] Connection closed by peer [127.0.0.1]:3061.\nmore")
    assert str(stopped_by_another_rank(0, 2, peer)).startswith(
        "DDP process 0 of 2 stopped: [pair.cc:561] Connection closed by peer"
    )
    unused = RuntimeError(
        "It looks like your LightningModule has parameters that were not used in producing "
        "the loss returned by training_step. If this is intentional, you must enable ..."
    )
    message = str(stopped_by_another_rank(1, 2, unused))
    assert "trainer.strategy=ddp_find_unused_parameters_true" in message and "\n" not in message


# --- the DDP run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s2_root(tmp_path_factory) -> Path:
    root = make_s2hand_chips(tmp_path_factory.mktemp("ddp") / "HandLabeled")
    splits = root / "splits"
    splits.mkdir()
    for name, chips in (("train", TRAIN), ("val", VAL), ("test", ["Nigeria_812045"])):
        lines = "".join(f"{c}_S2Hand.tif,{c}_LabelHand.tif\n" for c in chips)
        (splits / f"{name}.csv").write_text(lines)
    return root


def ddp_args(root: Path, run: Path) -> list[str]:
    values = {
        **{
            f"data.split_csv.{s}": str(root / "splits" / f"{s}.csv")
            for s in ("train", "val", "test")
        },
        "data.root": str(root),
        "data.train_repeats": REPEATS,
        "data.batch_size": BATCH,
        "data.crop_size": 64,  # whole chips, no flips: the frozen backbone's latents are cached
        "data.hflip": "false",
        "data.num_workers": 0,
        "backbone.name": "prithvi_eo_v2_tiny_tl",
        "backbone.pretrained": "false",
        "adapter.mode": "frozen",
        "decoder.name": "progressive",
        "decoder.channels": 16,
        "trainer.max_epochs": EPOCHS,
        "trainer.precision": "32-true",
        "trainer.enable_progress_bar": "false",
        "trainer.accelerator": "cpu",
        "trainer.devices": WORLD,
        "trainer.strategy": "ddp",
    }
    overrides = [f"{k}={v}" for k, v in values.items()]
    return ["fit", "sen1floods11_s2_prithvi_v2_300_tl_lora", *overrides, "--run-dir", str(run)]


def run_ddp(args: list[str], record: Path, cache: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.ddp_driver", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,  # a rank that hangs fails the test rather than the suite
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "EOFM_CACHE_DIR": str(cache),
            "EOFM_TEST_RECORD": str(record),
            **env,
        },
    )


def rank_shares(epoch: int) -> list[list[str]]:
    """The chips each rank should train on in ``epoch`` (dataset index i is chip i % 4)."""
    sampler = EpochShuffle(len(TRAIN) * REPEATS, seed=0)
    sampler.set_epoch(epoch)
    order = sampler.order()
    return [[TRAIN[i % len(TRAIN)] for i in order[rank::WORLD]] for rank in range(WORLD)]


def read_record(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ddp_fit_on_two_processes(s2_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = ddp_args(s2_root, run)
    # a chip that rank 1 alone reads in epoch 1
    only_rank_1 = sorted(set(rank_shares(1)[1]) - set(rank_shares(1)[0]))
    assert only_rank_1

    # session 1: rank 1 fails in epoch 1; the job goes down, no rank hangs
    first = tmp_path / "first.jsonl"
    failed = run_ddp(args, first, cache, EOFM_TEST_UNREADABLE=only_rank_1[0])
    errors = [line for line in failed.stderr.splitlines() if line.startswith("eofm: error:")]
    assert failed.returncode != 0, failed.stderr[-3000:]
    assert any(only_rank_1[0] in line and "Cannot read" in line for line in errors), errors
    assert any("DDP process 0 of 2 stopped" in line for line in errors), errors
    assert len(errors) == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert not (run / "metrics.json").exists()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    log1 = failed.stdout + failed.stderr
    # the latent cache: built once, by rank 0 (its children start at trainer.fit), read by rank 1
    for split in ("train", "val"):
        assert log1.count(f"Cached {split} latents") == 1, log1[-3000:]
        assert log1.count(f"Latent cache hit for {split}") == 1, log1[-3000:]
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(entries) == 2 and all((cache / e / "entry.json").is_file() for e in entries)

    # session 2: the same command resumes at epoch 2 (1-based) and finishes
    second = tmp_path / "second.jsonl"
    resumed = run_ddp(args, second, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log2 = resumed.stdout + resumed.stderr
    assert "at epoch 2" in log2 and "Cached" not in log2
    for split in ("train", "val"):
        assert log2.count(f"Latent cache hit for {split}") == WORLD
    metrics = json.loads((run / "metrics.json").read_text())
    steps = len(TRAIN) * REPEATS // WORLD // BATCH
    assert metrics["epochs"] == EPOCHS and metrics["global_step"] == EPOCHS * steps
    assert metrics["latent_cache"]["hits"] == {"train": True, "val": True}

    # each training chip once per repeat and epoch across the ranks, in the shares of
    # EpochShuffle (Lightning kept the sampler); epoch 0 from session 1, epoch 1 from 2
    for epoch, record in ((0, first), (1, second)):
        batches = [e for e in read_record(record) if e.get("epoch") == epoch]
        by_rank = [[c for e in batches if e["rank"] == r for c in e["chips"]] for r in range(WORLD)]
        assert by_rank == rank_shares(epoch), epoch
        assert Counter(by_rank[0] + by_rank[1]) == dict.fromkeys(TRAIN, REPEATS)

    # every file written by rank 0 alone, once per session (last.ckpt once per epoch)
    for record, epochs in ((first, 1), (second, 1)):
        writes = [e for e in read_record(record) if "wrote" in e]
        assert {e["rank"] for e in writes} == {0} and len({e["pid"] for e in writes}) == 1
        counts = Counter(Path(e["wrote"]).name for e in writes)
        assert counts["last.ckpt"] == epochs and counts["recipe.yaml"] == counts["model.json"] == 1
        assert all(n == 1 for name, n in counts.items() if name != "last.ckpt"), counts
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    events = [f for f in files if "tfevents" in f]
    assert len(events) == 2  # one per session, none from rank 1
    assert [f for f in files if f not in events] == [
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "curves.png",
        "logs/csv/metrics.csv",
        "logs/tensorboard/hparams.yaml",
        "metrics.json",
        "model.json",
        "recipe.yaml",
    ]
    rows = [r for r in _csv(run) if r.get("val/mIoU")]
    assert sorted(int(r["epoch"]) for r in rows) == list(range(EPOCHS))  # each epoch once

    # validation metrics reduced over the ranks equal one process's on the same checkpoint
    # (eofm test, one process, with the validation chips as its test split)
    val_csv = s2_root / "splits" / "val.csv"
    assert main(["test", str(run), "--checkpoint", "last", f"data.split_csv.test={val_csv}"]) == 0
    single = json.loads((run / "test_metrics.json").read_text())["metrics"]
    reduced = {
        k.removeprefix("val/"): v for k, v in metrics["metrics"].items() if k.startswith("val/")
    }
    assert reduced.keys() == {k.removeprefix("test/") for k in single}
    for key, value in reduced.items():
        assert single[f"test/{key}"] == pytest.approx(value, rel=1e-4, abs=1e-6), key

    # eofm test and calibrate run on one process: started as several, they refuse
    capsys.readouterr()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    for command in ("test", "calibrate"):
        assert main([command, str(run)]) == 2
        assert f"eofm {command} runs on one process" in capsys.readouterr().err


def _csv(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "logs" / "csv" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_slurm_example_runs_a_valid_ddp_recipe(tmp_path: Path) -> None:
    """``examples/slurm/fit_ddp.sbatch`` under bash, with the variables sbatch sets for
    the whole job faked (2 nodes of 4 tasks) and ``srun`` a stub that records its
    arguments: the eofm command line it launches parses, and its recipe is a DDP run
    over the allocation that a failing rank ends (``--kill-on-bad-exit``)."""
    from eofm.cli import _parse
    from eofm.recipe import load_recipe

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_ARGS"\n')
    stub.chmod(0o755)
    recorded = tmp_path / "srun_args"
    env = {
        **os.environ,
        "PATH": f"{stub.parent}:{os.environ['PATH']}",
        "SRUN_ARGS": str(recorded),
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_NTASKS": "8",
    }
    script = ROOT / "examples" / "slurm" / "fit_ddp.sbatch"
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True, timeout=60)
    srun_options, command = (
        recorded.read_text().splitlines()[:1],
        recorded.read_text().splitlines()[1:],
    )
    assert srun_options == ["--kill-on-bad-exit=1"] and command[:2] == ["eofm", "fit"]
    args = _parse(command[1:])
    recipe = load_recipe(args.recipe, args.overrides)  # the recipe's checks, before torch
    trainer = recipe.trainer
    assert (trainer.strategy, trainer.devices, trainer.num_nodes) == ("ddp", 4, 2)
    assert trainer.accelerator == "gpu" and trainer.sync_batchnorm is True
    assert args.run_dir == Path("runs") / f"{recipe.name}-ddp"
