"""``affectkit fuse``: read a multimodal manifest, turn each modality into features, fit and compare the fusions, write
the report, keep the model chosen on validation; and predict with a kept model on a new manifest."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.config import CLASS_NAMES
from affectkit.data.records import Reject, Rejection, quarantine_frame
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import INTERVAL_NOTE, interval_cells, markdown_table
from affectkit.evaluation.plots import plot_benchmark
from affectkit.inference.predictor import Predictor, model_digest
from affectkit.models.metadata import sha256_of
from affectkit.models.registry import kept_description, verified_file
from affectkit.multimodal.face import DEFAULT_FRAME_RATE, DEFAULT_FRAMES_PER_SECOND
from affectkit.multimodal.features import (
    FeatureTable,
    extract_features,
    modality_columns,
    read_samples,
    sample_features,
)
from affectkit.multimodal.fusion import (
    DIMENSIONS,
    FACE_AS_IS,
    FusionResult,
    expression_columns,
    face_model_limits,
    full_probabilities,
    fuse,
    methods_of,
    targets_of,
    truth_columns,
    verdict_of,
)
from affectkit.multimodal.manifest import MultimodalManifest, Sample, read_manifest
from affectkit.progress import reporter

MODEL_FILE = "fusion_model.skops"
META_FILE = "fusion_model.json"
READ_LOG = "features.partial.jsonl"  # each sample's features as read, until features.csv is stored
# skops refuses to load any type it does not know to be safe unless told; these two are what the fitted pipelines
# hold beyond scikit-learn's own estimators. Anything else in a file stops the load.
TRUSTED_TYPES = ("numpy.dtype", "sklearn.utils._bunch.Bunch")
SCORES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "balanced_accuracy": "Balanced accuracy",
          "valence_ccc": "Valence CCC", "arousal_ccc": "Arousal CCC"}
HONEST_SELECTION = ("Each method is fit on the train split and its regularisation chosen on the validation split; "
                    "the method kept for each target is the one best on validation (log-loss for the expression, CCC "
                    "for valence and arousal). The test split scores every method once, here.")


@dataclass(frozen=True)
class FusionRun:
    out: Path
    result: FusionResult
    features: FeatureTable
    manifest: MultimodalManifest
    notes: list[str]

    @property
    def files(self) -> dict[str, Path]:
        names = ("fusion.csv", "fusion.md", "fusion.png", "features.csv", "quarantine.csv", MODEL_FILE, META_FILE)
        return {name: self.out / name for name in names}


def _predictor(manifest: MultimodalManifest, face_model: Path | None, detect: bool, backend: str) -> Predictor | None:
    if "face" not in manifest.modalities:
        return None
    if face_model is None:
        raise AffectkitError(f"{manifest.path} has a face column: give the face model that reads it (--face-model, "
                             "a saved affectkit model such as RUN/best_MobileNetV2.safetensors).")
    return Predictor(face_model, backend=backend, detect=detect)


def face_model_digest(face_model: Path | None) -> str | None:
    """The SHA-256 of the face model's weights (:func:`affectkit.inference.predictor.model_digest`: its ONNX export
    given alone is the same face model)."""
    return None if face_model is None else model_digest(face_model)


def require_face_model(expected: str | None, face_model: Path | None, fitted: str, remedy: str) -> None:
    """Refuse ``face_model`` (or its absence) where what was fitted (``fitted``: "The fusion in DIR") learnt from the
    outputs of the face model whose weights have the SHA-256 ``expected``: another model's would mean other inputs."""
    if face_model is None or face_model_digest(face_model) != expected:
        given = "" if face_model is None else f", not on {face_model}"
        raise AffectkitError(f"{fitted} was fit on the outputs of the face model with SHA-256 {expected}{given}; "
                             f"{remedy}.")


