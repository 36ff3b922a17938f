"""``affectkit compare DATA MODEL MODEL [...]``: saved models scored on the same faces and set against the first,
face by face: is one better than another on this data, or do these faces not tell them apart?

Each model reads the faces as it was trained to (its input size, its reading settings), with its stored temperature
and flip setting, as ``evaluate`` scores it; the faces are matched by their ids, so models trained at different sizes
or in different runs compare on exactly the same faces. Writes ``comparison.csv``, ``comparison.md`` and
``test_predictions.csv`` into the output folder; with ``--by`` an attribute of the faces (gender, age band, ...),
every model's scores on each of its groups too (``by_<attribute>.csv`` and ``.png``, a section of the markdown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from affectkit.config import CLASS_NAMES, load_config
from affectkit.data.archives import data_config
from affectkit.data.datamodule import PreparedData
from affectkit.data.face_tables import check_grouping, face_attributes
from affectkit.errors import AffectkitError
from affectkit.evaluation.comparison import comparison_lines, interval_cells, markdown_table, predictions_table
from affectkit.evaluation.evaluator import Predictions, evaluation_device, face_groups, score
from affectkit.evaluation.significance import GroupGap, PairedComparison, paired_comparison
from affectkit.evaluation.subgroups import models_by_group, resampled_units, write_group_scores
from affectkit.models.io import load_model
from affectkit.models.metadata import model_paths, read_metadata
from affectkit.pipeline.external import read_predictions
from affectkit.pipeline.run import (
    check_split,
    evaluation_data,
    saved_predictions,
    scored_model,
    scored_name,
    seen_in_training,
    split_faces,
    training_source,
)
from affectkit.progress import reporter, silenced
from affectkit.runs import model_splits

SCORED = ("accuracy", "macro_f1", "balanced_accuracy")


@dataclass
class ComparisonResult:
    table: pd.DataFrame  # one row per model: its scores on the shared faces, with their intervals
    comparisons: list[tuple[str, PairedComparison]]  # the first model against each other, by name
    paths: dict[str, Path]  # csv, markdown, predictions, and by <attribute> (csv and plot) for each of --by
    notes: list[str]
    by: dict[str, pd.DataFrame] = field(default_factory=dict)  # attribute -> each model's scores by its groups
    gaps: dict[str, dict[str, GroupGap | None]] = field(default_factory=dict)  # attribute -> model -> widest gap


@dataclass
class _Scored:
    name: str
    ids: np.ndarray
    predicted: np.ndarray  # class ids
    labels: np.ndarray
    groups: np.ndarray | None
    metrics: dict
    seen: int
    faces: tuple[PreparedData, np.ndarray]  # the data read as this model reads it, and the faces scored


def _score_model(saved: Path, export: Path | None, prepared: PreparedData, data: Path, split: str,
                 splits: Path | None) -> _Scored:
    """A saved model's (or its ``export``'s: :func:`scored_model`) scores on ``prepared``, ``data`` read as it reads
    it (:func:`evaluation_data`)."""
    meta = read_metadata(saved)
    model = None if export is not None else load_model(saved, device=evaluation_device())[0]
    positions, pred = saved_predictions(saved, model, prepared, split, data, export)
    metrics = score(pred, prepared, positions)
    if metrics["expression"] is None:
        raise AffectkitError(f"{export or saved} gives no expression scores on {data} (a valence/arousal model, or no "
                             "face with a class): `affectkit evaluate` scores its valence and arousal.")
    seen = seen_in_training(saved, prepared, data, splits) if split == "all" else 0
    return _Scored(scored_name(meta, export), _face_ids(prepared, positions), pred.probs.argmax(axis=1),
                   prepared.expression[positions], face_groups(prepared, positions), metrics, seen,
                   (prepared, positions))


def _face_ids(prepared: PreparedData, positions: np.ndarray) -> np.ndarray:
    return prepared.splits["id"].astype(str).to_numpy()[positions]


def _faces_alone(data: Path, split: str, splits: Path | None) -> tuple[PreparedData, np.ndarray]:
    """The faces other tools' predictions are scored on where no saved model reads them: every face of ``data``
    (``all``), the split a ``splits`` file names, or the data set's own; their labels alone, no image decoded."""
    check_split(split)
    config = load_config(None, data_config(data))
    prepared = split_faces(data, config, split, splits, f"{data} gives no {split} split of its own, and no saved "
                                                        "model brings its run's", pixels=False)
    positions = prepared.positions("test" if split == "all" else split)
    if len(positions) == 0:
        raise AffectkitError(f"The {split} split of {data} is empty.")
    return prepared, positions


