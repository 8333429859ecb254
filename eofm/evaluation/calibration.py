"""Temperature scaling: one scalar that divides the logits, fitted on the validation split.

Guo et al., "On Calibration of Modern Neural Networks", ICML 2017: the temperature ``T``
minimising the negative log-likelihood of held-out labels; ``softmax(z / T)`` keeps every
argmax (class maps do not change) and only softens or sharpens the probabilities. It
cannot fix a model that is wrong in a way that depends on the input (the limit that
later work, e.g. Kull et al. NeurIPS 2019, addresses with richer maps).
"""

from __future__ import annotations

import numpy as np


def nll_at(logits: np.ndarray, target: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``target`` under ``softmax(logits / T)``."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(target)), target]).mean())


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The NLL-minimising temperature (searched on log T in [-4, 4], i.e. 0.02 .. 55)."""
    from scipy.optimize import minimize_scalar

    if not len(target):
        raise ValueError("no labelled pixel to calibrate on")
    result = minimize_scalar(
        lambda log_t: nll_at(logits, target, float(np.exp(log_t))),
        bounds=(-4.0, 4.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibration_record(logits: np.ndarray, target: np.ndarray, split: str) -> dict:
    """The fitted temperature and the ``split``'s ECE, NLL and Brier before and after
    (what ``model.json`` keeps under ``calibration``)."""
    from eofm.errors import EofmError
    from eofm.evaluation.scores import PixelScores, calibration_metrics

    if not len(target):
        raise EofmError(f"The {split} split has no labelled pixel to calibrate on.")
    temperature = fit_temperature(logits, target)
    scores = PixelScores(logits.shape[1], (1.0, temperature))
    scores.update(logits, target)
    return {
        "method": "temperature scaling (Guo et al., ICML 2017)",
        "temperature": temperature,
        "fitted_on": split,
        "pixels": int(len(target)),
        "before": calibration_metrics(scores, 0),
        "after": calibration_metrics(scores, 1),
    }
