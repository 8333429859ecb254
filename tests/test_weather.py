"""Aurora latents, the ERA5 datamodule, the regression task and the latent cache.

Aurora runs with random init only where a test says so (``*_random_init``); the tiny
checkpoint is served in the official layout by the loopback Hub.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from eofm.errors import EofmError
from tests.weather import (
    ERA5,
    aurora_config_bytes,
    ckpt_bytes,
    copy_era5,
    model_level_era5,
    nan_in,
    official_aurora_state,
    regression_recipe,
    rewrite,
    tiny_aurora,
    to_weatherbench_zarr,
    with_generated_variables,
)

ALLOW = ["2t", "msl", "z", "t", "lsm", "slt"]


def spec(**kw):
    from eofm.data.era5 import WeatherSpec

    base = dict(
        surf_vars=["2t", "10u", "10v", "msl"],
        atmos_vars=["z", "u", "v", "t", "q"],
        static_vars=["lsm", "z", "slt"],
        targets=["tp", "e"],
        allow_missing=ALLOW,
        lon_range=[0, 9.75],
    )
    base.update(kw)
    return WeatherSpec(**base)


@pytest.fixture(scope="module")
def tiny_repo(hub) -> str:
    repo = "tester/aurora-tiny"
    hub.add_commit(
        repo,
        {
            "config.json": aurora_config_bytes(),
            "aurora-tiny.ckpt": ckpt_bytes(official_aurora_state(tiny_aurora(seed=3))),
        },
    )
    return repo


def test_real_era5_flows_into_aurora_batches() -> None:
    from eofm.data.era5 import ERA5DataModule

    dm = ERA5DataModule(ERA5, spec())
    assert dm.source.levels == (100, 200, 300, 400, 500, 600, 700, 850, 925, 1000)
    # 24 hourly steps, 2 history steps 6 h apart, 6 h lead: t = 06:00 .. 17:00
    assert sum(len(v) for v in dm.splits.values()) == 12
    assert max(dm.splits["train"]) < min(dm.splits["val"]) < min(dm.splits["test"])
    batch = dm.collate([dm.dataset("train")[i] for i in range(2)])
    inputs = batch["inputs"]
    assert set(inputs.surf_vars) == {"10u", "10v"} and set(inputs.atmos_vars) == {"u", "v", "q"}
    assert inputs.surf_vars["10u"].shape == (2, 2, 40, 40)  # 41 rows: the southern one drops
    assert inputs.atmos_vars["q"].shape == (2, 2, 10, 40, 40)
    assert inputs.metadata.atmos_levels == dm.source.levels
    assert torch.all(inputs.metadata.lat[1:] < inputs.metadata.lat[:-1])
    assert inputs.metadata.lon.min() >= 0 and inputs.metadata.lon.max() < 360
    assert [t.hour for t in inputs.metadata.time] == [6, 7]
    # history: 00:00 and 06:00 for the first sample; values straight from the file
    import xarray as xr

    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_u10.nc") as ds:
        want = ds["u10"].values[[0, 6], :40, :40].astype(np.float32)
    np.testing.assert_allclose(inputs.surf_vars["10u"][0].numpy(), want)
    # targets: tp accumulated over 07:00 .. 12:00 (the 6 h lead window), normalised with
    # training-split statistics
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_tp.nc") as ds:
        tp = ds["tp"].values[7:13, :40, :40].sum(axis=0)
    got = batch["target"][0, 0].numpy() * dm.std[0] + dm.mean[0]
    np.testing.assert_allclose(got, tp, rtol=1e-4, atol=1e-9)
    # absent statics are fed as their normalisation mean (zero after Aurora normalises)
    from aurora.normalisation import locations

    assert dm.source.filled_statics == {k: pytest.approx(locations[k]) for k in ("lsm", "z", "slt")}


def test_weatherbench_zarr_gives_the_same_samples(tmp_path) -> None:
    from eofm.data.era5 import ERA5DataModule

    store = to_weatherbench_zarr(ERA5, tmp_path / "era5.zarr")
    with pytest.raises(EofmError, match="do not strictly decrease"):
        ERA5DataModule(store, spec())
    zarr_dm = ERA5DataModule(store, spec(flip_latitude=True))
    nc_dm = ERA5DataModule(ERA5, spec())
    a, b = zarr_dm.dataset("val")[1], nc_dm.dataset("val")[1]
    for key in ("10u", "10v"):
        torch.testing.assert_close(a["surf"][key], b["surf"][key])
    torch.testing.assert_close(a["atmos"]["q"], b["atmos"]["q"])
    torch.testing.assert_close(a["target"], b["target"], rtol=1e-4, atol=1e-4)


def test_generated_variables_and_land_only_mask(tmp_path) -> None:
    """t2m and lsm are generated (the sample lacks them); land-only targets mask the sea."""
    from eofm.data.era5 import ERA5DataModule

    root = with_generated_variables(tmp_path / "era5")
    dm = ERA5DataModule(root, spec(allow_missing=["msl", "z", "t", "slt"], land_only=["e"]))
    sample = dm.dataset("train")[0]
    assert set(sample["surf"]) == {"2t", "10u", "10v"}
    assert "lsm" not in dm.source.filled_statics
    west = dm.lon < 5.0
    assert sample["valid"][1][:, west].all() and not sample["valid"][1][:, ~west].any()
    assert sample["valid"][0].all()  # tp is not land-only


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("width", "41 longitudes wide, not a multiple of the patch size 4"),
        ("latitude", "do not strictly decrease"),
        ("nan", r"Input variable 10u in .*u10\.nc has NaN"),
        ("missing", r"Input variable\(s\) 2t \(surf\).* are missing"),
        ("target", "Target variable 'ro' is not a surface variable"),
    ],
)
def test_bad_weather_input_is_one_clear_error(tmp_path, case: str, message: str) -> None:
    from eofm.data.era5 import ERA5DataModule

    root = copy_era5(tmp_path / "era5")
    kw = {}
    if case == "width":
        kw["lon_range"] = None
    elif case == "latitude":
        rewrite(root / "ERA5_2020-01-01_tp.nc", lambda ds: ds.sortby("latitude"))
    elif case == "nan":
        nan_in(root / "ERA5_2020-01-01_u10.nc", "u10", step=6)
    elif case == "missing":
        kw["allow_missing"] = ["msl", "z", "t", "lsm", "slt"]
    elif case == "target":
        kw["targets"] = ["tp", "ro"]
    with pytest.raises(EofmError, match=message):
        ERA5DataModule(root, spec(**kw))


def test_bad_input_leaves_no_run_dir(tmp_path, tiny_repo) -> None:
    import yaml

    root = copy_era5(tmp_path / "era5")
    nan_in(root / "ERA5_2020-01-01_u10.nc", "u10", step=6)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(regression_recipe(root)))
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "eofm", "fit", str(recipe), "--run-dir", str(run)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert "u10.nc has NaN" in done.stderr and "Traceback" not in done.stderr
    assert not run.exists()


def test_aurora_small_latent_shapes_random_init() -> None:
    """RANDOM INIT (test only): the real AuroraSmallPretrained architecture on 16x32."""
    from eofm.backbones.aurora import AuroraLatentBackbone
    from eofm.data.era5 import ERA5DataModule
    from eofm.registry import backbone_manifest

    dm = ERA5DataModule(ERA5, spec(lat_range=[55, 51.25], lon_range=[0, 7.75]))
    batch = dm.collate([dm.dataset("train")[0]])["inputs"]
    manifest = backbone_manifest("aurora_small_pretrained")
    assert manifest.revision == "0be7e57c685dac86b78c4a19a3ab149d13c6a3dd"
    with torch.inference_mode():
        latent = AuroraLatentBackbone(manifest).eval()(batch)
        assert latent.shape == (1, 4, 4, 8, 512)  # (B, levels, H/p, W/p, 2D)
        encoded = AuroraLatentBackbone(manifest, latent="encoder").eval()(batch)
        assert encoded.shape == (1, 4, 4, 8, 256)


def test_official_layout_checkpoint_loads_through_the_hub(tiny_repo) -> None:
    from eofm.backbones.aurora import load_aurora_backbone
    from eofm.backbones.loading import resolve_manifest

    manifest = resolve_manifest(f"hf://{tiny_repo}")
    assert manifest.model_class == "AuroraSmallPretrained" and manifest.embed_dim == 32
    backbone = load_aurora_backbone(manifest)
    assert backbone.source["file"] == "aurora-tiny.ckpt"
    reference = tiny_aurora(seed=3)
    for name, value in reference.state_dict().items():
        if not name.startswith("decoder."):
            torch.testing.assert_close(backbone.model.state_dict()[name], value)
    assert backbone.latent_dim == 64


def test_registered_aurora_fails_without_weights_and_warns_with_flag(hub, caplog) -> None:
    from eofm.backbones.aurora import load_aurora_backbone
    from eofm.registry import backbone_manifest

    manifest = backbone_manifest("aurora_small_pretrained")
    with pytest.raises(EofmError, match=r"microsoft/aurora.*--allow-random-init"):
        load_aurora_backbone(manifest)
    truncated = ckpt_bytes(official_aurora_state(tiny_aurora()))[:1000]
    hub.add_commit(
        "tester/aurora-broken", {"config.json": aurora_config_bytes(), "a.ckpt": truncated}
    )
    from eofm.backbones.loading import resolve_manifest

    with pytest.raises(EofmError, match="does not load"):
        load_aurora_backbone(resolve_manifest("hf://tester/aurora-broken"))
    with caplog.at_level(logging.WARNING):
        model = load_aurora_backbone(manifest, allow_random_init=True)
    assert model.source is None and "RANDOMLY INITIALISED" in caplog.text


def test_missing_aurora_package_says_how_to_install() -> None:
    code = (
        "import sys; sys.modules['aurora'] = None\n"
        "from eofm.backbones.aurora import import_aurora\n"
        "from eofm.errors import EofmError\n"
        "try:\n    import_aurora()\nexcept EofmError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert 'pip install "eofm[aurora]"' in out


def test_mlp_decoder_unpatchifies_each_variable() -> None:
    from eofm.decoders.mlp_latent import LatentMLPDecoder

    dec = LatentMLPDecoder(8, ["tp", "e"], patch_size=2, hidden=4)
    latent = torch.randn(3, 4, 5, 6, 8)
    out = dec(latent)
    assert out.shape == (3, 2, 10, 12)
    # pixel (2i+a, 2j+b) is output a*2+b of the MLP at token (i, j) of the surface level
    head = dec.heads["var_1"]
    torch.testing.assert_close(out[1, 1, 2 * 3 + 1, 2 * 4 + 0], head(latent[1, 0, 3, 4])[2])
    both = LatentMLPDecoder(8, ["tp"], patch_size=2, hidden=4, levels="all")
    assert both(latent).shape == (3, 1, 10, 12)


def test_scores_are_latitude_weighted_and_masked() -> None:
    from eofm.lightning_tasks.regression import LatWeightedScores, latitude_weights, masked_mse

    lat = torch.tensor([60.0, 0.0])
    w = latitude_weights(lat)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0]) / 0.75)
    pred = torch.zeros(1, 1, 2, 1)
    target = torch.tensor([[[[2.0], [1.0]]]])
    valid = torch.ones_like(target, dtype=torch.bool)
    metric = LatWeightedScores(1, w, climatology=None)
    metric.update(pred, target, valid)
    scores = metric.compute()
    want_mse = (w[0] * 4 + w[1] * 1) / (w[0] + w[1])
    torch.testing.assert_close(scores["rmse"].float().reshape(1), want_mse.sqrt().view(1))
    torch.testing.assert_close(
        scores["bias"].float().reshape(1), -((w[0] * 2 + w[1]) / w.sum()).view(1)
    )
    valid[0, 0, 0, 0] = False  # the masked pixel no longer counts
    assert masked_mse(pred, target, valid).item() == pytest.approx(1.0)
    clim = LatWeightedScores(1, w, climatology=torch.tensor([[[0.0], [0.0]]]))
    clim.update(target.clone(), target, torch.ones_like(valid))
    assert clim.compute()["acc"].item() == pytest.approx(1.0)


def _fit(tmp_path, name: str, recipe: dict):
    from eofm.commands.fit import fit
    from eofm.recipe import load_recipe
    from eofm.train.rundir import read_json

    run = fit(load_recipe(recipe), tmp_path / name)
    return read_json(run / "metrics.json"), run


def test_decoder_training_caches_latents_and_reuses_them(tmp_path, tiny_repo, capsys) -> None:
    root = copy_era5(tmp_path / "era5")
    cache_dir = tmp_path / "cache"
    recipe = regression_recipe(root, cache={"dir": str(cache_dir), "mode": "on"})
    first, run = _fit(tmp_path, "a", recipe)
    assert first["latent_cache"]["hits"] == {"train": False, "val": False}
    assert first["trainable_parameters"] < 0.1 * first["total_parameters"]
    second, _ = _fit(tmp_path, "b", recipe)
    assert second["latent_cache"]["hits"] == {"train": True, "val": True}
    # the same weights come out of training from cached latents or from the backbone
    uncached, _ = _fit(tmp_path, "c", regression_recipe(root, cache={"mode": "off"}))
    assert uncached["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], rel=1e-4)
    assert second["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], rel=1e-4)
    # any change to a data file, the levels or the backbone revision is a new key
    import os

    tp = root / "ERA5_2020-01-01_tp.nc"
    os.utime(tp, ns=(tp.stat().st_atime_ns, tp.stat().st_mtime_ns + 10**9))
    third, _ = _fit(tmp_path, "d", recipe)
    assert third["latent_cache"]["hits"] == {"train": False, "val": False}
    recipe["data"]["levels"] = [500, 850]
    fourth, _ = _fit(tmp_path, "e", recipe)
    assert fourth["latent_cache"]["hits"]["train"] is False
    # eofm test works from the run dir, scores in physical units
    from eofm.commands.evaluate import run_test

    metrics = run_test(run)["metrics"]
    assert {"test/rmse_tp", "test/mae_e", "test/bias_tp"} <= set(metrics)
    assert 0 < metrics["test/rmse_tp"] < 1e-2  # metres of water per hour


def test_cache_is_bounded_with_lru_eviction(tmp_path) -> None:
    from eofm.train.cache import LatentCache

    cache = LatentCache(tmp_path, max_bytes=10_000)
    samples = [{"latent": torch.zeros(1000), "time": f"t{i}"} for i in range(2)]  # 8 kB
    cache.write("old", {"k": 1}, samples)
    cache.write("new", {"k": 2}, samples)
    removed = cache.evict(keep={"new"})
    assert [p.name for p in removed] == ["old"]
    assert cache.lookup("new") and not cache.lookup("old")
    assert "1 entries" in cache.report()


def test_full_and_lora_fine_tuning_refuse_the_cache(tmp_path, tiny_repo) -> None:
    from eofm.commands.fit import fit
    from eofm.recipe import load_recipe

    root = copy_era5(tmp_path / "era5")
    for adapter in ({"mode": "full"}, {"mode": "lora", "rank": 2}):
        recipe = regression_recipe(root, adapter=adapter, cache={"mode": "on"})
        with pytest.raises(EofmError, match="not frozen"):
            fit(load_recipe(recipe), tmp_path / adapter["mode"])
        assert not (tmp_path / adapter["mode"]).exists()
    metrics, _ = _fit(
        tmp_path, "lora", regression_recipe(root, adapter={"mode": "lora", "rank": 2})
    )
    assert metrics["latent_cache"] is None
    assert metrics["trainable_parameters"] > 0


def test_prithvi_segmentation_uses_the_cache_without_augmentation(tmp_path) -> None:
    from eofm.commands.fit import fit
    from eofm.recipe import load_recipe
    from eofm.train.rundir import read_json
    from tests.realdata import make_s2hand_chips

    root = make_s2hand_chips(tmp_path / "HandLabeled")
    values = {
        "data.root": str(root),
        "data.split_csv": "null",
        "data.bands": "[BLUE, GREEN, RED, NIR_NARROW, SWIR_1, SWIR_2]",
        "backbone.name": "prithvi_eo_v2_tiny_tl",
        "backbone.pretrained": "false",
        "backbone.tap_layers": "[0, 1]",
        "adapter.mode": "frozen",
        "decoder.channels": 16,
        "data.crop_size": 32,
        "data.batch_size": 2,
        "trainer.max_epochs": 2,
        "trainer.enable_progress_bar": "false",
        "cache.mode": "on",
        "cache.dir": str(tmp_path / "cache"),
    }

    def recipe(**extra):
        return load_recipe("demo", [f"{k}={v}" for k, v in {**values, **extra}.items()])

    with pytest.raises(EofmError, match=r"random augmentation \(hflip, random 32 px crops"):
        fit(recipe(), tmp_path / "aug")
    plain = {"data.hflip": "false", "data.crop_size": "null"}
    first = read_json(fit(recipe(**plain), tmp_path / "a") / "metrics.json")
    second = read_json(fit(recipe(**plain), tmp_path / "b") / "metrics.json")
    assert first["latent_cache"]["hits"]["train"] is False
    assert second["latent_cache"]["hits"]["train"] is True
    uncached = read_json(
        fit(recipe(**plain, **{"cache.mode": "off"}), tmp_path / "c") / "metrics.json"
    )
    assert second["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], rel=1e-4)
    assert uncached["metrics"]["val/loss"] == pytest.approx(first["metrics"]["val/loss"], rel=1e-4)


def test_mc_dropout_reports_spread_skill(tmp_path, tiny_repo, capsys) -> None:
    """Dropout passes of the decoders on one latent: spread, RMSE of their mean, ratio."""
    import json

    from eofm.cli import main

    root = copy_era5(tmp_path / "era5")
    recipe = regression_recipe(root, decoder={"dropout": 0.3}, cache={"mode": "off"})
    _, run = _fit(tmp_path, "mc", recipe)
    assert main(["test", str(run), "--mc-dropout", "4"]) == 0
    assert "spread-skill" in capsys.readouterr().out
    spread = json.loads((run / "test_metrics.json").read_text())["spread_skill"]
    assert spread["members"] == 4
    for name in ("tp", "e"):
        values = spread[name]
        assert values["spread"] > 0 and values["rmse_of_mean"] > 0
        assert values["ratio"] == pytest.approx(values["spread"] / values["rmse_of_mean"])
    without = regression_recipe(root, decoder={"dropout": 0.0}, cache={"mode": "off"})
    _, plain = _fit(tmp_path, "plain", without)
    assert main(["test", str(plain), "--mc-dropout", "4"]) == 1
    assert "decoder.dropout > 0" in capsys.readouterr().err
    assert main(["test", str(plain), "--mc-dropout", "1"]) == 2


def test_frozen_backbone_stays_out_of_checkpoints(tmp_path, tiny_repo) -> None:
    """A frozen Aurora run checkpoints only its decoders and a pointer to the base commit;
    resuming and testing rebuild the backbone from that commit."""
    from eofm.checkpoint_format import BASE_KEY
    from eofm.commands.evaluate import run_test
    from eofm.train.rundir import load_checkpoint

    root = copy_era5(tmp_path / "era5")
    recipe = regression_recipe(root, cache={"mode": "off"})
    summary, run = _fit(tmp_path, "light", recipe)
    best = run / "checkpoints" / "best.ckpt"
    state, base = load_checkpoint(best)
    assert base["repo"] == tiny_repo and len(base["revision"]) == 40
    assert base["frozen_parameters"] > 0
    assert not [k for k in state if k.startswith("model.backbone.") and "weight" in k]
    assert any(k.startswith("model.decoder.") for k in state)
    kept = sum(v.numel() for v in state.values())
    assert kept < summary["total_parameters"] - summary["trainable_parameters"] // 2
    metrics = run_test(run)["metrics"]
    assert 0 < metrics["test/rmse_tp"] < 1e-2
    # resume (strict restore): the backbone's weights come back from the model built from
    # the base, so Lightning's strict load of last.ckpt succeeds
    resumed, _ = _fit(tmp_path, "light", recipe)
    assert resumed["global_step"] == summary["global_step"]
    # the checkpoint pins its base: a commit the Hub does not have is an error, never
    # random or other weights
    payload = __import__("torch").load(best, weights_only=True)
    payload[BASE_KEY]["revision"] = "0" * 40
    __import__("torch").save(payload, best)
    from eofm.errors import EofmError

    with pytest.raises(
        EofmError, match=f"Revision '{'0' * 40}' does not exist in Hub repo {tiny_repo}"
    ):
        run_test(run)


def test_accumulated_targets_sum_the_lead_window() -> None:
    """On the real hourly sample, a 6 h lead: tp and e are the sums of the 6 hourly
    accumulations after 'now'; sp (not accumulated) is the value at now + 6 h."""
    from eofm.data.era5 import ERA5DataModule

    base = spec()
    base.targets = ["tp", "e", "sp"]
    dm = ERA5DataModule(ERA5, base)
    dataset = dm.dataset("train")
    now = dataset.now[0]
    src = dm.source
    rows = len(dm.lat)
    for name in ("tp", "e"):
        hourly = np.stack([src.read("surf", name, now + h)[:rows] for h in range(1, 7)])
        assert np.allclose(dataset.target_field(name, now)[:rows], hourly.sum(axis=0))
    assert np.array_equal(dataset.target_field("sp", now), src.read("surf", "sp", now + 6))
    sample = dataset[0]
    total = sample["target"][0].numpy() * dm.std[0] + dm.mean[0]
    expected = np.stack([src.read("surf", "tp", now + h)[:rows] for h in range(1, 7)]).sum(0)
    assert np.allclose(total, expected, atol=1e-6)
    # more variables can be declared accumulated
    base.accumulated = ["sp"]
    assert ERA5DataModule(ERA5, base).dataset("train").target_field("sp", now).mean() > 5e5


def test_model_levels_are_interpolated_to_pressure_levels(tmp_path) -> None:
    """Issue 34 item 1: CDS model-level files (``level`` long_name model_level_number) are
    not read as hPa: they are interpolated to the requested pressure levels, and match the
    real pressure-level fields they were made from."""
    import xarray as xr

    from eofm.data.era5 import ERA5DataModule

    root = model_level_era5(tmp_path / "era5_ml")
    levels = [100, 300, 500, 850]
    dm = ERA5DataModule(root, spec(levels=levels))
    assert dm.source.levels == tuple(levels)
    q = dm.source.read("atmos", "q", [0, 6])[..., :40]
    u = dm.source.read("atmos", "u", [0, 6])[..., :40]
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_pl_q.nc") as ds:
        want_q = ds["q"].sel(level=levels).values[[0, 6]][..., :40]
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_pl_u.nc") as ds:
        want_u = ds["u"].sel(level=levels).values[[0, 6]][..., :40]
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_sp.nc") as ds:
        sp = ds["sp"].values[[0, 6]][:, None, :, :40]
    # at 100 hPa q is ~3e-6 kg/kg (model level 100, read as hPa, would be ~1.6e-3)
    assert float(np.median(q[:, 0])) < 1e-5
    # each column is the model-level profile interpolated in log-pressure (numpy's interp
    # on the file's own values as the reference)
    from eofm.data.model_levels import full_level_pressure

    with xr.open_dataset(root / "ERA5_2020-01-01_ml_q.nc") as ds:
        ml_q = ds["q"].values[[0, 6]][..., :40]
        ml_p = full_level_pressure(ds["level"].values, sp[:, 0])
    for t, i, j in [(0, 0, 0), (1, 9, 18), (1, 30, 25), (0, 39, 39)]:
        ref = np.interp(
            np.log(np.array(levels) * 100.0), np.log(ml_p[t, :, i, j]), ml_q[t, :, i, j]
        )
        np.testing.assert_allclose(q[t, :, i, j], ref, rtol=1e-5)
    # and the round trip pressure -> model -> pressure levels keeps the real fields above
    # ground (up to interpolating twice across sharp layers, e.g. a dry layer at 500 hPa)
    above = np.broadcast_to(sp > np.array(levels)[:, None, None] * 100 + 3000, q.shape)
    assert np.median(np.abs(q[above] / want_q[above] - 1)) < 0.05
    assert np.median(np.abs(u[above] - want_u[above])) < 0.3
    assert np.isfinite(q).all() and np.isfinite(u).all()


def test_log_pressure_interpolation_is_exact_for_log_linear_profiles() -> None:
    from eofm.data.model_levels import full_level_pressure, interpolate_to_pressure

    sp = np.full((1, 2, 3), 101325.0)
    sp[0, 1] = 85000.0  # a mountain: 925 and 1000 hPa lie below its ground
    levels = np.arange(20, 138)
    pressure = full_level_pressure(levels, sp)
    values = 3.0 * np.log(pressure) + 1.0
    got = interpolate_to_pressure(values, levels, sp, (10.0, 500.0, 850.0), name="u", path=ERA5)
    want = 3.0 * np.log(np.array([10.0, 500.0, 850.0]) * 100) + 1.0
    np.testing.assert_allclose(got[0, :, 0], np.broadcast_to(want[:, None], (3, 3)), rtol=1e-6)
    below = interpolate_to_pressure(values, levels, sp, (1000.0,), name="u", path=ERA5)
    np.testing.assert_allclose(below[0, 0, 1], values[0, -1, 1], rtol=1e-6)  # held


@pytest.mark.parametrize("case", ["no_sp", "top"])
def test_model_levels_that_cannot_be_converted_are_one_clear_error(tmp_path, case) -> None:
    from eofm.data.era5 import ERA5DataModule

    root = model_level_era5(tmp_path / "era5_ml", levels=list(range(90, 138)))
    if case == "no_sp":
        (root / "ERA5_2020-01-01_sp.nc").unlink()
        message = r"ml_q\.nc holds q on ERA5 model levels.*surface pressure \(sp"
        kw = {"levels": [500]}
    else:
        message = r"ml_.\.nc: . on model levels 90 \.\. 137 has its top at .* 100 hPa needs higher"
        kw = {"levels": [100, 500]}
    with pytest.raises(EofmError, match=message):
        ERA5DataModule(root, spec(**kw))


@pytest.mark.parametrize("layout", ["grib_to_netcdf", "cds_2024", "cfgrib"])
def test_model_level_layouts_are_recognised(tmp_path, layout) -> None:
    """The CDS's model-level layouts: grib_to_netcdf (``level``, long_name
    model_level_number), the 2024 CDS NetCDF (``model_level``, ``valid_time``) and cfgrib
    (``hybrid``, GRIB_typeOfLevel); the real pressure-level sample is not one."""
    import xarray as xr

    from eofm.data.model_levels import model_level_coordinate

    root = model_level_era5(tmp_path / "ml", levels=[136, 137])
    path = root / "ERA5_2020-01-01_ml_u.nc"
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    if layout == "cds_2024":
        ds = ds.rename(level="model_level", time="valid_time")
        ds["model_level"].attrs = {"long_name": "model_level", "units": "1"}
    elif layout == "cfgrib":
        ds = ds.rename(level="hybrid")
        ds["hybrid"].attrs = {"long_name": "hybrid level", "units": "1", "positive": "down"}
        ds["u"].attrs["GRIB_typeOfLevel"] = "hybrid"
    other = tmp_path / "renamed.nc"
    ds.to_netcdf(other)
    with xr.open_dataset(other) as ds:
        assert model_level_coordinate(ds, other) is not None
    with xr.open_dataset(ERA5 / "ERA5_2020-01-01_pl_u.nc") as ds:
        assert model_level_coordinate(ds, ERA5 / "ERA5_2020-01-01_pl_u.nc") is None
