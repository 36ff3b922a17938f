"""The spec's main pipeline (cell 8), top to bottom: analyse, split, train each model, evaluate, compare, report;
and the evaluation of a saved model on a data set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config
from affectkit.data.analysis import analyze, dataset_summary
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.face_tables import attribute_file_stem, check_grouping, face_attributes
from affectkit.data.likeness import copies_of, grey_thumbnails
from affectkit.data.reader import read_dataset, reader_options
from affectkit.data.splits import read_thumbnails, thumbnails_beside
from affectkit.errors import AffectkitError
from affectkit.evaluation import ensemble
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.card import seen_warning, write_model_card
from affectkit.evaluation.comparison import choice_score, comparison_row, write_comparison, write_report
from affectkit.evaluation.evaluator import (
    Predictions,
    evaluation_device,
    face_groups,
    inference_ms_per_image,
    metrics_table,
    predict_split,
    score,
    score_by_group,
    write_model_report,
)
from affectkit.evaluation.metrics import (
    VA_DIMENSIONS,
    compute_metrics,
    expression_score,
    log_loss,
    prior_collapse,
    unlearnt_classes,
    unlearnt_note,
)
from affectkit.evaluation.plots import plot_group_scores
from affectkit.evaluation.selective import class_thresholds_held_out, thresholds_held_out
from affectkit.evaluation.significance import (
    CONFIDENCE,
    PairedCCC,
    PairedComparison,
    paired_ccc_comparison,
    paired_comparison,
)
from affectkit.evaluation.subgroups import group_record, models_by_group, resampled_units, write_group_scores
from affectkit.inference.backends import OnnxBackend
from affectkit.inference.predictor import (
    input_normalization,
    model_files,
    model_metadata,
    preprocess,
    served_outputs,
)
from affectkit.models.factory import ENSEMBLE_NAME, ENSEMBLE_PREFIX, count_parameters, resolve_spec, trainable_spec
from affectkit.models.io import load_model
from affectkit.models.metadata import (
    config_from_metadata,
    export_label,
    export_tag,
    is_export,
    model_paths,
    predicts_expression,
    predicts_valence_arousal,
    read_metadata,
    trained_classes,
)
from affectkit.models.registry import is_pretrained
from affectkit.progress import reporter, silenced
from affectkit.runs import RunFolder, model_splits
from affectkit.training.fusion import assemble_ensemble
from affectkit.training.hardware import check_hardware
from affectkit.training.trainer import train_model

ENSEMBLE = ENSEMBLE_NAME
STACKING = "Stacking"
EVALUATION_SPLITS = ("test", "val", "train", "all")


@dataclass
class Evaluated:
    metrics: dict
    test: Predictions
    val: Predictions  # calibrated, for the stacking ensemble
    model: torch.nn.Module


def _prepare_run(data: Path, run: RunFolder, config: Config) -> tuple[PreparedData, dict]:
    check_hardware(config)
    run.root.mkdir(parents=True, exist_ok=True)
    config.to_yaml(run.config)
    index = read_dataset(data, **reader_options(config))
    reporter().note(index.describe())
    prepared = prepare_data(data, config, splits_path=run.splits, quarantine_path=run.quarantine, index=index)
    analyze(index, run.root, seed=config.seed, splits=prepared.splits)
    summary = dataset_summary(index, prepared.splits)
    reporter().show(f"{len(index.records)} valid samples ({len(index.rejected)} quarantined); {summary['split']}")
    return prepared, summary


def record_evaluation(model_path: Path, pred: Predictions, data: PreparedData, positions: np.ndarray, split: str,
                      out: RunFolder, source: Path, training_data: dict | None = None,
                      seen_in_training: int = 0, groups: dict[str, np.ndarray] | None = None,
                      export: Path | None = None) -> tuple[dict, dict[str, Path]]:
    """Score ``pred``, the saved model's predictions of ``positions`` (the ``split`` of ``data``, read from
    ``source``; ``seen_in_training`` of them trained or selected it), and write its metrics, confusion matrix and
    reliability diagram into ``out`` (suffixed ``_<split>`` for other splits than test) and the evaluation (and
    ``training_data``) into its card. ``groups``: attribute -> each face of ``data``'s group, scored group by group
    too (``metrics["by"]``, ``<Model>_by_<attribute>.csv`` / ``.png``). ``export``: the model's export whose own
    answers ``pred`` are (its files are named by its kind: ``<Model>_int8_ONNX_metrics.json``)."""
    meta = read_metadata(model_path)
    metrics = score(pred, data, positions)
    if export is not None:
        metrics["export"] = export.name
    if metrics["expression"] is not None:
        metrics["expression"]["temperature"] = float(meta.get("temperature", 1.0))
        if recorded := meta.get("validation_coverage"):  # the thresholds --target-accuracy reads, tried here
            labels = data.expression[positions]
            classed = labels != NO_EXPRESSION
            metrics["expression"]["validation_thresholds"] = thresholds_held_out(pred.probs[classed], labels[classed],
                                                                                 recorded["curve"])
            if recorded.get("by_class"):  # --per-class-thresholds's, against the overall one
                metrics["expression"]["class_thresholds"] = class_thresholds_held_out(
                    pred.probs[classed], labels[classed], recorded, meta["class_names"])
    metrics["split"] = split
    if seen_in_training:
        metrics["seen_in_training"] = seen_in_training
    if unlearnt := unlearnt_classes(metrics["expression"], trained_classes(meta), CLASS_NAMES):
        metrics["expression"]["unlearnt_classes"] = unlearnt
    name, by_paths = evaluation_name(meta, split, export), {}
    if groups:
        metrics["by"] = {attribute: _evaluation_by_group(attribute, values[positions], pred, data, positions, name,
                                                         meta["display_name"], out, by_paths)
                         for attribute, values in groups.items()}
    paths = write_model_report(name, metrics, pred, data, positions, out.root) | by_paths
    paths["card"] = write_model_card(model_path, training_data=training_data, metrics=metrics, data=source,
                                     split=split, export=export)
    return metrics, paths


def evaluation_name(meta: dict, split: str, export: Path | None = None) -> str:
    """What an evaluation's files are named by: the model's name, with the kind of export where an export was scored
    and the split where it is not the test split."""
    kind = "" if export is None else f"_{export_tag(export)}"
    return meta["display_name"] + kind + ("" if split == "test" else f"_{split}")


def split_positions(data: PreparedData, split: str, source: Path) -> np.ndarray:
    """The positions of ``split`` of ``data`` (read from ``source``; every face for "all"), refused where empty."""
    positions = data.positions("test" if split == "all" else split)
    if len(positions) == 0:
        raise AffectkitError(f"The {split} split of {source} is empty.")
    return positions


def scored_model(model_path: Path) -> tuple[Path, Path | None]:
    """The saved model whose description ``model_path`` is scored with, and the export to score where
    ``model_path`` is one (``.onnx``, ``.int8.onnx``, ``.ort``, ``.int8.ort``): the file itself, as ONNX Runtime
    runs it where it is deployed, with its model's ``.json`` beside it (its splits, temperature and card)."""
    if not is_export(model_path):
        return Path(model_path), None
    export = Path(model_path)
    saved, described_by, _ = model_files(export)
    if not export.is_file():
        raise AffectkitError(f"{export} does not exist.")
    if not described_by.is_file():
        raise AffectkitError(f"{export} has no {described_by.name} beside it: an export is scored with the "
                             "description of the model it came from (its splits, temperature and card); put "
                             f"{described_by.name} beside it.")
    if OnnxBackend(export).exported_from_other_weights(saved):
        raise AffectkitError(f"{export} was exported from other weights than {saved.name} beside it (trained again "
                             f"since?): {described_by.name} does not describe it. Export it again: affectkit export "
                             f"{saved}.")
    return saved, export


