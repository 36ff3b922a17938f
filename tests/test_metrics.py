"""Metrics against independent numpy / scikit-learn / scipy computations, known cases, losses, calibration, plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import pearsonr
from sklearn import metrics as skm

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, NUM_CLASSES, LossConfig
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.metrics import (
    LOG_LOSS_FLOOR,
    AffectMetrics,
    compute_metrics,
    expected_calibration_error,
    log_loss,
    prior_collapse,
    unlearnt_classes,
    unlearnt_note,
    reliability_curve,
)
from affectkit.evaluation.plots import (
    plot_confusion_matrix,
    plot_model_comparison,
    plot_reliability_diagram,
    plot_training_history,
)
from affectkit.multimodal.fusion import validation_score
from affectkit.training.losses import ccc_loss, focal_loss

N = 600
LABELS = list(range(NUM_CLASSES))


def ccc_numpy(pred: np.ndarray, true: np.ndarray) -> float:
    """Lin's CCC with sample (N - 1) moments, the convention the module documents."""
    covariance = np.cov(pred, true, ddof=1)[0, 1]
    return 2 * covariance / (pred.var(ddof=1) + true.var(ddof=1) + (pred.mean() - true.mean()) ** 2)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, NUM_CLASSES, N)
    logits = rng.normal(size=(N, NUM_CLASSES))
    logits[np.arange(N), y] += 1.5  # better than chance, so the scores are not all near 1/8
    va_true = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
    va_pred = (0.6 * va_true + rng.normal(0.05, 0.3, (N, 2))).clip(-1, 1).astype(np.float32)
    va_true[rng.random(N) < 0.2, 0] = np.nan
    va_true[rng.random(N) < 0.3, 1] = np.nan
    return {"y": y, "logits": logits.astype(np.float32), "probs": softmax(logits).astype(np.float32),
            "va_pred": va_pred, "va_true": va_true}


@pytest.fixture(scope="module")
def result(data) -> dict:
    return compute_metrics(data["probs"], data["y"], data["va_pred"], data["va_true"])


def test_expression_metrics_match_sklearn(data, result):
    y, probs = data["y"], data["probs"]
    pred = probs.argmax(1)
    e = result["expression"]
    assert result["n"] == N
    assert e["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    for k in (2, 3):
        assert e[f"top{k}_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=k, labels=LABELS), abs=1e-6)
    assert e["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert e["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-6)
    cm = skm.confusion_matrix(y, pred, labels=LABELS)
    assert e["confusion_matrix"] == cm.tolist()
    np.testing.assert_allclose(e["confusion_matrix_normalized"], cm / cm.sum(1, keepdims=True), atol=1e-6)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=LABELS, zero_division=0)
    assert list(e["per_class"]) == list(CLASS_NAMES)
    for i, name in enumerate(CLASS_NAMES):
        row = e["per_class"][name]
        assert row["precision"] == pytest.approx(precision[i], abs=1e-6)
        assert row["recall"] == pytest.approx(recall[i], abs=1e-6)
        assert row["f1"] == pytest.approx(f1[i], abs=1e-6)
        assert row["support"] == support[i]
    exact = probs / probs.sum(1, keepdims=True, dtype=np.float64)  # sklearn wants rows summing to 1 in float64
    assert e["nll"] == pytest.approx(skm.log_loss(y, exact, labels=LABELS), rel=1e-5)
    assert e["ece"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-6)


@pytest.mark.parametrize("column, dim", [(0, "valence"), (1, "arousal")])
def test_regression_metrics_match_numpy_and_scipy(data, result, column, dim):
    true = data["va_true"][:, column].astype(np.float64)
    labelled = np.isfinite(true)
    pred, true = data["va_pred"][labelled, column].astype(np.float64), true[labelled]
    r = result[dim]
    assert r["n"] == labelled.sum() < N  # the NaN rows are skipped
    assert r["mse"] == pytest.approx(np.mean((pred - true) ** 2), rel=1e-5)
    assert r["mae"] == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-5)
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((pred - true) ** 2)), rel=1e-5)
    assert r["pcc"] == pytest.approx(pearsonr(pred, true).statistic, abs=1e-5)
    assert r["ccc"] == pytest.approx(ccc_numpy(pred, true), abs=1e-5)
    assert r["sagr"] == pytest.approx(np.mean(np.sign(pred) == np.sign(true)), abs=1e-6)


