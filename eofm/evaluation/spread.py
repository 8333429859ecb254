"""Spread-skill of an ensemble of predictions of gridded variables.

For a calibrated ensemble the spread (standard deviation of the members about their mean)
matches the error of the ensemble mean (Fortin et al., "Why Should Ensemble Spread Match
the RMSE of the Ensemble Mean?", J. Hydrometeorology 2014): the ratio is near 1, below 1
for over-confident members. Here the members are Monte Carlo dropout passes of the
decoders on one latent per sample (Gal and Ghahramani, ICML 2016); the spread uses
Fortin's finite-ensemble factor ``(N + 1) / N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def _dropouts(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


def spread_skill(
    model: Any, loader: Any, targets: Sequence[str], std: Sequence[float], passes: int
) -> dict[str, dict[str, float]]:
    """Per target: ``spread``, ``rmse_of_mean`` (physical units) and their ``ratio``."""
    from eofm.errors import EofmError

    layers = _dropouts(model.decoder)
    if not layers:
        raise EofmError(
            "--mc-dropout needs dropout in the decoders (train with decoder.dropout > 0)."
        )
    scale = np.asarray(std, np.float64)
    variance = np.zeros(len(targets))
    squared = np.zeros(len(targets))
    count = np.zeros(len(targets))
    model.eval()
    with torch.inference_mode():
        for batch in loader:
            latent = model.encode_batch(batch)
            for layer in layers:
                layer.train()
            try:
                members = torch.stack(
                    [model.decode_batch({**batch, **latent}).float() for _ in range(passes)]
                )  # (N, B, V, H, W), normalised
            finally:
                for layer in layers:
                    layer.eval()
            valid = batch["valid"].bool()
            mean, var = members.mean(0), members.var(0, unbiased=True)
            error = (mean - batch["target"].float()) ** 2
            for v in range(len(targets)):
                mask = valid[:, v]
                variance[v] += float(var[:, v][mask].sum())
                squared[v] += float(error[:, v][mask].sum())
                count[v] += float(mask.sum())
    out = {}
    for v, name in enumerate(targets):
        n = max(count[v], 1.0)
        spread = float(np.sqrt((passes + 1) / passes * variance[v] / n) * scale[v])
        rmse = float(np.sqrt(squared[v] / n) * scale[v])
        out[name] = {
            "spread": spread,
            "rmse_of_mean": rmse,
            "ratio": spread / rmse if rmse else None,  # JSON null: no error to compare
        }
    return out