def scored_name(meta: dict, export: Path | None) -> str:
    """A scored model's name in tables: its own, or that of its export (``MobileNetV2 (int8 ONNX)``)."""
    return meta["display_name"] + ("" if export is None else f" ({export_label(export)})")


def saved_predictions(model_path: Path, model: torch.nn.Module | OnnxBackend | None, data: PreparedData, split: str,
                      source: Path, export: Path | None = None) -> tuple[np.ndarray, Predictions]:
    """The positions of ``split`` of ``data`` (``source``; every face for "all") and the saved model's predictions
    of them as every later use of it predicts: with its stored temperature and flip setting; given ``export``
    (:func:`scored_model`), that file's own predictions (:func:`export_predictions`; ``model``: its session where
    the caller opened one to score many sets of faces, else None)."""
    meta = read_metadata(model_path)
    positions = split_positions(data, split, source)
    if export is not None:
        return positions, export_predictions(export, data, positions,
                                             backend=model if isinstance(model, OnnxBackend) else None)
    return positions, predict_split(model, data, positions, temperature=float(meta.get("temperature", 1.0)),
                                    tta_flip=config_from_metadata(meta).tta_flip)


def export_predictions(export: Path, data: PreparedData, positions: np.ndarray, batch_size: int = 64,
                       backend: OnnxBackend | None = None) -> Predictions:
    """The answers of a model's export itself (ONNX Runtime running the ``.onnx``, ``.int8.onnx`` or ``.ort`` file;
    ``backend``: a session of it already open) for ``positions`` of ``data``, as predict and serve give them: at its
    model's temperature and flip setting."""
    backend = backend or OnnxBackend(export)
    meta = model_metadata(export, backend)
    mean, std = input_normalization(meta)
    temperature = float(meta.get("temperature") or 1.0)
    tta_flip = config_from_metadata(meta).tta_flip
    logits, va = [], []
    batches = range(0, len(positions), batch_size)
    for start in reporter().track(batches, total=len(batches), description=f"Predicting ({export.name})"):
        chunk = positions[start : start + batch_size]
        order = np.argsort(np.argsort(chunk))  # read in sorted order, as predict_split reads, then put back
        batch = preprocess(list(np.asarray(data.images[np.sort(chunk)])), int(meta["input_size"]), mean, std)
        out_logits, valence, arousal = served_outputs(backend, batch, tta_flip)
        logits.append(np.asarray(out_logits, dtype=np.float32)[order] / temperature)
        va.append(np.stack([valence, arousal], 1).astype(np.float32)[order])
    return Predictions(np.concatenate(logits), np.concatenate(va), predicts_expression(meta),
                       predicts_valence_arousal(meta))


