"""``eofm fit`` and ``eofm test``: recipe -> datamodule, model, task, Lightning Trainer."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from eofm import __version__
from eofm.backbones.manifest import BackboneManifest
from eofm.errors import EofmError
from eofm.recipe import Recipe, dump_recipe
from eofm.rundir import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    TEST_METRICS_FILE,
    check_run_dir,
    default_run_dir,
    write_json,
    write_text_atomic,
)

log = logging.getLogger(__name__)


def normalisation(
    recipe: Recipe, manifest: BackboneManifest
) -> tuple[list[float] | None, list[float] | None, str]:
    """Mean/std for the recipe's bands: explicit, else the backbone manifest's.

    Returns ``(None, None, ...)`` when some band is new to the backbone: the datamodule
    then computes statistics on the training split.
    """
    from eofm.bands import check_band_names

    bands = check_band_names(recipe.data.bands, where="data.bands")
    if recipe.data.mean is not None or recipe.data.std is not None:
        if recipe.data.mean is None or recipe.data.std is None:
            raise EofmError("Give both data.mean and data.std, or neither.")
        for key in ("mean", "std"):
            if len(getattr(recipe.data, key)) != len(bands):
                raise EofmError(
                    f"data.{key} has {len(getattr(recipe.data, key))} values for {len(bands)} bands."
                )
        return list(recipe.data.mean), list(recipe.data.std), "recipe"
    stats = manifest.band_stats()
    if all(b in stats for b in bands):
        return [stats[b][0] for b in bands], [stats[b][1] for b in bands], "backbone manifest"
    return None, None, "training-split statistics (bands new to the backbone)"


def build_datamodule(
    recipe: Recipe, mean: list[float] | None, std: list[float] | None, *, pad_multiple: int
):
    from eofm.registry import REGISTRY

    data = recipe.data
    if not data.root:
        raise EofmError("data.root is empty: set it in the recipe or with data.root=/path/to/data.")
    if len(data.split_fractions) != 3 or not math.isclose(sum(data.split_fractions), 1.0):
        raise EofmError(
            f"data.split_fractions must be 3 numbers summing to 1, got {data.split_fractions}."
        )
    cls = REGISTRY.get("dataset", data.name).load()
    return cls(
        data.root,
        data.bands,
        mean=mean,
        std=std,
        split_csv=data.split_csv,
        split_fractions=tuple(data.split_fractions),
        crop_size=data.crop_size,
        eval_crop_size=data.eval_crop_size,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        hflip=data.hflip,
        seed=recipe.seed,
        train_repeats=data.train_repeats,
        pad_multiple=pad_multiple,
    )


def _trainer(recipe: Recipe, run_dir: Path | None, *, callbacks: list | None = None, loggers=False):
    import lightning as L

    from eofm.checkpointing import AtomicCheckpointIO

    kwargs = {k: v for k, v in asdict(recipe.trainer).items() if v is not None}
    return L.Trainer(
        **kwargs,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(run_dir) if run_dir else None,
        callbacks=callbacks or [],
        logger=loggers,
        enable_model_summary=False,
    )


def build_weather_datamodule(
    recipe: Recipe, target_mean: list[float] | None = None, target_std: list[float] | None = None
):
    """The ERA5 datamodule of a regression recipe (validates every input file)."""
    from eofm.backbones.loading import resolve_manifest
    from eofm.data.era5 import WeatherSpec
    from eofm.registry import REGISTRY

    data = recipe.data
    if not data.root:
        raise EofmError("data.root is empty: set it in the recipe or with data.root=/path/to/era5.")
    manifest = resolve_manifest(recipe.backbone.name)
    spec = WeatherSpec(
        surf_vars=data.surf_vars,
        atmos_vars=data.atmos_vars,
        static_vars=data.static_vars,
        targets=recipe.task.targets,
        levels=data.levels,
        allow_missing=data.allow_missing,
        history_steps=data.history_steps,
        step_hours=data.step_hours,
        lead_hours=data.lead_hours,
        lat_range=data.lat_range,
        lon_range=data.lon_range,
        flip_latitude=data.flip_latitude,
        patch_size=getattr(manifest, "patch_size", 4),
        land_only=recipe.task.land_only,
    )
    cls = REGISTRY.get("dataset", data.name).load()
    if target_mean is None and data.mean is not None:
        target_mean, target_std = data.mean, data.std
    return cls(
        data.root,
        spec,
        layout=data.layout,
        split_fractions=data.split_fractions,
        target_mean=target_mean,
        target_std=target_std,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        seed=recipe.seed,
    )


def load_climatology(recipe: Recipe, datamodule: Any) -> torch.Tensor | None:
    """Climatology of the targets on the data grid ``(V, H, W)``, mean over time if any."""
    path = recipe.task.climatology
    if not path:
        return None
    from eofm.data.era5 import read_climatology

    data = recipe.data
    maps = read_climatology(
        Path(path),
        recipe.task.targets,
        lat_range=data.lat_range,
        lon_range=data.lon_range,
        flip_latitude=data.flip_latitude,
        shape=(len(datamodule.lat), len(datamodule.lon)),
    )
    return torch.from_numpy(maps)


def _task(recipe: Recipe, model: torch.nn.Module, datamodule: Any = None):
    from eofm.registry import REGISTRY

    task_cls = REGISTRY.get("task", recipe.task.type).load()
    if recipe.task.type == "regression":
        return task_cls(
            model,
            targets=recipe.task.targets,
            target_mean=datamodule.mean,
            target_std=datamodule.std,
            lat=datamodule.lat,
            climatology=load_climatology(recipe, datamodule),
            lr=recipe.optimizer.lr,
            weight_decay=recipe.optimizer.weight_decay,
            scheduler=recipe.optimizer.scheduler,
            warmup_steps=recipe.optimizer.warmup_steps,
        )
    return task_cls(
        model,
        class_names=recipe.task.class_names,
        ignore_index=recipe.task.ignore_index,
        loss=recipe.task.loss,
        class_weights=recipe.task.class_weights,
        lr=recipe.optimizer.lr,
        weight_decay=recipe.optimizer.weight_decay,
        scheduler=recipe.optimizer.scheduler,
        warmup_steps=recipe.optimizer.warmup_steps,
    )


def fit(recipe: Recipe, run_dir: Path | None = None, *, allow_random_init: bool = False) -> Path:
    """Fine-tune ``recipe``; returns the run dir. Rerunning with the same run dir resumes."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from eofm.model import build_segmentation_model, count_parameters

    run_dir = Path(run_dir) if run_dir else default_run_dir(recipe)
    resume = check_run_dir(run_dir, recipe)
    L.seed_everything(recipe.seed, workers=True, verbose=False)

    # Everything that can fail on bad input runs before the run dir is written.
    from eofm.backbones.loading import resolve_manifest

    if recipe.task.type == "regression":
        from eofm.weather_model import build_latent_regression_model, check_variables

        check_variables(recipe, resolve_manifest(recipe.backbone.name))
        datamodule = build_weather_datamodule(recipe)
        norm_source = "training-split statistics of the targets"
        if recipe.data.mean is not None:
            norm_source = "recipe"
        model = build_latent_regression_model(recipe, allow_random_init=allow_random_init)
    else:
        manifest = resolve_manifest(recipe.backbone.name)
        mean, std, norm_source = normalisation(recipe, manifest)
        datamodule = build_datamodule(recipe, mean, std, pad_multiple=manifest.patch_size[-1])
        _check_classes(recipe, datamodule)
        model = build_segmentation_model(
            recipe,
            num_classes=len(recipe.task.class_names),
            data_bands=recipe.data.bands,
            pretrained=recipe.backbone.pretrained,
            allow_random_init=allow_random_init,
        )
    log.info("Normalisation from %s: mean=%s std=%s", norm_source, datamodule.mean, datamodule.std)
    cached = cached_datamodule(recipe, datamodule, model)
    trainable, total = count_parameters(model)
    print(
        f"eofm fit: {recipe.name}: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.1f}%), adapter={recipe.adapter.mode}, "
        f"decoder={recipe.decoder.name}",
        flush=True,
    )

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / RECIPE_FILE, dump_recipe(recipe))
    model_manifest = _model_manifest(recipe, model, datamodule, norm_source)
    write_json(run_dir / MODEL_FILE, model_manifest)

    task = _task(recipe, model, datamodule)
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="best",
        monitor=recipe.task.monitor,
        mode="max" if "loss" not in recipe.task.monitor else "min",
        save_last=True,
        enable_version_counter=False,
    )
    loggers = [
        CSVLogger(run_dir / "logs", name="csv", version=""),
        TensorBoardLogger(
            run_dir / "logs", name="tensorboard", version="", default_hp_metric=False
        ),
    ]
    trainer = _trainer(recipe, run_dir, callbacks=[checkpoint], loggers=loggers)
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if resume:
        print(f"eofm fit: resuming from {last}", flush=True)
    started = time.perf_counter()
    ckpt_path = last if resume else None
    if cached is not None:
        trainer.fit(
            task,
            train_dataloaders=cached.train_dataloader(),
            val_dataloaders=cached.val_dataloader(),
            ckpt_path=ckpt_path,
            weights_only=True,
        )
    else:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    seconds = time.perf_counter() - started

    metrics = {k: _scalar(v) for k, v in trainer.callback_metrics.items()}
    summary = {
        "recipe": recipe.name,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(seconds, 2),
        "best_checkpoint": _relative(checkpoint.best_model_path, run_dir),
        "best_score": {recipe.task.monitor: _scalar(checkpoint.best_model_score)},
        "metrics": metrics,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "latent_cache": None
        if cached is None
        else {"hits": cached.hits, "build_seconds": cached.build_seconds},
    }
    write_json(run_dir / METRICS_FILE, summary)
    from eofm.adapters import is_lora, save_adapter

    if is_lora(model.backbone):
        save_adapter(model, run_dir / "adapter", model_manifest["backbone"])
    _print_table(f"validation metrics ({run_dir / METRICS_FILE})", metrics, prefix="val/")
    print(f"eofm fit: run dir {run_dir}", flush=True)
    return run_dir


