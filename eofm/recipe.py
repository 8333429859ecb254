"""Typed recipes: load YAML, merge task defaults, apply dotted overrides, validate.

A recipe is a small tree of dataclasses. Validation runs before torch or lightning is
imported, so a typo is reported without paying for the heavy imports: an unknown key
is an error that names the key and suggests the nearest valid one.

The ``data`` section is selected by ``data.name``: each dataset declares its own config
dataclass (registered in :mod:`eofm.registry`), so adding a dataset never touches this
file. ``task.type`` selects the task family, which checks what only it understands.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from eofm.data.config import DataConfig
from eofm.errors import EofmError, RecipeError
from eofm.typed_config import (
    RecipeOrigin,
    all_keys,
    build_dataclass,
    check_dotted_key,
    check_positive,
    option,
    selected_by,
    where_of,
)

log = logging.getLogger(__name__)

DEFAULT_DATASET = "sen1floods11"
DEFAULT_FAMILY = "segmentation"


@dataclass
class TaskConfig:
    """What is predicted: the keys every family has. ``task.type`` selects the family, whose
    own config dataclass (``TaskFamily.task_config``) extends this one with its keys.
    ``definition`` names a file in ``tasks/`` whose keys are defaults."""

    definition: str | None = option(None, "a task definition in tasks/ whose keys are defaults")
    type: str = option(DEFAULT_FAMILY, "the task family (eofm recipes --keys families)")
    monitor: str = option("val/mIoU", "metric that picks best.ckpt (its direction is declared)")
    #: Keys holding local paths, made absolute when a run dir records the recipe.
    path_keys: ClassVar[tuple[str, ...]] = ()


@dataclass
class BackboneConfig:
    """The pretrained encoder: a registry name or ``hf://ORG/REPO[@REVISION][#FILE]``."""

    name: str = option("prithvi_eo_v2_tiny_tl", "registry name or hf://ORG/REPO[@REV][#FILE]")
    pretrained: bool = option(True, "load the pretrained weights (else random init)")
    num_frames: int | None = option(None, "frames per sample (default: the manifest's)")
    img_size: int | None = option(None, "image size the position embedding is built for")
    tap_layers: list[int] | None = option(None, "encoder layers the decoder reads")
    coords: bool = option(True, "feed TL backbones the data's time and location coordinates")
    temporal: Literal["native", "mean", "max", "concat", "attention"] = option(
        "native",
        "multi-date data (data.frames): native (Prithvi's 3D patches take the frames) or "
        "pool each frame's features: mean, max, concat or attention (eofm.models.temporal)",
    )
    gsd: float | None = option(
        None,
        "Scale-MAE: the input's GSD relative to gsd_reference_m (the paper's res); "
        "null: from each raster's resolution",
    )
    gsd_reference_m: float | None = option(
        None,
        "Scale-MAE: metres per pixel that gsd 1.0 stands for (default: the backbone's "
        "pre-training GSD, the paper's convention of res 1.0 at native scale)",
    )
    latent: Literal["backbone", "encoder"] = option(
        "backbone", "weather backbones: take the latent after the backbone or the encoder"
    )


@dataclass
class AdapterConfig:
    """How the backbone is adapted: frozen, LoRA/DoRA through peft, or full fine-tuning."""

    mode: Literal["frozen", "lora", "full"] = option("frozen", "frozen, lora (peft) or full")
    rank: int = option(8, "LoRA rank")
    alpha: float = option(16.0, "LoRA alpha")
    dropout: float = option(0.0, "LoRA dropout")
    dora: bool = option(False, "weight-decomposed LoRA (DoRA)")
    include_mlp: bool = option(False, "LoRA on the MLPs too, not only attention")


@dataclass
class DecoderConfig:
    """The decoder after the neck (``eofm recipes --keys decoders`` lists them)."""

    name: str = option("progressive", "a registered decoder")
    channels: int = option(64, "decoder width")
    dropout: float = option(0.1, "dropout before the head")
    fuse: Literal["factorized", "concat"] = option(
        "factorized", "UPerNet only: how the pyramid is fused (decoders/upernet.py)"
    )
    latent_levels: Literal["surface", "all"] = option(
        "surface", "mlp_latent: which latent levels the decoders read"
    )