def _score(model_path: Path, model: torch.nn.Module | None, data: PreparedData, split: str, out: RunFolder,
           source: Path, training_data: dict | None = None, seen_in_training: int = 0,
           groups: dict[str, np.ndarray] | None = None,
           export: Path | None = None) -> tuple[dict, Predictions, dict[str, Path]]:
    """Score a saved model, or its ``export``, on ``split`` of ``data`` (``source``) as :func:`saved_predictions`
    predicts it (``record_evaluation`` writes what it found, with the count of those faces it was trained or selected
    on, where there are any; ``groups``: see :func:`record_evaluation`)."""
    meta = read_metadata(model_path)
    positions, pred = saved_predictions(model_path, model, data, split, source, export)
    metrics, paths = record_evaluation(model_path, pred, data, positions, split, out, source, training_data,
                                       seen_in_training, groups, export)
    if warning := prior_collapse(metrics["expression"], CLASS_NAMES):
        reporter().note(f"Warning: {meta['display_name']} {warning}")
    if unlearnt := (metrics["expression"] or {}).get("unlearnt_classes"):
        reporter().note(f"Note: {unlearnt_note(unlearnt)}")
    return metrics, pred, paths


def _evaluate_trained(best_path: Path, data: PreparedData, run: RunFolder) -> Evaluated:
    """Calibrate a freshly trained model on the validation split, then score it on the test split."""
    model, meta = load_model(best_path, device=evaluation_device())
    val = data.positions("val")
    val_pred = predict_split(model, data, val, tta_flip=config_from_metadata(meta).tta_flip)
    temperature = calibrate(best_path, val_pred, data.expression[val])
    metrics, test, _ = _score(best_path, model, data, "test", run, data.index.given_as,
                              training_data=dataset_summary(data.index, data.splits))
    reporter().show(metrics_table(meta["display_name"], metrics))
    return Evaluated(metrics, test, val_pred.tempered(temperature), model)


def train_one(name: str, data: Path, out: Path, config: Config, weights: Path | None = None, pretrained: bool = False,
              resume: bool = False, quiet: bool = False, evaluate: bool = True) -> Path:
    """Train one model on ``data`` into the run folder ``out`` and, with ``evaluate``, score it on the test split;
    returns the best model's weights."""
    with silenced(quiet):
        trainable_spec(name, config.use_light_models)  # a typo fails before the data set is read
        _check_weight_files({name: weights} if weights is not None else {}, [name])
        run = RunFolder(out)
        prepared, summary = _prepare_run(data, run, config)
        result = train_model(name, prepared, out, config, weights=weights, pretrained=pretrained, resume=resume)
        if evaluate:
            _evaluate_trained(result.best_path, prepared, run)
        else:
            write_model_card(result.best_path, training_data=summary)
        return result.best_path


