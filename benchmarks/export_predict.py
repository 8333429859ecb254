"""ONNX (onnxruntime) vs PyTorch inference of one exported model on CPU, side by side.

The model is the demo's: Prithvi-EO-2.0-tiny with a LoRA adapter (merged at export) and
the progressive decoder (64 channels), random weights, 2 bands (Sentinel-1 VV/VH), with
the normalisation inside the graph. Both run the same batches of tiles in one process,
alternating, with the same thread count: PyTorch under ``torch.inference_mode``, the ONNX
graph (``eofm export``'s writer, dynamo exporter) in onnxruntime's CPU provider. Prints
and writes the median seconds per batch and the ratio torch / onnxruntime.

    python benchmarks/export_predict.py [--tile 224] [--batch 8] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


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
    out = RESULTS / "export_predict-2026-12-06.csv"
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["date", "machine", "code", "case", "metric", "value", "range", "repeats", "run"]
        )
        writer.writerows(rows)
    for row in rows:
        print(",".join(str(c) for c in row))
    print(f"torch / onnxruntime = {ratio:.2f} (> 1: onnxruntime faster); written to {out}")


if __name__ == "__main__":
    main()
