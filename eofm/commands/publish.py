"""``eofm publish``: a run dir -> the exact folder put on the Hub, uploaded in one commit.

The folder holds ``config.json`` (the manifest: backbone with base repo and revision,
decoder, adapter, task and classes, bands in order with normalisation, patch size,
frames, GSD, eofm version, and the SHA-256 of the weights), the weights as safetensors
(``model.safetensors``, or ``adapter_model.safetensors`` with only the LoRA and the
trained head), the resolved ``recipe.yaml`` with local paths removed, a ``README.md``
model card from the family (``hub/model_card.md``), and a quicklook PNG when the run has
one. No absolute path of the machine goes into any of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from eofm import __version__
from eofm.errors import EofmError
from eofm.families.base import family_of
from eofm.jsonfile import json_text
from eofm.publishing.bundle import (
    ADAPTER_WEIGHTS,
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FULL_WEIGHTS,
    QUICKLOOK_FILE,
    RECIPE_FILE,
    adapter_state,
    sha256_of,
)
from eofm.publishing.paths import scrub_recipe
from eofm.train.model_json import load_model_json, read_model_json
from eofm.train.rundir import (
    MODEL_FILE,
    TEST_METRICS_FILE,
    load_run_recipe,
    locate_run,
    read_json,
    write_json,
)


def build_bundle(
    run_dir: Path,
    folder: Path,
    *,
    repo_id: str,
    adapter_only: bool,
    license_id: str,
    revision: str | None = None,
    onnx_tile: int | None = None,
) -> Path:
    """Write the exact folder that ``publish`` uploads; with ``onnx_tile``, also the run
    exported as ONNX (``eofm export``, dynamic batch) and its sidecar, paths scrubbed."""
    run_dir = check_publish_request(run_dir, adapter_only=adapter_only)
    family = family_of(load_run_recipe(run_dir))
    if folder.exists() and any(folder.iterdir()):
        raise EofmError(f"{folder} exists and is not empty; choose a new folder.")
    import yaml
    from safetensors.torch import save_file

    from eofm.adapters import is_lora
    from eofm.families.restore import load_trained

    run_dir, checkpoint = locate_run(str(run_dir))
    trained = load_trained(str(run_dir))
    model_json = read_model_json(run_dir / MODEL_FILE)
    if adapter_only and not is_lora(trained.model.backbone):
        raise EofmError(
            f"--adapter-only needs a LoRA run; {run_dir} used adapter.mode={trained.recipe.adapter.mode}."
        )
    adapter_only = adapter_only or family.publishes_trained_only(trained)
    if adapter_only and not model_json["backbone"].get("pretrained_loaded"):
        raise EofmError(
            f"--adapter-only needs a run whose backbone was loaded from the Hub; {run_dir} started "
            "from random weights, so publish the full model instead."
        )
    folder.mkdir(parents=True, exist_ok=True)
    state = adapter_state(trained.model) if adapter_only else trained.model.state_dict()
    weights = folder / (ADAPTER_WEIGHTS if adapter_only else FULL_WEIGHTS)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(weights))
    public_recipe = scrub_recipe(trained.recipe.to_dict())
    (folder / RECIPE_FILE).write_text(
        yaml.safe_dump(public_recipe, sort_keys=False), encoding="utf-8"
    )
    config = {
        "library_name": "eofm",
        "format": FORMAT,
        "eofm_version": __version__,
        "weights": weights.name,
        "weights_sha256": sha256_of(weights),
        "adapter_only": adapter_only,
        "source_checkpoint": checkpoint.name,
        **{k: v for k, v in model_json.items() if k != "eofm_version"},
    }
    (folder / CONFIG_FILE).write_text(
        json_text(config, CONFIG_FILE, indent=2) + "\n", encoding="utf-8"
    )
    quicklooks = sorted(run_dir.glob("predictions/*.png"))
    if quicklooks:
        shutil.copyfile(quicklooks[0], folder / QUICKLOOK_FILE)
    metrics_path = run_dir / TEST_METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else None
    card = family.model_card(
        config,
        trained.recipe,
        metrics,
        repo_id=repo_id,
        license_id=license_id,
        quicklook=bool(quicklooks),
        revision=revision,
    )
    (folder / CARD_FILE).write_text(card, encoding="utf-8")
    if onnx_tile:
        from eofm.commands.export import export_run

        exported = export_run(
            str(run_dir), "onnx", folder / "model.onnx", tile=onnx_tile, dynamic_batch=True
        )
        sidecar = read_json(exported.sidecar)
        sidecar.update(recipe=public_recipe, source=f"hf://{repo_id}")
        write_json(exported.sidecar, sidecar)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


def check_publish_request(run_dir: Path, *, adapter_only: bool) -> Path:
    """What ``publish`` refuses from ``recipe.yaml`` and ``model.json`` alone, before
    torch or the weights load; returns the run dir."""
    from eofm.train.rundir import locate_run

    run_dir, _ = locate_run(str(run_dir))
    recipe = load_run_recipe(run_dir)
    family_of(recipe).require("publish", run_dir)  # before any model loads
    if adapter_only:
        if recipe.adapter.mode != "lora":
            raise EofmError(
                f"--adapter-only needs a LoRA run; {run_dir} used adapter.mode={recipe.adapter.mode}.",
                exit_code=2,
            )
        if not load_model_json(run_dir / MODEL_FILE).pretrained_loaded:
            raise EofmError(
                f"--adapter-only needs a run whose backbone was loaded from the Hub; {run_dir} "
                "started from random weights (model.json: backbone.pretrained_loaded is false), "
                "so publish the full model instead.",
                exit_code=2,
            )
    return run_dir


def publish(
    run_dir: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    adapter_only: bool = False,
    license_id: str = "apache-2.0",
    dry_run: Path | None = None,
    onnx_tile: int | None = None,
) -> str | Path:
    """Build the bundle and upload it in one commit; returns the commit sha (or the folder)."""
    import tempfile

    from eofm.publishing.hub import upload_bundle, validate_repo_id

    validate_repo_id(repo_id)
    options = {
        "repo_id": repo_id,
        "adapter_only": adapter_only,
        "license_id": license_id,
        "revision": revision,
        "onnx_tile": onnx_tile,
    }
    if dry_run is not None:
        return build_bundle(run_dir, Path(dry_run), **options)
    with tempfile.TemporaryDirectory(prefix="eofm-publish-") as tmp:
        folder = build_bundle(run_dir, Path(tmp) / "bundle", **options)
        return upload_bundle(folder, repo_id, revision=revision, private=private)
