"""ONNX (onnxruntime) vs PyTorch inference of one exported model on CPU, side by side.

The model is the demo's: Prithvi-EO-2.0-tiny with a LoRA adapter (merged at export) and
the progressive decoder (64 channels), random weights, 2 bands (Sentinel-1 VV/VH), with
the normalisation inside the graph. Both run the same batches of tiles in one process,
alternating, with the same thread count: PyTorch under ``torch.inference_mode``, the ONNX
graph (``eofm export``'s writer, dynamo exporter) in onnxruntime's CPU provider. Prints
and writes the median seconds per batch and the ratio torch / onnxruntime.

``--end-to-end N`` also times the whole command a user runs, start-up included:
``eofm predict`` of one N x N two-band scene (the bundled Nigeria chip, tiled) from a run
dir (the demo recipe, one epoch, random weights) and from its ``eofm export`` graph, each
in a fresh process, alternating, ``--e2e-repeats`` times; the class maps must be equal.

    python benchmarks/export_predict.py [--tile 224] [--batch 8] [--repeats 7] [--threads 2]
        [--end-to-end 1024] [--e2e-repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from _results import write_results

ROOT = Path(__file__).resolve().parent.parent
CHIP = ROOT / "samples/sen1floods11/S1Hand/Nigeria_812045_S1Hand.tif"


def _scene(path: Path, size: int) -> None:
    """An ``size`` x ``size`` scene: the real chip tiled, with its georeferencing."""
    import numpy as np
    import rasterio

    with rasterio.open(CHIP) as src:
        data, profile = src.read(), src.profile
    reps = (1, -(-size // data.shape[1]), -(-size // data.shape[2]))
    profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.tile(data, reps)[:, :size, :size])


def _eofm(*args: str, threads: int) -> float:
    import os
    import subprocess
    import sys

    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eofm", *args], check=True, env=env, cwd=ROOT)
    return time.perf_counter() - start


def end_to_end(size: int, tile: int, batch: int, repeats: int, threads: int) -> list[list]:
    """Rows of median wall seconds of ``eofm predict`` from the run dir and from its graph."""
    import numpy as np
    import rasterio

    work = Path(tempfile.mkdtemp(prefix="eofm-export-bench-"))
    run, graph, scene = work / "run", work / "model.onnx", work / "scene.tif"
    fit = ["fit", "recipes/demo.yaml", "--run-dir", str(run), "--allow-random-init"]
    _eofm(*fit, "trainer.max_epochs=1", "backbone.coords=false", threads=threads)
    _eofm("export", str(run), "--format", "onnx", "--tile", str(tile), "--dynamic-batch",
          "--output", str(graph), threads=threads)  # fmt: skip
    _scene(scene, size)
    common = [str(scene), "--tile", str(tile), "--batch-size", str(batch), "--no-progress"]
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for index in range(repeats):
        for name, model in (("torch", run), ("onnxruntime", graph)):
            out = work / f"{name}-{index}"
            times[name].append(_eofm("predict", "--model", str(model), *common, "--out",
                                     str(out), threads=threads))  # fmt: skip
    with rasterio.open(work / "torch-0/scene.tif") as a, rasterio.open(work / "onnxruntime-0/scene.tif") as b:  # fmt: skip
        same = float(np.mean(a.read(1) == b.read(1)))
    import shutil

    shutil.rmtree(work)
    median = {k: statistics.median(v) for k, v in times.items()}
    case = f"eofm predict {size}x{size} 2-band scene, tile {tile}, batch {batch}, start-up incl."
    machine = f"{platform.machine()}-{threads}threads"
    today = date.today().isoformat()
    rows = [
        [today, machine, code, case, "wall_s", f"{median[code]:.2f}"]
        + [f"{min(times[code]):.2f}-{max(times[code]):.2f}", repeats, 1]
        for code in ("torch", "onnxruntime")
    ]
    ratio = median["torch"] / median["onnxruntime"]
    rows.append(
        [today, machine, "ratio", case, "torch_over_onnxruntime", f"{ratio:.2f}", "", "", ""]
    )
    rows.append(
        [today, machine, "parity", case, "class_map_equal_fraction", f"{same:.4f}", "", "", ""]
    )
    return rows


def build(tile: int):
    from eofm.adapters import apply_adapter
    from eofm.commands.export import inference_module
    from eofm.models.segmentation import build_segmentation_model
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        "demo", ["backbone.pretrained=false", "backbone.coords=false", "adapter.mode=full"]
    )
    model = build_segmentation_model(recipe, num_classes=2, data_bands=["VV", "VH"])
    recipe.adapter.mode = "lora"
    apply_adapter(model, recipe.adapter)
    return inference_module(model, [-12.6, -20.3], [5.3, 5.9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N")
    parser.add_argument("--e2e-repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from eofm.commands.export import save_graph

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = build(args.tile)
    x = torch.randn(args.batch, 2, args.tile, args.tile) * 5 - 15
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        save_graph(module, x, "onnx", path, dynamic_batch=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        with torch.inference_mode():
            expected = module(x).numpy()
        (got,) = session.run(None, feed)
        diff = float(np.abs(got - expected).max())
        times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
        for _ in range(args.repeats + 1):  # the first round warms both up
            start = time.perf_counter()
            with torch.inference_mode():
                module(x)
            times["torch"].append(time.perf_counter() - start)
            start = time.perf_counter()
            session.run(None, feed)
            times["onnxruntime"].append(time.perf_counter() - start)
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    spread = {k: f"{min(v[1:]):.3f}-{max(v[1:]):.3f}" for k, v in times.items()}
    ratio = median["torch"] / median["onnxruntime"]
    case = f"prithvi_v2_tiny+lora(merged)+progressive64 batch{args.batch} {args.tile}px"
    today = date.today().isoformat()
    machine = f"{platform.machine()}-{args.threads}threads"
    rows = [
        [today, machine, f"torch=={torch.__version__}", case, "infer_s", f"{median['torch']:.3f}"]
        + [spread["torch"], args.repeats, 1],
        [today, machine, f"onnxruntime=={ort.__version__}", case, "infer_s"]
        + [f"{median['onnxruntime']:.3f}", spread["onnxruntime"], args.repeats, 1],
        [today, machine, "ratio", case, "torch_over_onnxruntime", f"{ratio:.2f}", "", "", ""],
        [today, machine, "parity", case, "max_abs_diff", f"{diff:.1e}", "", "", ""],
    ]
    if args.end_to_end:
        rows += end_to_end(args.end_to_end, args.tile, args.batch, args.e2e_repeats, args.threads)
    out = write_results("export_predict", rows)
    for row in rows:
        print(",".join(str(c) for c in row))
    print(f"torch / onnxruntime = {ratio:.2f} per batch (> 1: onnxruntime faster); see {out}")


if __name__ == "__main__":
    main()
