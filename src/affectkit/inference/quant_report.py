"""How much int8 quantisation costs: accuracy, agreement, file size and latency of the float and int8 exports."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.config import NUM_CLASSES
from affectkit.inference.images import ImageError, read_image
from affectkit.inference.media import IMAGE_SUFFIXES
from affectkit.inference.predictor import Predictor


def read_label(path: Path) -> int | None:
    """AffectNet's ``<id>_exp.npy`` holds the class as a 0-d string or number; codes 8-10 are not expressions."""
    if not path.is_file():
        return None
    try:
        value = int(float(str(np.load(path, allow_pickle=False).item())))
    except (ValueError, OSError):
        return None
    return value if 0 <= value < NUM_CLASSES else None


def labelled_images(data_dir: Path) -> list[tuple[Path, int | None]]:
    """Images of a folder (or of its ``images/`` in the AffectNet layout) with their label where one exists."""
    images_dir = data_dir / "images" if (data_dir / "images").is_dir() else data_dir
    annotations = data_dir / "annotations"
    paths = sorted(p for p in images_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [(p, read_label(annotations / f"{p.stem}_exp.npy")) for p in paths]


def _decoded(items: list[tuple[Path, int | None]], chunk: int) -> Iterator[list[tuple[np.ndarray, int | None]]]:
    batch = []
    for path, label in items:
        try:
            batch.append((read_image(path), label))
        except ImageError:
            continue  # counted by the caller as images minus evaluated
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _median_latency_ms(predictor: Predictor, images: list[np.ndarray]) -> float:
    predictor.predict_batch(images[:1])  # first run allocates; not a representative sample
    times = []
    for image in images:
        start = time.perf_counter()
        predictor.predict_batch([image])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def compare_exports(fp32: Path, int8: Path, data_dir: Path, limit: int | None = None,
                    latency_images: int = 20) -> dict[str, Any]:
    """Whole images as face crops (AffectNet images are crops already), both models on the same pixels."""
    items = labelled_images(data_dir)[:limit]
    models = {name: Predictor(path, backend="onnx", detect=False) for name, path in (("fp32", fp32), ("int8", int8))}
    models["fp32"].require_expression("comparing the exports' accuracy reads")
    predictions: dict[str, list[int]] = {name: [] for name in models}
    labels: list[int | None] = []
    sample: list[np.ndarray] = []
    for batch in _decoded(items, chunk=64):
        images = [image for image, _ in batch]
        labels += [label for _, label in batch]
        sample += images[: max(0, latency_images - len(sample))]
        for name, predictor in models.items():
            predictions[name] += [r["expression_id"] for r in predictor.predict_batch(images)]
    known = [i for i, label in enumerate(labels) if label is not None]
    report: dict[str, Any] = {"images": len(items), "evaluated": len(labels), "labelled": len(known)}
    for name, path in (("fp32", fp32), ("int8", int8)):
        correct = [predictions[name][i] == labels[i] for i in known]
        report[name] = {
            "path": str(path),
            "size_mb": path.stat().st_size / 1e6,
            "accuracy": float(np.mean(correct)) if known else None,
            "latency_ms": _median_latency_ms(models[name], sample) if sample else None,
        }
    report["agreement"] = float(np.mean(np.equal(predictions["fp32"], predictions["int8"]))) if labels else None
    if known:
        report["accuracy_delta"] = report["int8"]["accuracy"] - report["fp32"]["accuracy"]
    return report
