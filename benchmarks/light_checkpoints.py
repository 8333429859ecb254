"""Checkpoint sizes of a frozen AuroraSmallPretrained run: light vs whole.

A frozen backbone's weights are the pretrained base's, so eofm's checkpoints leave them
out and keep a pointer (repo, revision, file) instead (issue 14: under 5 MB for a
frozen-Aurora run). No Hub is reachable here, so the benchmark serves a randomly
initialised AuroraSmallPretrained in the released checkpoint layout from the test
suite's loopback Hub (its 110 M weights are as large as the real ones), fits the
hydrology decoders on the real ERA5 sample for 2 epochs (latent cache on), and prints the
sizes of best.ckpt and last.ckpt beside what a whole checkpoint of the same run holds.

    python benchmarks/light_checkpoints.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from tests.hub_server import LoopbackHub

    hub = LoopbackHub().start()
    home = tempfile.mkdtemp(prefix="eofm-bench-hf-")
    os.environ.update(
        HF_ENDPOINT=hub.endpoint,
        HF_TOKEN=hub.token,
        HF_HOME=home,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        EOFM_CACHE_DIR=tempfile.mkdtemp(prefix="eofm-bench-latents-"),
    )
    os.environ.pop("HF_HUB_OFFLINE", None)
    import torch
    from aurora import AuroraSmallPretrained

    from eofm.commands.fit import fit
    from eofm.recipe import load_recipe
    from tests.weather import ckpt_bytes, copy_era5, official_aurora_state, regression_recipe

    torch.manual_seed(0)
    model = AuroraSmallPretrained()
    weights = ckpt_bytes(official_aurora_state(model))
    config = json.dumps({"aurora": {"class": "AuroraSmallPretrained", "kwargs": {}}}).encode()
    hub.add_commit("bench/aurora-small", {"config.json": config, "aurora-small.ckpt": weights})
    work = Path(tempfile.mkdtemp(prefix="eofm-bench-light-"))
    recipe = regression_recipe(
        copy_era5(work / "era5"),
        backbone={"name": "hf://bench/aurora-small", "pretrained": True},
        decoder={"name": "mlp_latent", "channels": 256},
        cache={"mode": "on"},
    )
    recipe["trainer"]["max_epochs"] = 2
    run = fit(load_recipe(recipe), work / "run")
    params = sum(p.numel() for p in model.parameters())
    trainable = json.loads((run / "metrics.json").read_text())["trainable_parameters"]
    print(f"AuroraSmallPretrained: {params / 1e6:.1f} M parameters ({len(weights) / 1e6:.0f} MB)")
    print(f"trainable (hydrology decoders, tp and e): {trainable / 1e6:.3f} M")
    for name in ("best.ckpt", "last.ckpt"):
        size = (run / "checkpoints" / name).stat().st_size
        print(
            f"  {name:<10} {size / 1e6:8.2f} MB  (light: trained weights, optimizer, base pointer)"
        )
    whole = len(weights) + trainable * 4 * 3  # the backbone, plus weights and AdamW moments
    print(f"  a whole checkpoint of the same run: about {whole / 1e6:.0f} MB")
    hub.stop()


if __name__ == "__main__":
    main()