def cached_datamodule(recipe: Recipe, datamodule: Any, model: torch.nn.Module):
    """The latent-cache wrapper when ``cache.mode`` allows it and caching is valid, else None."""
    from eofm.cache import CachedDataModule, LatentCache, cache_refusal

    if recipe.cache.mode == "off":
        return None
    reason = cache_refusal(recipe, datamodule, model)
    if reason:
        if recipe.cache.mode == "on":
            raise EofmError(f"cache.mode=on, but latents cannot be cached: {reason}.")
        log.info("Latent cache not used: %s.", reason)
        return None
    backbone = model.backbone
    source = getattr(backbone, "source", None)
    key = {
        "name": recipe.backbone.name,
        "weights": source or f"random-init(seed={recipe.seed})",
        "latent": recipe.backbone.latent if recipe.task.type == "regression" else None,
        "taps": list(getattr(backbone, "tap_layers", ()) or ()),
    }
    cache = LatentCache(recipe.cache.dir, max_bytes=int(recipe.cache.max_gb * 2**30))
    wrapped = CachedDataModule(datamodule, model, cache, key)
    print(f"eofm fit: {cache.report()}", flush=True)
    return wrapped


def _check_classes(recipe: Recipe, datamodule: Any) -> None:
    expected = getattr(datamodule, "num_classes", None)
    if expected is not None and expected != len(recipe.task.class_names):
        raise EofmError(
            f"task.class_names has {len(recipe.task.class_names)} classes but dataset "
            f"{recipe.data.name} has {expected}."
        )


