"""``eofm report RUN``: one self-contained ``report.html`` of a run.

Recipe, data and split, training summary, validation and test metrics, calibration,
the per-region table with the in-distribution vs held-out gap, and every picture the run
has (training curves, confusion matrix, reliability diagram, prediction quicklooks),
embedded as data URIs: the file opens offline, in any browser, with no JavaScript.

The report may be shared: it names no absolute local path. Paths (the data root, those of
the recipe) are written relative to the run dir, and a picture is embedded only when it
lies inside the run dir (a symlink pointing out of it is left out, and said so).
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import os
from pathlib import Path
from typing import Any

from eofm.errors import EofmError
from eofm.publishing.paths import is_local_absolute
from eofm.publishing.provenance import random_init_warning
from eofm.train.rundir import (
    METRICS_FILE,
    MODEL_FILE,
    RECIPE_FILE,
    TEST_METRICS_FILE,
    read_json,
    write_text_atomic,
)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 64em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 30em; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #666; }
.note { color: #666; font-size: 12px; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; }
"""


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_number(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_rows(metrics: dict[str, Any], prefix: str) -> list[list[Any]]:
    return [[k[len(prefix) :], v] for k, v in sorted(metrics.items()) if k.startswith(prefix)]


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _calibration(section: dict[str, Any], before: str, after: str) -> str:
    rows = []
    for label, key in (("uncalibrated", before), ("calibrated", after)):
        if key in section:
            values = section[key]
            rows.append([label, values["ECE"], values["NLL"], values["Brier"]])
    return _table(["", "ECE", "NLL", "Brier"], rows)


def render(run_dir: Path) -> str:
    """The report of ``run_dir`` as HTML text."""
    from eofm import __version__

    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise EofmError(f"{run_dir} is not a run dir: {run_dir / RECIPE_FILE} does not exist.")
    recipe_text = (run_dir / RECIPE_FILE).read_text(encoding="utf-8")
    model = read_json(run_dir / MODEL_FILE) if (run_dir / MODEL_FILE).is_file() else {}
    fit = read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else {}
    test = read_json(run_dir / TEST_METRICS_FILE) if (run_dir / TEST_METRICS_FILE).is_file() else {}
    name = fit.get("recipe") or run_dir.name
    parts = [
        f"<h1>eofm report: {html.escape(name)}</h1>",
        f'<p class="note">run {html.escape(run_dir.resolve().name)} &middot; eofm {__version__} '
        f"&middot; {datetime.date.today().isoformat()}</p>",
    ]
    warning = random_init_warning(model)
    if warning:
        parts.append(f'<p class="warning"><strong>Warning</strong>: {html.escape(warning)}</p>')
    task = model.get("task") or {}
    parts.append("<h2>Model and data</h2>")
    facts = [
        ["task", task.get("type")],
        ["classes / targets", ", ".join(task.get("class_names") or task.get("targets") or [])],
        ["backbone", _backbone(model)],
        ["inputs", ", ".join(model.get("bands") or [])],
        ["normalisation", model.get("normalisation_source")],
        ["test data", _relative(test.get("data_root"), run_dir)],
    ]
    parts.append(_table(["", ""], [r for r in facts if r[1]]))
    if fit:
        parts.append("<h2>Training</h2>")
        summary = [
            ["epochs", fit.get("epochs")],
            ["steps", fit.get("global_step")],
            ["seconds", fit.get("fit_seconds")],
            ["trainable parameters", fit.get("trainable_parameters")],
            ["best checkpoint", _relative(fit.get("best_checkpoint"), run_dir)],
            *[[f"best {k}", v] for k, v in (fit.get("best_score") or {}).items()],
        ]
        parts.append(_table(["", ""], summary))
        rows = _metric_rows(fit.get("metrics") or {}, "val/")
        if rows:
            parts.append("<h3>Validation (last epoch)</h3>" + _table(["metric", "value"], rows))
    if test:
        parts.append("<h2>Test</h2>")
        parts.append(
            f'<p class="note">checkpoint {html.escape(str(_relative(test.get("checkpoint"), run_dir)))}</p>'
            + _table(["metric", "value"], _metric_rows(test.get("metrics") or {}, "test/"))
        )
        calibration = test.get("calibration")
        if calibration:
            parts.append(
                f"<h3>Calibration on the test split (T = {calibration['temperature']:.3f})</h3>"
                + _calibration(calibration, "uncalibrated", "calibrated")
            )
        regions = test.get("regions")
        if regions:
            parts.append("<h3>Per region</h3>")
            rows = [
                [
                    r["region"],
                    r["role"],
                    r["chips"],
                    r["pixels"],
                    r["mIoU"],
                    r["accuracy"],
                    r["mF1"],
                ]
                for r in regions["rows"]
            ]
            parts.append(
                _table(["region", "role", "chips", "pixels", "mIoU", "accuracy", "mF1"], rows)
            )
            summary = regions["summary"]
            rows = [[role, v["mIoU"], v["accuracy"], v["mF1"]] for role, v in summary.items()]
            parts.append(
                _table(["", "mIoU", "accuracy", "mF1"], rows)
                + '<p class="note">gap = in-distribution minus held-out (RainShift-style '
                "geographic shift)</p>"
            )
    fitted = model.get("calibration")
    if fitted:
        parts.append(
            f"<h2>Temperature scaling</h2><p>T = {fitted['temperature']:.4f}, fitted on the "
            f"{html.escape(fitted['fitted_on'])} split ({fitted['pixels']:,} labelled values)</p>"
            + _calibration(fitted, "before", "after")
        )
    pictures = [
        (run_dir / "curves.png", "training curves"),
        (run_dir / "confusion.png", "confusion matrix (test)"),
        (run_dir / "reliability.png", "reliability diagram (test)"),
        *[(p, f"prediction: {p.stem}") for p in sorted(run_dir.glob("predictions/*.png"))[:4]],
    ]
    shown, outside = [], []
    for path, caption in pictures:
        if not _inside(path, run_dir):
            outside.append(path.relative_to(run_dir))
        elif path.is_file():
            shown.append(_figure(path, caption))
    if outside:
        shown.append(
            '<p class="note">left out (symlinks pointing out of the run dir): '
            + html.escape(", ".join(str(p) for p in outside))
            + "</p>"
        )
    if shown:
        parts.append("<h2>Pictures</h2>" + "".join(shown))
    parts.append(
        "<h2>Recipe</h2><pre>" + html.escape(_recipe_text(recipe_text, run_dir)) + "</pre>"
    )
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>eofm report: {html.escape(name)}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _backbone(model: dict[str, Any]) -> str | None:
    name = (model.get("backbone") or {}).get("name")
    return f"{name} (random initialisation)" if name and random_init_warning(model) else name


def _inside(path: Path, run_dir: Path) -> bool:
    """Whether ``path``, its symlinks followed, lies inside ``run_dir``."""
    return path.resolve().is_relative_to(run_dir.resolve())


def _relative(value: Any, run_dir: Path) -> Any:
    """An absolute local path as it is seen from the run dir; anything else unchanged."""
    if not isinstance(value, str) or not is_local_absolute(value):
        return value
    return os.path.relpath(Path(value).expanduser(), run_dir.resolve())


def _recipe_text(text: str, run_dir: Path) -> str:
    """The run's recipe with every absolute local path relative to the run dir."""
    import yaml

    try:
        tree = yaml.safe_load(text)
    except Exception:  # a recipe.yaml eofm did not write: shown as it is
        return text

    def relative(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: relative(v) for k, v in node.items()}
        if isinstance(node, list):
            return [relative(v) for v in node]
        return _relative(node, run_dir)

    return yaml.safe_dump(relative(tree), sort_keys=False)


def write_report(run_dir: Path, output: Path | None = None) -> Path:
    """Write the report (atomically); the default place is ``RUN/report.html``, and an
    ``output`` that is a folder gets ``report.html`` in it."""
    target = Path(output) if output else Path(run_dir) / "report.html"
    if target.is_dir():
        target = target / "report.html"
    write_text_atomic(target, render(Path(run_dir)))
    return target
