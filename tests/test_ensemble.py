import numpy as np
import pytest

from affectkit.evaluation.ensemble import fit_stacking
from affectkit.evaluation.metrics import compute_metrics


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _members(n: int, rng: np.random.Generator, classes: int = 8):
    """Truth plus an informative member (noisy but right most of the time) and a pure-noise member."""
    y = rng.integers(0, classes, n)
    va = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    informative = _softmax(2.5 * np.eye(8)[y] + rng.normal(0, 1.2, (n, 8)))
    noise = _softmax(rng.normal(0, 1.0, (n, 8)))
    va_informative = np.clip(va + rng.normal(0, 0.25, (n, 2)), -1, 1)
    va_noise = rng.uniform(-1, 1, (n, 2))
    return y, va, [informative, noise], [va_informative, va_noise]


def _score(probs, y, va_pred, va_true) -> tuple[float, float]:
    m = compute_metrics(probs, y, va_pred, va_true)
    return m["expression"]["accuracy"], m["valence"]["ccc"]


def test_stacking_beats_the_noise_member_and_keeps_up_with_the_informative_one():
    rng = np.random.default_rng(0)
    y, va, probs, vas = _members(1600, rng)
    fit, test = slice(0, 800), slice(800, None)
    va_fit = va[fit].copy()
    va_fit[::7] = np.nan  # unannotated rows must be skipped, not break the fit
    ensemble = fit_stacking([p[fit] for p in probs], [v[fit] for v in vas], y[fit], va_fit)
    stacked_probs, stacked_va = ensemble.predict([p[test] for p in probs], [v[test] for v in vas])

    acc, ccc = _score(stacked_probs, y[test], stacked_va, va[test])
    good_acc, good_ccc = _score(probs[0][test], y[test], vas[0][test], va[test])
    noise_acc, noise_ccc = _score(probs[1][test], y[test], vas[1][test], va[test])
    assert acc > noise_acc + 0.3
    assert acc >= good_acc - 0.02
    assert ccc > noise_ccc + 0.3
    assert ccc >= good_ccc - 0.02
    assert np.abs(stacked_va).max() <= 1.0


def test_a_class_missing_from_validation_still_gets_a_column():
    rng = np.random.default_rng(1)
    y, va, probs, vas = _members(400, rng)
    keep = y != 7  # no Contempt in the validation labels
    ensemble = fit_stacking([p[keep] for p in probs], [v[keep] for v in vas], y[keep], va[keep])
    stacked, stacked_va = ensemble.predict(probs, vas)
    assert stacked.shape == (400, 8) and stacked_va.shape == (400, 2)
    np.testing.assert_allclose(stacked.sum(1), 1.0, atol=1e-6)
    assert (stacked[:, 7] == 0).all()


def test_member_count_must_match_the_fit():
    rng = np.random.default_rng(2)
    y, va, probs, vas = _members(200, rng)
    ensemble = fit_stacking(probs, vas, y, va)
    with pytest.raises(Exception, match="2 members"):
        ensemble.predict(probs[:1], vas[:1])