def _model_manifest(
    recipe: Recipe, model: torch.nn.Module, datamodule: Any, norm_source: str
) -> dict:
    backbone = model.backbone
    base = getattr(backbone, "base_model", None)
    encoder = base.model if base is not None else backbone
    manifest = encoder.manifest
    source = encoder.source or {}
    if recipe.task.type == "regression":
        return {
            "eofm_version": __version__,
            "task": {"type": "regression", "targets": list(recipe.task.targets)},
            "bands": list(recipe.task.targets),
            "mean": [float(v) for v in datamodule.mean],
            "std": [float(v) for v in datamodule.std],
            "normalisation_source": norm_source,
            "inputs": {
                "surf_vars": datamodule.source.surf_names(),
                "atmos_vars": datamodule.source.atmos_names(),
                "static_vars": list(datamodule.statics),
                "filled_statics": datamodule.source.filled_statics,
                "levels_hpa": list(datamodule.source.levels),
            },
            "backbone": {
                "name": recipe.backbone.name,
                "repo": manifest.hub_repo,
                "revision": source.get("revision", manifest.revision),
                "file": manifest.hub_file,
                "pretrained_loaded": bool(source),
                "latent": recipe.backbone.latent,
                "patch_size": [manifest.patch_size],
            },
            "adapter": asdict(recipe.adapter),
            "decoder": asdict(recipe.decoder),
        }
    return {
        "eofm_version": __version__,
        "task": {"type": recipe.task.type, "class_names": recipe.task.class_names},
        "bands": list(recipe.data.bands),
        "mean": [float(v) for v in datamodule.mean],
        "std": [float(v) for v in datamodule.std],
        "normalisation_source": norm_source,
        "backbone": {
            "name": recipe.backbone.name,
            "repo": manifest.hub_repo,
            "revision": source.get("revision", manifest.revision),
            "file": manifest.hub_file,
            "pretrained_loaded": bool(source),
            "band_mapping": encoder.band_mapping,
            "patch_size": list(manifest.config.patch_size),
            "num_frames": manifest.config.num_frames,
            "gsd_m": manifest.gsd_m,
        },
        "adapter": asdict(recipe.adapter),
        "decoder": asdict(recipe.decoder),
    }


