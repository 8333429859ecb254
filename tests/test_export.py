"""``eofm export``: one graph (adapter merged, normalisation inside) in ONNX and ``.pt2``,
equal to the PyTorch model: <= 1e-4 in onnxruntime on CPU, <= 1e-5 for ``.pt2``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eofm.cli import main
from tests.test_training import flood_root, overrides  # noqa: F401 - fixture reuse


@pytest.fixture(scope="module")
def lora_run(flood_root: Path, tmp_path_factory) -> Path:  # noqa: F811
    """A LoRA run of the Prithvi-EO-2.0 tiny architecture on real Sen1Floods11 S1 chips."""
    run = tmp_path_factory.mktemp("export") / "run"
    args = overrides(
        flood_root,
        **{
            "adapter.mode": "lora",
            "backbone.coords": "false",
            "trainer.max_epochs": 1,
            "data.num_workers": 0,
        },
    )
    assert main(["fit", "demo", *args, "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def exported(lora_run: Path, tmp_path_factory) -> Path:
    """The LoRA run as one ONNX graph of 32 px tiles, batch size dynamic."""
    out = tmp_path_factory.mktemp("exported") / "model.onnx"
    export = ["export", str(lora_run), "--format", "onnx", "--tile", "32", "--output", str(out)]
    assert main([*export, "--dynamic-batch"]) == 0
    return out


def _reference(run: Path, x: torch.Tensor) -> torch.Tensor:
    from eofm.families.restore import load_trained

    trained = load_trained(str(run))
    mean = torch.tensor(trained.mean).reshape(1, -1, 1, 1)
    std = torch.tensor(trained.std).reshape(1, -1, 1, 1)
    with torch.no_grad():
        return trained.model((x - mean) / std)


def _chip_tiles(flood_root: Path, tile: int) -> torch.Tensor:  # noqa: F811
    import rasterio

    tiles = []
    for path in sorted((flood_root / "S1Hand").glob("*.tif"))[:3]:
        with rasterio.open(path) as src:
            tiles.append(np.nan_to_num(src.read(window=((0, tile), (0, tile))).astype("float32")))
    return torch.from_numpy(np.stack(tiles))


def test_pt2_export_equals_the_run(lora_run: Path, flood_root: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "model.pt2"
    args = ["export", str(lora_run), "--format", "pt2", "--tile", "32", "--output", str(out)]
    assert main([*args, "--dynamic-batch"]) == 0
    sidecar = json.loads((tmp_path / "model.pt2.json").read_text())
    assert sidecar["tile"] == 32 and sidecar["bands"] == ["VV", "VH"]
    assert sidecar["normalisation_in_graph"] is True
    x = _chip_tiles(flood_root, 32)
    program = torch.export.load(str(out)).module()
    assert not [n for n, _ in program.named_parameters() if "lora" in n]  # merged
    got = program(x)
    assert got.shape == (3, 2, 32, 32)
    assert (got - _reference(lora_run, x)).abs().max() <= 1e-5
    assert main(args) == 1  # nothing is overwritten


def test_onnx_export_equals_the_run_in_onnxruntime(
    lora_run: Path,
    exported: Path,
    flood_root: Path,  # noqa: F811
) -> None:
    import onnxruntime as ort

    x = _chip_tiles(flood_root, 32)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    expected = _reference(lora_run, x).numpy()
    assert np.abs(got - expected).max() <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_weather_models_say_why_they_cannot_export() -> None:
    from eofm.errors import EofmError
    from eofm.families.regression import RegressionFamily

    with pytest.raises(EofmError, match="Weather models cannot"):
        RegressionFamily().check_exportable("run")


def test_export_argument_errors_are_light(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.onnx"
    out.write_text("mine")
    args = ["export", str(tmp_path), "--format", "onnx", "--output", str(out)]
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err and out.read_text() == "mine"


def test_predict_from_onnx_writes_the_class_map_of_the_run(
    lora_run: Path,
    exported: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import rasterio

    out = exported
    chips = sorted((flood_root / "S1Hand").glob("*.tif"))[:2]
    options = ["--overlap", "8", "--no-progress", "--device", "cpu"]
    common = [*map(str, chips), "--tile", "32", *options]
    assert main(["predict", "--model", str(lora_run), *common, "--out", str(tmp_path / "pt")]) == 0
    assert main(["predict", "--model", str(out), *common, "--out", str(tmp_path / "ort")]) == 0
    for chip in chips:
        with (
            rasterio.open(tmp_path / "pt" / chip.name) as a,
            rasterio.open(tmp_path / "ort" / chip.name) as b,
        ):
            assert (a.read(1) == b.read(1)).all()
    other_tile = [*map(str, chips), "--tile", "64", *options, "--out", str(tmp_path / "x")]
    assert main(["predict", "--model", str(out), *other_tile]) == 1  # the graph's tile is 32
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "extra",
    [["--tta", "flip", "--probabilities"], ["--uncertainty", "tta"], ["--uncertainty", "entropy"]],
    ids=["tta-flip", "uncertainty-tta", "uncertainty-entropy"],
)
def test_onnx_views_and_uncertainty_equal_the_runs(
    lora_run: Path,
    exported: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
    extra: list[str],
) -> None:
    """The numpy model stage (softmax, flips, expected entropy) against TileModel's."""
    import rasterio

    chip = sorted((flood_root / "S1Hand").glob("*.tif"))[0]
    common = [str(chip), "--tile", "32", "--overlap", "8", "--no-progress", "--device", "cpu"]
    for model, out in ((lora_run, "pt"), (exported, "ort")):
        assert (
            main(["predict", "--model", str(model), *common, *extra, "--out", str(tmp_path / out)])
            == 0
        )
    written = sorted(p.name for p in (tmp_path / "pt").glob("*.tif"))
    assert len(written) == 2 and written == sorted(p.name for p in (tmp_path / "ort").glob("*.tif"))
    for name in written:
        with (
            rasterio.open(tmp_path / "pt" / name) as a,
            rasterio.open(tmp_path / "ort" / name) as b,
        ):
            x, y = a.read(), b.read()
        if x.dtype == np.uint8:
            assert (x == y).all()
        else:
            np.testing.assert_allclose(y, x, atol=1e-4, equal_nan=True)


