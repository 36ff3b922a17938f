"""Fusing the modalities: each alone, all features together (early fusion), and each modality's own model combined
by a meta-model (late fusion, stacking), for the expression (logistic regression) and for valence and arousal
(ridge regression), with scikit-learn.

Every model is fit on the train split. Its regularisation, and then which method is kept for each target, are chosen
on the validation split (log-loss for the expression, CCC for valence and arousal). The test split scores every
method once, for the report. A modality a sample lacks is imputed from the train split, with an indicator of its
absence, so a model still predicts from the modalities it has.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torchmetrics.functional import concordance_corrcoef

from affectkit.config import CLASS_NAMES
from affectkit.evaluation.metrics import log_loss
from affectkit.evaluation.significance import ccc_interval, score_intervals
from affectkit.multimodal.features import FeatureTable
from affectkit.multimodal.manifest import Sample

DIMENSIONS = ("valence", "arousal")
C_GRID = (0.01, 0.1, 1.0, 10.0)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
FACE_AS_IS = "face model as is"
EARLY = "early fusion"
LATE = "late fusion"
STACKING_FOLDS = 5


def _linear(columns: list[str], estimator: Any) -> Pipeline:
    """Its columns of the feature table, absent values imputed (with indicators), standardised, then ``estimator``."""
    select = ColumnTransformer([("features", "passthrough", columns)], remainder="drop")
    impute = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    return make_pipeline(select, impute, StandardScaler(), estimator)


def _folds(frame: pd.DataFrame, target: np.ndarray, classify: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The stacking's out-of-fold splits of the train rows: by subject where subjects are known."""
    groups = frame["group"].to_numpy()
    n = len(frame)
    if pd.notna(groups).all() and len(set(groups)) >= 2:
        return list(GroupKFold(n_splits=min(STACKING_FOLDS, len(set(groups)))).split(np.zeros(n), target, groups))
    if classify:
        smallest = int(np.unique(target, return_counts=True)[1].min())
        folds = StratifiedKFold(n_splits=max(2, min(STACKING_FOLDS, smallest)), shuffle=True, random_state=seed)
        return list(folds.split(np.zeros(n), target))
    return list(KFold(n_splits=min(STACKING_FOLDS, n), shuffle=True, random_state=seed).split(np.zeros(n)))


def candidates(method: str, columns: dict[str, list[str]], classify: bool, folds: list,
               member_strengths: dict[str, float] | None = None) -> list[Pipeline]:
    """The models one method tries, one per regularisation strength; late fusion's members are each modality's
    model at ``member_strengths`` (the strength its own model was given on val; a middle one where not given)."""
    def estimator(strength: float) -> Any:
        return LogisticRegression(C=strength, max_iter=3000) if classify else Ridge(alpha=strength)

    grid = C_GRID if classify else ALPHA_GRID
    if method == LATE:
        chosen = member_strengths or {}
        default = 1.0 if classify else 10.0
        members = [(m, _linear(cols, estimator(chosen.get(m, default)))) for m, cols in columns.items()]
        stack = StackingClassifier if classify else StackingRegressor
        extra = {"stack_method": "predict_proba"} if classify else {}
        return [stack(members, final_estimator=estimator(s), cv=folds, **extra) for s in grid]
    used = [c for cols in columns.values() for c in cols] if method == EARLY else columns[method]
    return [_linear(used, estimator(s)) for s in grid]


