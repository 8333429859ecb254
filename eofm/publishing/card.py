"""The model cards of published models: Hub metadata and a template of ``hub/``
(``model_card.md`` for segmentation, ``weather_model_card.md`` for weather runs)."""

from __future__ import annotations

from string import Template
from typing import Any

from eofm.publishing.paths import public_path
from eofm.publishing.provenance import random_init_warning


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
    adapter_text = _adapter_text(config["adapter"], frozen="backbone frozen")
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
        summary=_warned(
            config,
            recipe.description
            or f"{task['type'].capitalize()} of {', '.join(task['class_names'])}.",
        ),
        eofm_version=config["eofm_version"],
        task_type=task["type"],
        class_list=", ".join(f"{i} = {c}" for i, c in enumerate(task["class_names"])),
        backbone_text=_backbone_text(backbone),
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


def _warned(config: dict, summary: str) -> str:
    """The card's summary, under a warning when the backbone was randomly initialised
    (the first thing a reader of the card sees)."""
    warning = random_init_warning(config)
    if not warning:
        return summary
    return f"> **Warning**: {warning[0].upper()}{warning[1:]}\n\n{summary}"


def _backbone_text(backbone: dict) -> str:
    if backbone.get("pretrained_loaded"):
        return (
            f"`{backbone['name']}` from [`{backbone['repo']}`](https://huggingface.co/{backbone['repo']}) "
            f"at revision `{backbone['revision']}`"
        )
    return (
        f"`{backbone['name']}` architecture, trained from **random initialisation** (no "
        "pretrained weights were loaded)"
    )


def _adapter_text(adapter: dict, *, frozen: str) -> str:
    """How the backbone was adapted, in the card's words (LoRA: Hu et al., ICLR 2022;
    DoRA: Liu et al., ICML 2024)."""
    if adapter["mode"] == "lora":
        dora = " (DoRA)" if adapter.get("dora") else ""
        return f"LoRA rank {adapter['rank']}, alpha {adapter['alpha']}{dora}"
    return {"frozen": frozen, "full": "full fine-tuning"}[adapter["mode"]]


def _evaluation_table(metrics: dict | None, repo_id: str, what: str) -> tuple[str, list]:
    """The card's evaluation text and the model-index metrics (test split)."""
    if not (metrics and metrics.get("metrics")):
        return (
            "**This model was not evaluated**: its run has no test metrics. Run "
            f"`eofm test hf://{repo_id} data.root=...` on {what} before use.",
            [],
        )
    values = {k: v for k, v in sorted(metrics["metrics"].items()) if v is not None}
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in values.items())
    entries = [
        {"type": k.split("/", 1)[1], "value": round(float(v), 6), "name": k}
        for k, v in values.items()
        if k.startswith("test/")
    ]
    text = (
        f"On the test split, with checkpoint `{metrics.get('checkpoint')}` (physical units):"
        f"\n\n| metric | value |\n|---|---|\n{rows}"
    )
    return text, entries


def render_weather_card(
    config: dict,
    recipe: Any,
    metrics: dict | None,
    *,
    repo_id: str,
    license_id: str,
    revision: str | None = None,
    **_: Any,
) -> str:
    """The card of a weather run: variables with units, grid, lead time, test scores."""
    import yaml

    from eofm.resources import resource_dir

    backbone, name = config["backbone"], repo_id.split("/")[-1]
    targets = config.get("targets") or {v: {} for v in config["bands"]}
    evaluation, entries = _evaluation_table(metrics, repo_id, "ERA5-layout data")
    meta: dict[str, Any] = {
        "library_name": "eofm",
        "license": license_id,
        "tags": ["weather", "climate", "eofm", "regression", *targets],
        "datasets": ["era5"],
    }
    if backbone.get("pretrained_loaded"):
        meta["base_model"] = backbone["repo"]
    if entries:
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "regression", "name": "Gridded regression"},
                        "dataset": {"type": "era5", "name": "ERA5", "split": "test"},
                        "metrics": entries,
                    }
                ],
            }
        ]
    rows = []
    for variable, info in targets.items():
        window = info.get("accumulated_hours")
        kind = (
            f"accumulated over the {window} h before the target time"
            if window
            else "at the target time"
        )
        rows.append(
            f"| {variable} | {info.get('long_name', variable)} | {info.get('units', '1')} | {kind} |"
        )
    grid = config.get("grid") or {}
    lat, lon = grid.get("lat") or [float("nan")], grid.get("lon") or [float("nan")]
    step = abs(lat[1] - lat[0]) if len(lat) > 1 else float("nan")
    grid_text = (
        f"{len(lat)} x {len(lon)} cells of {step:g} degrees, latitudes {lat[0]:g} .. {lat[-1]:g} "
        f"(north to south), longitudes {lon[0]:g} .. {lon[-1]:g}"
    )
    timing = config.get("timing") or {}
    inputs = config.get("inputs") or {}
    adapter_text = _adapter_text(
        config["adapter"], frozen="backbone frozen (lightweight decoders on its latent)"
    )
    template = Template((resource_dir("hub") / "weather_model_card.md").read_text("utf-8"))
    fractions = recipe.data.split_fractions
    return template.substitute(
        front_matter="---\n" + yaml.safe_dump(meta, sort_keys=False) + "---",
        title=name,
        summary=_warned(
            config, recipe.description or f"{', '.join(targets)} from a weather model's latent."
        ),
        eofm_version=config["eofm_version"],
        variable_list=", ".join(targets),
        backbone_text=_backbone_text(backbone),
        adapter_text=adapter_text,
        decoder_text=f"{config['decoder']['name']}, one per variable ({config['decoder']['channels']} hidden)",
        weights_text=(
            f"the trained decoders (and LoRA weights) only, `{config['weights']}`; the "
            "backbone is fetched from its pinned revision"
            if config["adapter_only"]
            else f"the complete model (`{config['weights']}`)"
        ),
        variable_rows="\n".join(rows),
        grid_text=grid_text,
        history_steps=timing.get("history_steps", "?"),
        step_hours=timing.get("step_hours", "?"),
        lead_hours=timing.get("lead_hours", "?"),
        surf_vars=", ".join(inputs.get("surf_vars", [])) or "none",
        atmos_vars=", ".join(inputs.get("atmos_vars", [])) or "none",
        levels=", ".join(f"{v:g}" for v in inputs.get("levels_hpa", [])) or "-",
        static_vars=", ".join(inputs.get("static_vars", [])) or "none",
        data_root=public_path(recipe.data.root),
        split_fractions=list(fractions),
        evaluation_text=evaluation,
        repo_id=repo_id,
        revision_hint=revision or "main",
        train_period=f"the first {fractions[0]:.0%} of the record",
    )
