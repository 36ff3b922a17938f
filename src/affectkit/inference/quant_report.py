"""How much int8 quantisation costs: accuracy, agreement, file size and latency of the float and int8 exports."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.config import NO_EXPRESSION
from affectkit.data.splits import random_subsample
from affectkit.inference.images import ImageError, read_image
from affectkit.inference.media import IMAGE_SUFFIXES
from affectkit.inference.predictor import Predictor


def folder_images(folder: Path, limit: int | None = None, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """The images of a folder (searched recursively, in name order; at most ``limit``, drawn at random), each read
    whole as a face crop, and the reasons of those that could not be read. Only those drawn are decoded."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    paths = [paths[i] for i in random_subsample(len(paths), limit, seed)]
    images, unreadable = [], []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageError as exc:
            unreadable.append(str(exc))
    return images, unreadable


def _median_latency_ms(predictor: Predictor, images: Sequence[np.ndarray]) -> float:
    predictor.predict_batch(list(images[:1]))  # first run allocates; not a representative sample
    times = []
    for image in images:
        start = time.perf_counter()
        predictor.predict_batch([image])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def compare_exports(fp32: Path, int8: Path, faces: Sequence[np.ndarray], labels: Sequence[int] | None = None,
                    latency_images: int = 20) -> dict[str, Any]:
    """Both exports on the same face crops (RGB uint8, read whole): each one's size, accuracy where ``labels``
    (affectkit classes, NO_EXPRESSION for a face without one) are given, median latency of one face, and how often
    the two give the same class."""
    models = {name: Predictor(path, backend="onnx", detect=False) for name, path in (("fp32", fp32), ("int8", int8))}
    models["fp32"].require_expression("comparing the exports' accuracy reads")
    predictions = {name: np.array([r["expression_id"] for r in predictor.predict_batch(faces)], dtype=np.int64)
                   for name, predictor in models.items()}
    known = np.array([], dtype=np.int64) if labels is None else np.flatnonzero(np.asarray(labels) != NO_EXPRESSION)
    truth = None if labels is None else np.asarray(labels)[known]
    report: dict[str, Any] = {"faces": len(faces), "labelled": len(known)}
    for name, path in (("fp32", fp32), ("int8", int8)):
        report[name] = {
            "path": str(path),
            "size_mb": path.stat().st_size / 1e6,
            "accuracy": float(np.mean(predictions[name][known] == truth)) if len(known) else None,
            "latency_ms": _median_latency_ms(models[name], faces[:latency_images]) if len(faces) else None,
        }
    report["agreement"] = float(np.mean(predictions["fp32"] == predictions["int8"])) if len(faces) else None
    if len(known):
        report["accuracy_delta"] = report["int8"]["accuracy"] - report["fp32"]["accuracy"]
    return report
