"""The task-family seam, typed per-dataset configs, the registry and the import layers."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eofm.errors import RecipeError
from eofm.families.base import family_of
from eofm.recipe import load_recipe
from eofm.registry import REGISTRY, Entry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "eofm"


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_import_contracts_hold() -> None:
    """Layers, no cycles, nothing heavy on the recipe path (.importlinter)."""
    lint = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_task_type_branches_outside_the_families() -> None:
    pattern = re.compile(r"task\.type\s*(==|!=)")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in python_files()
        if "families" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_library_code_does_not_print() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in python_files()
        if path.name != "cli.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"(?<![\w.])print\(", line)
    ]
    assert offenders == []


def test_no_reference_to_a_guide_outside_the_repository() -> None:
    text = "\n".join(p.read_text() for p in python_files())
    assert "GUIDE" not in text and "design guide" not in text


def test_dead_code_is_gone() -> None:
    from eofm.backbones.manifest import AuroraManifest, BackboneManifest
    from eofm.lightning_tasks.regression import LatWeightedScores

    for cls in (BackboneManifest, AuroraManifest):
        names = {f.name for f in dataclasses.fields(cls)}
        assert not names & {"key_layout", "extra", "paper"}
    assert "summary" not in {f.name for f in dataclasses.fields(Entry)}
    metric = LatWeightedScores(1, torch.ones(3), None)
    assert "oa" not in metric._defaults


# --- typed per-dataset configs ----------------------------------------------------------


def test_data_keys_are_validated_against_the_selected_dataset() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", ["data.surf_vars=[2t]"])  # an ERA5 key in a Sen1Floods11 recipe
    assert "data.surf_vars" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", ["data.crop_sise=64"])
    assert "data.crop_sise" in str(info.value) and "data.crop_size" in str(info.value)
    recipe = load_recipe("era5_aurora_hydrology_decoder", ["data.root=/tmp"])
    assert recipe.data.surf_vars and not hasattr(recipe.data, "bands")


def test_unknown_dataset_is_a_recipe_error_with_a_suggestion() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", ["data.name=sen1flods11"])
    assert "data.name" in str(info.value) and "sen1floods11" in str(info.value)


def test_a_new_dataset_plugs_in_without_touching_the_recipe(monkeypatch) -> None:
    """One config dataclass + one registry line: recipe.py is not involved."""
    from eofm.data.config import DataConfig
    from eofm.typed_config import option

    @dataclasses.dataclass
    class ToyConfig(DataConfig):
        patch: int = option(8, "pixels per side")

    module = type(sys)("toy_dataset")
    module.ToyConfig = ToyConfig
    monkeypatch.setitem(sys.modules, "toy_dataset", module)
    monkeypatch.setitem(
        REGISTRY._entries,
        ("dataset", "toy"),
        Entry("dataset", "toy", "toy_dataset:Toy", {"config": "toy_dataset:ToyConfig"}),
    )
    from eofm.recipe import dataset_config_class

    assert dataset_config_class({"name": "toy"}, "x") is ToyConfig
    with pytest.raises(RecipeError) as info:
        load_recipe({"data": {"name": "toy"}}, ["data.pach=3"])
    assert "data.pach" in str(info.value) and "data.patch" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe({"data": {"name": "toy", "patch": "many"}})
    assert "data.patch" in str(info.value) and "int" in str(info.value)
    with pytest.raises(RecipeError) as info:  # the family still checks what it needs
        load_recipe({"data": {"name": "toy", "patch": 3}})
    assert "no image bands" in str(info.value)


def test_recipes_keys_lists_a_datasets_keys_fast_without_torch() -> None:
    code = (
        "import sys\nfrom eofm.cli import main\nrc = main(['recipes', '--keys', 'sen1floods11'])\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'lightning') if m in sys.modules))\n"
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "HEAVY:\n" in out
    row = next(line for line in out.splitlines() if line.startswith("data.crop_size "))
    assert "int | None" in row and "224" in row and "crop" in row
    assert "data.bands" in out and "data.root" in out
    proc = subprocess.run(
        [sys.executable, "-m", "eofm", "recipes", "--keys", "era5"], capture_output=True, text=True
    )
    assert "data.lead_hours" in proc.stdout and "data.bands" not in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "eofm", "recipes", "--keys", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "sen1floods11" in proc.stderr


# --- the family seam and the defects found in review -----------------------------------


def tiny_overrides(**extra: str) -> list[str]:
    values = {"backbone.pretrained": "false", "decoder.channels": "8", **extra}
    return [f"{k}={v}" for k, v in values.items()]


def test_latent_decoder_in_a_segmentation_recipe_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", ["decoder.name=mlp_latent"])
    message = str(info.value)
    assert "decoder.name" in message and "mlp_latent" in message and "progressive" in message


def test_upernet_with_two_tapped_layers_is_a_recipe_error() -> None:
    from eofm.models.segmentation import build_segmentation_model

    recipe = load_recipe(
        "demo", tiny_overrides(**{"decoder.name": "upernet", "backbone.tap_layers": "[0,1]"})
    )
    with pytest.raises(RecipeError) as info:
        build_segmentation_model(recipe, num_classes=2, data_bands=["VV", "VH"], pretrained=False)
    assert "backbone.tap_layers" in str(info.value) and "upernet" in str(info.value)


def test_cli_reports_the_upernet_tap_error_and_leaves_no_run_dir(tmp_path: Path, capsys) -> None:
    from eofm.cli import main

    run = tmp_path / "run"
    args = [
        "fit",
        "demo",
        *tiny_overrides(**{"decoder.name": "upernet", "backbone.tap_layers": "[0,1]"}),
    ]
    assert main([*args, "--run-dir", str(run), "--allow-random-init"]) == 2
    assert "backbone.tap_layers" in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.parametrize(
    ("recipe", "monitor", "mode"),
    [
        ("demo", "val/mIoU", "max"),
        ("demo", "val/IoU_water", "max"),
        ("demo", "val/loss", "min"),
        ("era5_aurora_hydrology_decoder", "val/rmse_tp", "min"),
        ("era5_aurora_hydrology_decoder", "val/rmse_normalised", "min"),
        ("era5_aurora_hydrology_decoder", "val/acc_tp", "max"),
        ("era5_aurora_hydrology_decoder", "val/mae_e", "min"),
    ],
)
def test_each_metric_declares_its_direction(recipe: str, monitor: str, mode: str) -> None:
    # ACC is logged only with a climatology (task.climatology): the monitor must be logged
    extra = ["task.climatology=clim.nc"] if "acc" in monitor else []
    loaded = load_recipe(recipe, [f"task.monitor={monitor}", "data.root=/tmp", *extra])
    assert family_of(loaded).monitor_mode(loaded.task.monitor) == mode


def test_acc_is_monitored_only_with_a_climatology() -> None:
    """Without task.climatology no val/acc_* is logged: a monitor on it is refused when the
    recipe loads, not after the first epoch (issue 33)."""
    with pytest.raises(RecipeError, match="val/acc_tp"):
        load_recipe("era5_aurora_hydrology_decoder", ["task.monitor=val/acc_tp"])


def test_a_metric_without_a_direction_cannot_be_monitored() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("era5_aurora_hydrology_decoder", ["task.monitor=val/bias_tp"])
    assert "task.monitor" in str(info.value) and "val/bias_tp" in str(info.value)


@pytest.mark.parametrize(
    "name", [e.name for e in REGISTRY.entries("decoder") if e.meta["input"] == "maps"]
)
def test_every_registered_map_decoder_builds_and_predicts(name: str) -> None:
    """One constructor shape for all map decoders; each gives full-resolution logits."""
    from eofm.families.segmentation import SegmentationFamily

    taps = "[0,1,2,3]" if name in ("upernet", "unet") else "[0,1]"
    recipe = load_recipe(
        "demo", tiny_overrides(**{"decoder.name": name, "backbone.tap_layers": taps})
    )
    torch.manual_seed(0)
    model = SegmentationFamily().build_model(recipe, bands=["VV", "VH"], pretrained=False)
    with torch.no_grad():
        logits = model.eval()(torch.randn(1, 2, 32, 32))
    assert logits.shape == (1, 2, 32, 32)


def test_every_registered_component_resolves() -> None:
    for kind in ("decoder", "family", "dataset"):
        for entry in REGISTRY.entries(kind):
            assert entry.load() is not None
            if kind == "dataset":
                assert dataclasses.is_dataclass(entry.load_meta("config"))


def test_model_card_names_the_branch_it_was_published_to() -> None:
    from eofm.families.segmentation import SegmentationFamily

    recipe = load_recipe("demo")
    config = {
        "backbone": {
            "name": "b",
            "repo": "o/b",
            "revision": "abc",
            "pretrained_loaded": True,
            "patch_size": [1, 16, 16],
            "num_frames": 1,
            "band_mapping": {},
        },
        "task": {"type": "segmentation", "class_names": ["a", "b"]},
        "bands": ["VV"],
        "mean": [0.0],
        "std": [1.0],
        "eofm_version": "0",
        "adapter": {"mode": "full", "rank": 8, "alpha": 16.0, "dora": False},
        "decoder": {"name": "progressive", "channels": 8},
        "weights": "model.safetensors",
        "adapter_only": False,
    }
    card = SegmentationFamily().model_card(
        config, recipe, None, repo_id="me/m", license_id="mit", quicklook=False, revision="v2"
    )
    assert "hf://me/m@v2" in card and "@main" not in card


# --- no side doors around the family seam ---------------------------------------------

#: What ``hasattr`` must not probe outside families/base.py: a family, a recipe or one of
#: its sections (data, task), or a config; the families declare what they have instead.
PROBED = re.compile(r"(^|\.)(family|recipe|data|task|config)(\.|$)")


def hasattr_side_doors(source: str, name: str = "<source>") -> list[str]:
    """``hasattr(X, ...)`` calls whose ``X`` is a family, a recipe or a data config."""
    import ast

    return [
        f"{name}:{node.lineno}: hasattr({ast.unparse(node.args[0])}, ...)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "hasattr"
        and node.args
        and PROBED.search(ast.unparse(node.args[0]))
    ]


def test_the_side_door_scan_finds_a_probe() -> None:
    probes = "if hasattr(recipe.data, 'bands'):\n    pass\nok = hasattr(family, 'weather_spec')\n"
    assert len(hasattr_side_doors(probes)) == 2
    assert hasattr_side_doors("ok = hasattr(encoder, 'gsd')\n") == []


def test_no_hasattr_on_a_family_recipe_or_config_outside_the_family_base() -> None:
    offenders = [
        door
        for path in python_files()
        if path != PACKAGE / "families" / "base.py"
        for door in hasattr_side_doors(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert offenders == []


def test_every_dataset_config_is_under_the_light_import_contract() -> None:
    contract = (ROOT / ".importlinter").read_text()
    light = contract.split("[importlinter:contract:light]", 1)[1].split("forbidden_modules")[0]
    configs = [f"eofm.data.{p.stem}" for p in (PACKAGE / "data").glob("*_config.py")]
    assert configs and [c for c in configs if c not in light.split()] == []


# --- per-family task configs and declared commands ------------------------------------


def test_task_keys_are_validated_against_the_selected_family() -> None:
    with pytest.raises(RecipeError) as info:  # a regression key in a segmentation recipe
        load_recipe("demo", ["task.targets=[tp]"])
    assert "task.targets" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe("era5_aurora_hydrology_decoder", ["task.class_names=[a,b]"])
    assert "task.class_names" in str(info.value)
    with pytest.raises(RecipeError) as info:
        load_recipe("demo", ["task.type=regresion"])
    assert "task.type" in str(info.value) and "regression" in str(info.value)
    recipe = load_recipe("era5_aurora_hydrology_decoder", ["data.root=/tmp"])
    assert recipe.task.targets == ["tp", "e"] and not hasattr(recipe.task, "class_names")


def old_release_task(task: dict) -> dict:
    """The single task section that releases before per-family configs wrote."""
    return {
        "class_names": ["background", "foreground"],
        "targets": [],
        "land_only": [],
        "climatology": None,
        "constraints": {},
        "thresholds": {},
        "ignore_index": -1,
        "loss": "ce",
        "class_weights": None,
        **task,
    }


@pytest.mark.parametrize(
    "name", ["demo", "era5_aurora_hydrology_decoder", "mesogeos_fire_danger_gru"]
)
def test_a_run_dir_recipe_of_an_earlier_release_still_loads(name: str) -> None:
    import yaml

    from eofm.recipe import dump_recipe

    tree = yaml.safe_load(dump_recipe(load_recipe(name, ["data.root=/tmp"])))
    tree["task"] = old_release_task(tree["task"])
    with pytest.raises(RecipeError):  # a recipe a person wrote gets no such leniency
        load_recipe(tree)
    loaded = load_recipe(tree, saved=True)
    assert loaded.task == load_recipe(name, ["data.root=/tmp"]).task


def test_families_list_their_commands_and_their_task_keys() -> None:
    def keys(name: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "eofm", "recipes", "--keys", name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    families = {line.split()[0]: line.split(None, 1)[1] for line in keys("families").splitlines()}
    assert set(families) == set(REGISTRY.names("family"))
    assert "calibrate" in families["segmentation"] and "calibrate" not in families["regression"]
    regression = keys("regression")
    assert "task.targets" in regression and "task.class_names" not in regression


def write_fake_run(run: Path, recipe: str) -> Path:
    """A run dir with a recipe, a model.json and a checkpoint that is not one: whatever
    reads the checkpoint fails, so a command that refuses first never gets there."""
    from eofm.recipe import dump_recipe

    (run / "checkpoints").mkdir(parents=True)
    (run / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe, ["data.root=/tmp"])))
    (run / "model.json").write_text(
        '{"bands": ["VV"], "mean": [0.0], "std": [1.0], "backbone": {"patch_size": [1, 4, 4]}}'
    )
    (run / "checkpoints" / "last.ckpt").write_text("not a checkpoint")
    return run


@pytest.mark.parametrize(
    ("recipe", "command"),
    [
        ("era5_aurora_hydrology_decoder", ["calibrate", "{run}"]),
        ("era5_downscaling_constrained", ["publish", "{run}", "--repo", "me/m", "--dry-run", "{out}"]),
        ("era5_downscaling_constrained", ["predict", "--model", "{run}", "x.tif", "--out", "{out}"]),
        ("mesogeos_fire_danger_gru", ["ensemble", "{run}", "{run}", "--inputs", "x", "--out", "{out}"]),
    ],
)  # fmt: skip
def test_a_command_the_family_does_not_list_is_refused_before_any_model_loads(
    tmp_path: Path, recipe: str, command: list[str]
) -> None:
    run = write_fake_run(tmp_path / "run", recipe)
    argv = [a.format(run=run, out=tmp_path / "out") for a in command]
    code = (
        "import sys\nfrom eofm.cli import main\n"
        f"rc = main({argv!r})\n"
        "print('HEAVY:' + ','.join(m for m in ('torch', 'lightning') if m in sys.modules))\n"
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"eofm {command[0]} does not work on" in proc.stderr
    assert "HEAVY:\n" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_the_constraint_kinds_a_recipe_may_name_are_the_models() -> None:
    import typing

    from eofm.families.downscaling import DownscalingTaskConfig
    from eofm.models.constraints import KINDS

    hint = typing.get_type_hints(DownscalingTaskConfig)["constraints"]
    assert typing.get_args(typing.get_args(hint)[1]) == KINDS


def test_a_predict_option_of_another_family_is_refused_at_once(tmp_path: Path, capsys) -> None:
    from eofm.cli import main

    run = write_fake_run(tmp_path / "run", "demo")
    argv = ["predict", "--model", str(run), "x.tif", "--out", str(tmp_path / "out")]
    assert main([*argv, "--start", "2020-01-01T12"]) == 2
    err = capsys.readouterr().err
    assert "--start is an option of regression runs" in err and "segmentation" in err
    assert not (tmp_path / "out").exists()
