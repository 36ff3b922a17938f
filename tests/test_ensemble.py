import numpy as np
import pytest

from affectkit.config import NO_EXPRESSION
from affectkit.errors import AffectkitError
from affectkit.evaluation.ensemble import fit_late_fusion, fit_stacking
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


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def test_late_fusion_ignores_a_useless_second_classifier():
    rng = np.random.default_rng(3)
    y, _, (informative, noise), _ = _members(1200, rng)
    fit, test = slice(0, 400), slice(400, None)
    fusion = fit_late_fusion(informative[fit], noise[fit], y[fit])
    assert fusion.weight <= 0.1 and fusion.val_nll <= fusion.val_nll_first
    fused = fusion.apply(informative[test], noise[test])
    np.testing.assert_allclose(fused.sum(1), 1.0, atol=1e-9)
    assert _accuracy(fused, y[test]) >= _accuracy(informative[test], y[test]) - 0.01


def test_late_fusion_of_complementary_classifiers_beats_both():
    """One classifier sees classes 0-3 well, the other 4-7, and the second's scores are on a far flatter scale (as a
    softmax of SVM margins is): the temperature and the weight chosen on val make the fusion better than either."""
    rng = np.random.default_rng(4)
    n = 2000
    y = rng.integers(0, 8, n)
    onehot = np.eye(8)[y]
    first = _softmax(3.0 * onehot * (y < 4)[:, None] + rng.normal(0, 1.0, (n, 8)))
    second = _softmax(0.3 * (3.0 * onehot * (y >= 4)[:, None] + rng.normal(0, 1.0, (n, 8))))
    fit, test = slice(0, 600), slice(600, None)
    fusion = fit_late_fusion(first[fit], second[fit], y[fit])
    assert 0.2 <= fusion.weight <= 0.8 and fusion.temperature < 1.0  # the flat scores get sharpened
    fused = _accuracy(fusion.apply(first[test], second[test]), y[test])
    assert fused > max(_accuracy(first[test], y[test]), _accuracy(second[test], y[test])) + 0.15


def test_late_fusion_needs_the_same_rows():
    rng = np.random.default_rng(5)
    y, _, (informative, noise), _ = _members(100, rng)
    with pytest.raises(AffectkitError, match="same validation rows"):
        fit_late_fusion(informative, noise[:50], y)


def test_faces_without_a_class_fit_the_regressors_but_not_the_classifiers():
    rng = np.random.default_rng(6)
    y, va, probs, vas = _members(600, rng)
    partial = y.copy()
    partial[::3] = NO_EXPRESSION
    kept = partial != NO_EXPRESSION
    stacked = fit_stacking(probs, vas, partial, va)
    subset = fit_stacking([p[kept] for p in probs], [v[kept] for v in vas], y[kept], va[kept])
    everything = fit_stacking(probs, vas, y, va)
    np.testing.assert_allclose(stacked.predict(probs, vas)[0], subset.predict(probs, vas)[0])  # classifier
    np.testing.assert_allclose(stacked.predict(probs, vas)[1], everything.predict(probs, vas)[1])  # regressors
    fusion = fit_late_fusion(probs[0], probs[1], partial)
    alone = fit_late_fusion(probs[0][kept], probs[1][kept], y[kept])
    assert (fusion.weight, fusion.val_nll) == (alone.weight, alone.val_nll)
    with pytest.raises(AffectkitError, match="none has one"):
        fit_late_fusion(probs[0], probs[1], np.full(600, NO_EXPRESSION))
