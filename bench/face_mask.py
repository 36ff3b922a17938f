"""Masked faces: what training with drawn face masks (``augmentation.face_mask``) does to a model's accuracy on faces
that come masked, and what it costs on bare ones.

Scores saved models on the test split of the data they were trained on: clean; with a mask worn as the 68 landmarks
place it (:func:`affectkit.data.augment.mask_outline`, each face its own fit) in flat grey, a colour the augmentation
never draws; and the same without landmarks, where the crop's framing places it. ``affectkit robustness MODEL DATA
--corruptions mask`` gives the third kind: the lower 30 / 40 / 50% of the crop covered. Prints one markdown row per
model: accuracy with its 95% bootstrap interval (resampling the test faces).

    python bench/face_mask.py --data DATA RUN_A/best_MobileNetV2.safetensors RUN_B/best_MobileNetV2.safetensors
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from affectkit.data.augment import mask_outline
from affectkit.data.corruptions import MASK_GREY
from affectkit.evaluation.significance import score_intervals
from affectkit.models.io import load_model
from affectkit.pipeline.run import evaluation_data, saved_predictions

NO_LANDMARKS = np.full((68, 2), np.nan, np.float32)


def masked(images: np.ndarray, landmarks: np.ndarray, seed: int) -> np.ndarray:
    """``images`` (N, S, S, 3 uint8) each with a flat grey mask drawn over its outline (its own seeded fit)."""
    out = np.array(images)
    for i, (image, points) in enumerate(zip(out, landmarks)):
        outline = mask_outline(points, image.shape, np.random.default_rng([seed, i]))
        cv2.fillPoly(image, [np.round(outline * 16).astype(np.int32)], (MASK_GREY,) * 3, cv2.LINE_AA, shift=4)
    return out


def accuracy_cell(labels: np.ndarray, logits: np.ndarray) -> str:
    predicted = logits.argmax(1)
    low, high = score_intervals(labels, predicted)["accuracy"]
    return f"{(predicted == labels).mean():.3f} [{low:.2f}, {high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="saved models (.safetensors)")
    parser.add_argument("--data", type=Path, required=True, help="the data folder they were trained on")
    parser.add_argument("--seed", type=int, default=0, help="draws each face's mask fit")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | clean | mask by landmarks | mask by framing |")
    print("|---|---|---|---|")
    for path in args.models:
        data = evaluation_data(path, args.data, "test", path.parent / "splits.csv")  # --data may be a copy
        model, _ = load_model(path, device="cpu")
        positions, clean = saved_predictions(path, model, data, "test", args.data)
        labels = data.expression[positions]
        cells = [accuracy_cell(labels, clean.logits)]
        for landmarks in (data.landmarks, np.broadcast_to(NO_LANDMARKS, data.landmarks.shape)):
            images = np.array(data.images)
            images[positions] = masked(images[positions], landmarks[positions], args.seed)
            cells.append(accuracy_cell(labels, saved_predictions(path, model, replace(data, images=images), "test",
                                                                 args.data)[1].logits))
        print(f"| {path} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