def _feature_key(manifest: Path, face_model: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    """What the stored features depend on: reused only when all of it is the same."""
    return {"manifest_sha256": sha256_of(manifest), "face_model_sha256": face_model_digest(face_model), **settings}


def _stored_features(out: Path, key: dict[str, Any], modalities: list[str]) -> FeatureTable | None:
    frame_path, key_path = out / "features.csv", out / "features.json"
    if not (frame_path.is_file() and key_path.is_file()):
        return None
    stored = json.loads(key_path.read_text())
    if stored.get("key") != key:
        return None
    frame = pd.read_csv(frame_path, dtype={"id": str, "split": str, "group": object})
    frame["group"] = frame["group"].where(frame["group"].notna(), None)
    return FeatureTable(frame, modality_columns(frame.columns, modalities),
                        [Rejection(**r) for r in stored["rejected"]], stored["missing"])


def _store_features(out: Path, key: dict[str, Any], features: FeatureTable) -> None:
    with atomic_path(out / "features.csv") as tmp:
        features.frame.to_csv(tmp, index=False)
    stored = {"key": key, "missing": features.missing, "rejected": [vars(r) for r in features.rejected]}
    atomic_write_text(out / "features.json", json.dumps(stored, indent=2))


def _notes(manifest: MultimodalManifest, features: FeatureTable) -> list[str]:
    n = len(features.frame)
    notes = [f"{n} samples read; " + ", ".join(f"{m}: {n - features.missing.get(m, 0)} with features"
                                               for m in manifest.modalities)]
    rejected = len(manifest.rejected) + len(features.rejected)
    if rejected:
        notes.append(f"{rejected} sample(s) quarantined (see quarantine.csv)")
    splits = features.frame["split"].value_counts()
    grouped = features.frame["group"].notna().any()
    notes.append("split " + " / ".join(f"{s} {int(splits.get(s, 0))}" for s in ("train", "val", "test"))
                 + (", no subject on two sides" if grouped else ""))
    return notes


def _report(run_out: Path, result: FusionResult, manifest: MultimodalManifest, notes: list[str]) -> None:
    table = result.table
    with atomic_path(run_out / "fusion.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    shown = [c for c in ("method", "modalities", *SCORES, "kept_for") if c in table]
    kept = "; ".join(f"{target}: {fitted.method}" for target, fitted in result.kept.items())
    lines = [f"# Multimodal fusion: {manifest.path.name}", "", *[f"- {note}" for note in notes],
             f"- kept: {kept}", "", "## Test split", "", markdown_table(interval_cells(table[shown], table)), "",
             INTERVAL_NOTE, "",
             "## Validation scores (what chose)", "",
             markdown_table(table[["method", *(c for c in table if c.startswith("val_"))]]), "",
             "## How the rows were made", "",
             f"- {FACE_AS_IS}: the face model's own probabilities, valence and arousal, averaged over the frames "
             "of the window; each modality alone: logistic (expression) and ridge (valence, arousal) regression on "
             "its features; early fusion: the same on every modality's features; late fusion: each modality's "
             "model, combined by a meta-model fit on their out-of-fold predictions (stacking, folds by subject "
             "where subjects are known).",
             f"- {HONEST_SELECTION}", "", "![scores](fusion.png)", ""]
    atomic_write_text(run_out / "fusion.md", "\n".join(lines))
    plot_benchmark(table.rename(columns={"method": "model"}), run_out / "fusion.png",
                   title="Multimodal fusion on the test split", columns=SCORES)


def _save_model(out: Path, result: FusionResult, features: FeatureTable, face_model: Path | None,
                settings: dict[str, Any]) -> None:
    import skops.io

    models = {target: fitted.model for target, fitted in result.kept.items()}
    with atomic_path(out / MODEL_FILE) as tmp:
        skops.io.dump(models, tmp)
    meta = {
        "format": "affectkit multimodal fusion 1",
        "model_sha256": sha256_of(out / MODEL_FILE),
        "kept": {target: {"method": f.method, "val_score": f.val_score, "strength": f.strength}
                 for target, f in result.kept.items()},
        "feature_columns": features.feature_columns,
        "modalities": list(features.columns),
        "class_names": list(CLASS_NAMES),
        "face_model": None if face_model is None else str(Path(face_model).resolve()),
        "face_model_sha256": face_model_digest(face_model),
        **settings,
    }
    atomic_write_text(out / META_FILE, json.dumps(meta, indent=2))


def check_run_options(val_fraction: float, test_fraction: float, fps: float, frame_rate: float) -> None:
    """The split fractions and frame rates a run over face windows or clips takes (``fuse``, ``temporal``)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1) or fps <= 0 \
            or frame_rate <= 0:
        raise AffectkitError("--val-fraction and --test-fraction must be in (0, 1) with a sum below 1, and --fps "
                             "and --frame-rate positive.")


def _write_quarantine(out: Path, rejected: list) -> None:
    with atomic_path(out / "quarantine.csv") as tmp:
        quarantine_frame(rejected).to_csv(tmp, index=False)


def run_fusion(manifest_path: str | Path, out: str | Path, face_model: str | Path | None = None, seed: int = 0,
               val_fraction: float = 0.15, test_fraction: float = 0.15, fps: float = DEFAULT_FRAMES_PER_SECOND,
               detect: bool = True, backend: str = "auto", person_relative: bool = True,
               frame_rate: float = DEFAULT_FRAME_RATE) -> FusionRun:
    """Features of every sample (stored in ``out`` and reused by a rerun with the same inputs), each fusion fit and
    scored, the report written, the model kept on validation saved. ``person_relative``: see
    :func:`~affectkit.multimodal.features.read_samples`; ``frame_rate``: frames a second of faces given as folders
    of frames."""
    check_run_options(val_fraction, test_fraction, fps, frame_rate)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    face_model = None if face_model is None else Path(face_model)
    manifest = read_manifest(manifest_path)
    predictor = _predictor(manifest, face_model, detect, backend)
    settings = {"fps": fps, "frame_rate": frame_rate, "detect": detect, "person_relative": person_relative,
                "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    key = _feature_key(manifest.path, face_model if predictor else None, settings)
    features = _stored_features(out, key, manifest.modalities)
    if features is None:
        try:
            features = extract_features(manifest, predictor, val_fraction, test_fraction, seed, fps, person_relative,
                                        frame_rate, log=out / READ_LOG, key=key)
        except AffectkitError as exc:
            if not manifest.rejected:
                raise
            _write_quarantine(out, manifest.rejected)  # what was set aside is likely why too few are left
            raise AffectkitError(f"{exc} {len(manifest.rejected)} of the manifest's rows were quarantined: see "
                                 f"{out / 'quarantine.csv'}.") from None
        _store_features(out, key, features)
        (out / READ_LOG).unlink(missing_ok=True)
    else:
        reporter().note(f"Features of the same manifest and face model read back from {out / 'features.csv'}")
    _write_quarantine(out, manifest.rejected + features.rejected)
    if features.part("train").empty or features.part("val").empty:
        raise AffectkitError(f"{manifest.path}: the split left no sample in train or val; give more samples or a "
                             "split column.")
    with reporter().bar() as bar:
        task = bar.add_task("Fitting fusions", total=len(methods_of(features)) * len(targets_of(features)), info="")
        try:
            result = fuse(features, seed, progress=lambda: bar.advance(task))
        except ValueError as exc:  # scikit-learn's, where a split is too small or too uniform to fit
            quarantined = len(manifest.rejected) + len(features.rejected)
            sizes = ", ".join(f"{split} {len(features.part(split))}" for split in ("train", "val", "test"))
            raise AffectkitError(f"{manifest.path}: the fusions cannot be fit on the samples left ({sizes}; "
                                 f"{quarantined} quarantined, see {out / 'quarantine.csv'}): {exc}.") from None
    notes = _notes(manifest, features)
    if predictor is not None:
        notes.append(f"face model: {face_model}" + (f" ({predictor.warning})" if predictor.warning else ""))
        notes += face_model_limits(predictor.class_names, predictor.predicts_valence_arousal)
    _report(out, result, manifest, notes)
    _save_model(out, result, features, face_model if predictor else None,
                {"fps": fps, "frame_rate": frame_rate, "detect": detect, "person_relative": person_relative})
    return FusionRun(out, result, features, manifest, notes)


# -- predicting with a kept model -----------------------------------------------------------------------------------


def load_fusion(model_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(models by target, metadata) of a kept fusion, its file checked against the digest recorded beside it."""
    model_dir = Path(model_dir)
    model_path = model_dir / MODEL_FILE
    meta = kept_description(model_dir / META_FILE, "affectkit fuse")
    verified_file(model_path, meta.get("model_sha256"), META_FILE, "affectkit fuse")
    return load_trusted(model_path), meta


def load_trusted(path: Path) -> Any:
    """The scikit-learn objects of a skops file whose digest was checked, refusing any type beyond sklearn's own and
    ``TRUSTED_TYPES``."""
    import skops.io

    untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise AffectkitError(f"{path} holds types affectkit does not load ({', '.join(untrusted)}).")
    return skops.io.load(path, trusted=list(TRUSTED_TYPES))


@dataclass(frozen=True)
class ReadSamples:
    """A manifest's samples read for a kept fusion: what the fusion needs to answer them."""

    models: dict[str, Any]  # the kept model of each target
    meta: dict[str, Any]  # the fusion's description
    samples: list[Sample]  # each readable sample
    features: pd.DataFrame  # their features, in the fusion's feature columns (NaN: a modality not read)
    problems: list[str]  # why each sample that could not be read was not
    # Where the manifest is the one the fusion was fit on: each sample's split in that fit (train, val, test).
    fit_splits: list[str] | None = None

    @property
    def ids(self) -> list[str]:
        return [sample.id for sample in self.samples]


def predict_fusion(model_dir: str | Path, manifest_path: str | Path, face_model: str | Path | None = None,
                   backend: str = "auto", log: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per readable sample of the manifest (labels not needed): the kept models' expression, its
    probabilities, valence and arousal, and the labels the manifest gives (``true_expression``, ``true_valence``,
    ``true_arousal``, ``person``: :func:`~affectkit.multimodal.fusion.labelled_scores` scores them; on the manifest
    the fusion was fit on, each sample's ``fit_split``); and the reasons of the samples that could not be read.
    ``log``: where each sample's features go as read (deleted at the end), so that the same call, stopped on the
    way, goes on from it."""
    read = read_for_fusion(model_dir, manifest_path, face_model, backend, log)
    return sample_predictions(read), read.problems


def sample_predictions(read: ReadSamples) -> pd.DataFrame:
    """The kept fusion's answers for the samples read: one row per sample, its id first, then the labels the
    manifest gives (:func:`truth_columns`)."""
    fit = {} if read.fit_splits is None else {"fit_split": read.fit_splits}
    return pd.concat([pd.DataFrame({"id": read.ids}), fusion_outputs(read.models, read.features),
                      pd.DataFrame(truth_columns(read.samples) | fit)], axis=1)


def fit_splits(model_dir: Path, manifest: Path, ids: list[str]) -> list[str] | None:
    """Each sample's split when the fusion was fit, where ``manifest`` is the very file it was fit on (its stored
    features name the file's digest); None for another manifest."""
    frame_path, key_path = model_dir / "features.csv", model_dir / "features.json"
    if not (frame_path.is_file() and key_path.is_file()):
        return None
    if json.loads(key_path.read_text()).get("key", {}).get("manifest_sha256") != sha256_of(manifest):
        return None
    splits = pd.read_csv(frame_path, usecols=["id", "split"], dtype=str).set_index("id")["split"]
    return [splits.get(sample, "") for sample in ids]


def read_for_fusion(model_dir: str | Path, manifest_path: str | Path, face_model: str | Path | None = None,
                    backend: str = "auto", log: Path | None = None) -> ReadSamples:
    """The kept fusion of ``model_dir`` and the features of each readable sample of the manifest (see
    :func:`predict_fusion`)."""
    models, meta = load_fusion(model_dir)
    manifest = read_manifest(manifest_path, require_labels=False)
    face_model = Path(face_model or meta["face_model"]) if meta["face_model"] else None
    predictor = None
    if "face" in manifest.modalities and "face" in meta["modalities"]:
        require_face_model(meta["face_model_sha256"], face_model, "The fusion", "give that model with --face-model")
        predictor = Predictor(face_model, backend=backend, detect=meta["detect"])
    if reads_per_person(meta) and not all(s.group for s in manifest.samples):
        raise AffectkitError(f"{manifest.path}: this fusion reads audio and physio features relative to each person; "
                             "give every sample its subject (a subject column).")
    frame_rate = meta.get("frame_rate", DEFAULT_FRAME_RATE)
    key = _feature_key(manifest.path, face_model if predictor else None,
                       {"fps": meta["fps"], "frame_rate": frame_rate, "detect": meta["detect"]})
    read = read_samples(manifest, predictor, meta["fps"], meta["person_relative"], description="Predicting",
                        frame_rate=frame_rate, log=log, key=key)
    if log is not None:
        log.unlink(missing_ok=True)
    problems = [r.reason for r in manifest.rejected + read.rejected]
    return ReadSamples(models, meta, read.samples,
                       read.features.reindex(columns=meta["feature_columns"]).reset_index(drop=True), problems,
                       fit_splits(Path(model_dir), manifest.path, [s.id for s in read.samples]))


def fusion_outputs(models: dict[str, Any], features: pd.DataFrame) -> pd.DataFrame:
    """The kept models' expression and its probabilities, valence and arousal, one row per row of ``features``
    (in the fusion's feature columns)."""
    out = pd.DataFrame(index=range(len(features)))
    if "expression" in models:
        out = out.assign(**expression_columns(full_probabilities(models["expression"], features)))
    for dimension in DIMENSIONS:
        if dimension in models:
            out[dimension] = np.clip(models[dimension].predict(features), -1.0, 1.0)
    return out


def reads_per_person(meta: dict[str, Any]) -> bool:
    """Whether a kept fusion reads features relative to each person's samples (it then needs a person's many)."""
    return any(c.endswith("_person_z") for c in meta["feature_columns"])


def fusion_verdict(models: dict[str, Any], meta: dict[str, Any], sample: Sample, predictor: Predictor | None,
                   face_lock: AbstractContextManager[Any] = nullcontext(), explain: bool = False) -> dict[str, Any]:
    """The kept fusion's verdict on one sample: the modalities it read and the ones missing (not given, or no face
    found), the expression and its probabilities, valence and arousal; with ``explain``, which modality it rests on
    (``modality_importance``: a modality, ``importance``, ``valence_pull``, ``arousal_pull`` per modality read, as
    ``fuse-predict --explain`` gives them). ``face_lock`` is held while the face model reads the face, and only then
    (a server's model lock: speech and physio features need no model). Raises Reject for a file that cannot be read
    or a window outside it, or where no modality the fusion reads could be read."""
    settings = (meta["fps"], meta.get("frame_rate", DEFAULT_FRAME_RATE))
    face = {m: f for m, f in sample.files.items() if m == "face"}
    found: dict[str, dict[str, float] | None] = {}
    if face and predictor is not None:
        with face_lock:
            found = sample_features(replace(sample, files=face), predictor, *settings)
    found |= sample_features(replace(sample, files={m: f for m, f in sample.files.items() if m != "face"}), None,
                             *settings)
    read = [m for m in meta["modalities"] if found.get(m)]
    if not read:
        raise Reject("no_modality", f"none of the fusion's modalities ({', '.join(meta['modalities'])}) could be read"
                     + (" (no face was found)" if "face" in found else ""))
    row = {name: value for m in read for name, value in found[m].items()}
    features = pd.DataFrame([row]).reindex(columns=meta["feature_columns"])
    verdict = ({"modalities": read, "missing": [m for m in meta["modalities"] if m not in read]}
               | verdict_of(fusion_outputs(models, features).iloc[0]))
    if explain:
        from affectkit.multimodal.explain import modality_importance  # which imports this module

        importance = modality_importance(models, meta, [sample.id], features).drop(columns=["id", "expression"],
                                                                                   errors="ignore")
        verdict["modality_importance"] = importance.to_dict(orient="records")
    return verdict
