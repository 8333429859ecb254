"""``eofm fit``: recipe -> family (datamodule, model, task) -> Lightning Trainer -> run dir."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from eofm.checkpoint_format import light_checkpoint_base
from eofm.errors import EofmError
from eofm.families.base import TaskFamily, family_of
from eofm.recipe import Recipe, dump_recipe
from eofm.train.precision import with_resolved_precision
from eofm.train.rundir import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    check_run_dir,
    default_run_dir,
    read_json,
    relative_to,
    scalar,
    with_absolute_paths,
    write_json,
    write_text_atomic,
)

log = logging.getLogger(__name__)

Echo = Callable[[str], None]


def model_manifest(recipe: Recipe, model: Any, datamodule: Any, norm_source: str) -> dict:
    """What ``model.json`` records for ``recipe``'s family."""
    return family_of(recipe).model_manifest(recipe, model, datamodule, norm_source)


def fit(
    recipe: Recipe,
    run_dir: Path | None = None,
    *,
    allow_random_init: bool = False,
    echo: Echo = log.info,
) -> Path:
    """Fine-tune ``recipe``; returns the run dir. Rerunning with the same run dir resumes.

    Everything that can fail on bad input runs before the run dir is written, and a run
    that fails before its first checkpoint leaves no run dir behind. Under DDP
    (``trainer.strategy: ddp``) every process runs this; only global rank 0 writes the
    run dir (:mod:`eofm.train.distributed`).
    """
    family_of(recipe).require("fit", f"recipe {recipe.name}")
    recipe = with_absolute_paths(recipe)
    family_of(recipe).check_data(recipe, "the recipe")  # metadata only: before torch
    recipe = with_resolved_precision(recipe)
    run_dir = Path(run_dir) if run_dir else default_run_dir(recipe)
    resume = check_run_dir(run_dir, recipe)
    fresh = not run_dir.exists()
    was_empty = not fresh and not any(run_dir.iterdir())
    try:
        return _fit(recipe, run_dir, resume, allow_random_init=allow_random_init, echo=echo)
    except BaseException:
        from eofm.train.distributed import is_global_zero

        if not is_global_zero():
            raise
        if (fresh or was_empty) and not any((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
            for child in run_dir.iterdir() if run_dir.is_dir() else ():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            if fresh and run_dir.is_dir():
                run_dir.rmdir()
        raise


def _fit(
    recipe: Recipe, run_dir: Path, resume: bool, *, allow_random_init: bool, echo: Echo
) -> Path:
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from eofm.adapters import is_lora, save_adapter
    from eofm.models.base import count_parameters
    from eofm.train.checkpointing import RandomState, checkpoint_callbacks
    from eofm.train.distributed import stopped_by_another_rank
    from eofm.train.logs import ResumableCSVLogger
    from eofm.train.trainer import (
        build_trainer,
        check_resumable,
        compile_model,
        fit_logging_interval,
    )

    family = family_of(recipe)
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    finished = check_resumable(last) if resume else None
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    checkpoint, last_checkpoint = checkpoint_callbacks(
        run_dir / CHECKPOINT_DIR, recipe.task.monitor, family.monitor_mode(recipe.task.monitor)
    )
    csv_logger = ResumableCSVLogger(run_dir / "logs", name="csv", version="")
    loggers = [
        csv_logger,
        TensorBoardLogger(
            run_dir / "logs", name="tensorboard", version="", default_hp_metric=False
        ),
    ]
    trainer = build_trainer(  # first: its ranks say which process writes what
        recipe, run_dir, callbacks=[RandomState(), checkpoint, last_checkpoint], loggers=loggers
    )
    writes = trainer.is_global_zero  # the run dir's files; Lightning saves checkpoints
    say = echo if writes else log.debug
    setup = family.setup_fit(recipe, allow_random_init=allow_random_init)
    datamodule, model = setup.datamodule, setup.model
    log.info(
        "Normalisation from %s: mean=%s std=%s", setup.norm_source, datamodule.mean, datamodule.std
    )
    cached = cached_datamodule(
        recipe, datamodule, model, family, echo=say, builds=trainer.local_rank == 0
    )
    trainable, total = count_parameters(model)
    say(
        f"eofm fit: {recipe.name}: {trainable:,} trainable of {total:,} parameters "
        f"({100 * trainable / total:.1f}%), adapter={recipe.adapter.mode}, "
        f"decoder={recipe.decoder.name}"
        + (f", {trainer.world_size} processes (DDP)" if trainer.world_size > 1 else "")
    )

    manifest = family.model_manifest(recipe, model, datamodule, setup.norm_source)
    if writes:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / RECIPE_FILE, dump_recipe(recipe))
        earlier = read_json(run_dir / MODEL_FILE) if (run_dir / MODEL_FILE).is_file() else {}
        if earlier.get("calibration"):
            log.warning(
                "The run trains further, so its calibration (T=%.3f) no longer applies: run "
                "'eofm calibrate %s' again.",
                earlier["calibration"]["temperature"],
                run_dir,
            )
        write_json(run_dir / MODEL_FILE, manifest)

    task = family.build_task(recipe, model, datamodule)
    pointer = light_checkpoint_base(manifest.get("backbone") or {})
    if pointer is not None:  # frozen pinned pretrained weights stay out of checkpoints
        task.keep_base_out_of_checkpoints(pointer)
    compile_model(model, recipe.trainer.compile)
    fit_logging_interval(trainer, (cached or datamodule).train_dataloader())
    if finished is not None:
        say(f"eofm fit: resuming from {last} at epoch {finished + 1}")
    started = time.perf_counter()
    ckpt_path = last if resume else None
    keeping_rows = csv_logger.keeping_earlier_rows(epochs=finished) if writes else nullcontext()
    try:
        with keeping_rows:
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
    except RuntimeError as exc:  # torch.distributed's errors: a collective whose peer died
        if trainer.world_size == 1:
            raise
        raise stopped_by_another_rank(trainer.global_rank, trainer.world_size, exc) from None
    seconds = time.perf_counter() - started
    if not writes:
        return run_dir

    metrics = {k: scalar(v) for k, v in trainer.callback_metrics.items()}
    earlier = read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else {}
    summary = {
        "recipe": recipe.name,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "fit_seconds": round(seconds + (earlier.get("fit_seconds") or 0.0), 2),
        "best_checkpoint": relative_to(checkpoint.best_model_path, run_dir),
        "best_score": {recipe.task.monitor: scalar(checkpoint.best_model_score)},
        # a resume that trains no further step still reports the run's metrics
        "metrics": {**earlier.get("metrics", {}), **metrics},
        "trainable_parameters": trainable,
        "total_parameters": total,
        "latent_cache": None
        if cached is None
        else {"hits": cached.hits, "build_seconds": cached.build_seconds},
    }
    write_json(run_dir / METRICS_FILE, summary)
    curves(run_dir, recipe.task.monitor)
    if hasattr(model, "backbone") and is_lora(model.backbone):
        save_adapter(model, run_dir / "adapter", manifest["backbone"])
    return run_dir


def curves(run_dir: Path, monitor: str) -> Path | None:
    """``curves.png`` from the run's CSV log (every session's epochs)."""
    from eofm.evaluation.pictures import training_curves

    log_csv = run_dir / "logs" / "csv" / "metrics.csv"
    if not log_csv.is_file():
        return None
    return training_curves(log_csv, monitor, run_dir / "curves.png")


def cached_datamodule(
    recipe: Recipe,
    datamodule: Any,
    model: Any,
    family: TaskFamily,
    *,
    echo: Echo = log.info,
    builds: bool = True,
) -> Any:
    """The latent-cache wrapper when ``cache.mode`` allows it and caching is valid, else
    None; ``builds``: this process writes missing entries (the others of a node wait)."""
    from eofm.train.cache import CachedDataModule, LatentCache, cache_refusal

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
        **family.cache_key(recipe),
        "taps": list(getattr(backbone, "tap_layers", ()) or ()),
    }
    cache = LatentCache(recipe.cache.dir, max_bytes=int(recipe.cache.max_gb * 2**30))
    wrapped = CachedDataModule(datamodule, model, cache, key, builds=builds)
    echo(f"eofm fit: {cache.report()}")
    return wrapped