def run_pipeline(data: Path, out: Path, models: list[str], config: Config, weights: dict[str, Path] | None = None,
                 pretrained: bool = False, resume: bool = False, quiet: bool = False,
                 random_start_control: bool = False, by: Sequence[str] = (), attributes: Path | None = None) -> Path:
    """Every model of ``models`` trained on one split of ``data`` and evaluated, an averaging and a stacking
    ensemble where there are several, the comparison and ``report.md`` (its path is returned).

    ``random_start_control``: every model that starts from pretrained weights is trained a second time from a
    random start, same data, split and budget, and the report sets the two test accuracies side by side. ``by``:
    attributes of the faces (columns of ``attributes``, by default the data set's manifest) by whose groups every
    row is scored on the test faces too (``by_<attribute>.csv`` / ``.png``, a section of the report)."""
    with silenced(quiet):
        _check_model_list(models, config)  # fail on a typo before hours of training
        _check_weight_files(weights or {}, models)
        check_grouping(by, attributes)
        run = RunFolder(out)
        prepared, summary = _prepare_run(data, run, config)
        rows, members, names, notes, controls, remarks = [], [], [], [], [], []
        val, test = prepared.positions("val"), prepared.positions("test")
        groups = face_attributes(data, attributes, by, prepared)  # a missing table or column fails before training
        # Each row's class and valence/arousal for each test face, for the comparisons face by face.
        test_classes, test_valence_arousal = [], []
        trained = {}  # from the run's shared start (no weights file): a model or fusion branch trains once
        best_paths = []
        for name in models:
            reporter().rule(f"[bold]{resolve_spec(name, config.use_light_models).display_name}")
            result = train_model(name, prepared, out, config, weights=(weights or {}).get(name),
                                 pretrained=pretrained, resume=resume, trained=trained)
            if name not in (weights or {}):
                trained.update({r.name: r for r in (result, *result.branches)})
            evaluated = _evaluate_trained(result.best_path, prepared, run)
            meta = read_metadata(result.best_path)
            rows.append(comparison_row(result.name, evaluated.metrics, result.parameters, result.train_time_s,
                                       inference_ms_per_image(evaluated.model, config.img_size), meta["backbone"],
                                       meta.get("initial_weights", ""), **_validation_scores(evaluated.val,
                                                                                              prepared, val)))
            test_classes.append(evaluated.test.probs.argmax(axis=1))
            test_valence_arousal.append(evaluated.test.valence_arousal)
            notes.append(_model_note(result.name, meta))
            members.append(evaluated)
            names.append(result.name)
            best_paths.append(result.best_path)
            if random_start_control and is_pretrained(meta.get("initial_weights", "")):
                controls.append(_random_start_control(name, prepared, run, config, evaluated, meta, resume))
        if len(members) > 1:
            combined, ensemble_rows, saved = _ensembles(models, members, best_paths, rows, prepared, run, config,
                                                        remarks)
            if saved:
                notes.append(f"{ENSEMBLE} (`{run.weights(ENSEMBLE).name}`): the mean of {', '.join(names)}'s "
                             "calibrated probabilities and of their valence/arousal, one model to predict with, "
                             "export and serve")
            rows += ensemble_rows
            for label, pred in combined.items():
                names.append(label)
                test_classes.append(pred.probs.argmax(axis=1))
                test_valence_arousal.append(pred.valence_arousal)
        usable = [run.weights(row["model"]).is_file() for row in rows]
        chosen, comparisons = _chosen_against_the_rest(rows, usable, test_classes, test_valence_arousal, prepared,
                                                       test)
        for remark in (_unsaved_best_remark(rows, usable, chosen), _tie_remark(rows, usable)):
            if remark:
                remarks.append(remark)
                reporter().note(remark)
        write_comparison([{**row, "chosen": row["model"] == chosen} for row in rows], run)
        sections = [line for attribute, values in groups.items()
                    for line in _scores_by_group(attribute, values[test], rows, test_classes, test_valence_arousal,
                                                 prepared, test, run)]
        if chosen is not None and run.weights(chosen).is_file():
            reporter().note(f"The model to use, chosen on the validation faces: {chosen} ({run.weights(chosen)})")
            _map_chosen(run, chosen, prepared, data, remarks, test_classes[names.index(chosen)], config.report_maps)
        return write_report(run, summary, rows, names, notes, transfer=controls, chosen=chosen,
                            comparisons=comparisons, remarks=remarks, sections=sections,
                            map_method=config.report_maps)


def _map_chosen(run: RunFolder, chosen: str, prepared: PreparedData, data: Path, remarks: list[str],
                predicted: np.ndarray, method: str) -> None:
    """Where the chosen model looks, for the report: its mean map by ``method`` (a ``report_maps`` setting) by class
    over the first test faces of each class (``affectkit explain``; ``predicted``: its class for each test face, as
    the run scored it); a remark instead where it cannot be mapped. Nothing for a valence/arousal model, where no
    test face has a class, or for ``method`` "none"."""
    from affectkit.pipeline.explain import REPORTED_PER_CLASS, explain_split

    if method == "none":
        return
    classed = (prepared.expression[prepared.positions("test")] != NO_EXPRESSION).any()
    if not classed or not predicts_expression(read_metadata(run.weights(chosen))):
        return
    try:
        explain_split(run.weights(chosen), prepared, "test", data, run.root, prefix=f"{chosen}_",
                      per_class=REPORTED_PER_CLASS, predicted=predicted, method=method)
    except AffectkitError as error:
        remarks.append(f"No map of where {chosen} looks: {error}")
        reporter().note(remarks[-1])


def _scores_by_group(attribute: str, values: np.ndarray, rows: list[dict], test_classes: list[np.ndarray],
                     test_valence_arousal: list[np.ndarray], data: PreparedData, test: np.ndarray,
                     run: RunFolder) -> list[str]:
    """Each row's scores on each group of the test faces by ``attribute`` (``values``: each face's group), from its
    answers (``test_classes``, ``test_valence_arousal``, in the order of ``rows``), into the run folder; returns
    the report's section."""
    people = face_groups(data, test)
    answers = {row["model"]: (classes if pd.notna(row["accuracy"]) else None,  # a valence/arousal model's: no answer
                              valence_arousal if pd.notna(row["valence_ccc"]) or pd.notna(row["arousal_ccc"]) else None)
               for row, classes, valence_arousal in zip(rows, test_classes, test_valence_arousal)}
    tables, gaps = models_by_group(values, data.expression[test], people, answers, data.valence_arousal[test])
    return write_group_scores(run.root, attribute, tables, gaps, resampled_units(people))[2]


