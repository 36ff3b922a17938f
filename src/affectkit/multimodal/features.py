"""A manifest's samples -> one table: a row per sample, its labels and split, and each modality's features."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affectkit.data.records import Record, Reject, Rejection
from affectkit.data.splits import make_splits
from affectkit.errors import AffectkitError
from affectkit.inference.predictor import Predictor
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, DEFAULT_FRAMES_PER_SECOND, face_features
from affectkit.multimodal.manifest import MultimodalManifest, Sample
from affectkit.multimodal.signals import audio_features, physio_features, read_audio, read_physio
from affectkit.progress import reporter
from affectkit.readlog import ReadLog

# Signals whose level differs from person to person (a voice's pitch, a resting heart rate, a skin conductance):
# beside each raw feature, its value relative to the same person's other samples.
PER_PERSON = ("audio", "physio")


@dataclass
class FeatureTable:
    frame: pd.DataFrame  # id, split, group, expression, valence, arousal, then every feature column
    columns: dict[str, list[str]]  # modality -> its feature columns
    rejected: list[Rejection] = field(default_factory=list)  # samples whose files could not be read
    missing: dict[str, int] = field(default_factory=dict)  # modality -> samples without it (unrecorded, no face)

    @property
    def feature_columns(self) -> list[str]:
        return [c for columns in self.columns.values() for c in columns]

    def part(self, split: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == split]


def modality_columns(names: Iterable[str], modalities: Iterable[str]) -> dict[str, list[str]]:
    """modality -> its feature columns among ``names`` (each starts with ``<modality>_``); modalities without any are
    left out."""
    names = list(names)
    columns = {m: [c for c in names if c.startswith(f"{m}_")] for m in modalities}
    return {m: c for m, c in columns.items() if c}


def sample_features(sample: Sample, predictor: Predictor | None, fps: float = DEFAULT_FRAMES_PER_SECOND,
                    frame_rate: float = DEFAULT_FRAME_RATE) -> dict[str, dict[str, float] | None]:
    """Each recorded modality's features (None: the face model found no face); the face is read only with a
    ``predictor`` (a fusion that does not use it needs none). Raises Reject for a file that cannot be read or a
    window outside its file."""
    out: dict[str, dict[str, float] | None] = {}
    if "face" in sample.files and predictor is not None:
        out["face"] = face_features(predictor, sample.files["face"], sample.start, sample.end, fps, frame_rate)
    if "audio" in sample.files:
        out["audio"] = audio_features(read_audio(sample.files["audio"], sample.start, sample.end))
    if "physio" in sample.files:
        out["physio"] = physio_features(*read_physio(sample.files["physio"], sample.start, sample.end))
    return out


def _strata(samples: list[Sample]) -> list[int]:
    """What the split stratifies on: the expression, else the sign of arousal (valence/arousal-only data)."""
    if all(s.expression is not None for s in samples):
        return [s.expression for s in samples]
    return [int(s.arousal >= 0) if math.isfinite(s.arousal) else 2 for s in samples]


def assign_splits(samples: list[Sample], val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """affectkit's split for the samples: as given, else stratified, subject-disjoint where subjects are known."""
    records = [Record(s.id, s.files[next(iter(s.files))], label, split=s.split, group=s.group)
               for s, label in zip(samples, _strata(samples))]
    return make_splits(records, val_fraction, test_fraction, seed)