def test_result_is_plain_json(result):
    assert json.loads(json.dumps(result)) == result


def _va_result(pred: np.ndarray, true: np.ndarray) -> dict:
    n = len(true)
    probs = np.full((n, NUM_CLASSES), 1 / NUM_CLASSES, dtype=np.float32)
    return compute_metrics(probs, np.zeros(n, int), np.stack([pred, pred], 1), np.stack([true, true], 1))["valence"]


def test_known_regression_cases():
    true = np.linspace(-0.9, 0.8, 50)
    perfect = _va_result(true, true)
    assert perfect["pcc"] == pytest.approx(1, abs=1e-5) and perfect["ccc"] == pytest.approx(1, abs=1e-5)
    assert perfect["mse"] == 0 and perfect["sagr"] == 1
    for value in (0.0, 0.1):  # 0.1 is inexact in float32, so its "variance" is rounding noise, not 0
        constant = _va_result(np.full(50, value), true)
        assert constant["pcc"] == pytest.approx(0, abs=1e-6) and constant["ccc"] == pytest.approx(0, abs=1e-6)
    anti = _va_result(-true, true)
    assert anti["pcc"] == pytest.approx(-1, abs=1e-5) and anti["ccc"] < 0


def test_perfect_expression_predictions():
    y = np.arange(40) % NUM_CLASSES
    m = compute_metrics(np.eye(NUM_CLASSES)[y], y, np.zeros((40, 2)), np.zeros((40, 2)))["expression"]
    assert m["accuracy"] == m["macro_f1"] == m["balanced_accuracy"] == 1
    assert m["ece"] == pytest.approx(0, abs=1e-6) and m["nll"] == pytest.approx(0, abs=1e-6)


def test_every_log_loss_charges_a_face_given_no_probability_for_its_class_the_same():
    y = np.arange(16) % NUM_CLASSES
    logits = np.eye(NUM_CLASSES)[y] * 3.0
    logits[0] = -80.0 * np.eye(NUM_CLASSES)[y[0]]  # face 0 gets ~3e-36 for its class: below the floor
    probs = torch.softmax(torch.tensor(logits), dim=1).numpy()
    charged = np.clip(probs[np.arange(len(y)), y], LOG_LOSS_FLOOR, None)
    expected = float(-np.log(charged).mean())
    assert charged[0] == LOG_LOSS_FLOOR and log_loss(probs, y) == pytest.approx(expected)
    for inputs, scores in (("probs", probs), ("logits", logits)):
        metric = AffectMetrics(inputs=inputs)
        metric.update(torch.tensor(scores, dtype=torch.float32), torch.tensor(y), torch.zeros(len(y), 2),
                      torch.full((len(y), 2), float("nan")))
        assert metric.compute()["expression"]["nll"] == pytest.approx(expected, rel=1e-4), inputs
    assert validation_score("expression", probs, y.astype(float)) == pytest.approx(expected)
    assert np.isnan(log_loss(np.zeros((0, NUM_CLASSES)), np.zeros(0, int)))


def test_no_valence_arousal_gives_none_and_empty_rows_give_zeros():
    y = np.zeros(10, int)  # only class 0 present: the other rows of the normalised matrix are zeros
    probs = np.tile(np.eye(NUM_CLASSES)[1], (10, 1))
    m = compute_metrics(probs, y, np.zeros((10, 2)), np.full((10, 2), np.nan))
    assert m["valence"] is None and m["arousal"] is None
    assert m["expression"]["confusion_matrix_normalized"][0][1] == 1
    assert m["expression"]["confusion_matrix_normalized"][3] == [0.0] * NUM_CLASSES