def _read_predictions(csv: Path, faces: tuple[PreparedData, np.ndarray]) -> np.ndarray:
    """Another tool's classes for ``faces`` (:func:`read_predictions`)."""
    prepared, positions = faces
    return read_predictions(csv, [prepared.records[i] for i in positions], prepared.index.root)


def _score_predictions(csv: Path, predicted: np.ndarray, faces: tuple[PreparedData, np.ndarray]) -> _Scored:
    """Another tool's classes for ``faces`` (:func:`_read_predictions`), scored as a model's are."""
    prepared, positions = faces
    as_model = Predictions.from_probs(np.eye(len(CLASS_NAMES))[predicted], np.zeros((len(predicted), 2)),
                                      predicts_valence_arousal=False)
    metrics = score(as_model, prepared, positions)
    if metrics["expression"] is None:
        raise AffectkitError(f"No face compared has an expression class: {csv}'s classes cannot be scored.")
    return _Scored(csv.stem, _face_ids(prepared, positions), predicted, prepared.expression[positions],
                   face_groups(prepared, positions), metrics, 0, faces)


def _align(scored: list[_Scored], split: str) -> None:
    """Check that every model scored the first one's faces, and put each one's predictions in the first's order."""
    first = scored[0]
    for other in scored[1:]:
        if set(other.ids) != set(first.ids):
            common = len(set(other.ids) & set(first.ids))
            raise AffectkitError(
                f"{first.name} and {other.name} score different faces on the {split} split ({len(first.ids)} and "
                f"{len(other.ids)}, {common} in common): each uses the splits.csv of its own run. Give --splits FILE "
                "to score both on one split, or --split all for every face of the data.")
    order = {face: i for i, face in enumerate(first.ids)}
    for other in scored[1:]:
        predicted = np.empty_like(other.predicted)
        predicted[[order[face] for face in other.ids]] = other.predicted
        other.ids, other.predicted = first.ids, predicted


def _unique_names(scored: list[_Scored], files: list[Path]) -> None:
    """Two models of one architecture (or a model and a predictions file) share a name: each is named by its file
    (``files``: each one's weights or predictions file) instead."""
    names = [s.name for s in scored]
    if len(set(names)) < len(names):
        for s, path in zip(scored, files):
            s.name = f"{s.name} ({path})"


def _splits_of(models: list[Path], data: Path, splits: Path | None) -> list[Path | None]:
    """The splits file each saved model's faces are read by: ``splits`` where given; a model that a run trained, its
    own (None: :func:`evaluation_data` finds it); a model no run wrote (a ready-made one), that of the first model a
    run trained on ``data``, so that it is scored on that model's faces."""
    if splits is not None:
        return [splits] * len(models)
    own = [model_splits(model_paths(model)[0]) for model in models]
    borrowed = next((found for found, model in zip(own, models)
                     if found.is_file() and training_source(model) == Path(data).resolve()), None)
    return [None if found.is_file() else borrowed for found in own]


