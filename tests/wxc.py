"""Prithvi WxC test material in the official layouts, made small.

- a release repo: ``config.yaml`` (``params``), the weights (``{"model_state": ...}``,
  as the release's ``prithvi.wxc.*.pt``) and ``climatology/`` with ``musigma_surface.nc``,
  ``musigma_vertical.nc``, ``anomaly_variance_surface.nc`` and
  ``anomaly_variance_vertical.nc`` in the layout the ``prithviwxc`` readers expect
  (a ``statistic`` dataset naming ``mu`` and ``sigma``; ``lev`` for model levels);
- MERRA-2 input files: ``MERRA2_sfc_YYYYMMDD.nc`` (3-hourly surface variables, the
  static fields) and ``MERRA_pres_YYYYMMDD.nc`` (variables on model levels), with
  ``time`` in minutes from ``begin_date``/``begin_time``, and the climatology files
  ``climate_{surface,vertical}_doyDDD_hourHH.nc``.

The real model works on 360 x 576 cells, 160 channels; this one on 12 x 16, 7 channels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import yaml

SURFACE = ["T2M", "U10M", "PS"]
STATICS = ["FRACI", "FRLAND", "FROCEAN", "PHIS"]
VERTICAL = ["T", "U"]
LEVELS = [72.0, 71.0]
LAT = np.linspace(45.0, 50.5, 12)
LON = np.linspace(0.0, 9.375, 16)
PARAMS = {
    "surface_vars": SURFACE,
    "static_surface_vars": STATICS,
    "vertical_vars": VERTICAL,
    "levels": LEVELS,
    "in_channels": len(SURFACE) + len(VERTICAL) * len(LEVELS),
    "input_size_time": 2,
    "in_channels_static": 8,
    "input_scalers_epsilon": 0.0,
    "static_input_scalers_epsilon": 0.0,
    "n_lats_px": 12,
    "n_lons_px": 16,
    "patch_size_px": [2, 2],
    "mask_unit_size_px": [6, 8],
    "embed_dim": 16,
    "n_blocks_encoder": 1,
    "n_blocks_decoder": 1,
    "mlp_multiplier": 2,
    "n_heads": 2,
    "dropout": 0.0,
    "drop_path": 0.0,
    "parameter_dropout": 0.0,
    "residual": "climate",
    "masking_mode": "both",
    "positional_encoding": "fourier",
    "encoder_shifting": False,
    "decoder_shifting": True,
}
MEANS = {"T2M": 280.0, "U10M": 2.0, "PS": 1.0e5, "T": 270.0, "U": 5.0, "PHIS": 500.0}


def _write_stats(path: Path, values: dict[str, np.ndarray], *, levels: bool) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        handle["statistic"] = np.array([b"mu", b"sigma"])
        if levels:
            handle["lev"] = np.array(LEVELS)
        for name, data in values.items():
            handle[name] = data


def scaler_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    surface = {
        n: np.array([MEANS.get(n, 0.5), MEANS.get(n, 1.0) * 0.05 + 0.1]) for n in SURFACE + STATICS
    }
    vertical = {n: np.array([[MEANS[n]] * 2, [MEANS[n] * 0.05 + 0.1] * 2]) for n in VERTICAL}
    paths = {
        k: folder / f"{k}.nc"
        for k in (
            "musigma_surface",
            "musigma_vertical",
            "anomaly_variance_surface",
            "anomaly_variance_vertical",
        )
    }
    _write_stats(paths["musigma_surface"], surface, levels=False)
    _write_stats(paths["musigma_vertical"], vertical, levels=True)
    import h5py

    with h5py.File(paths["anomaly_variance_surface"], "w") as handle:
        for n in SURFACE:
            handle[n] = np.float64(MEANS.get(n, 1.0) * 0.01 + 0.5)
    with h5py.File(paths["anomaly_variance_vertical"], "w") as handle:
        handle["lev"] = np.array(LEVELS)
        for n in VERTICAL:
            handle[n] = np.array([MEANS[n] * 0.01 + 0.5] * 2)
    return paths


def release_files(work: Path, seed: int = 0, with_scalers: bool = True) -> dict[str, bytes]:
    """The files of a tiny Prithvi WxC release repo, as the loopback Hub serves them."""
    import torch
    from PrithviWxC.dataloaders.merra2 import input_scalers, output_scalers, static_input_scalers
    from PrithviWxC.model import PrithviWxC

    paths = scaler_files(work / "climatology")
    mu, sigma = input_scalers(
        SURFACE, VERTICAL, LEVELS, paths["musigma_surface"], paths["musigma_vertical"]
    )
    variance = output_scalers(
        SURFACE,
        VERTICAL,
        LEVELS,
        paths["anomaly_variance_surface"],
        paths["anomaly_variance_vertical"],
    )
    static_mu, static_sigma = static_input_scalers(paths["musigma_surface"], STATICS)
    torch.manual_seed(seed)
    kwargs = {
        k: v
        for k, v in PARAMS.items()
        if k not in ("surface_vars", "static_surface_vars", "vertical_vars", "levels")
    }
    kwargs["patch_size_px"] = tuple(kwargs["patch_size_px"])
    kwargs["mask_unit_size_px"] = tuple(kwargs["mask_unit_size_px"])
    model = PrithviWxC(
        **kwargs,
        input_scalers_mu=mu,
        input_scalers_sigma=sigma,
        static_input_scalers_mu=static_mu,
        static_input_scalers_sigma=static_sigma,
        output_scalers=variance**0.5,
        mask_ratio_inputs=0.0,
        mask_ratio_targets=0.0,
    )
    buffer = io.BytesIO()
    torch.save({"model_state": model.state_dict()}, buffer)
    files = {
        "config.yaml": yaml.safe_dump({"params": PARAMS}).encode(),
        "prithvi.wxc.tiny.pt": buffer.getvalue(),
    }
    if with_scalers:
        for key, path in paths.items():
            files[f"climatology/{key}.nc"] = path.read_bytes()
    return files


def _time(handle, day: str, steps: int = 8) -> None:
    time = handle.create_dataset("time", data=np.arange(steps) * 180)
    time.attrs["begin_date"] = np.int32(int(day))
    time.attrs["begin_time"] = np.int32(0)


def merra2_files(
    folder: Path, days: tuple[str, ...] = ("20200101", "20200102"), seed: int = 0
) -> Path:
    """MERRA-2 days in the official input layout, with the climatology beside them."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (len(LAT), len(LON))
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[0]), np.linspace(0, 1, shape[1]), indexing="ij")
    for day in days:
        with h5py.File(folder / f"MERRA2_sfc_{day}.nc", "w") as handle:
            handle["lat"], handle["lon"] = LAT, LON
            _time(handle, day)
            for n in SURFACE:  # smooth fields with fine-scale texture (there is detail to find)
                base = MEANS[n] * (1 + 0.01 * np.sin(6 * yy + 4 * xx))
                texture = 0.02 * MEANS[n] * np.sin(17 * yy) * np.cos(13 * xx)
                handle[n] = np.stack(
                    [base + texture + rng.normal(0, 0.001 * MEANS[n], shape) for _ in range(8)]
                )
            for n in STATICS:
                handle[n] = rng.uniform(0, 1, shape) * (MEANS.get(n, 1.0))
        with h5py.File(folder / f"MERRA_pres_{day}.nc", "w") as handle:
            handle["lat"], handle["lon"] = LAT, LON
            handle["lev"] = np.array(LEVELS)
            _time(handle, day)
            for n in VERTICAL:
                handle[n] = MEANS[n] + rng.normal(0, 0.01 * MEANS[n], (8, len(LEVELS), *shape))
    for hour in range(0, 24, 3):
        for doy in sorted(
            {
                int(
                    np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}", "D")
                    .astype(object)
                    .timetuple()
                    .tm_yday
                )
                for d in days
            }
        ):
            with h5py.File(folder / f"climate_surface_doy{doy:03}_hour{hour:02}.nc", "w") as handle:
                handle["lat"], handle["lon"] = LAT, LON
                for n in SURFACE:
                    handle[n] = np.full(shape, MEANS[n])
            with h5py.File(
                folder / f"climate_vertical_doy{doy:03}_hour{hour:02}.nc", "w"
            ) as handle:
                handle["lat"], handle["lon"] = LAT, LON
                handle["lev"] = np.array(LEVELS)
                for n in VERTICAL:
                    handle[n] = np.full((len(LEVELS), *shape), MEANS[n])
    return folder