def test_batched_updates_equal_one_update(data, result):
    metrics = AffectMetrics(inputs="logits")
    for chunk in np.array_split(np.arange(N), 7):
        metrics.update(torch.from_numpy(data["logits"][chunk]), torch.from_numpy(data["y"][chunk]),
                       torch.from_numpy(data["va_pred"][chunk]), torch.from_numpy(data["va_true"][chunk]))
    batched = metrics.compute()
    assert batched["expression"].pop("confusion_matrix") == result["expression"]["confusion_matrix"]
    for key, value in batched["expression"].items():
        if isinstance(value, float):
            assert value == pytest.approx(result["expression"][key], abs=1e-5), key
    for dim in ("valence", "arousal"):
        assert batched[dim] == pytest.approx(result[dim], abs=1e-5)
    metrics.reset()
    empty_va = np.full((4, 2), np.nan, dtype=np.float32)
    metrics.update(torch.from_numpy(data["logits"][:4]), torch.from_numpy(data["y"][:4]),
                   torch.from_numpy(data["va_pred"][:4]), torch.from_numpy(empty_va))
    assert metrics.compute()["n"] == 4


def _distributed_worker(rank: int, data: dict, shared: str) -> None:
    """One of two processes, each updating with its half of the data; the second half has no arousal labels."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{shared}/rendezvous", rank=rank, world_size=2)
    metrics = AffectMetrics(inputs="logits")
    half = slice(rank * N // 2, (rank + 1) * N // 2)
    va_true = data["va_true"].copy()
    va_true[N // 2 :, 1] = np.nan
    metrics.update(torch.from_numpy(data["logits"][half]), torch.from_numpy(data["y"][half]),
                   torch.from_numpy(data["va_pred"][half]), torch.from_numpy(va_true[half]))
    result = metrics.compute()
    dist.destroy_process_group()
    with open(f"{shared}/rank{rank}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.slow
def test_distributed_compute_merges_all_processes(data, tmp_path):
    torch.multiprocessing.spawn(_distributed_worker, args=(data, str(tmp_path)), nprocs=2)
    va_true = data["va_true"].copy()
    va_true[N // 2 :, 1] = np.nan
    expected = compute_metrics(data["probs"], data["y"], data["va_pred"], va_true)
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["n"] == N
        assert result["expression"]["confusion_matrix"] == expected["expression"]["confusion_matrix"]
        for key in ("accuracy", "top2_accuracy", "macro_f1", "nll", "ece"):
            assert result["expression"][key] == pytest.approx(expected["expression"][key], abs=1e-5), key
        for dim in ("valence", "arousal"):
            assert result[dim] == pytest.approx(expected[dim], abs=1e-5)


def test_probability_inputs_are_checked(data):
    with pytest.raises(ValueError, match="logits"):
        AffectMetrics(inputs="probs").update(torch.from_numpy(data["logits"][:5]), torch.from_numpy(data["y"][:5]),
                                             torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError):
        AffectMetrics(inputs="softmax")  # type: ignore[arg-type]


def test_focal_loss_is_cross_entropy_at_gamma_zero():
    torch.manual_seed(0)
    logits = torch.randn(32, NUM_CLASSES) * 2
    y = torch.randint(0, NUM_CLASSES, (32,))
    soft = torch.softmax(torch.randn(32, NUM_CLASSES), 1)
    weight = torch.rand(NUM_CLASSES) + 0.5
    for target in (y, soft):
        for w in (None, weight):
            for smoothing in (0.0, 0.1):
                expected = F.cross_entropy(logits, target, weight=w, label_smoothing=smoothing)
                actual = focal_loss(logits, target, gamma=0.0, weight=w, label_smoothing=smoothing)
                torch.testing.assert_close(actual, expected)
        assert focal_loss(logits, target, gamma=2.0) < F.cross_entropy(logits, target)


def test_faces_without_a_class_add_nothing_to_the_expression_loss():
    from affectkit.training.losses import expression_loss, multitask_loss
    from affectkit.training.mixing import one_hot

    torch.manual_seed(0)
    logits = (torch.randn(24, NUM_CLASSES) * 2).requires_grad_()
    y = torch.randint(0, NUM_CLASSES, (24,))
    y[::3] = NO_EXPRESSION
    kept = y != NO_EXPRESSION
    soft = one_hot(y).float()
    assert (soft[~kept] == 0).all() and torch.equal(soft[kept].argmax(1), y[kept])
    weight = torch.rand(NUM_CLASSES) + 0.5
    for w in (None, weight):
        for smoothing in (0.0, 0.1):
            for target in (y, soft):  # class ids and probability rows alike, each reduced as cross_entropy does
                expected = F.cross_entropy(logits[kept], target[kept], weight=w, label_smoothing=smoothing)
                torch.testing.assert_close(expression_loss(logits, target, w, smoothing), expected)
                torch.testing.assert_close(focal_loss(logits, target, 0.0, w, smoothing), expected)
            torch.testing.assert_close(focal_loss(logits, y, 2.0, w, smoothing),
                                       focal_loss(logits[kept], y[kept], 2.0, w, smoothing))
    # Restricted to the classes trained on: the faces without one stay out, not mapped onto a column.
    classes = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    present = y.clamp(max=6)
    va = torch.full((24, 2), float("nan"))
    restricted, _ = multitask_loss(logits, logits[:, 0], logits[:, 0], present, va, LossConfig(), classes=classes)
    keep_present = present != NO_EXPRESSION
    torch.testing.assert_close(restricted, F.cross_entropy(logits[keep_present][:, :7], present[keep_present]))
    # A batch where no face has a class: zero, and no gradient, for every kind of target and loss.
    for target in (torch.full((24,), NO_EXPRESSION), torch.zeros(24, NUM_CLASSES)):
        for loss in (expression_loss(logits, target, weight, 0.1), focal_loss(logits, target, 2.0, weight, 0.1)):
            (gradient,) = torch.autograd.grad(loss, logits)
            assert float(loss.detach()) == 0 and torch.equal(gradient, torch.zeros_like(gradient))


def test_scores_leave_faces_without_a_class_out_of_the_expression_only(data):
    y = data["y"].copy()
    y[::4] = NO_EXPRESSION
    kept = y != NO_EXPRESSION
    partial = compute_metrics(data["probs"], y, data["va_pred"], data["va_true"])
    subset = compute_metrics(data["probs"][kept], y[kept], data["va_pred"][kept], data["va_true"][kept])
    whole = compute_metrics(data["probs"], data["y"], data["va_pred"], data["va_true"])
    assert partial["n"] == N and partial["expression"]["n"] == kept.sum() == subset["n"]
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "nll", "ece", "confusion_matrix"):
        assert partial["expression"][key] == subset["expression"][key]
    assert partial["valence"] == whole["valence"] and partial["arousal"] == whole["arousal"]
    unclassed = compute_metrics(data["probs"], np.full(N, NO_EXPRESSION), data["va_pred"], data["va_true"])
    assert unclassed["n"] == N and unclassed["expression"] is None and unclassed["valence"] == whole["valence"]
    logits = torch.from_numpy(data["logits"])
    assert fit_temperature(logits, torch.full((N,), NO_EXPRESSION)) == 1.0
    assert fit_temperature(logits, torch.from_numpy(y)) == pytest.approx(
        fit_temperature(logits[kept], torch.from_numpy(y[kept])), rel=1e-6)


def test_ccc_loss():
    torch.manual_seed(0)
    target = torch.rand(64) * 2 - 1
    assert float(ccc_loss(target.clone(), target)) == pytest.approx(0, abs=1e-6)
    pred = (0.5 * target + 0.3 * torch.randn(64)).requires_grad_()
    loss = ccc_loss(pred, target)
    assert loss.item() == pytest.approx(1 - ccc_numpy(pred.detach().numpy(), target.numpy()), abs=1e-5)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert float(ccc_loss(torch.full((8,), 0.2), torch.full((8,), 0.2))) == 1  # both constant: CCC taken as 0


def _calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution: labels are drawn from the predicted probabilities."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, NUM_CLASSES))
    probs = softmax(logits)
    labels = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, labels


def test_temperature_scaling_lowers_held_out_nll():
    fit_logits, fit_y = _calibrated_sample(3000, seed=1)
    test_logits, test_y = _calibrated_sample(3000, seed=2)
    over = torch.from_numpy(5 * fit_logits)
    t = fit_temperature(over, torch.from_numpy(fit_y))
    assert 3.5 < t < 6.5
    held_out = torch.from_numpy(5 * test_logits)
    target = torch.from_numpy(test_y)
    assert F.cross_entropy(held_out / t, target) < F.cross_entropy(held_out, target) - 0.5


def test_temperature_stays_finite_on_a_split_classified_without_error():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, NUM_CLASSES, 200)
    logits = 4.0 * np.eye(NUM_CLASSES)[labels] + rng.normal(scale=0.5, size=(200, NUM_CLASSES))
    assert (logits.argmax(1) == labels).all()
    # Without a mistake the NLL falls all the way as T -> 0; the fit stops where the mean confidence is 200.5 / 201.
    t = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    confidence = softmax(logits / t)[np.arange(200), labels].mean()
    assert 0.2 < t < 1.0 and confidence == pytest.approx(200.5 / 201, abs=1e-6)
    # The same for flat scores on another scale (an SVM's): the temperature scales with them.
    assert fit_temperature(torch.from_numpy(logits / 20), torch.from_numpy(labels)) == pytest.approx(t / 20, rel=1e-4)
    # One face wrong: the ordinary fit, which gives it probability enough not to be infinitely surprised.
    labels[0] = (logits[0].argmax() + 1) % NUM_CLASSES
    wrong = fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))
    assert t < wrong < 2.0


def test_ece_of_calibrated_and_over_confident_predictors():
    logits, labels = _calibrated_sample(20000, seed=3)
    assert expected_calibration_error(softmax(logits), labels) < 0.02
    assert expected_calibration_error(softmax(5 * logits), labels) > 0.2


def test_reliability_curve_agrees_with_ece(data):
    confidence, accuracy, count = reliability_curve(data["probs"], data["y"])
    assert len(count) == 15 and count.sum() == N
    ece = np.sum(count / N * np.abs(accuracy - confidence))
    assert ece == pytest.approx(expected_calibration_error(data["probs"], data["y"]), abs=1e-5)


def _assert_png(path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300


def test_plots_write_pngs(data, result, tmp_path):
    cm = result["expression"]["confusion_matrix"]
    _assert_png(plot_confusion_matrix(cm, list(CLASS_NAMES), tmp_path / "cm.png", "Confusion"))
    _assert_png(plot_reliability_diagram(data["probs"], data["y"], tmp_path / "rel.png", "Reliability"))
    epochs = np.arange(1, 9)
    history = pd.DataFrame({
        "epoch": epochs, "phase": [1] * 5 + [2] * 3, "lr": 1e-3 * 0.7 ** epochs,
        "train_loss": 2 / epochs, "val_loss": 2.2 / epochs ** 0.8, "train_acc": 1 - 0.8 / epochs,
        "val_acc": 1 - 0.9 / epochs, "train_valence_mae": 0.5 / epochs, "val_valence_mae": 0.55 / epochs,
        "train_arousal_mae": np.nan,  # a column without values must not break the panel
    })
    _assert_png(plot_training_history(history, tmp_path / "history.png", "History"))
    comparison = pd.DataFrame({
        "model": ["CNN", "ResNet50", "Ensemble"], "accuracy": [0.5, 0.6, 0.65], "top2_accuracy": [0.7, 0.8, 0.82],
        "macro_f1": [0.45, 0.55, 0.6], "valence_ccc": [0.3, 0.5, -0.1], "arousal_ccc": [np.nan] * 3,
        "valence_rmse": [0.4, 0.35, 0.34], "valence_mae": [0.3, 0.28, 0.27],
        "params_millions": [1.2, 25.6, 26.8], "train_time_s": [120.0, 900.0, 1020.0],
        "inference_ms_per_image": [0.8, 4.2, 5.0],
    })
    _assert_png(plot_model_comparison(comparison, tmp_path / "comparison.png"))


def test_a_model_that_gives_one_class_to_mixed_faces_is_named():
    labels = np.repeat(np.arange(7), [40, 90, 30, 20, 10, 5, 5])  # a skewed set: Happy 45%
    one_class = np.zeros((len(labels), NUM_CLASSES))
    one_class[:, 1] = 1.0  # Happy for every face
    expression = compute_metrics(one_class, labels, np.zeros((len(labels), 2)), np.full((len(labels), 2), np.nan))
    warning = prior_collapse(expression["expression"], CLASS_NAMES)
    assert warning.startswith("gives Happy to 100% of the faces though 45% of them are Happy")
    learnt = F.one_hot(torch.as_tensor(labels), NUM_CLASSES).numpy().astype(float)
    learnt[::10] = one_class[::10]  # right on 9 faces in 10 or so
    assert prior_collapse(compute_metrics(learnt, labels, np.zeros((len(labels), 2)),
                                          np.full((len(labels), 2), np.nan))["expression"], CLASS_NAMES) is None
    mostly_happy = np.where(np.arange(len(labels)) < 180, 1, labels)  # a test set of Happy faces, rightly Happy
    assert prior_collapse(compute_metrics(one_class, mostly_happy, np.zeros((len(labels), 2)),
                                          np.full((len(labels), 2), np.nan))["expression"], CLASS_NAMES) is None
    assert prior_collapse(None, CLASS_NAMES) is None  # a valence/arousal model


def test_faces_of_classes_a_model_never_learnt_are_counted_apart():
    labels = np.array([0, 0, 1, 1, 1, 7, 7])  # two Contempt faces, for a model trained without Contempt
    predicted = np.array([0, 1, 1, 1, 0, 1, 0])  # right on 3 of the 5 faces of the classes it learnt
    probs = np.eye(NUM_CLASSES)[predicted]
    expression = compute_metrics(probs, labels, np.zeros((7, 2)), np.full((7, 2), np.nan))["expression"]
    unlearnt = unlearnt_classes(expression, CLASS_NAMES[:7], CLASS_NAMES)
    assert unlearnt == {"faces": {"Contempt": 2}, "other_faces": 5, "accuracy_on_learnt_classes": pytest.approx(0.6)}
    assert unlearnt_note(unlearnt) == ("2 faces are of classes the model never learnt (Contempt 2: absent from its "
                                       "training data); they count as errors; on the other 5 faces its accuracy is "
                                       "0.600.")
    assert unlearnt_classes(expression, CLASS_NAMES, CLASS_NAMES) is None  # it learnt them all
    assert unlearnt_classes(expression, [c for c in CLASS_NAMES if c != "Fear"], CLASS_NAMES) is None  # no Fear face
    assert unlearnt_classes(None, CLASS_NAMES[:7], CLASS_NAMES) is None  # a valence/arousal model


# -- how sure a test score is -------------------------------------------------------------------------------------


def _guesses(n: int, right: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    return labels, np.where(rng.random(n) < right, labels, rng.integers(0, NUM_CLASSES, n))


def test_the_bootstrap_resamples_the_scores_the_metrics_report():
    """The resampled statistic is the reported one: accuracy, macro-F1 over the classes given or predicted
    (torchmetrics'), balanced accuracy over the classes given (scikit-learn's)."""
    from affectkit.evaluation.significance import _cells, _score

    labels, predicted = _guesses(500, 0.6, seed=0)
    confusion = (np.ones(500) @ _cells(labels, predicted)).reshape(NUM_CLASSES, NUM_CLASSES)
    reported = compute_metrics(np.eye(NUM_CLASSES)[predicted], labels, np.zeros((500, 2)),
                               np.full((500, 2), np.nan))["expression"]
    assert _score(confusion, "accuracy") == pytest.approx(skm.accuracy_score(labels, predicted))
    assert _score(confusion, "balanced_accuracy") == pytest.approx(skm.balanced_accuracy_score(labels, predicted))
    seen = sorted(set(labels) | set(predicted))
    assert _score(confusion, "macro_f1") == pytest.approx(skm.f1_score(labels, predicted, labels=seen,
                                                                       average="macro"))
    for score in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert _score(confusion, score) == pytest.approx(reported[score], abs=1e-6), score
    # Batched: one score per resample, each its own weights of the faces (a face drawn twice counts twice).
    weights = np.stack([np.ones(500), np.r_[np.full(250, 2.0), np.zeros(250)]])
    batch = (weights @ _cells(labels, predicted)).reshape(2, NUM_CLASSES, NUM_CLASSES)
    assert list(_score(batch, "accuracy")) == pytest.approx([skm.accuracy_score(labels, predicted),
                                                             skm.accuracy_score(labels[:250], predicted[:250])])


def test_score_intervals_narrow_with_more_faces_and_leave_out_faces_without_a_class():
    from affectkit.evaluation.significance import score_intervals

    few, many = _guesses(100, 0.6, seed=1), _guesses(4000, 0.6, seed=1)
    narrow, wide = score_intervals(*many), score_intervals(*few)
    for score in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert narrow[score][1] - narrow[score][0] < 0.5 * (wide[score][1] - wide[score][0]), score
    accuracy = skm.accuracy_score(*many)
    assert narrow["accuracy"][0] < accuracy < narrow["accuracy"][1]
    assert narrow["accuracy"][1] - narrow["accuracy"][0] == pytest.approx(  # the binomial's normal width
        2 * 1.96 * np.sqrt(accuracy * (1 - accuracy) / 4000), rel=0.15)
    labels, predicted = few
    unclassed = score_intervals(np.append(labels, [NO_EXPRESSION] * 50), np.append(predicted, [0] * 50))
    assert unclassed == wide
    assert score_intervals([NO_EXPRESSION], [0]) == {}


def test_faces_of_one_person_are_resampled_together():
    """40 people, 10 faces each, right or wrong together (as a sequence's frames are): 40 draws, not 400; an interval
    by faces would look about three times surer than the data is."""
    from affectkit.evaluation.significance import paired_comparison, score_intervals

    labels, predicted = _guesses(40, 0.6, seed=2)
    labels, predicted, people = np.repeat(labels, 10), np.repeat(predicted, 10), np.repeat(np.arange(40), 10)
    by_face = score_intervals(labels, predicted)["accuracy"]
    by_person = score_intervals(labels, predicted, groups=people)["accuracy"]
    assert by_person[1] - by_person[0] > 2.5 * (by_face[1] - by_face[0])
    assert by_person == pytest.approx(score_intervals(labels[::10], predicted[::10])["accuracy"], abs=0.03)
    # A face of no known person (None, NaN) is drawn alone: no names at all resample as faces do.
    unnamed = np.full(len(labels), None, dtype=object)
    unnamed[::2] = float("nan")
    assert score_intervals(labels, predicted, groups=unnamed) == score_intervals(labels, predicted)
    # 20 more faces right than the other model, all of them 2 people's: McNemar (by faces) calls it, people do not.
    other = predicted.copy()
    wrong = np.flatnonzero((predicted == labels) & (people >= 0))[:20]
    other[wrong] = (labels[wrong] + 1) % 7
    assert len(set(people[wrong])) == 2
    assert paired_comparison(labels, predicted, other).verdict() == "better"
    grouped = paired_comparison(labels, predicted, other, groups=people)
    assert grouped.p_value < 0.05 and grouped.low <= 0 and grouped.verdict() == "not told apart"


def test_a_paired_comparison_counts_the_faces_only_one_model_got_right():
    from affectkit.evaluation.significance import paired_comparison

    labels = np.zeros(40, dtype=np.int64)
    first, second = labels.copy(), labels.copy()
    first[:2] = second[2:12] = 1  # 10 faces only the first gets right, 2 only the second: McNemar p = 0.0386
    compared = paired_comparison(labels, first, second)
    assert (compared.faces, compared.only_first, compared.only_second) == (40, 10, 2)
    assert compared.difference == pytest.approx(8 / 40)
    assert compared.p_value == pytest.approx(0.03857, abs=1e-4) and compared.verdict() == "better"
    assert compared.low < compared.difference < compared.high
    assert paired_comparison(labels, second, first).verdict() == "worse"
    # 4 against 0 is no evidence at 95% (p = 0.125), however the bootstrap interval falls.
    first[2:] = 0
    first[:4] = 1
    assert paired_comparison(labels, labels, first).verdict() == "not told apart"
    same = paired_comparison(labels, first, first)
    assert (same.difference, same.low, same.high, same.p_value) == (0, 0, 0, 1)
    assert same.verdict() == "not told apart"


def test_ccc_intervals_resample_the_ccc_the_metrics_report(monkeypatch):
    from affectkit.evaluation import significance

    rng = np.random.default_rng(3)
    people = np.arange(300) // 30  # ten people, thirty faces each: each has a mood and is read with a bias of their own
    truth = np.clip(rng.uniform(-0.7, 0.7, 10)[people] + rng.normal(0, 0.2, 300), -1, 1)
    predicted = 0.6 * truth + rng.normal(0, 0.25, 10)[people] + rng.normal(0, 0.1, 300)
    truth[::10] = np.nan  # faces not annotated in this dimension are left out
    reported = compute_metrics(np.full((300, NUM_CLASSES), 1 / NUM_CLASSES), np.full(300, NO_EXPRESSION),
                               np.stack([predicted, predicted], 1), np.stack([truth, truth], 1))["valence"]["ccc"]
    low, high = significance.ccc_interval(predicted, truth)
    assert low < reported < high and high - low < 0.2
    by_person = significance.ccc_interval(predicted, truth, groups=people)
    assert by_person[1] - by_person[0] > 2 * (high - low)
    assert significance.ccc_interval(predicted[:2], truth[:2]) is None
    # Every face weighed once, the resampled statistic is the reported CCC, (n - 1) moments and all.
    monkeypatch.setattr(significance, "_weights", lambda codes, resamples, seed: iter([np.ones((1, len(codes)))]))
    once = significance.ccc_interval(predicted, truth, resamples=1)
    assert once == pytest.approx((reported, reported), abs=1e-6)


def test_paired_ccc_comparison_tells_the_better_valence_arousal_model_only_where_the_faces_can():
    from affectkit.evaluation import significance

    rng = np.random.default_rng(5)
    people = np.arange(200) // 20
    truth = np.clip(rng.uniform(-0.6, 0.6, (10, 2))[people] + rng.normal(0, 0.2, (200, 2)), -1, 1)
    good = 0.8 * truth + rng.normal(0, 0.1, (200, 2))
    poor = 0.3 * truth + rng.normal(0, 0.3, (200, 2))
    truth[::7, 1] = np.nan  # arousal not annotated on some faces: each dimension is scored on its own faces
    ours = significance.paired_ccc_comparison(truth, good, poor)
    both = np.stack([good, poor])
    cccs = [compute_metrics(np.full((200, NUM_CLASSES), 1 / NUM_CLASSES), np.full(200, NO_EXPRESSION), model, truth)
            for model in both]
    reported = [np.mean([m["valence"]["ccc"], m["arousal"]["ccc"]]) for m in cccs]
    assert ours.difference == pytest.approx(reported[0] - reported[1], abs=1e-6)
    assert 0 < ours.low < ours.difference < ours.high and ours.verdict() == "better" and not ours.grouped
    assert significance.paired_ccc_comparison(truth, poor, good).verdict() == "worse"
    same = significance.paired_ccc_comparison(truth, good, good + rng.normal(0, 0.01, (200, 2)))
    assert same.low < 0 < same.high and same.verdict() == "not told apart"
    by_person = significance.paired_ccc_comparison(truth, good, poor, groups=people)
    assert by_person.grouped and by_person.high - by_person.low > ours.high - ours.low
    # A dimension annotated on fewer than 3 faces is not scored; with neither, there is nothing to compare.
    valence_only = truth.copy()
    valence_only[:, 1] = np.nan
    alone = significance.paired_ccc_comparison(valence_only, good, poor)
    assert alone.difference == pytest.approx(cccs[0]["valence"]["ccc"] - cccs[1]["valence"]["ccc"], abs=1e-6)
    with pytest.raises(ValueError, match="fewer than 3 faces"):
        significance.paired_ccc_comparison(np.full((5, 2), np.nan), good[:5], poor[:5])


def test_selective_accuracy_answers_the_surest_faces_first():
    from affectkit.evaluation.selective import selective_accuracy

    confidence = np.linspace(0.95, 0.2, 20)  # the surest face first
    labels = np.zeros(20, dtype=int)
    predicted = np.where(np.arange(20) < 12, 0, 1)  # right on the 12 surest, wrong on the rest
    probs = np.full((20, 8), 0.0)
    probs[np.arange(20), predicted] = confidence
    probs[np.arange(20), 2] = (1 - confidence) / 2  # another class below the top one
    probs[np.arange(20), 3] = 1 - probs.sum(axis=1)
    shuffled = np.random.default_rng(0).permutation(20)
    rows = selective_accuracy(probs[shuffled], labels[shuffled], coverages=(1.0, 0.6, 0.5, 0.01))
    assert [row["coverage"] for row in rows] == [1.0, 0.6, 0.5, 0.05]  # at least one face answered
    assert [row["accuracy"] for row in rows] == [0.6, 1.0, 1.0, 1.0]
    assert rows[1]["min_confidence"] == pytest.approx(confidence[11], abs=1e-4)