def compare_saved(models: list[Path], data: Path, out: Path, split: str = "test", splits: Path | None = None,
                  quiet: bool = False, predictions: list[Path] | None = None, by: Sequence[str] = (),
                  attributes: Path | None = None) -> ComparisonResult:
    """Score every saved model of ``models`` on the same faces of ``data`` (``split`` as ``evaluate`` picks it, or
    ``splits``) and set the first against each of the others (:func:`paired_comparison`); files into ``out``.
    ``predictions``: CSV files of other tools' classes for those faces (:func:`read_predictions`), compared alike;
    without ``models``, two or more of them are compared on every face (``all``), on the split ``splits`` names, or on
    the data set's own ``split``. ``by``: attributes of the faces (columns of ``attributes``, by default the data
    set's manifest) by whose groups each is scored too (:func:`group_scores`)."""
    models, predictions = [Path(m) for m in models or []], [Path(p) for p in predictions or []]
    if len(models) + len(predictions) < 2:
        raise AffectkitError("compare needs two or more to compare: saved models, --predictions of other tools, or "
                             "both (the first, a model where there is one, is set against the others).")
    with silenced(quiet):
        check_grouping(by, attributes)
        # The faces as the first model reads them (or, without a model, their labels): their attributes are read
        # before any model is scored, so that a missing table or column fails at once.
        faces_alone = None if models else _faces_alone(Path(data), split, splits)
        resolved = [scored_model(model) for model in models]  # (saved model, export scored or None) of each
        each_splits = _splits_of([saved for saved, _ in resolved], Path(data), splits)
        first_data = (evaluation_data(resolved[0][0], Path(data), split, each_splits[0]) if models
                      else faces_alone[0])
        attribute_values = face_attributes(data, attributes, by, first_data)
        # The faces every model is scored on are the first's: other tools' files are read against them before any
        # model runs, so that a file that cannot be scored fails at once.
        faces_scored = faces_alone or (first_data, first_data.positions("test" if split == "all" else split))
        if len(faces_scored[1]) == 0:
            raise AffectkitError(f"The {split} split of {data} is empty.")
        tools = [_read_predictions(csv, faces_scored) for csv in predictions]
        scored = []
        for i, (path, (saved, export)) in enumerate(zip(models, resolved)):
            reporter().show(f"Scoring {path} on the {split} split of {data}")
            prepared = first_data if i == 0 else evaluation_data(saved, Path(data), split, each_splits[i])
            scored.append(_score_model(saved, export, prepared, Path(data), split, each_splits[i]))
        if scored:
            _align(scored, split)
        scored += [_score_predictions(csv, predicted, faces_scored) for csv, predicted in zip(predictions, tools)]
        _unique_names(scored, [export or model_paths(saved)[0] for saved, export in resolved] + predictions)
        first = scored[0]
        faces = predictions_table(first.ids, first.labels, first.groups, {s.name: s.predicted for s in scored})
        rows = []
        for s in scored:
            e, intervals = s.metrics["expression"], s.metrics["expression"]["intervals"]
            rows.append({"model": s.name, "faces": e["n"],
                         **{key: e[key] for key in SCORED},
                         **{f"{key}_{end}": intervals[key][i] for key in SCORED for i, end in enumerate(("low", "high"))
                            if key in intervals}})
        table = pd.DataFrame(rows)
        comparisons = [(s.name, paired_comparison(first.labels, first.predicted, s.predicted, first.groups))
                       for s in scored[1:]]
        notes = [f"{s.name}: {s.seen} of these faces trained it or chose its checkpoint (its train and val splits): "
                 "its scores are no test scores." for s in scored if s.seen]
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "comparison.csv", "markdown": out / "comparison.md",
                 "predictions": out / "test_predictions.csv"}
        table.to_csv(paths["csv"], index=False, float_format="%.4f")
        faces.to_csv(paths["predictions"], index=False)
        resampled = resampled_units(first.groups)
        compared = f"{len(scored)} models" if models else f"{len(scored)} tools' predictions"
        lines = [f"# affectkit compare: {compared} on `{data}`", "",
                 f"Faces: the {split} split, {len(faces)} faces, the same for every model "
                 f"(`{paths['predictions'].name}` holds each model's class for each)"
                 + (". Each model reads them as it was trained to, with its stored temperature and flip setting, as "
                    "`affectkit evaluate` scores it" if models else "")
                 + "".join(f"; {s.name} is read from `{csv}`, another tool's classes for the same faces"
                           for s, csv in zip(scored[len(models):], predictions)) + ".", "",
                 "## Scores", "", markdown_table(interval_cells(table[["model", "faces", *SCORED]], table)), "",
                 f"In brackets, each score's 95% bootstrap interval, drawing {resampled} with replacement.", "",
                 *comparison_lines(comparisons, first.name, "faces", first_label="the first", others="model"),
                 *([f"- Warning: {note}" for note in notes] + [""] if notes else [])]
        by_group, gaps = {}, {}
        positions = first.faces[1]
        for attribute, values in attribute_values.items():
            tables, gaps[attribute] = models_by_group(values[positions], first.labels, first.groups,
                                                      {s.name: (s.predicted, None) for s in scored})
            by_group[attribute], written, section = write_group_scores(out, attribute, tables, gaps[attribute],
                                                                       resampled)
            paths |= written
            lines += section
        paths["markdown"].write_text("\n".join(lines))
        return ComparisonResult(table, comparisons, paths, notes, by_group, gaps)


__all__ = ["ComparisonResult", "compare_saved"]
