"""Temperature scaling: one scalar that divides the logits, fitted on the validation split.

Guo et al., "On Calibration of Modern Neural Networks", ICML 2017: the temperature ``T``
minimising the negative log-likelihood of held-out labels; ``softmax(z / T)`` keeps every
argmax (class maps do not change) and only softens or sharpens the probabilities. It
cannot fix a model that is wrong in a way that depends on the input (the limit that
later work, e.g. Kull et al. NeurIPS 2019, addresses with richer maps).

One scalar is fitted on many pixels, but pixels of one chip are far from independent: a
temperature fitted on one chip (or on labels of one class) says more about that chip
than about the model. Calibration is refused below :data:`MIN_UNITS` chips or samples,
and labels of one class only are named in a warning. The search is bounded (:data:`LOG_T_BOUNDS`); a
temperature at a bound is not a minimum, and the record says so.
"""

from __future__ import annotations

import math

import numpy as np

#: The search interval of log T: T in 0.018 .. 54.6.
LOG_T_BOUNDS = (-4.0, 4.0)
#: The fewest validation chips (segmentation) or samples (sample classifiers) that
#: calibration accepts.
MIN_UNITS = {"chips": 2, "samples": 50}


def nll_at(logits: np.ndarray, target: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``target`` under ``softmax(logits / T)``."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(target)), target]).mean())


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> float:
    """The NLL-minimising temperature (searched on log T in :data:`LOG_T_BOUNDS`)."""
    from scipy.optimize import minimize_scalar

    if not len(target):
        raise ValueError("no labelled pixel to calibrate on")
    result = minimize_scalar(
        lambda log_t: nll_at(logits, target, float(np.exp(log_t))),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibration_record(
    logits: np.ndarray, target: np.ndarray, split: str, *, units: int, unit: str
) -> dict:
    """The fitted temperature and the ``split``'s ECE, NLL and Brier before and after
    (what ``model.json`` keeps under ``calibration``); ``units`` chips or samples gave
    the labelled values ``target``. Too little data (:data:`MIN_UNITS`), a temperature at
    a bound of the search, or labels of one class carry a ``warning``."""
    from eofm.errors import EofmError
    from eofm.evaluation.scores import PixelScores, calibration_metrics

    if not len(target):
        raise EofmError(f"The {split} split has no labelled pixel to calibrate on.")
    if units == 0:
        raise EofmError(f"The {split} split has no {unit} to calibrate on.", exit_code=2)
    temperature = fit_temperature(logits, target)
    scores = PixelScores(logits.shape[1], (1.0, temperature))
    scores.update(logits, target)
    classes = np.unique(target)
    warnings = [
        f"the {split} split has {units} {unit}, fewer than the {MIN_UNITS[unit]} a temperature "
        "needs to describe the model rather than them: calibrate on a larger validation split"
        if units < MIN_UNITS[unit]
        else None,
        _bound_hit(temperature),
        f"the labels of the {split} split hold class {int(classes[0])} only: the temperature "
        "reflects how sure the model is of that class alone."
        if len(classes) < 2
        else None,
    ]
    warning = " Also, ".join(w for w in warnings if w)
    return {
        **({"warning": warning[0].upper() + warning[1:]} if warning else {}),
        "method": "temperature scaling (Guo et al., ICML 2017)",
        "temperature": temperature,
        "fitted_on": split,
        "pixels": int(len(target)),
        unit: int(units),
        "before": calibration_metrics(scores, 0),
        "after": calibration_metrics(scores, 1),
    }


def _bound_hit(temperature: float) -> str | None:
    """What a temperature at a bound of the search means, or None inside it."""
    low, high = LOG_T_BOUNDS
    log_t = math.log(temperature)
    if log_t > high - 1e-3:
        return (
            f"the temperature stopped at the upper bound of the search (T = {math.exp(high):.1f}): "
            "the validation NLL still falls as T grows, i.e. the probabilities are no better "
            "than uniform there; this T is a bound, not a fit."
        )
    if log_t < low + 1e-3:
        return (
            f"the temperature stopped at the lower bound of the search (T = {math.exp(low):.3f}): "
            "the validation NLL still falls as the probabilities sharpen; this T is a bound, "
            "not a fit."
        )
    return None