@dataclass
class CacheConfig:
    """Latent cache for frozen backbones (``eofm.train.cache``): ``auto`` uses it when valid."""

    mode: Literal["auto", "on", "off"] = option("auto", "auto, on (refuse if invalid) or off")
    dir: str | None = option(None, "default: $EOFM_CACHE_DIR or ~/.cache/eofm/latents")
    max_gb: float = option(20.0, "size bound of the cache folder (LRU eviction)")


@dataclass
class OptimizerConfig:
    """AdamW (or Adam) with an optional cosine or step schedule (Loshchilov & Hutter, ICLR 2019)."""

    lr: float = option(1e-4, "learning rate")
    weight_decay: float = option(0.05, "AdamW weight decay (adam: L2 penalty)")
    scheduler: Literal["none", "cosine", "step"] = option(
        "cosine", "learning-rate schedule (step: x step_gamma every step_epochs epochs)"
    )
    warmup_steps: int = option(0, "linear warm-up steps")
    algorithm: Literal["adamw", "adam"] = option("adamw", "the optimizer")
    step_epochs: int = option(15, "scheduler step: epochs between decays (StepLR step_size)")
    step_gamma: float = option(0.1, "scheduler step: the decay factor (StepLR gamma)")


@dataclass
class TrainerConfig:
    """Keys passed straight to ``lightning.Trainer``."""

    max_epochs: int | None = option(None, "epochs to train")
    max_steps: int = option(-1, "steps to train (-1: no limit)")
    accelerator: str = option("auto", "cpu, gpu, auto, ...")
    devices: Union[int, str, list[int]] = option("auto", "device count or ids")  # noqa: UP007
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true"] = option(
        "auto",
        "Lightning's choice (DDP when devices or num_nodes > 1), or ddp: one process per device",
    )
    num_nodes: int = option(1, "machines of a DDP run (devices processes on each)")
    sync_batchnorm: bool = option(
        False, "DDP on GPUs: batch-norm statistics over the global batch (SyncBatchNorm)"
    )
    precision: Union[int, str] = option(  # noqa: UP007
        "auto", "auto: bf16-mixed on GPUs that support it, else 32-true; or any Lightning value"
    )
    compile: Union[bool, str] = option(  # noqa: UP007
        False, "torch.compile the model's parts in place (true, or a backend name)"
    )
    log_every_n_steps: int = option(10, "logging interval")
    check_val_every_n_epoch: int = option(1, "validation interval in epochs")
    val_check_interval: float | None = option(None, "validation interval within an epoch")
    limit_train_batches: float | None = option(None, "fraction or count of training batches")
    limit_val_batches: float | None = option(None, "fraction or count of validation batches")
    limit_test_batches: float | None = option(None, "fraction or count of test batches")
    accumulate_grad_batches: int = option(1, "gradient accumulation")
    gradient_clip_val: float | None = option(None, "gradient clipping")
    deterministic: bool = option(False, "deterministic algorithms")
    num_sanity_val_steps: int = option(0, "sanity validation steps")
    enable_progress_bar: bool = option(True, "show a progress bar")


@dataclass
class TiledEvalConfig:
    """``eofm test`` on whole test scenes through ``eofm predict``'s streaming engine
    (:mod:`eofm.predict.engine`: the same tiles, overlap, blending and test-time
    augmentation), so that a run is scored under the protocol it will be used with."""

    tile: int | None = option(
        None, "tile size in px: score whole test scenes tiled as eofm predict (null: chips)"
    )
    overlap: int = option(32, "overlap between tiles in px (as eofm predict --overlap)")
    tta: Literal["none", "flip"] = option("none", "test-time augmentation (eofm predict --tta)")


@dataclass
class EvalConfig:
    """How ``eofm test`` scores a run."""

    tiled: TiledEvalConfig = field(default_factory=TiledEvalConfig)


def dataset_config_class(data: Mapping[str, Any], where: str) -> type:
    """The config dataclass of the dataset that ``data.name`` names."""
    from eofm.registry import REGISTRY

    name = data.get("name", DEFAULT_DATASET)
    try:
        entry = REGISTRY.get("dataset", str(name))
    except EofmError as exc:
        raise RecipeError(f"data.name in {where}: {exc}") from None
    return entry.load_meta("config")


def task_config_class(task: Mapping[str, Any], where: str) -> type:
    """The task config dataclass of the family that ``task.type`` names."""
    from eofm.registry import REGISTRY

    name = task.get("type", DEFAULT_FAMILY)
    try:
        entry = REGISTRY.get("family", str(name))
    except EofmError as exc:
        raise RecipeError(f"task.type in {where}: {exc}") from None
    return entry.load().task_config


