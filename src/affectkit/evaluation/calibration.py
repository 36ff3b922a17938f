"""Temperature scaling: one number T, fit on the validation split after training, by which every later use of the
model divides its logits (Guo et al. 2017). It changes the probabilities, never the predicted class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import brentq
from torch import Tensor

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.evaluation.drift import output_profile
from affectkit.evaluation.evaluator import Predictions
from affectkit.evaluation.selective import MIN_COVERAGE_FACES, VALIDATION_COVERAGES, selective_accuracy
from affectkit.models.metadata import update_metadata


def fit_temperature(logits: Tensor, targets: Tensor, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)``; fit on held-out logits, not training ones.
    Where no face is misclassified that NLL falls all the way as T -> 0 (one-hot probabilities, whatever the next
    split holds); T is then the one at which the true classes' mean probability is (n + 1/2) / (n + 1) for n faces:
    the accuracy n right of n supports, counting half a mistake. Faces without a class (NO_EXPRESSION) are left
    out; without any, T is 1."""
    targets = targets.detach().long()
    with_class = targets != NO_EXPRESSION
    logits, targets = logits.detach().double()[with_class], targets[with_class]
    if not len(targets):
        return 1.0  # no face to fit on: the logits stay as they are
    if bool((logits.gather(1, targets[:, None])[:, 0] > _runner_up(logits, targets)).all()):
        return _temperature_for_confidence(logits, targets, (len(targets) + 0.5) / (len(targets) + 1))
    # Optimising log T keeps T positive without a constrained optimiser.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def _runner_up(logits: Tensor, targets: Tensor) -> Tensor:
    return logits.scatter(1, targets[:, None], float("-inf")).max(1).values


def _temperature_for_confidence(logits: Tensor, targets: Tensor, confidence: float) -> float:
    """T at which the true classes' mean softmax probability is ``confidence``. Each true class is its row's top
    logit, so that mean falls steadily as T grows, from 1 (T -> 0) to 1 / classes: one root, bracketed by a range
    of log T far wider than any logits' scale."""
    def excess(log_t: float) -> float:
        probs = torch.softmax(logits / np.exp(log_t), dim=1)
        return float(probs.gather(1, targets[:, None]).mean()) - confidence

    return float(np.exp(brentq(excess, -40.0, 40.0, xtol=1e-8)))


def calibrate(model_path: Path, val: Predictions, labels: np.ndarray) -> float:
    """Fit the saved model's temperature on its validation predictions ``val`` (true classes ``labels``) and store it
    with the model (its ``.json``), so every later use applies it, together with the profile of its calibrated
    outputs on those faces (the reference a server's drift monitor compares with) and its accuracy there when
    answering only its surest faces (``validation_coverage``, from which ``--target-accuracy`` reads the confidence
    to abstain below); returns the temperature."""
    temperature = fit_temperature(torch.from_numpy(val.logits), torch.from_numpy(labels))
    tempered = val.tempered(temperature)
    probabilities = tempered.probs if val.predicts_expression else None
    valence_arousal = tempered.valence_arousal if val.predicts_valence_arousal else None
    update_metadata(model_path, temperature=temperature, output_profile=output_profile(probabilities, valence_arousal),
                    validation_coverage=validation_coverage(probabilities, labels, CLASS_NAMES))
    return temperature


def validation_coverage(probabilities: np.ndarray | None, labels: np.ndarray,
                        class_names: Sequence[str]) -> dict | None:
    """The faces with a class and :func:`selective_accuracy` on them over :data:`VALIDATION_COVERAGES`, and the same
    on the faces predicted as each class (``by_class``, for the classes predicted on enough of them: among those,
    the share right is the class's precision, from which a threshold per class is read); None for a valence/arousal
    model or too few faces with a class to choose a threshold on."""
    if probabilities is None:
        return None
    classed = labels != NO_EXPRESSION
    if classed.sum() < MIN_COVERAGE_FACES:
        return None
    probabilities, labels = probabilities[classed], labels[classed]
    predicted = probabilities.argmax(axis=1)
    by_class = {}
    for index, name in enumerate(class_names):
        chosen = predicted == index
        if chosen.sum() >= MIN_COVERAGE_FACES:
            by_class[name] = {"faces": int(chosen.sum()), "curve": selective_accuracy(
                probabilities[chosen], labels[chosen], VALIDATION_COVERAGES)}
    return {"faces": int(classed.sum()), "curve": selective_accuracy(probabilities, labels, VALIDATION_COVERAGES),
            "by_class": by_class}
