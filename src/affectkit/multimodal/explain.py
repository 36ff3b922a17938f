"""Which modality a kept fusion's verdict on a sample rests on: each modality the sample was read with is left out in
turn and the sample answered again, as occlusion covers each part of a face (:mod:`affectkit.inference.explain`)
and ``temporal-predict --explain`` leaves out each frame of a clip.

Left out, a modality's features are absent, as for a sample recorded without it: the kept model imputes them from
its train split (the median of each feature), as it does wherever a modality is missing. A modality's
``importance`` is how far the probability of the sample's answered expression falls without it (negative: without
it the sample reads more surely so); ``valence_pull`` and ``arousal_pull``, how far the sample's valence and arousal
move with it in (positive: it raises them). A modality the kept model of a target does not read (the speech alone
kept for valence) pulls it by exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affectkit.config import CLASS_NAMES
from affectkit.multimodal.features import modality_columns
from affectkit.multimodal.fusion import DIMENSIONS
from affectkit.multimodal.run import fusion_outputs, read_for_fusion, sample_predictions


def _answered_probability(outputs: pd.DataFrame, answered: pd.Series) -> np.ndarray:
    """Each row's probability of its sample's ``answered`` expression."""
    columns = [f"p_{name.lower()}" for name in CLASS_NAMES]
    positions = [CLASS_NAMES.index(name) for name in answered]
    return outputs[columns].to_numpy(dtype=float)[np.arange(len(outputs)), positions]


def modality_importance(models: dict[str, Any], meta: dict[str, Any], ids: list[str],
                        features: pd.DataFrame) -> pd.DataFrame:
    """One row per sample (``ids``) and modality it was read with: the modality, the sample's answered expression,
    the modality's ``importance`` to it and its ``valence_pull`` / ``arousal_pull``, where the fusion gives them."""
    whole = fusion_outputs(models, features)
    parts = []
    for modality, columns in modality_columns(meta["feature_columns"], meta["modalities"]).items():
        read = features[columns].notna().any(axis=1).to_numpy()
        without = features.copy()
        without[columns] = np.nan
        left = fusion_outputs(models, without)
        part = pd.DataFrame({"id": ids, "modality": modality})
        if "expression" in whole:
            part["expression"] = whole["expression"]
            part["importance"] = (_answered_probability(whole, whole["expression"])
                                  - _answered_probability(left, whole["expression"]))
        for dimension in DIMENSIONS:
            if dimension in whole:
                part[f"{dimension}_pull"] = whole[dimension] - left[dimension]
        parts.append(part[read])
    if not parts:
        return pd.DataFrame(columns=["id", "modality"])
    order = {sample: i for i, sample in enumerate(ids)}
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values("id", key=lambda column: column.map(order), kind="stable", ignore_index=True)


@dataclass(frozen=True)
class ExplainedSamples:
    predictions: pd.DataFrame  # one row per sample, as predict_fusion gives it
    modalities: pd.DataFrame  # one row per sample and modality it was read with (modality_importance)
    problems: list[str]  # why each sample that could not be read was not


def explain_fusion(model_dir: str | Path, manifest_path: str | Path, face_model: str | Path | None = None,
                   backend: str = "auto", log: Path | None = None) -> ExplainedSamples:
    """:func:`affectkit.multimodal.predict_fusion` on the manifest's samples, and the :func:`modality_importance`
    of each modality each sample was read with."""
    read = read_for_fusion(model_dir, manifest_path, face_model, backend, log)
    return ExplainedSamples(sample_predictions(read),
                            modality_importance(read.models, read.meta, read.ids, read.features), read.problems)


__all__ = ["ExplainedSamples", "explain_fusion", "modality_importance"]
