"""Typed recipes: schema, overrides, suggestions, shipped recipes."""

from __future__ import annotations

import pytest

from eofm.errors import RecipeError
from eofm.recipe import Recipe, dump_recipe, load_recipe, parse_override
from eofm.resources import shipped_recipes


def test_shipped_recipes_validate_and_cover_the_issue() -> None:
    names = {p.stem for p in shipped_recipes()}
    assert {
        "demo",
        "sen1floods11_s2_prithvi_v2_300_tl_lora",
        "sen1floods11_s2_prithvi_v1_100_frozen",
    } <= names
    assert {"era5_aurora_hydrology_decoder", "era5_aurora_hydrology_finetune"} <= names
    for path in shipped_recipes():
        recipe = load_recipe(path)
        assert isinstance(recipe, Recipe)
        if recipe.task.definition == "fire_danger":  # from tasks/fire_danger.yaml
            assert recipe.task.type == "classification" and recipe.task.monitor == "val/AUPRC"
        elif recipe.task.definition == "burn_scars":  # from tasks/burn_scars.yaml
            assert recipe.task.class_names == ["not_burned", "burn_scar"]
        elif recipe.task.definition == "eurosat_land_cover":  # tasks/eurosat_land_cover.yaml
            assert recipe.task.type == "scene_classification" and len(recipe.task.class_names) == 10
        elif recipe.task.definition == "bigearthnet_19":  # from tasks/bigearthnet_19.yaml
            assert recipe.task.type == "scene_classification" and len(recipe.task.class_names) == 19
        elif recipe.task.definition == "canopy_height":  # from tasks/canopy_height.yaml
            assert recipe.task.type == "pixel_regression" and recipe.task.units == "m"
        elif recipe.task.definition == "biomass":  # from tasks/biomass.yaml
            assert recipe.task.type == "pixel_regression" and recipe.task.units == "Mg/ha"
        elif recipe.task.definition == "crop_types":  # from tasks/crop_types.yaml
            assert recipe.task.type == "segmentation" and len(recipe.task.class_names) == 13
            assert len(recipe.data.frame_list()) == 3
        elif recipe.task.type == "segmentation":  # from tasks/flood_mapping.yaml
            assert recipe.task.class_names == ["not_water", "water"]
        elif recipe.task.definition == "downscaling":  # from tasks/downscaling.yaml
            assert recipe.task.type == "downscaling" and recipe.decoder.name == "pixel_shuffle"
            assert set(recipe.task.constraints) <= set(recipe.task.targets)
        elif recipe.task.definition == "fire_weather":  # from tasks/fire_weather.yaml
            assert "fwi" in recipe.task.targets and recipe.decoder.name == "mlp_latent"
        else:  # from tasks/hydrology.yaml
            assert recipe.task.targets == ["tp", "e"] and recipe.decoder.name == "mlp_latent"


def test_lora_recipe_uses_upernet_and_lora() -> None:
    recipe = load_recipe("sen1floods11_s2_prithvi_v2_300_tl_lora")
    assert recipe.decoder.name == "upernet"
    assert recipe.adapter.mode == "lora"
    assert recipe.backbone.name == "prithvi_eo_v2_300_tl"
    assert recipe.data.bands == ["BLUE", "GREEN", "RED", "NIR_NARROW", "SWIR_1", "SWIR_2"]


def test_dotted_overrides_are_parsed_as_yaml() -> None:
    recipe = load_recipe(
        "demo",
        [
            "trainer.max_steps=7",
            "optimizer.lr=3e-4",
            "data.bands=[vv]",
            "adapter.mode=lora",
            "trainer.devices=[0, 1]",
            "data.split_csv.train=/x/train.csv",
        ],
    )
    assert recipe.trainer.max_steps == 7
    assert recipe.optimizer.lr == pytest.approx(3e-4)
    assert recipe.data.bands == ["VV"]
    assert recipe.adapter.mode == "lora"
    assert recipe.trainer.devices == [0, 1]
    assert recipe.data.split_csv["train"] == "/x/train.csv"
    assert recipe.data.split_csv["val"] == "splits/flood_valid_data.csv"  # merged, not replaced


def test_int_is_accepted_where_float_is_declared() -> None:
    assert load_recipe("demo", ["optimizer.lr=1"]).optimizer.lr == 1.0


@pytest.mark.parametrize(
    ("override", "named", "suggested"),
    [
        ("trainer.max_epohcs=1", "trainer.max_epohcs", "trainer.max_epochs"),
        ("adaptor.mode=lora", "adaptor.mode", "adapter.mode"),
        ("decoder.chanels=3", "decoder.chanels", "decoder.channels"),
    ],
)
def test_unknown_key_names_it_and_suggests(override: str, named: str, suggested: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", [override])
    assert f"'{named}'" in str(info.value)
    assert f"'{suggested}'" in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_key_inside_a_recipe_file(tmp_path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("trainer:\n  max_setps: 3\n")
    with pytest.raises(RecipeError, match=r"'trainer.max_setps'.*'trainer.max_steps'"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=many", "trainer.max_steps"),
        ("adapter.mode=lorra", "Did you mean 'lora'"),
        ("backbone.pretrained=maybe", "backbone.pretrained"),
        ("data.bands=[VV, NOPE]", "NOPE"),
        ("task.class_names=[only]", "task.class_names"),
        ("novalue", "key=value"),
    ],
)
def test_bad_values_are_clear(override: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe("demo", [override])


def test_missing_recipe_file_suggests_shipped(tmp_path) -> None:
    with pytest.raises(RecipeError, match="demo"):
        load_recipe("dem")


def test_resolved_recipe_round_trips(tmp_path) -> None:
    recipe = load_recipe("demo", ["trainer.max_steps=3"])
    path = tmp_path / "recipe.yaml"
    path.write_text(dump_recipe(recipe))
    again = load_recipe(path)
    assert again == recipe
    assert "definition" in dump_recipe(again)


def test_parse_override_keeps_strings() -> None:
    assert parse_override("data.root=/a/b") == ("data.root", "/a/b")
    assert parse_override("trainer.precision=16-mixed") == ("trainer.precision", "16-mixed")


def test_shipped_recipes_leave_the_worker_count_to_the_machine() -> None:
    """Issue 34 item 15: no shipped recipe fixes data.num_workers above 0 (``auto`` fits
    the machine: 4 workers on 2 cores only add noise and memory)."""
    import yaml

    from eofm.resources import shipped_recipes

    fixed = []
    for path in shipped_recipes():
        workers = (yaml.safe_load(path.read_text()).get("data") or {}).get("num_workers", "auto")
        if workers not in ("auto", 0):
            fixed.append((path.name, workers))
    assert not fixed
