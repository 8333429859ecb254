"""An exported ONNX graph (``eofm export --format onnx``) as the model of ``eofm predict``.

The graph runs in onnxruntime on the CPU (``CPUExecutionProvider``); everything else is
the streaming engine of a run dir: the same scenes, tiles, blending and outputs, with the
numpy model stage (``eofm.predict.onnx_stage``), so that this path never imports torch. The
sidecar ``<file>.onnx.json`` written at export gives the recipe, bands, classes, tile and
calibration temperature. The graph has the run's normalisation inside, while the engine
hands the model normalised tiles, so the band values are restored first
(``x * std + mean``, exact to float32 rounding).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eofm.errors import EofmError

SUFFIX = ".onnx"


def is_onnx_model(spec: str) -> bool:
    return str(spec).endswith(SUFFIX)


def read_sidecar(spec: str) -> dict:
    path = Path(spec)
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file():
        raise EofmError(f"ONNX model {path} does not exist.")
    if not sidecar.is_file():
        raise EofmError(
            f"{sidecar} is missing: eofm predict needs the JSON that 'eofm export' writes "
            "beside the ONNX file (bands, classes, tile)."
        )
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EofmError(f"{sidecar} is not valid JSON: {exc}") from None
    for key in ("recipe", "model_json", "tile", "dynamic_batch", "mean", "std"):
        if key not in meta:
            raise EofmError(f"{sidecar} has no '{key}'; re-export the run with 'eofm export'.")
    return meta


def describe_onnx(spec: str) -> tuple[Any, dict]:
    """The recipe and ``model.json`` recorded at export, without loading the graph."""
    from eofm.recipe import load_recipe

    meta = read_sidecar(spec)
    return load_recipe(meta["recipe"], saved=True), meta["model_json"]


def check_onnx_options(spec: str, options: Any) -> None:
    """The graph's fixed tile size (and batch size, unless exported with a dynamic one)."""
    meta = read_sidecar(spec)
    if options.tile != meta["tile"]:
        raise EofmError(
            f"{spec} was exported for tiles of {meta['tile']} px; pass --tile {meta['tile']}."
        )
    if not meta["dynamic_batch"]:
        raise EofmError(
            f"{spec} was exported with a fixed batch size; re-export with --dynamic-batch "
            "for eofm predict (the last batch of a scene is smaller)."
        )
    if options.device not in ("auto", "cpu") or options.precision not in ("auto", "fp32"):
        raise EofmError(
            f"{spec} runs in onnxruntime on the CPU in float32: drop --device {options.device} "
            f"and --precision {options.precision} (or predict from the run dir).",
            exit_code=2,
        )
    if (getattr(options, "uncertainty", None) or "").startswith("mc-dropout"):
        raise EofmError(f"{spec}: an exported graph has no dropout to keep active.")


class OnnxNetwork:
    """The graph in onnxruntime's CPU provider: normalised tiles in, logits out (numpy)."""

    def __init__(self, spec: str, meta: dict) -> None:
        import numpy as np

        try:
            import onnxruntime as ort
        except ImportError:
            raise EofmError(
                "eofm predict on an ONNX model needs onnxruntime: pip install 'eofm[export]'."
            ) from None
        self.session = ort.InferenceSession(spec, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        shape = (1, len(meta["mean"]), 1, 1)
        self.mean = np.asarray(meta["mean"], np.float32).reshape(shape)
        self.std = np.asarray(meta["std"], np.float32).reshape(shape)

    def eval(self) -> OnnxNetwork:
        return self  # a graph has no training mode

    def __call__(self, tiles: Any) -> Any:
        """``tiles``: ``(B, C, H, W)`` float32, normalised as the engine hands them."""
        raw = tiles * self.std + self.mean  # the graph normalises them again, inside
        (logits,) = self.session.run(None, {self.input: raw})
        return logits


def load_onnx_model(spec: str) -> Any:
    """A :class:`~eofm.models.trained.TrainedModel` whose network is the ONNX graph."""
    from eofm.models.trained import trained_from_manifest

    meta = read_sidecar(spec)
    recipe, manifest = describe_onnx(spec)
    return trained_from_manifest(OnnxNetwork(spec, meta), recipe, manifest, spec)
