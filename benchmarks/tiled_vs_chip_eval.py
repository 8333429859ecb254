"""Chip-wise ``eofm test`` against whole-scene (tiled) ``eofm test --tiled`` on Sen1Floods11.

    python benchmarks/tiled_vs_chip_eval.py --run RUN_DIR [--out CSV]

``RUN_DIR`` is a segmentation run on Sentinel-1 VV/VH, such as one that ``make demo``
trained (recipes/demo.yaml). It is scored on two sets of real chips:

- ``samples-test``: the bundled samples' official test split (``samples/sen1floods11``,
  256 px crops: Nigeria_812045), as ``make demo`` scores it;
- ``shared-heldout-512``: the full 512 px chips of ``../shared/data/sen1floods11`` that
  the demo neither trains nor validates on and that hold labelled, valid pixels
  (Nigeria_812045 and Ghana_97059).

Each set is scored chip by chip (the Lightning test: one forward pass per whole chip,
padded to the patch size) and by ``--tiled`` at several tiles and overlaps, with and
without flip TTA: the streaming engine of ``eofm predict``, which is how the model
is used on scenes. Metrics are the test's own (``test/mIoU``, ...); ``pixels`` is the
number of scored pixels (the confusion's total), which both protocols must share.
All runs of one set share a process, so that imports are paid once.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from _child import child_json
from _results import append_results

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sen1floods11"
SAMPLES = ROOT / "samples" / "sen1floods11"
HELD_OUT = ["Nigeria_812045", "Ghana_97059"]
PROTOCOLS = {  # case -> extra arguments of eofm test
    "chips": [],
    "tiled 224/32": ["--tiled", "224,32"],
    "tiled 224/32 tta-flip": ["--tiled", "224,32", "--tta", "flip"],
    "tiled 128/16": ["--tiled", "128,16"],
    "tiled 64/16": ["--tiled", "64,16"],
    "tiled 64/0": ["--tiled", "64,0"],
}
METRICS = ("test/mIoU", "test/accuracy", "test/IoU_water", "test/F1_water", "test/mF1")

CHILD = r"""
import contextlib, io, json, sys, time
import torch
torch.set_num_threads(2)
from eofm.cli import main

run, out, overrides, protocols = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
results = {}
for case, extra in protocols.items():
    target = f"{out}/{len(results)}.json"
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["-q", "test", run, *overrides, *extra, "--output", target])
    seconds = time.perf_counter() - started
    payload = json.load(open(target))
    confusion = payload["confusion"]["truth_by_predicted"]
    results[case] = {
        "rc": rc,
        "wall_s": seconds,
        "pixels": sum(map(sum, confusion)),
        "chips": payload["test_chips"],
        **payload["metrics"],
    }
print(json.dumps(results))
"""


def shared_root(folder: Path) -> Path:
    """The 512 px shared chips, linked, with the demo's train/val lists and the held-out
    chips as the test list (paths as the release's split CSVs write them)."""
    for sub in ("S1Hand", "LabelHand"):
        (folder / sub).mkdir(parents=True)
        for path in (SHARED / sub).glob("*.tif"):
            (folder / sub / path.name).symlink_to(path)
    (folder / "Sen1Floods11_Metadata.geojson").symlink_to(SHARED / "Sen1Floods11_Metadata.geojson")
    (folder / "splits").mkdir()
    for name in ("flood_train_data.csv", "flood_valid_data.csv"):
        (folder / "splits" / name).write_text((SAMPLES / "splits" / name).read_text())
    rows = [f"{c}_S1Hand.tif,{c}_LabelHand.tif" for c in HELD_OUT]
    (folder / "splits" / "flood_test_data.csv").write_text("\n".join(rows) + "\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a Sentinel-1 segmentation run")
    parser.add_argument("--out", type=Path, help="CSV to append to (default: results/...)")
    args = parser.parse_args()
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    out = args.out or ROOT / "benchmarks" / "results" / f"tiled_vs_chip_eval-{today}.csv"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    machine = f"{platform.machine()}-{os.cpu_count()}cpus"
    rows = []
    with tempfile.TemporaryDirectory(prefix="eofm-tiled-bench-") as tmp:
        sets = {
            "samples-test": [f"data.root={SAMPLES}"],
            "shared-heldout-512": [f"data.root={shared_root(Path(tmp) / 'shared')}"],
        }
        for name, overrides in sets.items():
            scratch = Path(tmp) / name
            scratch.mkdir()
            import json

            results = child_json(
                CHILD,
                [str(args.run), str(scratch), json.dumps(overrides), json.dumps(PROTOCOLS)],
                ROOT,
            )
            for case, values in results.items():
                print(
                    f"{name:<20} {case:<22} "
                    + "  ".join(f"{m[5:]} {values[m]:.4f}" for m in METRICS)
                    + f"  pixels {values['pixels']}  {values['wall_s']:.1f} s"
                )
                for metric in (*METRICS, "pixels", "wall_s"):
                    rows.append(
                        {
                            "date": today,
                            "machine": machine,
                            "code": f"eofm@{commit}",
                            "case": f"{name} ({', '.join(values['chips'])}) {case}",
                            "metric": metric.removeprefix("test/"),
                            "value": round(values[metric], 6),
                            "range": "",
                            "repeats": 1,
                            "run": 1,
                        }
                    )
    append_results(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
