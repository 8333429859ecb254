"""``eofm publish``: a run dir -> the exact folder put on the Hub, uploaded in one commit.

The folder holds ``config.json`` (the manifest: backbone with base repo and revision,
decoder, adapter, task and classes, bands in order with normalisation, patch size,
frames, GSD, eofm version, and the SHA-256 of the weights), the weights as safetensors
(``model.safetensors``, or ``adapter_model.safetensors`` with only the LoRA and the
trained head), the resolved ``recipe.yaml``, a ``README.md`` model card rendered from
``hub/model_card.md``, and a quicklook PNG when the run has one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

from eofm import __version__
from eofm.errors import EofmError
from eofm.rundir import RECIPE_FILE, TEST_METRICS_FILE, read_json

CONFIG_FILE = "config.json"
FULL_WEIGHTS = "model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FORMAT = "eofm-model/1"
#: Every file a published repo may hold; nothing else is uploaded or downloaded.
ALLOWED_FILES = (
    CONFIG_FILE,
    FULL_WEIGHTS,
    ADAPTER_WEIGHTS,
    RECIPE_FILE,
    "README.md",
    "quicklook.png",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_state(model: Any) -> dict:
    """What an adapter-only upload holds: LoRA weights and every weight trained in the run
    (decoder, head, neck, new patch-embedding kernels, BatchNorm statistics), i.e. all
    but the frozen base-model weights."""
    frozen = {
        f"backbone.{name}" for name, p in model.backbone.named_parameters() if not p.requires_grad
    }
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def build_bundle(
    run_dir: Path, folder: Path, *, repo_id: str, adapter_only: bool, license_id: str
) -> Path:
    """Write the exact folder that ``publish`` uploads."""
    from safetensors.torch import save_file

    from eofm.adapters import is_lora
    from eofm.trained import load_trained, locate_run

    run_dir, checkpoint = locate_run(str(run_dir))
    trained = load_trained(str(run_dir))
    if trained.recipe.task.type != "segmentation":
        raise EofmError(
            f"{run_dir} is a {trained.recipe.task.type} model; eofm publish supports "
            "segmentation models so far (use 'eofm test' for weather models)."
        )
    model_json = read_json(run_dir / "model.json")
    if adapter_only and not is_lora(trained.model.backbone):
        raise EofmError(
            f"--adapter-only needs a LoRA run; {run_dir} used adapter.mode={trained.recipe.adapter.mode}."
        )
    if adapter_only and not model_json["backbone"].get("pretrained_loaded"):
        raise EofmError(
            f"--adapter-only needs a run whose backbone was loaded from the Hub; {run_dir} started "
            "from random weights, so publish the full model instead."
        )
    if folder.exists() and any(folder.iterdir()):
        raise EofmError(f"{folder} exists and is not empty; choose a new folder.")
    folder.mkdir(parents=True, exist_ok=True)
    state = adapter_state(trained.model) if adapter_only else trained.model.state_dict()
    weights = folder / (ADAPTER_WEIGHTS if adapter_only else FULL_WEIGHTS)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(weights))
    shutil.copyfile(run_dir / RECIPE_FILE, folder / RECIPE_FILE)
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
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    quicklooks = sorted(run_dir.glob("predictions/*.png"))
    if quicklooks:
        shutil.copyfile(quicklooks[0], folder / "quicklook.png")
    metrics_path = run_dir / TEST_METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else None
    card = render_card(
        config,
        trained.recipe,
        metrics,
        repo_id=repo_id,
        license_id=license_id,
        quicklook=bool(quicklooks),
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def render_card(
    config: dict,
    recipe: Any,
    metrics: dict | None,
    *,
    repo_id: str,
    license_id: str,
    quicklook: bool,
) -> str:
    """The model card: Hub metadata (with model-index) + the template in ``hub/``."""
    import yaml

    from eofm.resources import resource_dir

    backbone, task = config["backbone"], config["task"]
    name = repo_id.split("/")[-1]
    dataset = recipe.data.name
    meta: dict[str, Any] = {
        "library_name": "eofm",
        "license": license_id,
        "tags": ["earth-observation", "remote-sensing", "eofm", task["type"], "image-segmentation"],
        "pipeline_tag": "image-segmentation",
        "datasets": [dataset],
    }
    if backbone.get("pretrained_loaded"):
        meta["base_model"] = backbone["repo"]
    if metrics and metrics.get("metrics"):
        values = metrics["metrics"]
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                        "dataset": {"type": dataset, "name": dataset, "split": "test"},
                        "metrics": [
                            {
                                "type": key.split("/", 1)[1],
                                "value": round(float(value), 4),
                                "name": key,
                            }
                            for key, value in sorted(values.items())
                            if value is not None and key.startswith("test/")
                        ],
                    }
                ],
            }
        ]
        rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(values.items()) if v is not None)
        evaluation = (
            f"On the test split ({len(metrics.get('test_chips', []))} chips), with checkpoint "
            f"`{metrics.get('checkpoint')}`:\n\n| metric | value |\n|---|---|\n{rows}"
        )
    else:
        evaluation = (
            "**This model was not evaluated**: its run has no test metrics. Run "
            f"`eofm test hf://{repo_id} data.root=...` on labelled data before use."
        )
    mapping = backbone.get("band_mapping", {})
    band_rows = "\n".join(
        f"| {i} | {band} | {mean:.6g} | {std:.6g} | {'copied' if band in mapping.get('copied', []) else 'new'} |"
        for i, (band, mean, std) in enumerate(
            zip(config["bands"], config["mean"], config["std"], strict=True), 1
        )
    )
    adapter = config["adapter"]
    adapter_text = {
        "frozen": "backbone frozen",
        "full": "full fine-tuning",
        "lora": f"LoRA rank {adapter['rank']}, alpha {adapter['alpha']}{' (DoRA)' if adapter['dora'] else ''}",
    }[adapter["mode"]]
    split = recipe.data.split_csv
    split_text = (
        f"official split files {', '.join(f'{k}: `{v}`' for k, v in split.items())}."
        if split
        else f"deterministic split by event, fractions {recipe.data.split_fractions} (train/val/test)."
    )
    template = Template((resource_dir("hub") / "model_card.md").read_text(encoding="utf-8"))
    return template.substitute(
        front_matter="---\n" + yaml.safe_dump(meta, sort_keys=False) + "---",
        title=name,
        summary=recipe.description
        or f"{task['type'].capitalize()} of {', '.join(task['class_names'])}.",
        eofm_version=config["eofm_version"],
        task_type=task["type"],
        class_list=", ".join(f"{i} = {c}" for i, c in enumerate(task["class_names"])),
        backbone_text=(
            f"`{backbone['name']}` from [`{backbone['repo']}`](https://huggingface.co/{backbone['repo']}) "
            f"at revision `{backbone['revision']}`"
            if backbone.get("pretrained_loaded")
            else f"`{backbone['name']}` architecture, trained from **random initialisation** (no pretrained weights were loaded)"
        ),
        adapter_text=adapter_text,
        decoder_text=f"{config['decoder']['name']} ({config['decoder']['channels']} channels)",
        patch_size=backbone["patch_size"][-1],
        num_frames=backbone["num_frames"],
        weights_text=(
            f"LoRA adapter and trained head only (`{config['weights']}`); the base model is fetched from its pinned revision"
            if config["adapter_only"]
            else f"the complete model (`{config['weights']}`)"
        ),
        band_rows=band_rows,
        dataset_name=dataset,
        data_root=recipe.data.root,
        split_text=split_text,
        evaluation_text=evaluation,
        repo_id=repo_id,
        revision_hint="main",
        quicklook_text="![quicklook](quicklook.png)" if quicklook else "",
        intended_use=(
            f"Mapping {', '.join(task['class_names'][1:])} per pixel in {dataset}-like imagery, "
            "for research and for screening that a person reviews."
        ),
    )


def publish(
    run_dir: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    adapter_only: bool = False,
    license_id: str = "apache-2.0",
    dry_run: Path | None = None,
) -> str | Path:
    """Build the bundle and upload it in one commit; returns the commit sha (or the folder)."""
    import tempfile

    from eofm.hub import validate_repo_id

    validate_repo_id(repo_id)
    if dry_run is not None:
        return build_bundle(
            run_dir,
            Path(dry_run),
            repo_id=repo_id,
            adapter_only=adapter_only,
            license_id=license_id,
        )
    from eofm.hub import upload_bundle

    with tempfile.TemporaryDirectory(prefix="eofm-publish-") as tmp:
        folder = build_bundle(
            run_dir,
            Path(tmp) / "bundle",
            repo_id=repo_id,
            adapter_only=adapter_only,
            license_id=license_id,
        )
        return upload_bundle(folder, repo_id, revision=revision, private=private)
