"""Degraded faces: what training on them (``augmentation.degrade``) does to a face model's accuracy and confidence on
faces that come blurred, noisy, compressed or at low resolution, and what it costs on clean faces.

Trains the recipe's MobileNetV2 on a proxy set twice from one seed, as the recipe ships it and with
``augmentation.degrade`` at ``DEGRADE``, each selected on clean validation faces as the recipe selects, and stores
its logits (flip test-time augmentation on, as the recipe predicts) for the clean val faces and for the test faces as
they are and under each corruption in ``CORRUPTIONS``, one fixed severity each. Scores each on each: accuracy,
macro-F1, and log-loss and ECE at the temperature fit on clean val (as ``run`` and ``calibrate`` fit it). The test
severities sit at the harsh end of, or beyond, what the augmentation draws (JPEG quality 15 against 20-70). A
study, never a way to pick a model.

    python bench/degradation.py --data hard --seed 0 --threads 2 --out /tmp/degradation
    python bench/degradation.py --replay /tmp/degradation/degradation-hard-0.npz
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from affectkit.config import load_config
from affectkit.data.datamodule import PreparedData
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.evaluator import predict_split
from affectkit.evaluation.metrics import compute_metrics
from affectkit.models.io import load_model
from affectkit.training.trainer import train_model

from fusion_rules import stored_logit_study
from selection import RECIPE_FILE, proxy_set
from uncertainty import BLUR_SIGMA, NOISE_STD, degraded

NETWORK = "resnet50"  # the recipe's MobileNetV2 (light models)
DEGRADE = 0.3  # share of the training faces degraded in the second run
VARIANTS = {"recipe": {}, f"recipe + degrade {DEGRADE}": {"augmentation.degrade": DEGRADE}}
LOW_RESOLUTION = 3  # the side divided by this, then scaled back up
JPEG_QUALITY = 15
CORRUPTIONS = ("clean", f"low resolution (1/{LOW_RESOLUTION} of the side)", f"JPEG quality {JPEG_QUALITY}",
               f"blur (sigma {BLUR_SIGMA} px)", f"noise (sigma {NOISE_STD:g} grey levels)")


def corrupted(images: np.ndarray, corruption: str, seed: int) -> np.ndarray:
    """Uint8 RGB faces (NHWC) under ``corruption`` (one of ``CORRUPTIONS``): clean, blur and noise as the
    uncertainty study degrades them (:func:`uncertainty.degraded`)."""
    if corruption.startswith("low resolution"):
        side = images.shape[1]
        return np.stack([cv2.resize(cv2.resize(image, (side // LOW_RESOLUTION, side // LOW_RESOLUTION),
                                               interpolation=cv2.INTER_AREA), (side, side),
                                    interpolation=cv2.INTER_LINEAR) for image in images])
    if corruption.startswith("JPEG"):
        quality = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        return np.stack([cv2.imdecode(cv2.imencode(".jpg", image[..., ::-1], quality)[1], cv2.IMREAD_COLOR)[..., ::-1]
                         for image in images])
    return degraded(images, corruption.split(" ")[0], seed)


def with_test_corrupted(data: PreparedData, corruption: str, seed: int) -> PreparedData:
    """``data`` whose test faces' pixels are corrupted (a copy; the other faces as they are)."""
    images, test = np.array(data.images), np.sort(data.positions("test"))
    images[test] = corrupted(images[test], corruption, seed)
    return dataclasses.replace(data, images=images)


def train_and_store(data_name: str, seed: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="affectkit-degradation-") as tmp:
        root = Path(tmp)
        studied, data = proxy_set(data_name, seed, root)
        recipe = studied.override(early_stopping_patience=load_config(RECIPE_FILE).early_stopping_patience, seed=seed)
        val, test = np.sort(data.positions("val")), np.sort(data.positions("test"))
        arrays = {"val_labels": data.expression[val], "test_labels": data.expression[test]}
        sets = {corruption: with_test_corrupted(data, corruption, seed) for corruption in CORRUPTIONS}
        for v, (variant, changes) in enumerate(VARIANTS.items()):
            start = time.perf_counter()
            result = train_model(NETWORK, data, root / f"run{v}", recipe.override(**changes), quiet=True)
            arrays[f"v{v}_train_s"] = np.array(time.perf_counter() - start)
            model, _ = load_model(result.best_path)
            arrays[f"v{v}_val"] = predict_split(model, data, val, progress=False, tta_flip=recipe.tta_flip).logits
            for c, corruption in enumerate(CORRUPTIONS):
                arrays[f"v{v}_test{c}"] = predict_split(model, sets[corruption], test, progress=False,
                                                        tta_flip=recipe.tta_flip).logits
    return arrays


def _probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double() / temperature, 1).numpy()


def score(arrays: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    empty_va = np.full((len(arrays["test_labels"]), 2), np.nan)
    for v, variant in enumerate(VARIANTS):
        temperature = fit_temperature(torch.from_numpy(arrays[f"v{v}_val"]), torch.from_numpy(arrays["val_labels"]))
        for c, corruption in enumerate(CORRUPTIONS):
            probs = _probs(arrays[f"v{v}_test{c}"], temperature)
            scores = compute_metrics(probs, arrays["test_labels"], empty_va, empty_va)["expression"]
            rows.append({"model": variant, "test faces": corruption, "accuracy": f"{scores['accuracy']:.3f}",
                         "macro-F1": f"{scores['macro_f1']:.3f}", "log-loss": f"{scores['nll']:.3f}",
                         "ECE": f"{scores['ece']:.3f}", "T (clean val)": f"{temperature:.2f}",
                         "training (s)": f"{float(arrays[f'v{v}_train_s']):.0f}"})
    return rows


def main() -> None:
    stored_logit_study(__doc__.split("\n\n")[0], "hard", "degradation", train_and_store, score)


if __name__ == "__main__":
    main()