def per_person(features: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Each column standardised within each person's samples (``<column>_person_z``): speaker and baseline
    normalisation. It reads no label, so a new person's samples are normalised the same way."""
    grouped = features.groupby(groups.to_numpy())
    spread = grouped.transform("std").replace(0.0, np.nan)
    relative = ((features - grouped.transform("mean")) / spread).fillna(0.0).where(features.notna())
    return relative.add_suffix("_person_z")


@dataclass
class ReadSamples:
    """What reading a manifest's files gave: the samples read, one feature row each, and the ones quarantined."""

    samples: list[Sample]
    features: pd.DataFrame  # one row per sample: the union of every sample's columns, NaN where absent
    rejected: list[Rejection]
    missing: dict[str, int]  # modality -> samples without it (unrecorded, or no face found)


def read_samples(manifest: MultimodalManifest, predictor: Predictor | None, fps: float = DEFAULT_FRAMES_PER_SECOND,
                 person_relative: bool = True, description: str = "Reading modalities",
                 frame_rate: float = DEFAULT_FRAME_RATE, log: Path | None = None,
                 key: dict[str, Any] | None = None) -> ReadSamples:
    """Every sample's features, with a progress bar; a sample whose file cannot be read is quarantined. With
    ``person_relative``, where the manifest says who is who, audio and physio features are also given relative to the
    person (:func:`per_person`). With ``log``, each sample's features (or why it was quarantined) are appended to
    it as soon as read, for ``key``: an interrupted read goes on from there, the samples it holds not read again."""
    rows, rejected, missing = [], [], Counter()
    kept: list[Sample] = []
    with closing(ReadLog(log, key or {})) as read_log:
        if read_log.entries:
            reporter().note(f"{len(read_log.entries)} sample(s) read before the run stopped, read back from {log}")
        for sample in reporter().track(manifest.samples, total=len(manifest.samples), description=description):
            entry = read_log.entries.get(sample.id) or read_log.record(_read_one(sample, predictor, fps, frame_rate))
            if "rejected" in entry:
                rejected.append(Rejection(sample.id, str(manifest.path), *entry["rejected"]))
                continue
            found = entry["found"]
            row: dict[str, float] = {}
            for modality in manifest.modalities:
                values = found.get(modality)
                missing[modality] += values is None
                row.update(values or {})
            rows.append(row)
            kept.append(sample)
    features = pd.DataFrame(rows, index=range(len(rows)))
    groups = pd.Series([s.group for s in kept])
    if person_relative and len(kept) and groups.notna().all():
        relative = [c for c in features.columns if c.startswith(tuple(f"{m}_" for m in PER_PERSON))]
        features = pd.concat([features, per_person(features[relative], groups)], axis=1)
    return ReadSamples(kept, features, rejected, {m: int(missing[m]) for m in manifest.modalities})


def _read_one(sample: Sample, predictor: Predictor | None, fps: float, frame_rate: float) -> dict[str, Any]:
    """One sample's features by modality, or why it was quarantined: an entry of the read log."""
    try:
        return {"id": sample.id, "found": sample_features(sample, predictor, fps, frame_rate)}
    except Reject as r:
        return {"id": sample.id, "rejected": [r.kind, r.reason]}


def extract_features(manifest: MultimodalManifest, predictor: Predictor | None, val_fraction: float = 0.15,
                     test_fraction: float = 0.15, seed: int = 0, fps: float = DEFAULT_FRAMES_PER_SECOND,
                     person_relative: bool = True, frame_rate: float = DEFAULT_FRAME_RATE, log: Path | None = None,
                     key: dict[str, Any] | None = None) -> FeatureTable:
    """:func:`read_samples` (``log``, ``key``: its log of the samples read), with labels and affectkit's split
    (:func:`assign_splits`)."""
    read = read_samples(manifest, predictor, fps, person_relative, frame_rate=frame_rate, log=log, key=key)
    kept = read.samples
    if not kept:
        raise AffectkitError(f"{manifest.path}: no sample's files could be read (first: {read.rejected[0].reason}).")
    splits = assign_splits(kept, val_fraction, test_fraction, seed)
    labels = pd.DataFrame({
        "id": [s.id for s in kept],
        "split": splits["split"].to_numpy(),
        "group": [s.group for s in kept],
        "expression": [np.nan if s.expression is None else s.expression for s in kept],
        "valence": [s.valence for s in kept],
        "arousal": [s.arousal for s in kept],
    })
    columns = modality_columns(read.features.columns, manifest.modalities)
    frame = pd.concat([labels, read.features[[c for cs in columns.values() for c in cs]]], axis=1)
    return FeatureTable(frame, columns, read.rejected, read.missing)
