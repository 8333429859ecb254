"""Train-step and inference time of Prithvi-EO-2.0-tiny + decoders at 6x224x224 on CPU.

Prints the median seconds per step and the peak RSS of each configuration, each run in a
fresh subprocess so that peak RSS is its own. Configurations:

- UPerNet with 256 channels (the peer's configuration) with our factorized fuse (default),
  and with the original concat fuse, for the side-by-side comparison
- the CPU-lean progressive decoder (64 channels)

Train step = forward, cross-entropy, backward, AdamW step at batch 4 (full fine-tuning).
Inference = forward under ``torch.inference_mode`` at batch 8.

    python benchmarks/train_step.py [--repeats 7] [--threads 2] [--peer-python PATH]

``--peer-python`` names the interpreter of a separate venv holding TerraTorch 1.2.11
(``pip install torch==2.14.1 torchvision==0.29.1 terratorch==1.2.11``); the peer's
Prithvi-v2-tiny + UPerNet(256) is then measured in the same run, side by side. Without
it, the peer's figures measured earlier on this machine are shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PEER = {"train_s": 2.26, "infer_s": 1.28, "peak_rss_gb": 1.84}  # TerraTorch 1.2.11, same machine
BANDS = ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def build_eofm(decoder: str, channels: int, fuse: str):
    from eofm.models.segmentation import build_segmentation_model
    from eofm.recipe import load_recipe

    recipe = load_recipe(
        {
            "backbone": {"name": "prithvi_eo_v2_tiny_tl", "pretrained": False},
            "adapter": {"mode": "full"},
            "decoder": {"name": decoder, "channels": channels, "fuse": fuse},
        }
    )
    return build_segmentation_model(recipe, num_classes=2, data_bands=BANDS, pretrained=False)


def build_peer():
    """TerraTorch's documented factory: Prithvi-v2-tiny, ViT neck to a pyramid, UPerNet(256)."""
    from terratorch.models import EncoderDecoderFactory

    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone="prithvi_eo_v2_tiny_tl",
        backbone_pretrained=False,
        backbone_bands=BANDS,
        necks=[
            {"name": "SelectIndices", "indices": [2, 5, 8, 11]},
            {"name": "ReshapeTokensToImage"},
            {"name": "LearnedInterpolateToPyramidal"},
        ],
        decoder="UperNetDecoder",
        decoder_channels=256,
        num_classes=2,
    )
    return lambda x, m=model: m(x).output, model


def run_one(decoder: str, channels: int, fuse: str, repeats: int, threads: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if decoder == "peer":
        forward, model = build_peer()
    else:
        model = build_eofm(decoder, channels, fuse)
        forward = model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x4, y4 = torch.randn(4, 6, 224, 224), torch.randint(0, 2, (4, 224, 224))
    x8 = torch.randn(8, 6, 224, 224)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(x4), y4, ignore_index=-1)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode():
            forward(x8)

    def median_time(step) -> float:
        step()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    model.train()
    train_s = median_time(train_step)
    model.eval()
    infer_s = median_time(infer_step)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"train_s": train_s, "infer_s": infer_s, "peak_rss_gb": rss_gb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peer-python", help="interpreter of a venv with terratorch 1.2.11")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        decoder, channels, fuse = args.one
        print(json.dumps(run_one(decoder, int(channels), fuse, args.repeats, args.threads)))
        return
    configs = {
        "upernet(256)": ("upernet", 256, "factorized"),
        "upernet(256) concat": ("upernet", 256, "concat"),
        "progressive(64)": ("progressive", 64, "factorized"),
    }
    peer = dict(PEER)
    if args.peer_python:
        configs = {"peer UPerNet(256)": ("peer", 256, "-"), **configs}
    results = {}
    for name, (decoder, channels, fuse) in configs.items():
        out = subprocess.run(
            [
                args.peer_python if decoder == "peer" else sys.executable,
                __file__,
                "--one",
                decoder,
                str(channels),
                fuse,
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    if "peer UPerNet(256)" in results:
        peer = results["peer UPerNet(256)"]
        source = "measured in this run"
    else:
        results = {"peer UPerNet(256)": peer, **results}
        source = "measured earlier on this machine"
    print(f"Prithvi-EO-2.0-tiny, 6x224x224, {args.threads} threads, median of {args.repeats}")
    print(f"peer = TerraTorch 1.2.11 ({source})")
    print(
        f"{'configuration':<20} {'train bs4 s':>12} {'x peer':>7} {'infer bs8 s':>12} {'x peer':>7} {'peak RSS GB':>12}"
    )
    for name, r in results.items():
        print(
            f"{name:<20} {r['train_s']:>12.3f} {r['train_s'] / peer['train_s']:>7.2f} "
            f"{r['infer_s']:>12.3f} {r['infer_s'] / peer['infer_s']:>7.2f} {r['peak_rss_gb']:>12.2f}"
        )


if __name__ == "__main__":
    main()
