"""``eofm export``: a run as one inference graph, ONNX or a ``torch.export`` program.

The graph is the backbone with its LoRA/DoRA adapter merged into the base weights
(peft's ``merge_and_unload``), the neck, the decoder and the head, with the run's
normalisation baked in: it takes raw band values ``(B, C, tile, tile)`` float32 in the
run's band order and gives logits ``(B, classes, tile, tile)``. Beside the file,
``<file>.json`` records what ``eofm predict --model`` needs (bands, classes, tile, the
calibration temperature) and the parity measured at export.

- ``.pt2``: ``torch.export.export`` then ``torch.export.save`` (the ExportedProgram).
- ``.onnx``: ``torch.onnx.export(..., dynamo=True)`` (the ``torch.export``-based exporter),
  checked in onnxruntime on CPU.

References: PyTorch docs, "torch.export" and "torch.onnx (dynamo=True)"; peft docs,
"LoraModel.merge_and_unload".
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eofm.atomic import atomic_path
from eofm.errors import EofmError
from eofm.train.rundir import write_json

log = logging.getLogger(__name__)

FORMATS = ("onnx", "pt2")
#: Largest difference from the PyTorch model allowed at export (the issue's parity bars).
TOLERANCE = {"onnx": 1e-4, "pt2": 1e-5}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    max_abs_diff: float


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def check_output(out: Path, fmt: str) -> None:
    """Nothing a user made is overwritten: the file and its sidecar must be new."""
    if fmt not in FORMATS:
        raise EofmError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    if out.suffix != f".{fmt}":
        raise EofmError(f"--output {out} must end in .{fmt} for --format {fmt}.")
    for path in (out, sidecar_path(out)):
        if path.exists():
            raise EofmError(f"{path} exists; choose another --output (nothing is overwritten).")


def inference_module(network: Any, mean: list[float], std: list[float]) -> Any:
    """The trained network with its adapter merged and ``(x - mean) / std`` in front."""
    import torch
    from torch import nn

    from eofm.adapters import is_lora

    model = copy.deepcopy(network).eval()
    if is_lora(model.backbone):
        model.backbone = model.backbone.merge_and_unload()

    class Normalised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            shape = (1, len(mean), 1, 1)
            self.register_buffer("mean", torch.tensor(mean).reshape(shape))
            self.register_buffer("std", torch.tensor(std).reshape(shape))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model((x - self.mean) / self.std)

    return Normalised().eval()


def export_run(
    run: str,
    fmt: str,
    out: Path,
    *,
    tile: int = 224,
    dynamic_batch: bool = False,
) -> ExportResult:
    """Export ``run`` (a run dir or checkpoint) to ``out`` and check its parity."""
    check_output(out, fmt)
    import torch

    from eofm.families.base import family_of
    from eofm.families.restore import load_trained, locate_run
    from eofm.train.rundir import load_run_recipe

    run_dir, _ = locate_run(run)
    family = family_of(load_run_recipe(run_dir))
    family.check_exportable(run_dir)
    trained = load_trained(run)
    coords = [k for k, v in (trained.manifest["backbone"].get("coords") or {}).items() if v]
    if coords:
        raise EofmError(
            f"{run} feeds its backbone per-scene {' and '.join(coords)} coordinates beside the "
            "image; the exported graph takes the image alone. Train with backbone.coords: "
            "false (and a fixed backbone.gsd) to export."
        )
    if tile % trained.patch_size:
        raise EofmError(
            f"--tile {tile} must be a multiple of the backbone's stride {trained.patch_size}."
        )
    module = inference_module(trained.model, trained.mean, trained.std)
    torch.manual_seed(0)
    example = torch.rand(2, len(trained.bands), tile, tile) * 2000.0
    with torch.no_grad():
        expected = module(example)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as partial:
        save_graph(module, example, fmt, partial, dynamic_batch=dynamic_batch)
        if fmt == "pt2":
            with torch.no_grad():
                got = torch.export.load(str(partial)).module()(example)
            diff = float((got - expected).abs().max())
        else:
            diff = _onnx_parity(partial, example.numpy(), expected.numpy())
        if diff > TOLERANCE[fmt]:
            raise EofmError(
                f"The exported {fmt} graph differs from the PyTorch model by {diff:.2e} "
                f"(allowed {TOLERANCE[fmt]:.0e}); nothing was written."
            )
    sidecar = sidecar_path(out)
    write_json(sidecar, _sidecar(trained, fmt, tile, dynamic_batch, diff, family.export_output))
    log.info("Exported %s to %s (max |diff| %.2e vs PyTorch).", run, out, diff)
    return ExportResult(out, sidecar, diff)


def save_graph(module: Any, example: Any, fmt: str, path: Path, *, dynamic_batch: bool) -> None:
    """Write ``module`` traced on ``example`` as ``fmt`` to ``path`` (batch dimension
    dynamic when asked; the tile size is fixed)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {"x": {0: batch}} if dynamic_batch else None
    if fmt == "pt2":
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic)
        torch.export.save(program, str(path))
        return
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=dynamic,
        input_names=["x"],
        output_names=["logits"],
        external_data=False,
        optimize=True,
    )


def _onnx_parity(path: Path, x: Any, expected: Any) -> float:
    try:
        import onnxruntime as ort
    except ImportError:
        raise EofmError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'eofm[export]'."
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    return float(abs(got - expected).max())


def _sidecar(
    trained: Any, fmt: str, tile: int, dynamic_batch: bool, diff: float, output: str
) -> dict:
    from eofm._version import __version__

    return {
        "format": fmt,
        "eofm_version": __version__,
        "input": "raw band values, float32 (B, C, tile, tile); normalisation is in the graph",
        "output": output,
        "task": trained.manifest.get("task"),
        "bands": list(trained.bands),
        "mean": list(trained.mean),
        "std": list(trained.std),
        "normalisation_in_graph": True,
        "class_names": list(trained.class_names),
        "patch_size": trained.patch_size,
        "tile": tile,
        "dynamic_batch": dynamic_batch,
        "temperature": trained.temperature,
        "backbone": trained.manifest.get("backbone"),
        "source": trained.source,
        "parity_max_abs_diff": diff,
        "recipe": trained.recipe.to_dict(),
        "model_json": trained.manifest,
    }
