"""Stratified, seeded train/val/test splits, saved as ``splits.csv`` and reused by every model of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.data.reader import Record
from affectkit.errors import AffectkitError

SPLITS = ("train", "val", "test")


def stratified_subsample(labels: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """Indices of a class-proportional subsample of ``max_samples`` items (every class keeps at least one)."""
    if max_samples >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * max_samples / len(labels)).astype(int))
    # Hand the rounding remainder to the classes with the largest fractional parts.
    remainder = max_samples - quota.sum()
    if remainder > 0:
        frac = counts * max_samples / len(labels) - np.floor(counts * max_samples / len(labels))
        for i in np.argsort(-frac)[:remainder]:
            quota[i] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[: q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """A split name per item; each class is divided in the given proportions, so small classes reach every split."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 3:  # keep one of each class in every split when the class allows it
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "val"
        out[idx[n_test + n_val :]] = "train"
    return out


def make_splits(records: list[Record], val_fraction: float, test_fraction: float, seed: int,
                max_samples: int | None = None) -> pd.DataFrame:
    labels = np.array([r.expression for r in records])
    keep = stratified_subsample(labels, max_samples, seed) if max_samples else np.arange(len(records))
    ids = [records[i].id for i in keep]
    if all(records[i].split is not None for i in keep):
        split = np.array([records[i].split for i in keep], dtype=object)  # the data's own split, as given
    else:
        split = stratified_split(labels[keep], val_fraction, test_fraction, seed)
    return pd.DataFrame({"id": ids, "split": split, "expression": labels[keep]})


def load_or_make_splits(path: Path, records: list[Record], val_fraction: float, test_fraction: float, seed: int,
                        max_samples: int | None = None) -> pd.DataFrame:
    """Reuse ``path`` when it exists (so every model and every resume sees the same split), else create it."""
    if path.is_file():
        table = pd.read_csv(path, dtype={"id": str})
        known = {r.id for r in records}
        unknown = [i for i in table["id"] if i not in known]
        if unknown:
            raise AffectkitError(
                f"{path} names {len(unknown)} sample(s) that are not valid in this data set (first: {unknown[0]!r}); "
                "it belongs to other data: use another --out folder or delete it."
            )
        if not set(table["split"]) <= set(SPLITS):
            raise AffectkitError(f"{path}: split values must be train, val or test.")
        return table
    table = make_splits(records, val_fraction, test_fraction, seed, max_samples)
    for name in SPLITS:
        if not (table["split"] == name).any():
            raise AffectkitError(f"The {name} split is empty: the data set has too few valid samples ({len(table)}).")
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table
