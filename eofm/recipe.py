"""Typed recipes: load YAML, merge task defaults, apply dotted overrides, validate.

A recipe is a small tree of dataclasses. Validation runs before torch or lightning is
imported, so a typo costs milliseconds, not the 20 s a heavy import would: an unknown
key is an error that names the key and suggests the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from eofm.errors import RecipeError


@dataclass
class TaskConfig:
    """What is predicted. ``definition`` names a file in ``tasks/`` whose keys are defaults."""

    definition: str | None = None
    type: Literal["segmentation", "regression"] = "segmentation"
    class_names: list[str] = field(default_factory=lambda: ["background", "foreground"])
    targets: list[str] = field(default_factory=list)  # regression: variables to predict
    land_only: list[str] = field(default_factory=list)  # regression: scored over land only
    climatology: str | None = None  # regression: NetCDF/zarr of the targets, enables ACC
    ignore_index: int = -1
    loss: Literal["ce", "dice", "ce+dice"] = "ce"
    class_weights: list[float] | None = None
    monitor: str = "val/mIoU"


@dataclass
class BackboneConfig:
    """The pretrained encoder: a registry name or ``hf://ORG/REPO[@REVISION][#FILE]``."""

    name: str = "prithvi_eo_v2_tiny_tl"
    pretrained: bool = True
    num_frames: int | None = None
    img_size: int | None = None
    tap_layers: list[int] | None = None
    latent: Literal["backbone", "encoder"] = "backbone"  # weather backbones: latent source


@dataclass
class AdapterConfig:
    """How the backbone is adapted: frozen, LoRA/DoRA through peft, or full fine-tuning."""

    mode: Literal["frozen", "lora", "full"] = "frozen"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    dora: bool = False
    include_mlp: bool = False


@dataclass
class DecoderConfig:
    """The decoder after the neck: ``progressive`` (CPU-lean) or ``upernet``."""

    name: Literal["progressive", "upernet", "mlp_latent"] = "progressive"
    channels: int = 64
    dropout: float = 0.1
    fuse: Literal["factorized", "concat"] = "factorized"  # UPerNet only; see decoders/upernet.py
    latent_levels: Literal["surface", "all"] = "surface"  # mlp_latent: which latent levels


@dataclass
class DataConfig:
    """Dataset location, bands by name, splits and loader settings."""

    name: Literal["sen1floods11", "era5"] = "sen1floods11"
    root: str = ""
    bands: list[str] = field(default_factory=lambda: ["VV", "VH"])
    split_csv: dict[str, str] | None = None  # train/val/test -> CSV (relative to root)
    split_fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    crop_size: int | None = 224
    eval_crop_size: int | None = None
    train_repeats: int = 1  # random crops drawn per training chip per epoch
    batch_size: int = 4
    num_workers: int = 0
    hflip: bool = True
    mean: list[float] | None = None
    std: list[float] | None = None
    # Weather data (era5): variables by Aurora name, grid and time sampling.
    layout: Literal["auto", "netcdf", "zarr"] = "auto"
    surf_vars: list[str] = field(default_factory=lambda: ["2t", "10u", "10v", "msl"])
    atmos_vars: list[str] = field(default_factory=lambda: ["z", "u", "v", "t", "q"])
    static_vars: list[str] = field(default_factory=lambda: ["lsm", "z", "slt"])
    levels: list[float] | None = None  # hPa; default: every file level Aurora has stats for
    allow_missing: list[str] = field(default_factory=list)
    history_steps: int = 2
    step_hours: int = 6
    lead_hours: int = 6
    lat_range: list[float] | None = None
    lon_range: list[float] | None = None
    flip_latitude: bool = False


@dataclass
class CacheConfig:
    """Latent cache for frozen backbones (``eofm.cache``): ``auto`` uses it when it is valid."""

    mode: Literal["auto", "on", "off"] = "auto"
    dir: str | None = None  # default: $EOFM_CACHE_DIR or ~/.cache/eofm/latents
    max_gb: float = 20.0