def test_predict_from_onnx_never_imports_torch(
    exported: Path, flood_root: Path, tmp_path: Path
) -> None:  # noqa: F811
    import subprocess
    import sys

    chip = sorted((flood_root / "S1Hand").glob("*.tif"))[0]
    script = (
        "import sys; from eofm.cli import main; "
        f"rc = main(['predict', '--model', {str(exported)!r}, {str(chip)!r}, '--tile', '32', "
        f"'--overlap', '8', '--no-progress', '--out', {str(tmp_path / 'out')!r}]); "
        "heavy = [m for m in ('torch', 'lightning', 'timm', 'peft', 'torchgeo') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert (tmp_path / "out" / chip.name).is_file()


def test_publish_with_onnx_bundles_the_exported_graph(
    lora_run: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bundle"
    args = ["publish", str(lora_run), "--repo", "org/flood", "--dry-run", str(folder)]
    assert main([*args, "--with-onnx", "32"]) == 0
    sidecar = (folder / "model.onnx.json").read_text()
    assert (folder / "model.onnx").stat().st_size > 0 and (folder / "model.safetensors").is_file()
    assert json.loads(sidecar)["source"] == "hf://org/flood" and json.loads(sidecar)["tile"] == 32
    assert str(flood_root) not in sidecar and str(lora_run) not in sidecar  # paths scrubbed


@pytest.mark.parametrize(
    "extra", [["--precision", "bf16"], ["--uncertainty", "mc-dropout:4"]], ids=["bf16", "mc"]
)
def test_what_a_graph_cannot_honour_is_refused_before_loading(
    exported: Path,
    flood_root: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
    extra: list[str],
) -> None:
    chip = sorted((flood_root / "S1Hand").glob("*.tif"))[0]
    out = tmp_path / "out"
    args = ["predict", "--model", str(exported), str(chip), "--tile", "32", "--overlap", "8"]
    assert main([*args, *extra, "--no-progress", "--out", str(out)]) != 0
    assert str(exported) in capsys.readouterr().err and not out.exists()
