"""Aurora hydrology: full fine-tuning vs LoRA vs frozen decoders, with and without the cache.

Runs AuroraSmallPretrained on the real ERA5 sample (../shared/data/era5, cropped to a
grid Aurora's patch size divides) with the shipped hydrology recipes. Each set-up runs
in its own process, so that peak RSS is its own:

  (a) full fine-tuning with new output heads      adapter.mode=full,   cache off
  (b) LoRA (rank 8 on the Swin attention)          adapter.mode=lora,   cache off
  (c) frozen backbone, decoders, no cache          adapter.mode=frozen, cache off
  (d) frozen backbone, decoders, latent cache      adapter.mode=frozen, cache on

Epoch 1 of (d) includes encoding the training split into the cache. Later epochs are
the median of epochs 2..N. The weights are randomly initialised (no Hub here): timing and
memory do not depend on the weight values.

Usage: python benchmarks/aurora_decoder_vs_finetune.py [--epochs 4] [--grid 40x40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ERA5 = ROOT.parent / "shared" / "data" / "era5"
SETUPS = {
    "a": ("full fine-tune + heads", "era5_aurora_hydrology_finetune", "full", "off"),
    "b": ("LoRA r8 + heads", "era5_aurora_hydrology_finetune", "lora", "off"),
    "c": ("frozen + decoders, no cache", "era5_aurora_hydrology_decoder", "frozen", "off"),
    "d": ("frozen + decoders + cache", "era5_aurora_hydrology_decoder", "frozen", "on"),
}


def child(setup: str, epochs: int, grid: tuple[int, int], cache_dir: str) -> dict:
    import resource
    import time

    import lightning as L
    import torch

    from eofm.commands.fit import cached_datamodule
    from eofm.families.base import family_of
    from eofm.models.base import count_parameters
    from eofm.recipe import load_recipe

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    _, recipe_name, adapter, cache = SETUPS[setup]
    rows, cols = grid
    overrides = [
        f"data.root={ERA5}",
        "backbone.pretrained=false",
        f"adapter.mode={adapter}",
        f"cache.mode={cache}",
        f"cache.dir={cache_dir}",
        f"data.lat_range=[55.0, {55.0 - 0.25 * (rows - 1)}]",
        f"data.lon_range=[0.0, {0.25 * (cols - 1)}]",
    ]
    recipe = load_recipe(recipe_name, overrides)
    L.seed_everything(0, verbose=False)
    family = family_of(recipe)
    datamodule = family.build_datamodule(recipe)
    model = family.build_model(recipe, bands=None, pretrained=False)
    started = time.perf_counter()
    cached = cached_datamodule(recipe, datamodule, model, family)
    cache_seconds = time.perf_counter() - started
    task = family.build_task(recipe, model, datamodule)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.epochs: list[float] = []
            self.steps: list[float] = []

        def on_train_epoch_start(self, *_):
            self.epoch_start = time.perf_counter()

        def on_train_batch_start(self, *_):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, *_):
            self.steps.append(time.perf_counter() - self.step_start)

        def on_train_epoch_end(self, *_):
            self.epochs.append(time.perf_counter() - self.epoch_start)

    clock = Clock()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    if cached is not None:
        trainer.fit(task, train_dataloaders=cached.train_dataloader())
    else:
        trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    trainable, total = count_parameters(model)
    steps_per_epoch = len(clock.steps) // epochs
    later_steps = clock.steps[steps_per_epoch:]
    return {
        "first_epoch_s": clock.epochs[0] + (cache_seconds if cached is not None else 0.0),
        "later_epoch_s": statistics.median(clock.epochs[1:]),
        "step_s": statistics.median(later_steps),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable": trainable,
        "total": total,
        "steps_per_epoch": steps_per_epoch,
        "cache_build_s": cache_seconds if cached is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--grid", default="40x40", help="rows x columns (multiples of 4)")
    parser.add_argument("--setups", default="abcd")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, cols = (int(v) for v in args.grid.lower().split("x"))
    if args.child:
        result = child(args.child, args.epochs, (rows, cols), args.cache_dir)
        print("RESULT " + json.dumps(result), flush=True)
        return
    if not ERA5.is_dir():
        sys.exit(f"ERA5 sample not found at {ERA5}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="eofm-bench-cache-") as cache_dir:
        for setup in args.setups:
            cmd = [sys.executable, __file__, "--child", setup, "--epochs", str(args.epochs)]
            cmd += ["--grid", args.grid, "--cache-dir", cache_dir]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"setup {setup} failed:\n{done.stderr[-3000:]}")
            results[setup] = json.loads(lines[-1][len("RESULT ") :])
            print(f"  ({setup}) done", file=sys.stderr, flush=True)
    base = results.get("a")
    print(
        f"\nAuroraSmallPretrained (random init), real ERA5 {rows}x{cols}, 10 levels, "
        f"{results[next(iter(results))]['steps_per_epoch']} steps/epoch, "
        f"{args.epochs} epochs, {min(2, os.cpu_count() or 1)} threads"
    )
    header = (
        f"{'set-up':<32}{'step s':>8}{'epoch 1 s':>11}{'later epoch s':>15}"
        f"{'vs (a)':>8}{'peak RSS MB':>13}{'vs (a)':>8}{'trainable':>13}"
    )
    print(header)
    print("-" * len(header))
    for setup, r in results.items():
        t_ratio = f"{r['later_epoch_s'] / base['later_epoch_s'] - 1:+.0%}" if base else ""
        m_ratio = f"{r['peak_rss_mb'] / base['peak_rss_mb'] - 1:+.0%}" if base else ""
        print(
            f"({setup}) {SETUPS[setup][0]:<28}{r['step_s']:>8.3f}{r['first_epoch_s']:>11.2f}"
            f"{r['later_epoch_s']:>15.3f}{t_ratio:>8}{r['peak_rss_mb']:>13.0f}{m_ratio:>8}"
            f"{r['trainable']:>13,}"
        )
    print("targets: (d) later epochs <= -80% of (a), peak RSS <= -50% of (a)")


if __name__ == "__main__":
    main()