def _ensembles(models: list[str], members: list[Evaluated], member_paths: list[Path], member_rows: list[dict],
               data: PreparedData, run: RunFolder, config: Config,
               remarks: list[str]) -> tuple[dict[str, Predictions], list[dict], bool]:
    """The averaging ensemble (:func:`_saved_ensemble`, or the members' averaged outputs where it cannot be saved)
    and the stacking of the members' test outputs, with their comparison rows, and whether the averaging was saved;
    a stacking the validation faces cannot fit is left out, with a sentence in ``remarks``."""
    val = data.positions("val")
    saved = _saved_ensemble(models, member_paths, data, run, config)
    if saved is not None:
        combined = {ENSEMBLE: saved.test}
        rows = [comparison_row(ENSEMBLE, saved.metrics, count_parameters(saved.model),
                               sum(r["train_time_s"] for r in member_rows),
                               inference_ms_per_image(saved.model, config.img_size),
                               "+".join(r["backbone"] for r in member_rows), "members'",
                               **_validation_scores(saved.val, data, val))]
    else:
        for stale in model_paths(run.best(ENSEMBLE)):  # an earlier run's, in this folder: not this row's model
            stale.unlink(missing_ok=True)
        combined = {ENSEMBLE: ensemble.average([m.test for m in members])}
        rows = [_ensemble_row(ENSEMBLE, combined[ENSEMBLE], member_rows, data, run,
                              _validation_scores(ensemble.average([m.val for m in members]), data, val))]
    # The stacking is fit on the validation faces, so they cannot judge it: it has no validation score.
    try:
        combined[STACKING] = ensemble.stack([m.val for m in members], [m.test for m in members],
                                            data.expression[val], data.valence_arousal[val])
    except AffectkitError as exc:  # a given validation split of one class: the rest of the run stands
        remarks.append(f"No {STACKING} row: it is fit on the validation faces, and {exc}")
        reporter().note(remarks[-1])
    else:
        rows.append(_ensemble_row(STACKING, combined[STACKING], member_rows, data, run, {}))
    return combined, rows, saved is not None


def _check_model_list(models: list[str], config: Config) -> None:
    """Refuse an unknown model, or one named twice (``resnet50`` and ``RESNET50`` too), whose rows the comparison
    could not tell apart."""
    if not models:
        raise AffectkitError("--models names no model: give one or more, e.g. --models custom_cnn,resnet50.")
    seen: dict[str, str] = {}
    for name in models:
        display = trainable_spec(name, config.use_light_models).display_name
        if display in seen:
            said = (f"{name} twice" if seen[display] == name
                    else f"{display} twice ({seen[display]} and {name} are both {display})")
            raise AffectkitError(f"--models names {said}: each model is trained once and is one row of the "
                                 "comparison.")
        seen[display] = name


def _check_weight_files(weights: dict[str, Path], models: list[str]) -> None:
    """Refuse, before the data set is read, a weights file that is not there or one for a model not trained."""
    for name, path in weights.items():
        if name not in models:
            raise AffectkitError(f"--weights {name}={path}: {name} is not one of the models trained "
                                 f"({', '.join(models)}).")
        if not Path(path).is_file():
            raise AffectkitError(f"Weights file {path} (for {name}) does not exist.")


def _saved_ensemble(models: list[str], member_paths: list[Path], data: PreparedData, run: RunFolder,
                    config: Config) -> Evaluated | None:
    """The run's averaging ensemble saved as one model (``best_Ensemble``: the mean of the members' calibrated
    probabilities and of their valence/arousal, in one graph), calibrated and scored as every trained model is, so
    that the row the report may choose is a file to predict with, export and serve. None where a member is itself a
    fusion (its branches cannot nest in the ensemble's graph) or is named twice."""
    key = ENSEMBLE_PREFIX + "+".join(models)
    try:
        resolve_spec(key, config.use_light_models)
    except AffectkitError:  # a member that is a fusion, or one model named twice
        return None
    stem = run.best(ENSEMBLE)
    assemble_ensemble(key, member_paths, config, stem)
    return _evaluate_trained(model_paths(stem)[0], data, run)


def _validation_scores(pred: Predictions, data: PreparedData, val: np.ndarray) -> dict[str, float]:
    """``val_accuracy``, the share of the classed validation faces ``pred`` gets right, ``val_log_loss``, the mean
    negative log-probability it gives their classes, and ``val_va_ccc``, its mean valence and arousal CCC there; NaN
    where no face has a class or valence/arousal."""
    labels = data.expression[val]
    classed = labels != NO_EXPRESSION
    accuracy = val_log_loss = float("nan")
    if pred.predicts_expression and classed.any():
        probs = pred.probs[classed]
        accuracy = float((probs.argmax(axis=1) == labels[classed]).mean())
        val_log_loss = log_loss(probs, labels[classed])
    cccs = []
    if pred.predicts_valence_arousal:
        metrics = compute_metrics(pred.probs, np.full(len(val), NO_EXPRESSION), pred.valence_arousal,
                                  data.valence_arousal[val])
        cccs = [metrics[dim]["ccc"] for dim in VA_DIMENSIONS if metrics.get(dim)]
    return {"val_accuracy": accuracy, "val_log_loss": val_log_loss,
            "val_va_ccc": float(np.mean(cccs)) if cccs else float("nan")}


