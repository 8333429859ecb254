"""Sentinel-2 products as predict inputs (issue 34 item 5): .SAFE folders (L1C, L2A),
IMG_DATA folders, band files, local STAC items -> one VRT on one grid, read by name.

The layouts copy ESA's SAFE format (S2-PDGS-TAS-DI-PSD; L1C ``IMG_DATA/T<tile>_<time>_B02.jp2``,
L2A ``IMG_DATA/R10m/T<tile>_<time>_B02_10m.jp2``), written as JPEG 2000 with GDAL's
JP2OpenJPEG driver (lossless). The pixel values and the georeference are a real Landsat 8
scene's (blue, green, red of ../shared/data/landsat), so the "10m" files hold 30 m pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from eofm.errors import EofmError
from eofm.predict.plan import expand_inputs
from tests.realdata import SHARED

LANDSAT8 = SHARED.parent / "landsat" / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
SIZE = 48
CODES = {"B02": 1, "B03": 2, "B04": 3}  # the Landsat file's blue, green, red
TILE, TIME = "T21JXX", "20200518T133211"
JP2 = {"driver": "JP2OpenJPEG", "QUALITY": "100", "REVERSIBLE": "YES"}


def landsat_window() -> tuple[np.ndarray, dict]:
    with rasterio.open(LANDSAT8) as ds:
        window = Window(900, 900, SIZE, SIZE)
        data = ds.read(window=window)
        profile = {
            "crs": ds.crs,
            "transform": ds.window_transform(window),
            "width": SIZE,
            "height": SIZE,
            "count": 1,
            "dtype": "uint16",
        }
    assert (data > 0).all()
    return data, profile


def write_band(path: Path, data: np.ndarray, profile: dict, **driver) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **(profile | (driver or {"driver": "GTiff"}))) as out:
        out.write(data[None])
    return path


def l2a_product(root: Path) -> Path:
    """An L2A .SAFE: B02..B04 in R10m, and B02 and SCL at half resolution in R20m."""
    data, profile = landsat_window()
    safe = root / f"S2B_MSIL2A_{TIME}_N0214_R124_{TILE}_20200518T160000.SAFE"
    img = safe / "GRANULE" / f"L2A_{TILE}_A016612_{TIME}" / "IMG_DATA"
    (safe / "MTD_MSIL2A.xml").parent.mkdir(parents=True, exist_ok=True)
    (safe / "MTD_MSIL2A.xml").write_text("<n1:Level-2A_User_Product/>\n")
    for code, band in CODES.items():
        write_band(img / "R10m" / f"{TILE}_{TIME}_{code}_10m.jp2", data[band - 1], profile, **JP2)
    half = profile | {"width": SIZE // 2, "height": SIZE // 2}
    half["transform"] = profile["transform"] * profile["transform"].scale(2, 2)
    coarse = data[:, ::2, ::2]
    write_band(img / "R20m" / f"{TILE}_{TIME}_B02_20m.jp2", coarse[0], half, **JP2)
    write_band(img / "R20m" / f"{TILE}_{TIME}_SCL_20m.jp2", coarse[0] % 11, half, **JP2)
    return safe


def l1c_img_data(root: Path) -> Path:
    data, profile = landsat_window()
    img = root / f"S2B_MSIL1C_{TIME}.SAFE" / "GRANULE" / f"L1C_{TILE}_A016612_{TIME}" / "IMG_DATA"
    for code, band in CODES.items():
        write_band(img / f"{TILE}_{TIME}_{code}.jp2", data[band - 1], profile, **JP2)
    return img


def test_safe_l2a_is_one_vrt_on_the_requested_grid(tmp_path: Path) -> None:
    data, profile = landsat_window()
    safe = l2a_product(tmp_path)
    [native] = expand_inputs([str(safe)], 30.0)
    assert native.suffix == ".vrt" and native.stem == safe.stem
    with rasterio.open(native) as ds:
        assert ds.descriptions == ("BLUE", "GREEN", "RED")  # SCL is not a band
        assert ds.crs == profile["crs"] and ds.transform == profile["transform"]
        assert (ds.width, ds.height) == (SIZE, SIZE)
        np.testing.assert_array_equal(ds.read(), data)  # the R10m files, not R20m's B02
    [fine] = expand_inputs([str(safe)])  # default grid: 10 m
    with rasterio.open(fine) as ds:
        assert ds.res == (10.0, 10.0) and (ds.width, ds.height) == (3 * SIZE, 3 * SIZE)
        assert ds.bounds == rasterio.open(native).bounds
        window = ds.read(2, window=Window(30, 30, 16, 16))  # a window, bilinear
        assert window.min() >= data[1].min() and window.max() <= data[1].max()


def test_l1c_img_data_folder_band_files_and_stac_item(tmp_path: Path) -> None:
    data, profile = landsat_window()
    img = l1c_img_data(tmp_path)
    [vrt] = expand_inputs([str(img)], 30.0)
    assert vrt.stem == f"S2B_MSIL1C_{TIME}"  # named after its .SAFE, not IMG_DATA
    with rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(), data)
    [grouped] = expand_inputs([str(img / "*.jp2")], 30.0)  # band files one by one
    assert grouped.stem == f"{TILE}_{TIME}"
    # a STAC item whose assets point at per-band GeoTIFFs (relative hrefs)
    folder = tmp_path / "stac"
    assets = {}
    for code, (band, common) in zip(CODES, [(1, "blue"), (2, "green"), (3, "red")], strict=True):
        write_band(folder / "bands" / f"{code}.tif", data[band - 1], profile)
        assets[code.lower()] = {
            "href": f"./bands/{code}.tif",
            "type": "image/tiff; application=geotiff",
            "roles": ["data"],
            "eo:bands": [{"name": code, "common_name": common}],
        }
    assets["thumbnail"] = {"href": "./thumb.png", "roles": ["thumbnail"]}
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": f"S2B_{TILE}_20200518_0_L2A",
        "geometry": None,
        "properties": {"datetime": "2020-05-18T13:32:11Z"},
        "assets": assets,
        "links": [],
    }
    (folder / "item.json").write_text(json.dumps(item))
    [stac] = expand_inputs([str(folder / "item.json")], 30.0)
    assert stac.stem == item["id"]
    with rasterio.open(stac) as ds:
        assert ds.descriptions == ("BLUE", "GREEN", "RED") and ds.crs == profile["crs"]
        np.testing.assert_array_equal(ds.read(), data)
    item["assets"]["b02"]["href"] = "https://example.com/B02.tif"
    (folder / "item.json").write_text(json.dumps(item))
    with pytest.raises(EofmError, match="remote"):
        expand_inputs([str(folder / "item.json")])


def test_processing_baseline_offset_is_added_back(tmp_path: Path) -> None:
    """Baseline >= 04.00: DN = reflectance x10000 + 1000, BOA_ADD_OFFSET -1000 in
    MTD_MSIL2A.xml (Product_Image_Characteristics/BOA_ADD_OFFSET_VALUES_LIST)."""
    data, _ = landsat_window()
    safe = l2a_product(tmp_path)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-2A_User_Product><n1:General_Info>'
        "<Product_Image_Characteristics><BOA_ADD_OFFSET_VALUES_LIST>"
        f"{offsets}</BOA_ADD_OFFSET_VALUES_LIST></Product_Image_Characteristics>"
        "</n1:General_Info></n1:Level-2A_User_Product>\n"
    )
    [vrt] = expand_inputs([str(safe)], 30.0)
    with rasterio.open(vrt) as ds:
        assert ds.dtypes[0] == "int32"
        np.testing.assert_array_equal(ds.read(), data.astype(np.int64) - 1000)


def test_band_codes_of_file_names() -> None:
    from eofm.data.sentinel2_products import band_file

    names = {
        "T21JXX_20200518T133211_B8A.jp2": "NIR_NARROW",  # L1C
        "T21JXX_20200518T133211_B11_20m.jp2": "SWIR_1",  # L2A
        "HLS.S30.T10TGS.2020245T185921.v2.0.B05.tif": "RED_EDGE_1",
        "HLS.L30.T10TGS.2020245T185921.v2.0.B05.tif": "NIR_NARROW",  # HLS v2.0 Table 5
    }
    for name, band in names.items():
        assert band_file(Path(name)).name == band
    for name in ("T21JXX_20200518T133211_SCL_20m.jp2", "T21JXX_TCI.jp2", "scene.tif"):
        assert band_file(Path(name)) is None


def test_a_folder_of_scenes_is_not_a_product_and_resolution_needs_one(tmp_path: Path) -> None:
    data, profile = landsat_window()
    for name in ("a.tif", "b.tif"):
        write_band(tmp_path / "scenes" / name, data[0], profile)
    assert [p.name for p in expand_inputs([str(tmp_path / "scenes")])] == ["a.tif", "b.tif"]
    with pytest.raises(EofmError, match="--resolution"):
        expand_inputs([str(tmp_path / "scenes")], 20.0)


def test_predict_a_safe_product_keeps_its_georeference(tmp_path: Path) -> None:
    from eofm.cli import main
    from tests.runs import make_run_dir

    safe = l2a_product(tmp_path / "in")
    run = make_run_dir(tmp_path / "run", ["RED", "GREEN", "BLUE"], [7e3] * 3, [1e3] * 3)
    out = tmp_path / "out"
    args = ["predict", "--model", str(run), str(safe), "--out", str(out), "--no-progress"]
    assert main([*args, "--tile", "32", "--overlap", "0", "--resolution", "30"]) == 0
    _, profile = landsat_window()
    with rasterio.open(out / f"{safe.stem}.tif") as ds:
        assert ds.crs == profile["crs"] and ds.transform == profile["transform"]
        assert (ds.width, ds.height) == (SIZE, SIZE) and (ds.read(1) != 255).all()
    assert sorted(p.name for p in safe.rglob("*") if p.is_file()) == sorted(
        p.name for p in l2a_product(tmp_path / "again").rglob("*") if p.is_file()
    )  # nothing written into the product
