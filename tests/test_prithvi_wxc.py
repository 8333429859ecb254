"""Prithvi WxC through the prithviwxc package: a tiny checkpoint in the release's layout
(config.yaml, weights, climatology/musigma_* and anomaly_variance_*) served by the
loopback Hub, its encoder's latent, and MERRA-2 downscaling end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eofm.cli import main
from eofm.errors import EofmError
from tests.wxc import PARAMS, merra2_files, release_files

REPO = "tester/wxc-tiny"


@pytest.fixture(scope="module")
def wxc_repo(hub, tmp_path_factory) -> str:
    hub.add_commit(REPO, release_files(tmp_path_factory.mktemp("wxc")))
    return REPO


@pytest.fixture(scope="module")
def merra2(tmp_path_factory) -> Path:
    return merra2_files(tmp_path_factory.mktemp("merra2") / "merra2")


def backbone(repo: str):
    from eofm.backbones.loading import resolve_manifest
    from eofm.backbones.prithvi_wxc import load_wxc_backbone

    return load_wxc_backbone(resolve_manifest(f"hf://{repo}"))


def test_official_layout_loads_strictly_and_gives_the_encoder_latent(wxc_repo, merra2) -> None:
    from PrithviWxC.dataloaders.merra2 import Merra2Dataset, preproc

    from tests.wxc import LEVELS, STATICS, SURFACE, VERTICAL

    model = backbone(wxc_repo)
    assert model.source["repo"] == REPO and len(model.source["revision"]) == 40
    data = Merra2Dataset(
        time_range=("2000-01-01", "2100-01-01"),
        lead_times=[0],
        input_times=[-3],
        data_path_surface=merra2,
        data_path_vertical=merra2,
        climatology_path_surface=merra2,
        climatology_path_vertical=merra2,
        surface_vars=SURFACE,
        static_surface_vars=STATICS,
        vertical_vars=VERTICAL,
        levels=LEVELS,
        positional_encoding="fourier",
    )
    batch = preproc([data[0], data[1]], {"level": [0, 0], "lat": [0, 0], "lon": [0, 0]})
    with torch.no_grad():
        latent = model(batch)
        again = model(batch)
    assert latent.shape == (2, 6, 8, PARAMS["embed_dim"])  # 12 x 16 cells, patches of 2
    assert torch.equal(latent, again)  # no random masking or unit order
    assert torch.isfinite(latent).all()
    # the latent is the package's own encoder output, re-gridded: check one window
    captured = {}
    handle = model.model.encoder.register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
    try:
        model(batch)
    finally:
        handle.remove()
    tokens = captured["o"]  # (B, 2 x 2 windows, 3 x 4 patches, D)
    assert torch.equal(latent[:, :3, :4], tokens[:, 0].reshape(2, 3, 4, -1))
    assert torch.equal(latent[:, 3:, 4:], tokens[:, 3].reshape(2, 3, 4, -1))


def test_a_release_without_normalisation_files_is_named(hub, tmp_path: Path) -> None:
    hub.add_commit("tester/wxc-bare", release_files(tmp_path, with_scalers=False))
    with pytest.raises(EofmError, match="lacks the normalisation files .*musigma_surface.nc"):
        backbone("tester/wxc-bare")


def test_weights_that_do_not_fit_the_config_are_refused(hub, tmp_path: Path) -> None:
    files = release_files(tmp_path)
    other = dict(PARAMS, embed_dim=32)
    import yaml

    files["config.yaml"] = yaml.safe_dump({"params": other}).encode()
    hub.add_commit("tester/wxc-mismatch", files)
    with pytest.raises(EofmError, match="do not match config.yaml"):
        backbone("tester/wxc-mismatch")


def test_merra2_downscaling_with_the_frozen_latent(wxc_repo, merra2, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        f"data.root={merra2}",
        f"backbone.name=hf://{wxc_repo}",
        "data.factor=4",
        "decoder.channels=16",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
    ]
    assert main(["fit", "merra2_prithvi_wxc_downscaling", *args, "--run-dir", str(run)]) == 0
    assert main(["test", str(run)]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())["metrics"]
    assert metrics["test/rmse_T2M"] > 0 and np.isfinite(metrics["test/pearson_T2M"])
    assert metrics["test/mass_violation_T2M"] / 280.0 < 1e-6  # conserved to float precision
    manifest = json.loads((run / "model.json").read_text())
    assert manifest["backbone"]["repo"] == wxc_repo and manifest["backbone"]["pretrained_loaded"]
    # the frozen backbone stays out of the checkpoints
    from eofm.train.rundir import load_checkpoint

    state, base = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert base["repo"] == wxc_repo
    assert not [k for k in state if k.startswith("model.backbone.") and k.endswith("weight")]


def test_prepare_merra2_writes_the_prithviwxc_layout(tmp_path) -> None:
    """Issue 34 item 8: ``eofm prepare merra2 RAW --out DIR`` turns GES DISC collection files
    into the layout ``PrithviWxC``'s own ``Merra2Dataset`` reads, with NASA's route:
    instants at 00..21 UTC, hourly means averaged within 30 min, constants of the month,
    the release's 14 model levels."""
    import h5py
    import xarray as xr
    from PrithviWxC.dataloaders.merra2 import Merra2Dataset

    from eofm.cli import main
    from eofm.data.merra2_prepare import COLLECTIONS, LEVELS
    from tests.merra2_raw import LAT, LON, value, write_raw_merra2

    raw = write_raw_merra2(tmp_path / "raw")
    out = tmp_path / "wxc"
    assert main(["prepare", "merra2", str(raw), "--out", str(out)]) == 0
    surface = [n for kind, names in COLLECTIONS.values() if kind != "levels" for n in names]
    vertical = list(COLLECTIONS["inst3_3d_asm_Nv"][1])
    clim = tmp_path / "climatology"  # the release ships it; flat fields will do here
    clim.mkdir()
    for doy in (1, 2):
        for hour in range(0, 24, 3):
            with h5py.File(clim / f"climate_surface_doy{doy:03}_hour{hour:02}.nc", "w") as h:
                h["lat"], h["lon"] = LAT, LON
                for n in surface:
                    h[n] = np.ones((6, 8))
            with h5py.File(clim / f"climate_vertical_doy{doy:03}_hour{hour:02}.nc", "w") as h:
                h["lat"], h["lon"] = LAT, LON
                h["lev"] = np.array(LEVELS, dtype=float)
                for n in vertical:
                    h[n] = np.ones((14, 6, 8))
    dataset = Merra2Dataset(
        time_range=("2020-01-01T00:00", "2020-01-02T21:00"),
        lead_times=[3],
        input_times=[-3],
        data_path_surface=out,
        data_path_vertical=out,
        climatology_path_surface=clim,
        climatology_path_vertical=clim,
        surface_vars=surface,
        static_surface_vars=["FRACI", "FRLAND", "FROCEAN", "PHIS"],
        vertical_vars=vertical,
        levels=[float(v) for v in LEVELS],
    )
    assert len(dataset) > 0
    sample = dataset[0]
    assert sample["sur_vals"].shape[0] == len(surface)
    assert sample["ulv_vals"].shape[:2] == (10, 14)
    with h5py.File(out / "MERRA2_sfc_20200102.nc") as sfc:
        assert list(sfc["time"][()]) == list(range(0, 1440, 180))
        assert np.ravel(sfc["time"].attrs["begin_date"])[0] == 20200102
        # instants: 03 UTC itself
        np.testing.assert_allclose(sfc["T2M"][1], value("T2M", "20200102", np.array([180]))[0])
        # hourly means: 02:30 and 03:30; 00 UTC takes the day before's 23:30
        want = (value("EFLUX", "20200102", np.array([150, 210]))).mean(axis=0)
        np.testing.assert_allclose(sfc["EFLUX"][1], want, rtol=1e-6)
        want = (
            value("EFLUX", "20200101", np.array([1410]))
            + value("EFLUX", "20200102", np.array([30]))
        ) / 2
        np.testing.assert_allclose(sfc["EFLUX"][0], want[0], rtol=1e-6)
        assert np.all(sfc["LAI"][0][:2] == 0.0) and np.all(sfc["GWETROOT"][0][:2] == 1.0)
        # constants: FRACI of January (the first of 12 months)
        np.testing.assert_allclose(sfc["FRACI"][()], value("FRACI", "00000000", np.array([0]))[0])
    with xr.open_dataset(out / "MERRA_pres_20200102.nc") as pres:
        assert [int(v) for v in pres["lev"].values] == list(LEVELS)
    # nothing is overwritten: a second run names the file and writes nothing
    before = (out / "MERRA2_sfc_20200101.nc").stat().st_mtime_ns
    assert main(["prepare", "merra2", str(raw), "--out", str(out)]) == 2
    assert (out / "MERRA2_sfc_20200101.nc").stat().st_mtime_ns == before


def test_prepare_merra2_names_a_missing_collection(tmp_path, capsys) -> None:
    from eofm.cli import main
    from tests.merra2_raw import write_raw_merra2

    raw = write_raw_merra2(tmp_path / "raw", days=("20200101",))
    (raw / "MERRA2_400.tavg1_2d_rad_Nx.20200101.nc4").unlink()
    assert main(["prepare", "merra2", str(raw), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "tavg1_2d_rad_Nx (M2T1NXRAD)" in err and "20200101" in err
    assert not (tmp_path / "out").exists()
