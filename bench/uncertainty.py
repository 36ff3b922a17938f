"""Uncertainty beyond Monte-Carlo dropout: does a Bayesian last layer (a Laplace approximation) say better how sure
a face model should be, on clean faces and on faces degraded by noise or blur?

Trains the recipe's MobileNetV2 once on a proxy set as the recipe ships it, stores the head's input (the trunk's
output, averaged over the face and its mirror image as the flip test-time augmentation averages them; the
expression layer is linear in it, so the average is exact) and Monte-Carlo-dropout passes, then compares on the
test faces, clean and degraded: one pass (as trained, and with the temperature fit on val, as affectkit serves
it), Monte-Carlo dropout (``--mc-samples``) and last-layer Laplace approximations (laplace-torch; the expression
layer's posterior fit on the train faces, its prior precision by marginal likelihood or by val log-loss).
Scores: accuracy, log-loss, ECE, Brier, and the area under the risk-coverage curve (AURC: the mean error rate over
every share of the surest faces answered; lower is better). A study, never a way to pick a model.

Needs laplace-torch (not one of affectkit's dependencies): ``pip install laplace-torch``.

    python bench/uncertainty.py --data hard --seed 0 --threads 2 --out /tmp/uncertainty
    python bench/uncertainty.py --replay /tmp/uncertainty/uncertainty-hard-0.npz
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.special import softmax
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from affectkit.config import NUM_CLASSES, load_config
from affectkit.data.datamodule import normalise_batch
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.metrics import expected_calibration_error, log_loss
from affectkit.evaluation.selective import coverage_curve
from affectkit.models.io import load_model
from affectkit.training.trainer import train_model

from fusion_rules import stored_logit_study
from selection import RECIPE_FILE, proxy_set

NETWORK = "resnet50"  # the recipe's MobileNetV2 (light models)
MC_SAMPLES = 30
NOISE_STD = 20.0  # grey levels of Gaussian noise added to each pixel
BLUR_SIGMA = 1.5  # pixels of Gaussian blur
CONDITIONS = ("clean", "noise", "blur")


def degraded(images: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """The faces as they are, with Gaussian noise, or blurred (uint8 NHWC)."""
    if condition == "clean":
        return images
    if condition == "noise":
        noise = np.random.default_rng(seed).normal(0.0, NOISE_STD, images.shape)
        return np.clip(images.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return np.stack([cv2.GaussianBlur(im, (0, 0), BLUR_SIGMA) for im in images])


@torch.inference_mode()
def head_inputs(model: nn.Module, images: np.ndarray, mc_samples: int, batch_size: int = 64,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The trunk's output averaged over each face and its mirror image (dropout off), [N, D]; and the expression
    logits of ``mc_samples`` passes with the head's dropout on, each pass averaging both views, [S, N, C]."""
    torch.manual_seed(seed)
    head = model.head
    means, samples = [], []
    for start in range(0, len(images), batch_size):
        x = normalise_batch(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
                            .permute(0, 3, 1, 2))
        features = [model.backbone(view) for view in (x, x.flip(3))]
        head.eval()
        means.append(torch.stack([head.trunk(f) for f in features]).mean(0))
        dropouts = [m for m in head.trunk if isinstance(m, nn.Dropout)]
        for m in dropouts:
            m.train()
        samples.append(torch.stack([
            torch.stack([model.outputs_from_features(f)[0] for f in features]).mean(0) for _ in range(mc_samples)]))
        for m in dropouts:
            m.eval()
    return torch.cat(means).float().numpy(), torch.cat(samples, dim=1).float().numpy()


def train_and_store(data_name: str, seed: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="affectkit-uncertainty-") as tmp:
        root = Path(tmp)
        studied, data = proxy_set(data_name, seed, root)
        recipe = studied.override(early_stopping_patience=load_config(RECIPE_FILE).early_stopping_patience)
        result = train_model(NETWORK, data, root / "run", recipe.override(seed=seed), quiet=True)
        model, _ = load_model(result.best_path)
        model.eval()
        arrays = {"weight": model.head.expression.weight.detach().numpy(),
                  "bias": model.head.expression.bias.detach().numpy()}
        for split in ("train", "val", "test"):
            positions = np.sort(data.positions(split))
            arrays[f"{split}_labels"] = data.expression[positions]
            images = np.asarray(data.images[positions])
            for condition in CONDITIONS if split == "test" else ("clean",):
                key = f"{split}_{condition}"
                arrays[f"{key}_h"], arrays[f"{key}_mc"] = head_inputs(model, degraded(images, condition, seed),
                                                                      MC_SAMPLES, seed=seed)
    return arrays


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    _, accuracy, _ = coverage_curve(probs, labels)
    return {"accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
            "log-loss": round(log_loss(probs, labels), 4),
            "ECE": round(expected_calibration_error(probs, labels), 4),
            "Brier": round(float(((probs - np.eye(NUM_CLASSES)[labels]) ** 2).sum(1).mean()), 4),
            "AURC": round(float((1 - accuracy).mean()), 4)}