def _tied_best_on_val(rows: list[dict], among: list[bool]) -> list[int]:
    """The indices of the rows ``among`` them with the best validation score by :func:`choice_score`, the chosen
    one first: where the score is accuracy (which moves in steps of one face, so models tie on a small validation
    split), the one with the lowest validation log-loss."""
    by = choice_score(rows)
    scores = np.array([row[by] if ok else np.nan for row, ok in zip(rows, among)], dtype=float)
    if np.isnan(scores).all():
        return []
    tied = [int(i) for i in np.flatnonzero(scores == np.nanmax(scores))]
    if by == "val_accuracy":
        tied.sort(key=lambda i: (np.nan_to_num(rows[i].get("val_log_loss", np.nan), nan=np.inf), i))
    return tied


def _best_on_val(rows: list[dict], among: list[bool]) -> int | None:
    """The index of the row ``among`` them chosen on the validation faces (:func:`_tied_best_on_val`); None where
    none has a validation score."""
    tied = _tied_best_on_val(rows, among)
    return tied[0] if tied else None


def _tie_remark(rows: list[dict], usable: list[bool]) -> str | None:
    """A sentence where the chosen row tied with others on validation accuracy, naming what broke the tie."""
    tied = _tied_best_on_val(rows, usable)
    if len(tied) < 2 or choice_score(rows) != "val_accuracy":
        return None
    first, others = rows[tied[0]], ", ".join(rows[i]["model"] for i in tied[1:])
    return (f"{first['model']} tied with {others} on validation accuracy ({first['val_accuracy']:.4f}); it was chosen "
            f"for its lower validation log-loss ({first['val_log_loss']:.4f}).")


def _unsaved_best_remark(rows: list[dict], usable: list[bool], chosen: str | None) -> str | None:
    """A sentence where the best row on the validation faces is no saved model (an ensemble of a fusion, whose
    branches cannot nest in its graph), so another was chosen; None otherwise."""
    best = _best_on_val(rows, [True] * len(rows))
    if best is None or usable[best]:
        return None
    instead = (f"the model to use is {chosen}, the best saved one on them" if chosen is not None
               else "no saved model has a validation score to choose by")
    return (f"{rows[best]['model']} did best on the validation faces, but is no saved model (a member is itself a "
            f"fusion, whose branches cannot nest in its graph): {instead}.")


def _chosen_against_the_rest(rows: list[dict], usable: list[bool], test_classes: list[np.ndarray],
                             test_valence_arousal: list[np.ndarray], data: PreparedData, test: np.ndarray
                             ) -> tuple[str | None, list[tuple[str, PairedComparison | PairedCCC]]]:
    """The row a user would pick, the best on the validation faces by :func:`choice_score` (accuracy where a row
    has a test accuracy, else valence and arousal CCC) among the ``usable`` ones (saved models: a row of averaged
    outputs alone cannot be predicted with), and its test answers set against each other row's, face by face
    (:func:`paired_comparison`, :func:`paired_ccc_comparison`; none where the test faces have too few ratings to
    compare by); no row where none has the validation score."""
    first = _best_on_val(rows, usable)
    if first is None:
        return None, []
    by = choice_score(rows)
    labels, truth = data.expression[test], data.valence_arousal[test]
    if by == "val_accuracy":
        compare, answers = partial(paired_comparison, labels), test_classes
    elif (np.isfinite(truth).sum(axis=0) >= 3).any():
        compare, answers = partial(paired_ccc_comparison, truth), test_valence_arousal
    else:
        return rows[first]["model"], []
    groups = face_groups(data, test)
    return rows[first]["model"], [(row["model"], compare(answers[first], other, groups))
                                  for i, (row, other) in enumerate(zip(rows, answers)) if i != first]


def _random_start_control(name: str, data: PreparedData, run: RunFolder, config: Config, pretrained: Evaluated,
                          meta: dict, resume: bool) -> dict:
    """The same model, data, split and budget from a random start: what the pretrained start is worth, with the
    difference in test accuracy compared face by face (:func:`paired_comparison`). Evaluated like every trained
    model (calibrated on val, scored on test once), with its reports and card in ``RUN/random_start/``."""
    reporter().rule(f"[bold]{meta['display_name']} from a random start (control)")
    result = train_model(name, data, run.random_start.root, config, resume=resume)
    control = _evaluate_trained(result.best_path, data, run.random_start)
    row = {"model": meta["display_name"], "backbone": meta["backbone"],
           "pretrained_accuracy": expression_score(pretrained.metrics, "accuracy"),
           "random_start_accuracy": expression_score(control.metrics, "accuracy"),
           "pretrained_start": meta.get("initial_weights", ""),
           "random_start_train_time_s": round(result.train_time_s, 1)}
    test = data.positions("test")
    if pretrained.metrics["expression"] is not None:  # some test face has a class
        compared = paired_comparison(data.expression[test], pretrained.test.probs.argmax(axis=1),
                                     control.test.probs.argmax(axis=1), face_groups(data, test))
        row.update({f"difference ({CONFIDENCE:.0%} interval)": f"{compared.difference:+.4f} "
                                                                f"[{compared.low:+.3f}, {compared.high:+.3f}]",
                    "McNemar p": f"{compared.p_value:.3g}", "the pretrained start is": compared.verdict()})
    return row


