"""Are ``eofm predict --device cpu`` outputs those of an older checkout?

    python benchmarks/predict_identity.py --baseline PATH   # e.g. ``git archive`` of a release

Both checkouts predict the same cases in their own processes (one torch thread) and every
output is compared: class maps pixel for pixel, probabilities and uncertainties within
``TOLERANCE`` (the order of float sums may change between releases), other files byte
for byte. The cases cover what the pipeline's fast paths touch:
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
import json, sys
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
files = []
for name, scene, model, classes, extra in cases:
    trained = TrainedModel(model(2, classes).eval(), None, ["VV", "VH"], [-12.0, -18.0],
                           [4.0, 5.0], [f"c{i}" for i in range(classes)], 16, name, manifest={})
    settings = dict(tile=224, overlap=32, batch_size=16, overwrite=True, quicklook=False)
    options = PredictOptions(**(settings | extra))
    out = out_root / name
    Predictor(trained, options).predict(scene, out)
    files += [f"{name}/{f.name}" for f in sorted(out.iterdir())]
print(json.dumps({"files": files}))
"""


TOLERANCE = 1e-6


def outputs(checkout: Path, out: Path) -> list[str]:
    generated = CACHE / "identity_nan_scene.tif"
    CACHE.mkdir(parents=True, exist_ok=True)
    return child_json(CHILD, [str(out), str(NIGERIA), str(generated)], checkout)["files"]


def same(ours: Path, theirs: Path) -> tuple[bool, str]:
    """Class maps equal, float rasters within ``TOLERANCE``, other files byte for byte."""
    import numpy as np
    import rasterio

    if ours.suffix != ".tif":
        return ours.read_bytes() == theirs.read_bytes(), "bytes"
    with rasterio.open(ours) as a, rasterio.open(theirs) as b:
        x, y = a.read(), b.read()
    if x.dtype != y.dtype or x.shape != y.shape:
        return False, f"{x.dtype}{x.shape} vs {y.dtype}{y.shape}"
    if x.dtype == np.uint8:
        return bool(np.array_equal(x, y)), "pixels"
    gap = float(np.nanmax(np.abs(x - y))) if np.isfinite(x).any() else 0.0
    return bool(np.array_equal(np.isnan(x), np.isnan(y)) and gap <= TOLERANCE), f"max {gap:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the older checkout")
    args = parser.parse_args()
    ours = set(outputs(ROOT, CACHE / "identity-ours"))
    theirs = set(outputs(args.baseline.resolve(), CACHE / "identity-baseline"))
    differ = []
    for name in sorted(ours | theirs):
        if name not in ours or name not in theirs:
            ok, how = False, "missing in one"
        else:
            ok, how = same(CACHE / "identity-ours" / name, CACHE / "identity-baseline" / name)
        differ += [] if ok else [name]
        print(f"{'same   ' if ok else 'differs'}  {name} ({how})")
    print(f"\n{len(ours | theirs) - len(differ)} of {len(ours | theirs)} outputs the same")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
