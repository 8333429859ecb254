"""The model cards of published models: Hub metadata and a template of ``hub/``.

Each family provides its card section (:class:`CardSection`: the template, its metadata,
its model-index result and the template's fields, ``TaskFamily.card_section``); this module
renders any of them, with the parts every card shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Any

from eofm.publishing.provenance import random_init_warning


@dataclass
class CardSection:
    """What a family puts on its model card."""

    #: The template file in ``hub/`` (``model_card.md``, ``weather_model_card.md``, ...).
    template: str
    #: Hub metadata after ``library_name`` and ``license``: ``tags``, ``datasets``, ...
    meta: dict[str, Any]
    #: The model-index result (task, dataset, metrics), or None when the run was not tested.
    result: dict[str, Any] | None
    #: The template's fields besides ``front_matter`` and ``title``.
    fields: dict[str, Any]


def render_card(config: dict, section: CardSection, *, repo_id: str, license_id: str) -> str:
    """The README.md of a published model: Hub metadata (with its base model and
    model-index) as front matter, then the family's template filled in."""
    import yaml

    from eofm.resources import resource_dir

    name = repo_id.split("/")[-1]
    meta: dict[str, Any] = {"library_name": "eofm", "license": license_id, **section.meta}
    if config["backbone"].get("pretrained_loaded"):
        meta["base_model"] = config["backbone"]["repo"]
    if section.result is not None:
        meta["model-index"] = [{"name": name, "results": [section.result]}]
    template = Template((resource_dir("hub") / section.template).read_text(encoding="utf-8"))
    fields = dict(section.fields)
    fields["summary"] = warned(config, fields["summary"])
    return template.substitute(
        front_matter="---\n" + yaml.safe_dump(meta, sort_keys=False) + "---",
        title=name,
        **fields,
    )


def warned(config: dict, summary: str) -> str:
    """The card's summary, under a warning when the backbone was randomly initialised
    (the first thing a reader of the card sees)."""
    warning = random_init_warning(config)
    if not warning:
        return summary
    return f"> **Warning**: {warning[0].upper()}{warning[1:]}\n\n{summary}"


def backbone_text(backbone: dict) -> str:
    """Where the backbone's weights came from (its repo@revision, or the pinned URL of a
    torchgeo weight) and their licence, or random initialisation."""
    if backbone.get("pretrained_loaded"):
        repo = backbone["repo"]
        url = repo if repo.startswith(("http://", "https://")) else f"https://huggingface.co/{repo}"
        licence = backbone.get("licence")
        terms = (
            f", released under **{licence}**"
            + (
                " (non-commercial: that restriction carries over to this fine-tuned model)"
                if "-NC" in licence
                else ""
            )
            if licence
            else ", under the licence its source states"
        )
        return f"`{backbone['name']}` from [`{repo}`]({url}) at revision `{backbone['revision']}`{terms}"
    return (
        f"`{backbone['name']}` architecture, trained from **random initialisation** (no "
        "pretrained weights were loaded)"
    )


def adapter_text(adapter: dict, *, frozen: str) -> str:
    """How the backbone was adapted, in the card's words (LoRA: Hu et al., ICLR 2022;
    DoRA: Liu et al., ICML 2024)."""
    if adapter["mode"] == "lora":
        dora = " (DoRA)" if adapter.get("dora") else ""
        return f"LoRA rank {adapter['rank']}, alpha {adapter['alpha']}{dora}"
    return {"frozen": frozen, "full": "full fine-tuning"}[adapter["mode"]]


def evaluation_table(metrics: dict | None, repo_id: str, what: str) -> tuple[str, list]:
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
