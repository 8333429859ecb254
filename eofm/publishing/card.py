"""The model card a published segmentation model gets: Hub metadata and ``hub/model_card.md``."""

from __future__ import annotations

from string import Template
from typing import Any

from eofm.publishing.paths import public_path


def render_segmentation_card(
    config: dict,
    recipe: Any,
    metrics: dict | None,
    *,
    repo_id: str,
    license_id: str,
    quicklook: bool,
    revision: str | None = None,
    **_: Any,
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
        data_root=public_path(recipe.data.root),
        split_text=split_text,
        evaluation_text=evaluation,
        repo_id=repo_id,
        revision_hint=revision or "main",
        quicklook_text="![quicklook](quicklook.png)" if quicklook else "",
        intended_use=(
            f"Mapping {', '.join(task['class_names'][1:])} per pixel in {dataset}-like imagery, "
            "for research and for screening that a person reviews."
        ),
    )