@dataclass
class OptimizerConfig:
    """AdamW with an optional cosine schedule (Loshchilov & Hutter, ICLR 2019)."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    scheduler: Literal["none", "cosine"] = "cosine"
    warmup_steps: int = 0


@dataclass
class TrainerConfig:
    """Keys passed straight to ``lightning.Trainer``."""

    max_epochs: int | None = None
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Union[int, str, list[int]] = "auto"  # noqa: UP007 - validated at run time
    precision: Union[int, str] = "32-true"  # noqa: UP007
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    val_check_interval: float | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    limit_test_batches: float | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    deterministic: bool = False
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True


@dataclass
class Recipe:
    """A complete, runnable recipe."""

    name: str = "recipe"
    description: str = ""
    seed: int = 0
    task: TaskConfig = field(default_factory=TaskConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# Loading and overrides


def _yaml():
    import yaml

    return yaml


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> (``a.b``, YAML-parsed value)."""
    if "=" not in text:
        raise RecipeError(
            f"Override {text!r} is not of the form key=value (e.g. trainer.max_steps=10)."
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise RecipeError(f"Override {text!r} has an empty key.")
    try:
        value = _yaml().safe_load(raw) if raw.strip() else ""
    except Exception as exc:  # yaml.YAMLError
        raise RecipeError(f"Override {key}: value {raw!r} is not valid YAML ({exc}).") from None
    return key, value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for ``key == "a.b.c"``, creating dicts on the way."""
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml_mapping(path: Path, *, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    try:
        data = _yaml().safe_load(text)
    except Exception as exc:
        raise RecipeError(f"{what.capitalize()} {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{what.capitalize()} {path} must be a mapping of sections, not {type(data).__name__}."
        )
    return data


def load_recipe(source: str | Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> Recipe:
    """Load a recipe (path, shipped recipe name, or mapping), apply overrides, validate."""
    from eofm.resources import find_recipe, find_task_definition

    if isinstance(source, Mapping):
        tree: dict[str, Any] = dict(source)
        where = "recipe"
    else:
        path = find_recipe(str(source))
        tree = read_yaml_mapping(path, what="recipe")
        where = str(path)
    for text in overrides:
        key, value = parse_override(text)
        check_override_key(key)
        set_dotted(tree, key, value)
    task = tree.get("task")
    if isinstance(task, Mapping) and task.get("definition"):
        definition = find_task_definition(str(task["definition"]))
        defaults = read_yaml_mapping(definition, what="task definition")
        tree["task"] = deep_merge(defaults, task)
    recipe = build_dataclass(Recipe, tree, prefix="", where=where)
    _check_semantics(recipe, where)
    return recipe


def _check_semantics(recipe: Recipe, where: str) -> None:
    """Checks beyond types that still need no heavy import."""
    from eofm.bands import check_band_names
    from eofm.errors import EofmError

    try:
        recipe.data.bands = check_band_names(recipe.data.bands, where=f"data.bands of {where}")
    except EofmError as exc:
        raise RecipeError(str(exc)) from None
    if recipe.task.type == "segmentation" and len(recipe.task.class_names) < 2:
        raise RecipeError(f"task.class_names in {where} needs at least 2 classes.")
    if recipe.task.type == "regression":
        if not recipe.task.targets:
            raise RecipeError(f"task.targets in {where} must name at least one variable.")
        if recipe.data.name != "era5" or recipe.decoder.name != "mlp_latent":
            raise RecipeError(
                f"A regression recipe ({where}) needs data.name: era5 and decoder.name: mlp_latent."
            )
        strays = [v for v in recipe.task.land_only if v not in recipe.task.targets]
        if strays:
            raise RecipeError(f"task.land_only {strays} in {where} are not task.targets.")


def check_override_key(key: str) -> None:
    """An override key must name a recipe field (or an entry under a mapping field)."""
    cls: Any = Recipe
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise _unknown_key_error(key, "the command-line overrides")
        hint = hints[part]
        if dataclasses.is_dataclass(hint):
            cls = hint
            continue
        if i < len(parts) - 1 and dict not in {
            typing.get_origin(a) for a in (hint, *typing.get_args(hint))
        }:
            raise _unknown_key_error(key, "the command-line overrides")
        return


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (what the run dir stores)."""
    return _yaml().safe_dump(recipe.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------
# Validation


def all_keys(cls: type = Recipe, prefix: str = "") -> list[str]:
    """Every valid dotted key of a dataclass tree."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        dotted = f"{prefix}{f.name}"
        keys.append(dotted)
        if dataclasses.is_dataclass(hint):
            keys.extend(all_keys(hint, dotted + "."))
    return keys


def _unknown_key_error(key: str, where: str) -> RecipeError:
    valid = all_keys()
    leaf = key.rsplit(".", 1)[-1]
    suggestions = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not suggestions:
        section = key.rsplit(".", 1)[0] + "." if "." in key else ""
        siblings = [k for k in valid if k.startswith(section) and k.count(".") == key.count(".")]
        by_leaf = difflib.get_close_matches(
            leaf, [k.rsplit(".", 1)[-1] for k in siblings], n=1, cutoff=0.5
        )
        suggestions = [section + by_leaf[0]] if by_leaf else []
    hint = f" Did you mean '{suggestions[0]}'?" if suggestions else ""
    return RecipeError(f"Unknown recipe key '{key}' in {where}.{hint}")


def build_dataclass(cls: type, data: Any, *, prefix: str, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys and value types."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        name = prefix.rstrip(".") or "recipe"
        raise RecipeError(f"Recipe key '{name}' in {where} must be a mapping, got {data!r}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise _unknown_key_error(f"{prefix}{key}", where)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        dotted = f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_dataclass(hint, value, prefix=dotted + ".", where=where)
        else:
            kwargs[name] = coerce(value, hint, dotted, where)
    return cls(**kwargs)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check ``value`` against a type hint (with the few coercions YAML needs)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail() -> RecipeError:
        return RecipeError(
            f"Recipe key '{key}' in {where} must be {_type_name(hint)}, got {value!r}."
        )

    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key, where)
            except RecipeError:
                continue
        raise fail()
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads off as False
            value = "on" if value else "off"
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint_text = f" Did you mean {close[0]!r}?" if close else ""
        raise RecipeError(
            f"Recipe key '{key}' in {where} must be one of {list(args)}, got {value!r}.{hint_text}"
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise fail()
        return [coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return {
            coerce(k, args[0], key, where): coerce(v, args[1], f"{key}.{k}", where)
            for k, v in value.items()
        }
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise fail()
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail()
    raise fail()
