"""Are ``eofm predict --device cpu`` outputs byte for byte those of an older checkout?

    python benchmarks/predict_identity.py --baseline PATH   # e.g. a git worktree of the release

Both checkouts predict the same cases in their own processes (one torch thread) and every
output file's SHA-256 is compared. The cases cover what the pipeline's fast paths touch:
a per-pixel model and a convolutional one (whose outputs could depend on how a batch is
laid out), 2 to 4 classes, class maps and probabilities, a real Sen1Floods11 chip and a
generated scene with NaN blocks, strides below the overlap, a scene smaller than a tile,
several reading threads, vectors, entropy and test-time augmentation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _child import child_json

ROOT = Path(__file__).resolve().parents[1]
NIGERIA = ROOT.parent / "shared" / "data" / "sen1floods11" / "S1Hand" / "Nigeria_812045_S1Hand.tif"
CACHE = Path("/tmp/eofm-bench")

CHILD = r"""
import hashlib, json, sys
from pathlib import Path
import numpy as np, rasterio, torch
from rasterio.transform import from_origin
from torch import nn
torch.set_num_threads(1)
from eofm.models.trained import TrainedModel
from eofm.predict.engine import Predictor
from eofm.predict.options import PredictOptions

class PixelModel(nn.Module):
    def __init__(self, bands, classes):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.scale = nn.Parameter(torch.randn(classes, bands, generator=generator))
    def forward(self, x):
        mixed = (self.scale[None, :, :, None, None] * x[:, None]).sum(dim=2)
        return torch.tanh(mixed * 3.0) + torch.sin(x[:, :1] * 5.0)

class ConvModel(nn.Module):
    def __init__(self, bands, classes):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(bands, 8, 3, padding=1), nn.Conv2d(8, classes, 1)
    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

out_root, nigeria, generated = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
if not generated.exists():
    rng = np.random.default_rng(1)
    data = rng.normal(-12, 4, (2, 700, 900)).astype("float32")
    data[:, 100:180, 200:420] = np.nan
    data[0, 500:510, :] = np.nan
    profile = dict(driver="GTiff", width=900, height=700, count=2, dtype="float32",
                   crs="EPSG:32631", transform=from_origin(500000, 5000000, 10, 10),
                   nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(generated, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = ("VV", "VH")
cases = [
    ("chip_pixel2", nigeria, PixelModel, 2, {}),
    ("chip_conv3", nigeria, ConvModel, 3, {}),
    ("chip_conv2_probabilities", nigeria, ConvModel, 2, {"probabilities": True}),
    ("nan_pixel3", generated, PixelModel, 3, {}),
    ("nan_conv2_two_readers", generated, ConvModel, 2, {"workers": 2}),
    ("nan_conv2_tile64", generated, ConvModel, 2, {"tile": 64, "overlap": 16, "batch_size": 5}),
    ("nan_pixel4_stride_below_overlap", generated, PixelModel, 4,
     {"probabilities": True, "tile": 96, "overlap": 40}),
    ("nan_conv2_vectors", generated, ConvModel, 2, {"vector": "geojson"}),
    ("nan_conv3_one_tile", generated, ConvModel, 3, {"tile": 1024, "overlap": 32}),
    ("nan_conv3_entropy", generated, ConvModel, 3, {"uncertainty": "entropy"}),
    ("nan_conv2_tta", generated, ConvModel, 2, {"uncertainty": "tta", "probabilities": True}),
]
digests = {}
for name, scene, model, classes, extra in cases:
    trained = TrainedModel(model(2, classes).eval(), None, ["VV", "VH"], [-12.0, -18.0],
                           [4.0, 5.0], [f"c{i}" for i in range(classes)], 16, name, manifest={})
    settings = dict(tile=224, overlap=32, batch_size=16, overwrite=True, quicklook=False)
    options = PredictOptions(**(settings | extra))
    out = out_root / name
    Predictor(trained, options).predict(scene, out)
    for f in sorted(out.iterdir()):
        digests[f"{name}/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
print(json.dumps(digests))
"""


def digests(checkout: Path, out: Path) -> dict[str, str]:
    generated = CACHE / "identity_nan_scene.tif"
    CACHE.mkdir(parents=True, exist_ok=True)
    return child_json(CHILD, [str(out), str(NIGERIA), str(generated)], checkout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the older checkout")
    args = parser.parse_args()
    ours = digests(ROOT, CACHE / "identity-ours")
    theirs = digests(args.baseline.resolve(), CACHE / "identity-baseline")
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    for name in sorted(ours.keys() | theirs.keys()):
        print(f"{'differs' if name in differ else 'same   '}  {name}")
    print(f"\n{len(ours) - len(differ)} of {len(ours | theirs)} output files byte-identical")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
