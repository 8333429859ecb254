"""Device and precision for predict and fit: resolution, clear refusals, CUDA only where present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eofm.predict.device import local_rank, resolve_device, resolve_precision
from tests.realdata import SHARED
from tests.test_training import flood_root  # noqa: F401 - fixture reuse

NIGERIA = SHARED / "S1Hand" / "Nigeria_812045_S1Hand.tif"
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

LIGHT = (
    "import sys\nfrom eofm.cli import main\nrc = main(sys.argv[1:])\n"
    "print('HEAVY:' + ','.join(m for m in ('torch', 'lightning') if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(rc)"
)


def test_auto_resolves_to_what_the_machine_has() -> None:
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = resolve_device("cpu")
    assert cpu.type == "cpu" and resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"


def test_local_rank_comes_from_the_launcher(monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("SLURM_LOCALID", "3")
    assert local_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_rank() == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "cuda:99"],
            "cuda",
        ),
        (["--device", "gpu0"], "--device"),
        (["--device", "cpu", "--precision", "fp16"], "fp16"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_impossible_device_or_precision_exits_2_before_anything(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LIGHT,
            "predict",
            "--model",
            str(tmp_path / "run"),
            str(NIGERIA),
            "--out",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    if "cuda" in args[-1] and not torch.cuda.is_available():
        assert "HEAVY:\n" in proc.stderr  # refused without importing torch


def test_bf16_autocast_on_cpu_predicts_nearly_the_same_classes(tmp_path: Path) -> None:
    import rasterio

    from eofm.families.restore import load_trained
    from eofm.predict.engine import Predictor
    from eofm.predict.options import PredictOptions
    from tests.runs import make_run_dir

    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    trained = load_trained(str(run))
    maps = {}
    for precision in ("fp32", "bf16"):
        options = PredictOptions(
            tile=64, overlap=16, quicklook=False, device="cpu", precision=precision
        )
        result = Predictor(trained, options).predict(NIGERIA, tmp_path / precision)
        with rasterio.open(result.outputs[0]) as ds:
            maps[precision] = ds.read(1)
    assert (maps["fp32"] == maps["bf16"]).mean() > 0.95


@CUDA
def test_cuda_fp32_class_maps_equal_cpu_up_to_ties(tmp_path: Path) -> None:
    """fp32 on a GPU: the same classes as the CPU except where two classes tie within 1e-5."""
    import numpy as np

    from eofm.families.restore import load_trained
    from eofm.predict.engine import Predictor
    from eofm.predict.options import PredictOptions
    from tests.runs import make_run_dir

    run = make_run_dir(tmp_path / "run", ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0])
    probs = {}
    for device in ("cpu", "cuda"):
        options = PredictOptions(
            tile=64,
            overlap=16,
            quicklook=False,
            probabilities=True,
            device=device,
            precision="fp32",
        )
        result = Predictor(load_trained(str(run)), options).predict(NIGERIA, tmp_path / device)
        import rasterio

        with rasterio.open(result.outputs[0]) as ds:
            probs[device] = ds.read()
    cpu, gpu = probs["cpu"], probs["cuda"]
    tie = np.abs(cpu[1] - cpu[0]) < 1e-5
    assert (cpu.argmax(0) == gpu.argmax(0))[~tie].all()


# --- fit: workers, precision, compile, windowed chip reads ------------------------------


def test_auto_workers_follow_the_cores(monkeypatch) -> None:
    from eofm.data import loading

    for cores, expected in ((1, 0), (2, 0), (4, 3), (16, 8), (64, 8)):
        monkeypatch.setattr(loading, "available_cores", lambda c=cores: c)
        assert loading.resolve_workers("auto") == expected
    assert loading.resolve_workers(5) == 5
    options = loading.loader_options(2, pin_memory=True)
    assert (
        options["persistent_workers"] and options["pin_memory"] and options["prefetch_factor"] > 1
    )
    assert "prefetch_factor" not in loading.loader_options(0)


def test_trainer_precision_auto_is_fp32_on_cpu() -> None:
    from eofm.train.precision import resolve_trainer_precision

    assert resolve_trainer_precision("auto", "cpu") == "32-true"
    assert resolve_trainer_precision("bf16-mixed", "gpu") == "bf16-mixed"
    expected = (
        "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    )
    assert resolve_trainer_precision("auto", "auto") == expected


def test_compiled_model_keeps_its_state_dict_keys() -> None:
    from eofm.families.segmentation import SegmentationFamily
    from eofm.recipe import load_recipe
    from eofm.train.trainer import compile_model
    from tests.test_architecture import tiny_overrides

    recipe = load_recipe("demo", tiny_overrides(**{"backbone.tap_layers": "[0,1]"}))
    model = SegmentationFamily().build_model(recipe, bands=["VV", "VH"], pretrained=False)
    keys = list(model.state_dict())
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        before = model.eval()(x)
        compile_model(model, "eager")
        after = model(x)
    assert list(model.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    assert torch.equal(before, after)


def test_fit_with_compile_writes_plain_checkpoints(flood_root: Path, tmp_path: Path) -> None:
    from eofm.cli import main
    from tests.test_training import overrides

    run = tmp_path / "run"
    args = overrides(flood_root, **{"trainer.max_epochs": 1, "trainer.compile": "eager"})
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state and not any("_orig_mod" in k for k in state)


def test_crop_window_reads_give_the_same_samples_as_whole_chip_reads(flood_root: Path) -> None:
    """The crop is read as a window; the sample equals cropping the whole chip."""
    from eofm.data.sen1floods11 import Sen1Floods11

    chips = ["Ghana_97059", "India_900498", "Nigeria_812045"]
    windowed = Sen1Floods11(
        flood_root, chips, ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0], crop_size=32, random_crop=True
    )
    whole = Sen1Floods11(
        flood_root, chips, ["VV", "VH"], [-11.0, -18.0], [4.0, 5.0], crop_size=32, random_crop=True
    )
    whole._crop_window = lambda path: None  # the old path: read it all, crop in memory
    for i in range(len(chips)):
        torch.manual_seed(i)
        a = windowed[i]
        torch.manual_seed(i)
        b = whole[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
