"""Downscaling with hard constraints on the real ERA5 sample coarsened by 4 (0.25 -> 1
degree): the constraint layers hold to float precision, the family runs end to end, and
bad recipes are named before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eofm.cli import main
from eofm.models.constraints import HardConstraint, mean_cell
from tests.weather import ERA5


@pytest.mark.parametrize("kind", ["additive", "multiplicative", "softmax"])
@pytest.mark.parametrize("factor", [2, 4])
def test_constraints_conserve_every_coarse_cell(kind: str, factor: int) -> None:
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(3, 8 * factor, 6 * factor, generator=generator, dtype=torch.float64)
    coarse = torch.rand(3, 8, 6, generator=generator, dtype=torch.float64) * 5 + 0.1
    if kind == "multiplicative":  # its inputs are positive
        raw = raw.abs() + 0.1
    out = HardConstraint(kind, factor)(raw, coarse)
    assert torch.allclose(mean_cell(out, factor), coarse, rtol=1e-12, atol=1e-12)
    # and in float32, to float32 precision
    out32 = HardConstraint(kind, factor)(raw.float(), coarse.float())
    error = (mean_cell(out32, factor) - coarse.float()).abs() / coarse.float()
    assert float(error.max()) < 1e-6
    if kind == "softmax":  # non-negative whatever the logits, even extreme ones
        big = HardConstraint(kind, factor)(raw.float() * 1e3, coarse.float())
        assert bool((big >= 0).all()) and bool(torch.isfinite(big).all())
        assert torch.allclose(mean_cell(big, factor), coarse.float(), rtol=1e-5)


def test_coarse_inputs_are_block_means_of_the_real_sample() -> None:
    import xarray as xr

    from eofm.data.era5_downscaling import ERA5DownscalingDataModule

    dm = ERA5DownscalingDataModule(ERA5, inputs=["tp", "sp"], targets=["tp"], factor=4)
    assert len(dm.lat) == 40 and len(dm.lon) == 40  # 41 x 41 cropped to 4-cell blocks
    sample = dm.dataset("train")[0]
    assert sample["coarse"].shape == (2, 10, 10) and sample["target"].shape == (1, 40, 40)
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_tp.nc") as ds:
        fine = ds["tp"].values[0, :40, :40]
    assert np.allclose(sample["target"][0].numpy(), fine)
    coarse = fine.reshape(10, 4, 10, 4).mean(axis=(1, 3))
    assert np.allclose(sample["coarse_target"][0].numpy(), coarse, atol=1e-9)
    tp = sample["coarse"][0].numpy() * dm.input_std[0] + dm.input_mean[0]
    assert np.allclose(tp, coarse, atol=1e-8)
    assert max(dm.splits["train"]) < min(dm.splits["val"]) < min(dm.splits["test"])


def test_constrained_downscaling_end_to_end(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = [f"data.root={ERA5}", "trainer.max_epochs=3", "trainer.enable_progress_bar=false"]
    assert main(["fit", "era5_downscaling_constrained", *args, "--run-dir", str(run)]) == 0
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    for name in ("tp", "sp"):
        assert metrics[f"test/rmse_{name}"] > 0 and -1 <= metrics[f"test/pearson_{name}"] <= 1
        assert metrics[f"test/spectrum_ratio_{name}"] > 0
    assert metrics["test/mass_violation_tp"] < 1e-9  # metres: float precision
    assert metrics["test/mass_violation_sp"] / 1e5 < 1e-6  # pascals, relative
    assert 0 <= metrics["test/csi_tp_0.0001"] <= 1
    # without constraints the mass is not conserved
    free = tmp_path / "free"
    assert (
        main(
            [
                "fit",
                "era5_downscaling_constrained",
                *args,
                "task.constraints={}",
                "--run-dir",
                str(free),
            ]
        )
        == 0
    )
    assert main(["test", str(free)]) == 0
    loose = json.loads((free / "test_metrics.json").read_text())["metrics"]
    assert loose["test/mass_violation_tp"] > 100 * metrics["test/mass_violation_tp"]


def test_geographic_shift_scores_only_the_held_out_cells(tmp_path: Path) -> None:
    """Train west of 5 E, test east of it (latitude/longitude bands of the sample grid)."""
    import geopandas as gpd
    from shapely.geometry import box

    regions = tmp_path / "halves.geojson"
    gpd.GeoDataFrame(
        {"half": ["west", "east", "north"]},
        geometry=[box(-1, 50, 4.99, 56), box(5, 45, 11, 56), box(-1, 44, 4.99, 50)],
        crs=4326,
    ).to_file(regions)
    split = f"{{by: region, regions: {regions}, column: half, test: [east], val: [north]}}"
    from eofm.data.era5_downscaling import ERA5DownscalingDataModule

    dm = ERA5DownscalingDataModule(
        ERA5, inputs=["tp"], targets=["tp"], factor=4,
        split={"by": "region", "regions": str(regions), "column": "half", "test": ["east"], "val": ["north"]},
    )  # fmt: skip
    lon = dm.lon.numpy()
    east = lon >= 5
    assert dm.masks["test"][:, east].all() and not dm.masks["test"][:, ~east].any()
    assert not (dm.masks["train"] & dm.masks["test"]).any()
    assert dm.dataset("test")[0]["valid"][0].numpy().sum() == dm.masks["test"].sum()
    run = tmp_path / "run"
    args = [f"data.root={ERA5}", f"data.split={split}", "trainer.max_epochs=1"]
    assert main(["fit", "era5_downscaling_constrained", *args, "--run-dir", str(run)]) == 0
    assert main(["test", str(run)]) == 0
    record = json.loads((run / "test_metrics.json").read_text())
    assert record["test_cells"] == int(dm.masks["test"].sum())


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("task.constraints={tcw: softmax}", "tcw is not a target"),
        ("data.inputs=[tcw, d2m]", "has no coarse counterpart"),
        ("task.constraints={tp: quadratic}", "must be one of"),
        ("data.factor=1", "at least 2"),
        ("task.thresholds={e: [1.0]}", "are not task.targets"),
    ],
)
def test_bad_downscaling_recipes_are_named(
    tmp_path: Path, override: str, needle: str, capsys
) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "fit",
            "era5_downscaling_constrained",
            f"data.root={ERA5}",
            override,
            "--run-dir",
            str(run),
        ]
    )
    assert code == 2 and needle in capsys.readouterr().err and not run.exists()