@dataclass
class Recipe:
    """A complete, runnable recipe."""

    name: str = option("recipe", "run name")
    description: str = option("", "one line shown by eofm recipes and on the model card")
    seed: int = option(0, "random seed")
    task: TaskConfig = selected_by(task_config_class, "selected by task.type")
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: DataConfig = selected_by(dataset_config_class, "selected by data.name")
    cache: CacheConfig = field(default_factory=CacheConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# Loading and overrides


def _safe_load(text: str) -> Any:
    """PyYAML's safe loader, on libyaml when the wheel has it (``eofm recipes`` reads every
    shipped recipe: 5x faster than the pure-Python parser)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


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
        value = _safe_load(raw) if raw.strip() else ""
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


def read_yaml_mapping(path: Path, *, what: str) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from None
    try:
        data = _safe_load(text)
    except Exception as exc:
        raise RecipeError(f"{what.capitalize()} {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"{what.capitalize()} {path} must be a mapping of sections, not {type(data).__name__}."
        )
    return data


def recipe_keys(tree: Mapping[str, Any] | None = None, *, mappings: bool = False) -> list[str]:
    """Every valid dotted key, with the ``data`` keys of the dataset ``tree`` selects and
    the ``task`` keys of its family."""
    sections = {}
    for name, select in (("data", dataset_config_class), ("task", task_config_class)):
        raw = (tree or {}).get(name)
        raw = raw if isinstance(raw, Mapping) else {}
        try:
            sections[name] = select(raw, "recipe")
        except RecipeError:
            sections[name] = select({}, "recipe")
    return all_keys(Recipe, sections=sections, mappings=mappings)


def load_recipe(
    source: str | Path | Mapping[str, Any],
    overrides: Iterable[str] = (),
    *,
    saved: bool = False,
) -> Recipe:
    """Load a recipe (path, shipped recipe name, or mapping), apply overrides, validate.

    ``saved`` marks a resolved recipe that eofm wrote (a run dir's or a published
    model's): keys that older releases wrote for every dataset are then dropped when
    they are not the selected dataset's and hold their old default.
    """
    from eofm.resources import find_recipe, find_task_definition

    if isinstance(source, Mapping):
        tree: dict[str, Any] = dict(source)
        where = "recipe"
    else:
        path = find_recipe(str(source))
        tree = read_yaml_mapping(path, what="recipe")
        where = str(path)
        anchor_shipped_paths(tree, path)
    from_overrides: set[str] = set()
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(tree, key, value)
        from_overrides.add(key)
    task = tree.get("task")
    if isinstance(task, Mapping) and task.get("definition"):
        definition = find_task_definition(str(task["definition"]))
        defaults = read_yaml_mapping(definition, what="task definition")
        # the task's keys are options, some of them mappings (task.constraints): a key the
        # recipe gives replaces the definition's whole value, it is not merged into it
        tree["task"] = {**defaults, **task}
    if saved:
        _drop_legacy_data_keys(tree)
        _drop_legacy_task_keys(tree)
    for key in from_overrides:
        check_dotted_key(
            key, recipe_keys(tree), recipe_keys(tree, mappings=True), "the command-line overrides"
        )

    origin = RecipeOrigin(where, from_overrides)
    recipe = build_dataclass(
        Recipe, tree, prefix="", where=origin.of, valid_keys=lambda: recipe_keys(tree)
    )
    check_recipe(recipe, origin)
    return recipe


def anchor_shipped_paths(tree: dict[str, Any], path: Path) -> None:
    """A shipped recipe's relative data paths that name something shipped with eofm (the
    bundled ``samples/``) are made absolute against the folder holding ``recipes/`` (the
    checkout, or ``eofm/_resources/`` in a wheel), so that ``eofm fit demo`` works from
    any folder. Other relative paths, and every path of a user's recipe or of an
    override, stay relative to the current folder."""
    from eofm.resources import resource_dir

    shipped = resource_dir("recipes").resolve()
    data = tree.get("data")
    if Path(path).resolve().parent != shipped or not isinstance(data, dict):
        return
    try:
        keys = dataset_config_class(data, str(path)).path_keys
    except RecipeError:
        return
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            anchored = Path(os.path.normpath(shipped.parent / value))
            if anchored.exists():
                data[key] = str(anchored)


def check_recipe(recipe: Recipe, where: str) -> None:
    """Checks beyond types that still need no heavy import: the dataset's, the family's."""
    from eofm.registry import REGISTRY

    check_positive(recipe.trainer, where, "trainer.accumulate_grad_batches", "trainer.num_nodes")
    check_distributed(recipe.trainer, where)
    recipe.data.validate(where)
    try:
        family = REGISTRY.get("family", recipe.task.type).load()()
    except EofmError as exc:
        raise RecipeError(f"task.type in {where}: {exc}") from None
    family.check_recipe(recipe, where)
    family.check_monitor_logged(recipe, where)  # after the family's own checks
    family.check_tiled_eval(recipe, where)  # a family that cannot is refused first
    check_tiled_eval(recipe.eval.tiled, where)


def check_tiled_eval(tiled: TiledEvalConfig, where: str) -> None:
    """``eval.tiled``: a positive tile, an overlap in ``[0, tile)``, TTA only with a tile."""
    if tiled.tile is None:
        if tiled.tta != "none":
            raise RecipeError(
                f"Recipe key 'eval.tiled.tta' in {where_of(where, 'eval.tiled.tta')} needs "
                "eval.tiled.tile (test-time augmentation applies to tiled evaluation)."
            )
        return
    check_positive(tiled, where, "eval.tiled.tile")
    if not 0 <= tiled.overlap < tiled.tile:
        raise RecipeError(
            f"Recipe key 'eval.tiled.overlap' in {where_of(where, 'eval.tiled.overlap')} must "
            f"be in [0, {tiled.tile}) (eval.tiled.tile), got {tiled.overlap}."
        )


def check_distributed(trainer: TrainerConfig, where: str) -> None:
    """The DDP keys together: ``torch.nn.SyncBatchNorm`` runs on GPUs only (its forward
    refuses CPU tensors)."""
    if trainer.sync_batchnorm and trainer.accelerator == "cpu":
        raise RecipeError(
            f"Recipe key 'trainer.sync_batchnorm' in {where_of(where, 'trainer.sync_batchnorm')}"
            " needs GPUs (torch's SyncBatchNorm refuses CPU tensors); with "
            "trainer.accelerator=cpu set it to false."
        )


#: Keys of the single flat ``data`` section that releases up to 0.1.0 wrote, with their
#: defaults: a saved recipe of those releases carries them all, whatever its dataset.
_LEGACY_DATA_DEFAULTS: dict[str, Any] = {
    "bands": ["VV", "VH"],
    "split_csv": None,
    "split_fractions": [0.6, 0.2, 0.2],
    "crop_size": 224,
    "eval_crop_size": None,
    "train_repeats": 1,
    "hflip": True,
    "mean": None,
    "std": None,
    "layout": "auto",
    "surf_vars": ["2t", "10u", "10v", "msl"],
    "atmos_vars": ["z", "u", "v", "t", "q"],
    "static_vars": ["lsm", "z", "slt"],
    "levels": None,
    "allow_missing": [],
    "history_steps": 2,
    "step_hours": 6,
    "lead_hours": 6,
    "lat_range": None,
    "lon_range": None,
    "flip_latitude": False,
}


def _drop_legacy_data_keys(tree: dict[str, Any]) -> None:
    data = tree.get("data")
    if not isinstance(data, dict):
        return
    try:
        cls = dataset_config_class(data, "recipe")
    except RecipeError:
        return
    own = {f.name for f in dataclasses.fields(cls)}
    for key in list(data):
        if (
            key not in own
            and key in _LEGACY_DATA_DEFAULTS
            and data[key] == _LEGACY_DATA_DEFAULTS[key]
        ):
            del data[key]


#: Keys of the single ``task`` section that releases before per-family task configs wrote
#: for every family. A saved recipe carries them all; the ones its family does not own
#: had no effect on it.
_LEGACY_TASK_KEYS = (
    "class_names",
    "targets",
    "land_only",
    "climatology",
    "constraints",
    "thresholds",
    "ignore_index",
    "loss",
    "class_weights",
)


def _drop_legacy_task_keys(tree: dict[str, Any]) -> None:
    task = tree.get("task")
    if not isinstance(task, dict):
        return
    try:
        cls = task_config_class(task, "recipe")
    except RecipeError:
        return
    own = {f.name for f in dataclasses.fields(cls)}
    for key in list(task):
        if key not in own and key in _LEGACY_TASK_KEYS:
            del task[key]


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (what the run dir stores)."""
    import yaml

    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
