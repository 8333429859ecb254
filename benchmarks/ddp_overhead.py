"""The cost of going distributed: one process against two DDP processes on the CPU.

Prithvi-EO-2.0-tiny + the progressive decoder (64 channels), full fine-tuning, trains
on random 6-band chips with eofm's segmentation task, sampler and Lightning trainer
settings, at the same global batch both ways:

- ``1 process``: batch ``--batch``, with 2 torch threads and with 1;
- ``2 processes (DDP, gloo)``: batch ``--batch / 2`` on each rank, 1 thread each
  (Lightning's subprocess launcher starts rank 1).

``--configs`` lists them as ``PROCESSESxTHREADS``. Each configuration runs in a fresh
subprocess (so that its peak RSS is its own), one after the other in the same
invocation. On a loaded machine, two threads of one process wait for each other at
every parallel region when a neighbour holds one of the cores; one thread per process
does not, which the ``1x1`` row shows. Each rank times its training steps
(batch start to batch end, which includes DDP's gradient all-reduce; the first
``--warmup`` steps left out) and reports the median, and its peak RSS.

    python benchmarks/ddp_overhead.py [--steps 8] [--batch 8] [--size 128]
        [--configs 1x2,1x1,2x1] [--csv PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import append_results

ROOT = Path(__file__).resolve().parents[1]
BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def train(processes: int, threads: int, args: argparse.Namespace, out: Path) -> None:
    """One configuration (in its own process; Lightning re-runs this for rank 1)."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset

    from eofm.data.sampling import order_options
    from eofm.lightning_tasks.segmentation import SegmentationTask
    from eofm.models.segmentation import build_segmentation_model
    from eofm.recipe import load_recipe

    torch.set_num_threads(threads)
    L.seed_everything(0, verbose=False)
    recipe = load_recipe(
        {
            "backbone": {"name": "prithvi_eo_v2_tiny_tl", "pretrained": False},
            "adapter": {"mode": "full"},
            "decoder": {"name": "progressive", "channels": 64},
        }
    )
    model = build_segmentation_model(recipe, num_classes=2, data_bands=BANDS, pretrained=False)
    task = SegmentationTask(model, class_names=["dry", "water"], lr=1e-4, scheduler="none")

    class Chips(Dataset):
        def __len__(self) -> int:
            return (args.steps + args.warmup) * args.batch

        def __getitem__(self, index: int) -> dict:
            g = torch.Generator().manual_seed(index)
            image = torch.randn(6, args.size, args.size, generator=g)
            mask = torch.randint(0, 2, (args.size, args.size), generator=g)
            return {"image": image, "mask": mask, "chip": str(index)}

    def collate(samples: list[dict]) -> dict:
        n = len(samples)  # the TL coordinates that real chips carry: every parameter trains
        return {
            "image": torch.stack([s["image"] for s in samples]),
            "mask": torch.stack([s["mask"] for s in samples]),
            "temporal_coords": torch.tensor([[[2019.0, 200.0]]]).expand(n, 1, 2).clone(),
            "location_coords": torch.tensor([[45.0, 7.0]]).expand(n, 2).clone(),
        }

    chips = Chips()
    loader = DataLoader(
        chips,
        batch_size=args.batch // processes,
        collate_fn=collate,
        **order_options(len(chips), 0, shuffle=True),
    )

    class StepTimes(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *_: object) -> None:
            self.started = time.perf_counter()

        def on_train_batch_end(self, *_: object) -> None:
            self.times.append(time.perf_counter() - self.started)

    times = StepTimes()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=processes,
        strategy="ddp" if processes > 1 else "auto",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[times],
        limit_val_batches=0,
    )
    task.train()
    trainer.fit(task, train_dataloaders=loader)
    steps = times.times[args.warmup :]
    result = {
        "rank": trainer.global_rank,
        "steps": len(steps),
        "step_s": statistics.median(steps),
        "range": f"{min(steps):.3f}-{max(steps):.3f}",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    (out / f"{processes}x{threads}-rank{trainer.global_rank}.json").write_text(json.dumps(result))


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "eofm"
    return f"eofm@{sha}" if sha else "eofm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    parser.add_argument("--batch", type=int, default=8, help="global batch (even)")
    parser.add_argument("--size", type=int, default=128, help="chip size in pixels")
    parser.add_argument(
        "--configs", default="1x2,1x1,2x1", help="PROCESSESxTHREADS (per process), comma-separated"
    )
    parser.add_argument("--machine", default="cpu2-xeon-kvm")
    parser.add_argument("--csv", type=Path, help="append the rows to this results file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        processes, threads = (int(n) for n in args.one.split("x"))
        train(processes, threads, args, args.out)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in args.configs.split(","):
            processes = int(config.split("x")[0])
            subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--one", config, "--out", tmp],
                check=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for rank in range(processes):
                result = json.loads(Path(tmp, f"{config}-rank{rank}.json").read_text())
                rows.append((processes, rank, result))

    today = datetime.date.today().isoformat()
    print(f"\nglobal batch {args.batch}, {args.size}x{args.size} px")
    print(f"{'configuration':<38} {'rank':>4} {'step s':>8} {'range':>13} {'peak RSS MB':>12}")
    table = []
    for processes, rank, result in rows:
        case = (
            f"1 process, batch {args.batch}, {result['threads']} thread(s)"
            if processes == 1
            else f"2 processes (DDP gloo), batch {args.batch // 2} each, "
            f"{result['threads']} thread(s) each"
        )
        print(
            f"{case:<38.38} {rank:>4} {result['step_s']:>8.3f} {result['range']:>13} "
            f"{result['peak_rss_mb']:>12.0f}"
        )
        for metric in ("step_s", "peak_rss_mb"):
            table.append(
                {
                    "date": today,
                    "machine": args.machine,
                    "code": commit(),
                    "case": f"{case}, {args.size} px, rank {rank}",
                    "metric": metric,
                    "value": round(result[metric], 3 if metric == "step_s" else 0),
                    "range": result["range"] if metric == "step_s" else "",
                    "repeats": result["steps"] if metric == "step_s" else 1,
                    "run": 1,
                }
            )
    ddp = max((r[2]["step_s"] for r in rows if r[0] == 2), default=None)
    for processes, _, result in rows:
        if processes == 1 and ddp is not None:
            print(
                f"DDP step time / one process's with {result['threads']} thread(s): "
                f"{ddp / result['step_s']:.2f}"
            )
    if args.csv:
        append_results(args.csv, table)
        print(f"rows appended to {args.csv}")


if __name__ == "__main__":
    main()