def _model_note(name: str, meta: dict) -> str:
    """What ran under a name and where its weights started: a light model says whose place it took."""
    stand_in = f", the light stand-in for {meta['stands_in_for']}" if meta.get("stands_in_for") else ""
    return f"{name} (backbone `{meta['backbone']}`{stand_in}): {meta.get('initial_weights_detail', '')}"


def _ensemble_row(label: str, pred: Predictions, member_rows: list[dict], data: PreparedData, run: RunFolder,
                  val_scores: dict[str, float]) -> dict:
    """Score a combination of the members on the test split; its cost is the members' sum."""
    positions = data.positions("test")
    metrics = score(pred, data, positions)
    write_model_report(label, metrics, pred, data, positions, run.root)
    reporter().show(metrics_table(label, metrics))
    return comparison_row(label, metrics, int(sum(r["params_millions"] for r in member_rows) * 1e6),
                          sum(r["train_time_s"] for r in member_rows),
                          sum(r["inference_ms_per_image"] for r in member_rows),
                          "+".join(r["backbone"] for r in member_rows), "members'", **val_scores)


def evaluation_data(model_path: Path, data: Path, split: str, splits: Path | None) -> PreparedData:
    """``data`` read and cached as the saved model reads faces, split by ``splits`` (default: the ``splits.csv``
    the model was trained on), or whole where ``split`` is "all"."""
    check_split(split)
    weights, _ = model_paths(model_path)
    config = config_from_metadata(read_metadata(model_path))
    source = training_source(model_path)
    if splits is None and split != "all" and source not in (None, Path(data).resolve()):
        # Another data set than the model's: its splits.csv names faces of its own data, and a split drawn here
        # would be a random part of faces it never saw, so the data set splits itself.
        return split_faces(data, config, split, None, f"{data} is not the data set the model was trained on "
                                                      f"({source}) and gives no {split} split of its own")
    if splits is None and split != "all" and source is None and not model_splits(weights).is_file():
        # No run behind the model (a ready-made one): the data set's own split, as for another data set.
        return split_faces(data, config, split, None, f"{data} gives no {split} split of its own and "
                                                      f"{weights.name} no run's splits.csv")
    return split_faces(data, config, split, splits or model_splits(weights), "")


def check_split(split: str) -> None:
    if split not in EVALUATION_SPLITS:
        raise AffectkitError(f"--split must be test, val, train or all, not {split!r}.")


def split_faces(data: Path, config: Config, split: str, splits: Path | None, unsplit: str,
                pixels: bool = True) -> PreparedData:
    """``data`` read as ``config`` reads it: every face (``split`` "all"), split by the ``splits`` file, or, without
    one, split as the data set splits itself (``unsplit``: the sentence refusing a data set that gives no such
    split). Without ``pixels``, no image is decoded (:func:`prepare_data`)."""
    if split == "all":
        return prepare_data(data, config, use_all=True, pixels=pixels)
    if splits is not None:
        if not splits.is_file():
            raise AffectkitError(f"{splits} not found: give --splits, or --split all for every image of {data}.")
        return prepare_data(data, config, splits_path=splits, pixels=pixels)
    index = read_dataset(data, **reader_options(config))
    if split not in {record.split for record in index.records}:
        raise AffectkitError(f"{unsplit}: --split all scores every face of it, --splits FILE a split a splits.csv "
                             "names.")
    return prepare_data(data, config.model_copy(update={"max_samples": None}), index=index, pixels=pixels)


def _evaluation_by_group(attribute: str, values: np.ndarray, pred: Predictions, data: PreparedData,
                         positions: np.ndarray, name: str, model: str, folder: RunFolder,
                         paths: dict[str, Path]) -> dict:
    """One model's scores on each group of the faces at ``positions`` by ``attribute`` (``values``: each one's group)
    into ``<name>_by_<attribute>.csv`` / ``.png`` (added to ``paths``), as the metrics JSON records them."""
    folder.root.mkdir(parents=True, exist_ok=True)
    stem = folder.root / f"{name}_{attribute_file_stem(attribute)}"
    table, gap = score_by_group(pred, data, positions, values)
    table.to_csv(paths.setdefault(f"by {attribute}", stem.with_suffix(".csv")), index=False, float_format="%.4f")
    plot_group_scores({model: table}, attribute, paths.setdefault(f"by {attribute} plot", stem.with_suffix(".png")))
    return group_record(table, gap)