def test(
    spec: str | Path,
    overrides: list[str] | None = None,
    *,
    checkpoint: str = "best",
    output: Path | None = None,
) -> dict[str, float]:
    """Evaluate a run dir, or a published ``hf://`` model, on a test split.

    Overrides may point elsewhere (e.g. ``data.root=...``). A run dir gets
    ``test_metrics.json``; for a published model the JSON goes to ``output`` if given.
    Prints a table either way.
    """
    from eofm.published import is_published_spec
    from eofm.trained import load_trained

    if is_published_spec(spec):
        trained, source = load_trained(str(spec), overrides), str(spec)
        target = Path(output) if output else None
    else:
        run_dir = Path(spec)
        ckpt = run_dir / CHECKPOINT_DIR / f"{checkpoint}.ckpt"
        if not ckpt.is_file():
            raise EofmError(f"Checkpoint {ckpt} does not exist; did 'eofm fit' finish an epoch?")
        trained, source = load_trained(str(ckpt), overrides), _relative(str(ckpt), run_dir)
        target = Path(output) if output else run_dir / TEST_METRICS_FILE
    recipe = trained.recipe
    if recipe.task.type == "regression":
        datamodule = build_weather_datamodule(recipe, trained.mean, trained.std)
    else:
        datamodule = build_datamodule(
            recipe, trained.mean, trained.std, pad_multiple=trained.patch_size
        )
    trainer = _trainer(recipe, None)
    task = _task(recipe, trained.model, datamodule)
    results = trainer.test(task, datamodule=datamodule, verbose=False)
    metrics = {k: _scalar(v) for k, v in (results[0] if results else {}).items()}
    payload = {
        "checkpoint": source,
        "data_root": recipe.data.root,
        "test_chips": list(datamodule.splits.get("test", [])),
        "metrics": metrics,
    }
    if target is not None:
        write_json(target, payload)
    _print_table(f"test metrics ({target or source})", metrics, prefix="test/")
    return metrics


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().item()
    return float(f"{float(value):.6g}")


def _relative(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _print_table(title: str, metrics: dict[str, float | None], *, prefix: str) -> None:
    rows = [(k[len(prefix) :], v) for k, v in sorted(metrics.items()) if k.startswith(prefix)]
    if not rows:
        return
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 12))
    for key, value in rows:
        shown = (
            "n/a"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else (f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}")
        )
        print(f"{key:<{width}}  {shown:>9}")
    print("-" * (width + 12), flush=True)
