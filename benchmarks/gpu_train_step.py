"""GPU training throughput and model FLOP utilisation, through the code path of ``eofm fit``.

The model and the LightningModule come from the recipe through the task family (exactly
what ``eofm fit`` builds); Lightning's Trainer runs the steps with the recipe's precision
(``auto``: bf16-mixed). Printed per configuration: images/s (median step), peak GPU
memory, achieved TFLOP/s (forward + backward FLOPs counted by
``torch.utils.flop_counter``), and that as a share of a bf16 GEMM (8192^3) measured in the
same run. Without CUDA it says so and measures nothing.

    python benchmarks/gpu_train_step.py [--steps 30] [--configs 300tl-full-bs32,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: name -> (backbone, adapter mode, batch size, trainer.compile)
CONFIGS = {
    "300tl-full-bs32": ("prithvi_eo_v2_300_tl", "full", 32, False),
    "300tl-full-bs32-compiled": ("prithvi_eo_v2_300_tl", "full", 32, True),
    "300tl-full-bs64": ("prithvi_eo_v2_300_tl", "full", 64, False),
    "600tl-full-bs16": ("prithvi_eo_v2_600_tl", "full", 16, False),
    "tinytl-full-bs32": ("prithvi_eo_v2_tiny_tl", "full", 32, False),
    "300tl-frozen-bs32": ("prithvi_eo_v2_300_tl", "frozen", 32, False),
}


def gemm_tflops(size: int = 8192, repeats: int = 20) -> float:
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def measure(name: str, steps: int) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torch.utils.flop_counter import FlopCounterMode

    from eofm.families.base import family_of
    from eofm.recipe import load_recipe
    from eofm.train.trainer import build_trainer, compile_model

    backbone, adapter, batch, compiled = CONFIGS[name]
    recipe = load_recipe(
        "sen1floods11_s2_prithvi_v2_300_tl_lora",
        [
            f"backbone.name={backbone}",
            "backbone.pretrained=false",
            f"adapter.mode={adapter}",
            "decoder.name=upernet",
            "decoder.channels=256",
            f"data.batch_size={batch}",
            "trainer.accelerator=gpu",
            "trainer.devices=1",
            "trainer.precision=auto",
            f"trainer.max_steps={steps}",
            "trainer.enable_progress_bar=false",
            "trainer.limit_val_batches=0",
            f"trainer.compile={'true' if compiled else 'false'}",
        ],
    )
    family = family_of(recipe)
    bands = recipe.data.bands
    model = family.build_model(recipe, bands=bands, pretrained=False, allow_random_init=True)

    class Synthetic(Dataset):
        def __len__(self) -> int:
            return batch * (steps + 1)

        def __getitem__(self, i: int) -> dict:
            g = torch.Generator().manual_seed(i)
            return {
                "image": torch.randn(len(bands), 224, 224, generator=g),
                "mask": torch.randint(0, 2, (224, 224), generator=g),
            }

    class Stats:  # what build_task reads from a datamodule
        mean, std = [0.0] * len(bands), [1.0] * len(bands)

    task = family.build_task(recipe, model, Stats())
    compile_model(model, recipe.trainer.compile)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.steps: list[float] = []

        def on_train_batch_start(self, *_):
            torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_train_batch_end(self, *_):
            torch.cuda.synchronize()
            self.steps.append(time.perf_counter() - self.started)

    clock = Clock()
    trainer = build_trainer(recipe, None, callbacks=[clock])
    torch.cuda.reset_peak_memory_stats()
    loader = DataLoader(Synthetic(), batch_size=batch, num_workers=4, pin_memory=True)
    trainer.fit(task, train_dataloaders=loader)
    step = statistics.median(clock.steps[5:] or clock.steps)
    peak_gb = torch.cuda.max_memory_allocated() / 2**30
    x = torch.randn(batch, len(bands), 224, 224, device="cuda")
    with FlopCounterMode(display=False) as counter, torch.autocast("cuda", dtype=torch.bfloat16):
        model.to("cuda").train()
        out = model(x)
        out.float().mean().backward()
    flops = counter.get_total_flops()
    return {
        "img_s": batch / step,
        "step_s": step,
        "peak_gb": peak_gb,
        "tflops": flops / step / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument(
        "--configs", default="300tl-full-bs32,300tl-full-bs32-compiled,tinytl-full-bs32"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_train_step: CUDA is not available on this machine; nothing was measured.")
        return
    peak = gemm_tflops()
    print(f"{torch.cuda.get_device_name()}: bf16 GEMM 8192^3 {peak:.0f} TFLOP/s (measured now)")
    print(
        f"{'configuration':<26} {'img/s':>8} {'step s':>8} {'peak GB':>8} {'TFLOP/s':>8} {'of GEMM':>8}"
    )
    for name in args.configs.split(","):
        r = measure(name, args.steps)
        print(
            f"{name:<26} {r['img_s']:>8.0f} {r['step_s']:>8.3f} {r['peak_gb']:>8.1f} "
            f"{r['tflops']:>8.0f} {100 * r['tflops'] / peak:>7.0f}%"
        )


if __name__ == "__main__":
    main()