def full_probabilities(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Probabilities over affectkit's 8 classes; those the train split lacked get 0."""
    out = np.zeros((len(features), len(CLASS_NAMES)))
    out[:, model.classes_.astype(int)] = model.predict_proba(features)
    return out


def expression_columns(probabilities: np.ndarray) -> dict[str, Any]:
    """The ``expression`` and ``p_<class>`` columns of a prediction table, from class probabilities [N, 8]."""
    return {"expression": [CLASS_NAMES[i] for i in probabilities.argmax(axis=1)],
            **{f"p_{name.lower()}": column for name, column in zip(CLASS_NAMES, probabilities.T)}}


def verdict_of(row: pd.Series) -> dict[str, Any]:
    """One row of a prediction table as plain values: its expression and probabilities, valence and arousal, each
    where the table has it."""
    verdict: dict[str, Any] = {}
    if "expression" in row:
        verdict |= {"expression": row["expression"],
                    "probabilities": {c: float(row[f"p_{c.lower()}"]) for c in CLASS_NAMES}}
    return verdict | {d: float(row[d]) for d in DIMENSIONS if d in row}


def ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    if len(target) < 2:
        return math.nan
    value = concordance_corrcoef(torch.tensor(np.asarray(prediction, dtype=np.float64)),
                                 torch.tensor(np.asarray(target, dtype=np.float64)))
    return float(value) if torch.isfinite(value) else 0.0


@dataclass
class Fitted:
    method: str
    target: str  # "expression", "valence" or "arousal"
    model: Any  # a fitted scikit-learn estimator
    val_score: float  # log-loss (expression, lower is better) or CCC (higher is better)
    strength: float | None  # C or alpha chosen on val


def labelled(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    return frame[frame[target].notna()]


def predict(model: Any, target: str, features: pd.DataFrame) -> np.ndarray:
    """(n, 8) probabilities for the expression, (n,) values for valence or arousal."""
    return full_probabilities(model, features) if target == "expression" else model.predict(features)


def validation_score(target: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    return log_loss(predicted, truth) if target == "expression" else ccc(predicted, truth)


def better(target: str, score: float, than: float | None) -> bool:
    return than is None or (score < than if target == "expression" else score > than)


def fit_method(table: FeatureTable, method: str, target: str, seed: int = 0,
               member_strengths: dict[str, float] | None = None) -> Fitted:
    """``method``'s model for ``target``, fit on train, its regularisation chosen on val (``member_strengths``:
    see :func:`candidates`)."""
    train, val = labelled(table.part("train"), target), labelled(table.part("val"), target)
    classify = target == "expression"
    y_train, y_val = train[target].to_numpy(), val[target].to_numpy()
    if classify:
        y_train, y_val = y_train.astype(int), y_val.astype(int)
    folds = _folds(train, y_train, classify, seed) if method == LATE else []
    best: Fitted | None = None
    grid = C_GRID if classify else ALPHA_GRID
    for strength, model in zip(grid, candidates(method, table.columns, classify, folds, member_strengths)):
        model.fit(train, y_train)
        score = validation_score(target, predict(model, target, val), y_val)
        if best is None or better(target, score, best.val_score):
            best = Fitted(method, target, model, score, strength)
    return best


VALENCE_AROUSAL_FACE_MODEL = ("the face model predicts valence and arousal only: as is, it gives no expression; "
                              "the models fit here learn the expression, where samples have one, from its valence "
                              "and arousal")
EXPRESSION_FACE_MODEL = ("the face model predicts expressions only (it was trained without valence/arousal): as is, "
                         "it gives no valence or arousal; the models fit here learn them, where samples have them, "
                         "from its expression probabilities")


def face_model_limits(class_names: list[str], valence_arousal: bool) -> list[str]:
    """The run notes for a face model that predicts expressions only or valence/arousal only."""
    return [*([VALENCE_AROUSAL_FACE_MODEL] if not class_names else []),
            *([EXPRESSION_FACE_MODEL] if not valence_arousal else [])]


def face_predicts(table: FeatureTable, target: str) -> bool:
    """Whether the face model itself predicts ``target``: a valence/arousal model gives no expression
    probabilities, an expression model no valence and arousal (the fusions still learn each from the other)."""
    prefix = "face_p_" if target == "expression" else f"face_{target}"
    return any(c.startswith(prefix) for c in table.columns.get("face", []))


def face_as_is(table: FeatureTable, target: str, frame: pd.DataFrame) -> np.ndarray:
    """The face model's own predictions from its features; a sample without a face gets the train split's class
    frequencies (expression) or mean (valence, arousal)."""
    train = labelled(table.part("train"), target)
    if target == "expression":
        columns = [f"face_p_{name.lower()}" for name in CLASS_NAMES]
        present = [c for c in columns if c in frame]
        probabilities = np.zeros((len(frame), len(CLASS_NAMES)))
        probabilities[:, [columns.index(c) for c in present]] = frame[present].to_numpy(dtype=float)
        prior = np.bincount(train["expression"].to_numpy(dtype=int), minlength=len(CLASS_NAMES)) / len(train)
        absent = ~np.isfinite(probabilities).all(axis=1)
        probabilities[absent] = prior
        return probabilities
    values = frame[f"face_{target}"].to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, train[target].mean())


def held_out_scores(target: str, predicted: np.ndarray, truth: np.ndarray,
                    groups: np.ndarray | None = None) -> dict[str, float]:
    """The test scores of one target, each with its bootstrap interval over the samples, drawn by person
    (``groups``) where known (``<score>_low`` / ``_high``)."""
    if len(truth) == 0:
        return {}
    if target != "expression":
        found = ccc_interval(predicted, truth, groups)
        return {f"{target}_ccc": ccc(predicted, truth),
                **({} if found is None else {f"{target}_ccc_low": found[0], f"{target}_ccc_high": found[1]})}
    truth = truth.astype(int)
    chosen = predicted.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")  # a small test split
        balanced = balanced_accuracy_score(truth, chosen)
    bounds = {f"{score}_{end}": value for score, interval in score_intervals(truth, chosen, groups).items()
              for end, value in zip(("low", "high"), interval)}
    return {"accuracy": accuracy_score(truth, chosen),
            # Over the classes given or predicted, as every other macro-F1 of affectkit (torchmetrics') counts it.
            "macro_f1": f1_score(truth, chosen, labels=np.union1d(truth, chosen), average="macro", zero_division=0),
            "balanced_accuracy": balanced, **bounds}


def truth_columns(samples: Sequence[Sample]) -> dict[str, Any]:
    """The labels ``samples`` carry, as columns of their prediction table: ``true_expression`` (a class name, blank
    where a sample has none), ``true_valence``, ``true_arousal`` (NaN where none), each where any sample has it, and
    ``person`` where any sample names its subject; none for samples without labels."""
    columns: dict[str, Any] = {}
    if any(s.expression is not None for s in samples):
        columns["true_expression"] = [CLASS_NAMES[s.expression] if s.expression is not None else "" for s in samples]
    for dimension in DIMENSIONS:
        values = np.array([getattr(s, dimension) for s in samples], dtype=float)
        if np.isfinite(values).any():
            columns[f"true_{dimension}"] = values
    if columns and any(s.group for s in samples):
        columns["person"] = [s.group or "" for s in samples]
    return columns


def labelled_scores(predictions: pd.DataFrame, unit_column: str = "id") -> dict[str, Any] | None:
    """A prediction table's scores against its ``true_`` columns (:func:`truth_columns`): for each target both
    give, the samples labelled and :func:`held_out_scores` over them (intervals drawn by person where known, else
    by ``unit_column``: each sample, or each clip of a table of frames), and
    ``seen_in_training``, the samples of a ``fit_split`` column that fit the model or chose it (train, val); None
    where the table has no labels."""
    scores: dict[str, Any] = {}
    if "fit_split" in predictions:
        scores["seen_in_training"] = int(predictions["fit_split"].isin(("train", "val")).sum())
    people = predictions["person"].replace("", np.nan) if "person" in predictions else None
    if "true_expression" in predictions and "expression" in predictions:
        labelled = predictions[predictions["true_expression"].fillna("") != ""]
        if len(labelled):
            truth = labelled["true_expression"].map(CLASS_NAMES.index).to_numpy()
            probabilities = labelled[[f"p_{name.lower()}" for name in CLASS_NAMES]].to_numpy(dtype=float)
            groups = None if people is None else _groups(people[labelled.index], labelled[unit_column])
            scores |= {"expression_samples": len(labelled),
                       **held_out_scores("expression", probabilities, truth, groups)}
    for dimension in DIMENSIONS:
        if f"true_{dimension}" in predictions and dimension in predictions:
            labelled = predictions[np.isfinite(predictions[f"true_{dimension}"].to_numpy(dtype=float))]
            if len(labelled) >= 2:
                groups = None if people is None else _groups(people[labelled.index], labelled[unit_column])
                scores |= {f"{dimension}_samples": len(labelled),
                           **held_out_scores(dimension, labelled[dimension].to_numpy(dtype=float),
                                             labelled[f"true_{dimension}"].to_numpy(dtype=float), groups)}
    return scores if set(scores) - {"seen_in_training"} else None


def _groups(people: pd.Series, units: pd.Series) -> np.ndarray:
    """Each sample's person, a sample of no known person its unit's own (its own id, or its clip)."""
    return np.where(people.notna(), people.astype(str), "unit " + units.astype(str)).astype(object)


def targets_of(table: FeatureTable) -> list[str]:
    """What the data labels, on both the train and the val split."""
    found = []
    for target in ("expression", *DIMENSIONS):
        train, val = labelled(table.part("train"), target), labelled(table.part("val"), target)
        if target == "expression" and train[target].nunique() < 2:
            continue
        if len(train) >= 2 and len(val) >= 1:
            found.append(target)
    return found


def methods_of(table: FeatureTable) -> list[str]:
    modalities = list(table.columns)
    return modalities + ([EARLY, LATE] if len(modalities) > 1 else [])


@dataclass
class FusionResult:
    table: pd.DataFrame  # one row per method: its test scores and validation scores
    kept: dict[str, Fitted]  # target -> the model kept for it (best on val)
    targets: list[str]


def fuse(table: FeatureTable, seed: int = 0, progress: Any = None) -> FusionResult:
    """Every method for every target the data labels; the model kept for each target is the best on val."""
    targets = targets_of(table)
    if not targets:
        raise ValueError("the train and val splits share no labelled target")
    rows: dict[str, dict[str, Any]] = {}
    kept: dict[str, Fitted] = {}
    test = table.part("test")
    if "face" in table.columns:
        rows[FACE_AS_IS] = {"method": FACE_AS_IS, "modalities": "face"}
        for target in filter(partial(face_predicts, table), targets):
            truth = labelled(test, target)
            rows[FACE_AS_IS].update(held_out_scores(target, face_as_is(table, target, truth), truth[target].to_numpy(),
                                                    truth["group"].to_numpy()))
    strengths: dict[str, dict[str, float]] = {target: {} for target in targets}  # each modality's, per target
    for method in methods_of(table):
        modalities = ", ".join(table.columns) if method in (EARLY, LATE) else method
        row = rows.setdefault(method, {"method": method, "modalities": modalities})
        for target in targets:
            fitted = fit_method(table, method, target, seed, strengths[target])
            if method in table.columns:
                strengths[target][method] = fitted.strength
            truth = labelled(test, target)
            row.update(held_out_scores(target, predict(fitted.model, target, truth), truth[target].to_numpy(),
                                       truth["group"].to_numpy()))
            row["val_log_loss" if target == "expression" else f"val_{target}_ccc"] = fitted.val_score
            if better(target, fitted.val_score, kept[target].val_score if target in kept else None):
                kept[target] = fitted
            if progress is not None:
                progress()
    frame = pd.DataFrame(list(rows.values()))
    frame["kept_for"] = [", ".join(t for t in targets if kept[t].method == m) for m in frame["method"]]
    return FusionResult(frame, kept, targets)
