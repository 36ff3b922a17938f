"""Output drift: how far what a served model says has moved from what it said of its validation faces.

No label reaches a served model, so drift is measured on its outputs: the share of each predicted expression and the
distributions of valence, arousal and confidence. Each is compared with the model's reference profile (its outputs
on the validation split, stored with the model when it is calibrated) by the population stability index,
PSI = sum((p - q) * ln(p / q)) over the bins; by the usual rule of thumb below 0.1 is stable, 0.1-0.25 a moderate
shift and above 0.25 a shift worth a look (a new camera, a new population, a broken face detector).
"""

from __future__ import annotations

from typing import Any

import numpy as np

AFFECT_BINS = np.linspace(-1.0, 1.0, 11)
CONFIDENCE_BINS = np.linspace(0.0, 1.0, 11)
SIGNALS = ("expression", "valence", "arousal", "confidence")
PSI_SHIFT = 0.25
_FLOOR = 1e-4  # an empty bin's share: keeps ln(p / q) finite


def _shares(values: np.ndarray, bins: np.ndarray) -> list[float]:
    counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins=bins)
    return (counts / max(len(values), 1)).tolist()


def profile_of(predicted: np.ndarray, classes: int, valence: np.ndarray | None, arousal: np.ndarray | None,
               confidence: np.ndarray) -> dict[str, Any]:
    """The distribution of a model's outputs on some faces: predicted-class shares and histograms of valence,
    arousal and confidence (the top probability); a valence/arousal model (no classes) has no expression and no
    confidence, an expression model (``valence`` None) no valence and arousal (None)."""
    return {
        "faces": int(len(predicted)),
        "expression": (np.bincount(predicted, minlength=classes) / max(len(predicted), 1)).tolist() if classes
        else None,
        "valence": _shares(valence, AFFECT_BINS) if valence is not None else None,
        "arousal": _shares(arousal, AFFECT_BINS) if arousal is not None else None,
        "confidence": _shares(confidence, CONFIDENCE_BINS) if classes else None,
    }


def output_profile(probabilities: np.ndarray | None, valence_arousal: np.ndarray | None) -> dict[str, Any]:
    """:func:`profile_of` a model's probabilities ``[N, classes]`` (None: a valence/arousal model) and
    valence/arousal ``[N, 2]`` (None: an expression model)."""
    n = len(probabilities) if probabilities is not None else len(valence_arousal)
    valence, arousal = (None, None) if valence_arousal is None else (valence_arousal[:, 0], valence_arousal[:, 1])
    if probabilities is None:
        nothing = np.zeros(n)
        return profile_of(nothing.astype(int), 0, valence, arousal, nothing)
    return profile_of(probabilities.argmax(axis=1), probabilities.shape[1], valence, arousal,
                      probabilities.max(axis=1))


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """Population stability index of the shares ``actual`` against ``expected`` (same bins)."""
    p = np.clip(np.asarray(actual, dtype=float), _FLOOR, None)
    q = np.clip(np.asarray(expected, dtype=float), _FLOOR, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def profile_shift(reference: dict[str, Any], current: dict[str, Any]) -> dict[str, float]:
    """PSI of every signal of ``current`` against ``reference`` (those the model has)."""
    return {signal: psi(reference[signal], current[signal]) for signal in SIGNALS
            if reference[signal] is not None and current[signal] is not None}