def _loader(h: np.ndarray, labels: np.ndarray) -> DataLoader:
    return DataLoader(TensorDataset(torch.from_numpy(h), torch.from_numpy(labels.astype(np.int64))), batch_size=256)


def class_positions(present: np.ndarray) -> np.ndarray:
    """Each class's row among the ``present`` classes' rows (meaningless for an absent class)."""
    return np.cumsum(present) - 1


def laplace_methods(arrays: dict[str, np.ndarray], present: np.ndarray, temperature: float) -> dict[str, object]:
    """Last-layer Laplace approximations (Kronecker-factored) of the expression layer's rows of the ``present``
    classes, fit on the train faces' head inputs: of the layer as trained, and of the layer divided by the temperature
    (the temperature-scaled model affectkit serves), each with its prior precision chosen by marginal likelihood or
    by val log-loss."""
    try:
        from laplace import Laplace
    except ImportError:
        raise SystemExit("bench/uncertainty.py needs laplace-torch: "
                         ".venv/bin/python -m pip install laplace-torch") from None

    position = class_positions(present)
    train = _loader(arrays["train_clean_h"], position[arrays["train_labels"]])
    val = _loader(arrays["val_clean_h"], position[arrays["val_labels"]])
    methods = {}
    for scale, scaled in ((1.0, "as trained"), (temperature, f"temperature {temperature:.2f}")):
        layer = nn.Linear(arrays["weight"].shape[1], int(present.sum()))
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(arrays["weight"][present] / scale))
            layer.bias.copy_(torch.from_numpy(arrays["bias"][present] / scale))
        for prior in ("marglik", "val log-loss"):
            la = Laplace(nn.Sequential(layer), "classification", subset_of_weights="all", hessian_structure="kron")
            la.fit(train)
            if prior == "marglik":
                la.optimize_prior_precision(method="marglik", pred_type="glm", link_approx="probit",
                                            prior_structure="scalar")
            else:
                la.optimize_prior_precision(method="gridsearch", pred_type="glm", link_approx="probit",
                                            prior_structure="scalar", val_loader=val, grid_size=21,
                                            log_prior_prec_min=-4, log_prior_prec_max=4)
            methods[f"Laplace, {scaled}, prior by {prior} ({float(la.prior_precision.mean()):.3g})"] = la
    return methods


def score(arrays: dict[str, np.ndarray]) -> list[dict]:
    # Only the classes the model was trained on (CK+ has no neutral face): the others' logits are masked in the model.
    present = np.isin(np.arange(NUM_CLASSES), arrays["train_labels"])
    weight, bias = arrays["weight"][present], arrays["bias"][present]

    def all_classes(probs: np.ndarray) -> np.ndarray:
        full = np.zeros((len(probs), NUM_CLASSES))
        full[:, present] = probs
        return full

    temperature = fit_temperature(torch.from_numpy(arrays["val_clean_h"] @ weight.T + bias),
                                  torch.from_numpy(class_positions(present)[arrays["val_labels"]]))
    laplaces = laplace_methods(arrays, present, temperature)
    labels = arrays["test_labels"]
    rows = []
    for condition in CONDITIONS:
        h, mc = arrays[f"test_{condition}_h"], arrays[f"test_{condition}_mc"][..., present]
        logits = h @ weight.T + bias
        predictions = {
            "one pass, as trained": softmax(logits, axis=1),
            f"one pass, temperature {temperature:.2f} (affectkit's default)": softmax(logits / temperature, axis=1),
            f"MC dropout, {len(mc)} passes, temperature {temperature:.2f} (--mc-samples)":
                softmax(mc / temperature, axis=2).mean(0),
        }
        with torch.no_grad():
            for name, la in laplaces.items():
                predictions[name] = la(torch.from_numpy(h), pred_type="glm", link_approx="probit").numpy()
        rows += [{"faces": condition, "method": name, **_scores(all_classes(probs), labels)}
                 for name, probs in predictions.items()]
    return rows


def main() -> None:
    stored_logit_study(__doc__.split("\n\n")[0], "hard", "uncertainty", train_and_store, score)


if __name__ == "__main__":
    main()