def training_source(model_path: Path) -> Path | None:
    """The data set the saved model was trained on, where its description records it."""
    source = (read_metadata(model_path).get("training_data") or {}).get("source")
    return None if source is None else Path(source).resolve()


def seen_in_training(model_path: Path, data: PreparedData, source: Path, splits: Path | None = None) -> int:
    """How many faces of ``data`` (read whole from ``source``) trained the saved model or chose its checkpoint: the
    faces of its train and val splits (``splits``, default the ``splits.csv`` it was trained on), by their id where
    ``source`` is the data set it was trained on, and by their content wherever the split records it (a copy of
    that data set read elsewhere, another data set holding some of its images); where that file is gone and
    ``source`` is the data set, the sizes of those splits its description records."""
    same_source = training_source(model_path) == Path(source).resolve()
    splits = splits or model_splits(model_paths(model_path)[0])
    if not splits.is_file():
        if not same_source:
            return 0
        sizes = read_metadata(model_path)["training_data"].get("split_sizes") or {}
        return min(len(data.records), sizes.get("train", 0) + sizes.get("val", 0)) if sizes else len(data.records)
    table = pd.read_csv(splits, dtype=str, keep_default_na=False)
    fit = table[table["split"].isin(("train", "val"))]
    ids = set(fit["id"]) if same_source else set()
    # Splits written before the digest column was kept are read by id alone.
    digests = set(fit["digest"]) - {""} if "digest" in fit else set()
    seen = np.array([record.id in ids or record.digest in digests for record in data.records], dtype=bool)
    return int(seen.sum()) + _seen_saved_again(thumbnails_beside(splits), set(fit["id"]), data, ~seen)


def _seen_saved_again(thumbnails_file: Path, fit: set[str], data: PreparedData, unseen: np.ndarray) -> int:
    """How many of ``data``'s faces at ``unseen`` are a face the model was fit on saved again (ids ``fit``, whose
    grey thumbnails ``thumbnails_file`` holds); 0 where the split has no such file (saved before faces were compared)
    or ``data`` no pixels."""
    if not thumbnails_file.is_file() or not data.images.size or not unseen.any():
        return 0
    ids, grey = read_thumbnails(thumbnails_file)
    alike = copies_of(grey_thumbnails(data.images, np.flatnonzero(unseen)), grey[np.isin(ids, list(fit))])
    return int((alike >= 0).sum())


def evaluate_saved(model_path: Path, data: Path, split: str, splits: Path | None, out: Path | None,
                   quiet: bool = False, by: Sequence[str] = (), attributes: Path | None = None) -> dict:
    """Evaluate a saved model on a split of ``data`` (the run's ``splits.csv``) or on all of it; returns the
    metrics and writes them, the plots and the card's evaluation into ``out`` (default: beside the model). Where
    "all" of ``data`` holds faces the model was trained or selected on, ``metrics["seen_in_training"]`` counts
    them, the card marks the row, and a warning says so. ``by``: attributes of the faces (columns of ``attributes``,
    by default the data set's manifest) to score each of their groups by, into ``metrics["by"]`` and
    ``<Model>_by_<attribute>.csv`` / ``.png``.

    ``model_path`` may be an export of the model (``.onnx``, ``.int8.onnx``, ``.ort``, ``.int8.ort``): then the
    file itself is scored, as ONNX Runtime runs it where it is deployed, with the description of the model it came
    from (``<Model>.json``, beside it: its splits, temperature and card); its files are named by its kind
    (``<Model>_int8_ONNX_metrics.json``, default: beside the export) and the card gets a row of its own."""
    with silenced(quiet):
        model_path, export = scored_model(model_path)
        prepared = evaluation_data(model_path, data, split, splits)
        groups = face_attributes(data, attributes, by, prepared)  # a missing table or column fails before scoring
        meta = read_metadata(model_path)
        model = None if export is not None else load_model(model_path, device=evaluation_device())[0]
        weights, _ = model_paths(model_path)
        seen = seen_in_training(model_path, prepared, data, splits) if split == "all" else 0
        folder = out or (weights.parent if export is None else export.parent)
        metrics, _, paths = _score(model_path, model, prepared, split, RunFolder(folder), data,
                                   seen_in_training=seen, groups=groups, export=export)
        if seen:
            reporter().note(f"Warning: {seen_warning(seen, metrics['n'])}")
        calibrated = meta.get("calibrated_on") or {}
        overlapping = calibrated.get("split") == split or "all" in (calibrated.get("split"), split)
        if calibrated.get("data") == str(Path(data).resolve()) and overlapping:
            reporter().note(f"Note: its temperature was fit on the {calibrated['split']} faces of this data set "
                            "(`affectkit calibrate`): where they are scored here, its calibration error (ECE, NLL) "
                            "reads better than on new faces; its accuracy is untouched.")
        reporter().note(f"Wrote {', '.join(str(path) for path in paths.values())}")
        return metrics
