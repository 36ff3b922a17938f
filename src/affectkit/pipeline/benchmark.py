"""``affectkit benchmark``: classic baselines and affectkit's recommended recipe, trained and scored on one split.

Rows: HOG + linear SVM, a linear probe on each pretrained backbone the registry ships (two ImageNet backbones and the
FER2013 mini-Xception; see :mod:`affectkit.evaluation.baselines`), FER2013's own classifier as shipped (no training:
what an off-the-shelf expression model gives), the recipe's two networks (the ``recommended`` profile,
``configs/recommended.yaml``: MobileNetV2 from its ImageNet weights and MiniXception from its FER2013 weights, each
fine-tuned), the recipe itself (the ``fusion`` model made of those two, fused by one weight chosen on
val: object features and expression features err on different faces), the recipe fused with HOG + SVM, and
any further models asked for, all on the same split (the data's own where it has one, else the usual stratified one;
``splits.csv``). Every model is selected on the validation split and scores the test split once, at the end.

Writes ``benchmark.csv``, ``benchmark.md`` and ``benchmark.png`` into the output folder, beside ``splits.csv``,
``quarantine.csv``, ``config.yaml`` and the trained models (``models/``, each with its test metrics, confusion
matrix, reliability diagram and model card, as ``affectkit run`` leaves its models).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectkit.config import CLASS_NAMES, MAP_METHODS, NO_EXPRESSION, READING_KEYS, Config, load_config
from affectkit.data.analysis import dataset_summary
from affectkit.data.archives import data_config
from affectkit.data.datamodule import PreparedData, available_cores, cache_workers, prepare_data
from affectkit.data.face_tables import check_grouping, face_attributes
from affectkit.data.reader import DatasetIndex, read_dataset, reader_options
from affectkit.data.splits import SPLITS, split_description
from affectkit.errors import AffectkitError
from affectkit.evaluation.baselines import (
    BASELINES,
    PROBE_MODELS,
    BaselineResult,
    BaselineTask,
    hog_svm,
    linear_probe,
    ready_made,
)
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.comparison import (
    comparison_lines,
    interval_cells,
    markdown_table,
    predictions_table,
    table_number,
)
from affectkit.evaluation.ensemble import fit_late_fusion
from affectkit.evaluation.evaluator import Predictions, evaluation_device, face_groups, predict_split
from affectkit.evaluation.metrics import compute_metrics, expression_score, prior_collapse
from affectkit.evaluation.plots import plot_benchmark
from affectkit.evaluation.significance import (
    CONFIDENCE,
    PairedComparison,
    ccc_interval,
    paired_comparison,
    score_intervals,
)
from affectkit.evaluation.significance import SCORES as INTERVAL_SCORES
from affectkit.evaluation.subgroups import models_by_group, resampled_units, write_group_scores
from affectkit.models.factory import AffectModel, resolve_spec
from affectkit.models.io import load_model
from affectkit.models.metadata import fusion_branches, fusion_criterion
from affectkit.pipeline.explain import REPORTED_PER_CLASS, explain_split
from affectkit.pipeline.run import record_evaluation
from affectkit.progress import reporter, silenced
from affectkit.runs import RunFolder
from affectkit.training.hardware import check_hardware
from affectkit.training.trainer import TrainResult, branch_config, train_model

# One model, two branches: MobileNetV2 (ImageNet) and MiniXception (FER2013), fused by a weight chosen on val;
# `--recipe fusion:<model>+<model>[+...]` benchmarks another fusion in its place.
RECIPE_MODEL = "fusion"
RECIPE_PROFILE = "recommended"
# --quick: a budget for a first look at a data set, not for numbers to report.
QUICK = {"epochs": 2, "fine_tune_epochs": 4, "fine_tune_min_steps": 0, "early_stopping_patience": 4}
TEST_PROBS = "test_probs"  # a row's class probabilities of the test faces, until the table is written
TEST_VA = "test_valence_arousal"  # and its valence/arousal of them
HONEST_SELECTION = "Every model is selected on the validation split; the test split is scored once, at the end."
CCC_SCORES = ("valence_ccc", "arousal_ccc")
COLUMNS = ["key", "model", "kind", "backbone", "accuracy", "macro_f1", "balanced_accuracy", "valence_ccc",
           "arousal_ccc", "train_time_s", "inference_ms_per_image", "selected_on_val",
           *(f"{score}_{end}" for score in (*INTERVAL_SCORES, *CCC_SCORES) for end in ("low", "high"))]
SHOWN = ["model", "accuracy", "macro_f1", "balanced_accuracy", "valence_ccc", "arousal_ccc", "train_time_s",
         "inference_ms_per_image"]


@dataclass
class BenchmarkResult:
    table: pd.DataFrame  # one row per method, COLUMNS
    paths: dict[str, Path]  # csv, markdown, chart, splits, config; recipe_model (one split, not --folds)
    notes: list[str]  # rows that could not run here or were left out, and why


def benchmark_config(config_file: Path | None = None, sets: dict | None = None, data: Path | None = None,
                     quick: bool = False, profile: str | None = None, **options) -> Config:
    """The recipe (the ``recommended`` profile), or instead the packaged ``profile`` and / or the YAML file
    ``config_file`` on top of the defaults; then ``--quick``, ``--set`` pairs and explicit options.

    From the data folder's ``affectkit.yaml`` only how to read the data is taken (``READING_KEYS``: layout,
    class_map, group_pattern, label_pattern, ...), where ``config_file`` does not set it: its training settings are
    the data set's own profile, and a benchmark compares fixed recipes."""
    config = load_config(config_file, profile=profile or (None if config_file else RECIPE_PROFILE))
    if (card := data_config(data)) is not None:
        data_set, defaults = load_config(data=card), Config()
        config = config.with_values({key: getattr(data_set, key) for key in READING_KEYS
                                     if getattr(config, key) == getattr(defaults, key)})
    if quick:
        config = config.override(**QUICK)
    return config.override(**(sets or {})).override(**options)


def _scores(metrics: dict) -> dict:
    return {**{key: expression_score(metrics, key) for key in ("accuracy", "macro_f1", "balanced_accuracy")},
            **{f"{dim}_ccc": metrics[dim]["ccc"] if metrics.get(dim) else float("nan")
               for dim in ("valence", "arousal")}}


def _baseline_row(result: BaselineResult, data: PreparedData) -> dict:
    test = data.positions("test")
    # Without a class to learn, a baseline's probabilities are uniform placeholders: not scored.
    labels = data.expression[test] if data.trains_expression else np.full(len(test), NO_EXPRESSION)
    # A baseline without valence/arousal outputs (FER2013's classifier) has no CCC, where the data has them or not.
    truth = data.valence_arousal[test] if np.isfinite(result.valence_arousal).any() else np.nan
    metrics = compute_metrics(result.probs, labels, result.valence_arousal, np.broadcast_to(truth, (len(test), 2)))
    return {"key": result.key, "model": result.name, "kind": "baseline", "backbone": result.backbone,
            **_scores(metrics), "train_time_s": result.train_time_s,
            "inference_ms_per_image": result.inference_ms_per_image, "selected_on_val": result.selected,
            TEST_PROBS: result.probs, TEST_VA: result.valence_arousal}


@dataclass
class TrainedRow:
    row: dict
    name: str  # the trained model's display name
    val: Predictions  # calibrated, as the test predictions are
    test: Predictions
    trained: TrainResult | None = None  # the training that made it, where this run trained it
    warning: str | None = None  # where it gave one class to nearly every test face (metrics.prior_collapse)


def _calibrated_predictions(model: AffectModel, data: PreparedData, config: Config,
                            saved: Path) -> tuple[Predictions, Predictions, float, float]:
    """Validation predictions, calibrated by a temperature fit on them (stored with the ``saved`` model), then the
    test split's, once; returns both, the temperature and the inference milliseconds per test image."""
    val, test = data.positions("val"), data.positions("test")
    val_pred = predict_split(model, data, val, tta_flip=config.tta_flip)
    temperature = calibrate(saved, val_pred, data.expression[val])
    start = time.perf_counter()
    pred = predict_split(model, data, test, temperature=temperature, tta_flip=config.tta_flip)
    return val_pred.tempered(temperature), pred, temperature, (time.perf_counter() - start) / len(test) * 1000


def _recorded(saved: Path, pred: Predictions, data: PreparedData, folder: RunFolder) -> tuple[dict, str | None]:
    """The test scores of a trained model's one prediction of the test split, written beside it as `run` writes its
    models' (metrics, confusion matrix, reliability diagram) and into its card with the data it learnt from; and a
    warning where it gave one class to nearly every face."""
    metrics, _ = record_evaluation(saved, pred, data, data.positions("test"), "test", folder.models,
                                   data.index.given_as, training_data=dataset_summary(data.index, data.splits))
    return metrics, prior_collapse(metrics["expression"], CLASS_NAMES)


def _epoch_selected(meta: dict, epochs: int, config: Config) -> str:
    best = meta.get("best", {})
    return f"epoch {best.get('epoch', '?')} of {epochs} (phase {best.get('phase', '?')}) by {config.selection_metric}"


def _flip(config: Config) -> str:
    return "; flip test-time augmentation" if config.tta_flip else ""


def _trained_row(key: str, kind: str, data: PreparedData, folder: RunFolder, config: Config,
                 resume: bool = False) -> TrainedRow:
    """Train ``key`` with ``config`` (the kept checkpoint chosen on val by ``config.selection_metric``; ``resume``:
    go on from an interrupted run's checkpoint, or take the model it finished), fit the temperature on val, then
    predict the test split once."""
    result = train_model(key, data, folder.models.root, config, pretrained=config.pretrained, resume=resume)
    model, meta = load_model(result.best_path, device=evaluation_device())
    val_pred, pred, temperature, inference_ms = _calibrated_predictions(model, data, config, result.best_path)
    weights = meta.get("initial_weights", "")
    name = f"{result.name} ({kind})" if kind == "recipe network" else result.name
    metrics, warning = _recorded(result.best_path, pred, data, folder)
    row = {"key": f"{kind.replace(' ', '_')}:{key}", "model": name, "kind": kind,
           "backbone": meta["backbone"] + (f" ({weights})" if weights else ""),
           **_scores(metrics), "train_time_s": result.train_time_s,
           "inference_ms_per_image": inference_ms,
           "selected_on_val": f"{_epoch_selected(meta, len(result.history), config)}; temperature {temperature:.3f}"
                              + _flip(config), TEST_PROBS: pred.probs, TEST_VA: pred.valence_arousal}
    return TrainedRow(row, result.name, val_pred, pred, result, warning)


def _data_notes(data: PreparedData, config: Config) -> list[str]:
    """What ``benchmark.md`` says of how the data's labels were used."""
    if not data.trains_expression:
        return ["No training face has an expression class: every row is a valence/arousal model (the baselines' "
                "ridge regressions alone; the recipe's networks and their fusion, its weights chosen on val by "
                "valence/arousal MSE), scored by valence/arousal."]
    notes = []
    if config.label_distribution and data.expression_distribution is not None:
        notes.append("The trained models learnt each face's annotators' vote distribution (label_distribution); the "
                     "baselines, its most voted class. Every row is scored by the most voted class.")
    if (data.expression == NO_EXPRESSION).any():
        notes.append("Faces with valence/arousal only (no class) trained the valence/arousal heads of the trained "
                     "models and the baselines' ridge regressions, no classifier; the expression scores leave them "
                     "out, the valence/arousal scores count them.")
    return notes


def _recipe_rows(data: PreparedData, folder: RunFolder, config: Config, recipe: str,
                 resume: bool = False) -> list[TrainedRow]:
    """The recipe's networks, each trained and scored as the model it is, then the fusion model made of them
    (its fusion chosen on val), scored the same way."""
    branches = resolve_spec(recipe, config.use_light_models).branches
    networks = [_trained_row(branch.key, "recipe network", data, folder, branch_config(branch, config), resume)
                for branch in branches]
    # The networks just trained are the fusion's branches: it only puts them together.
    result = train_model(recipe, data, folder.models.root, config, pretrained=config.pretrained,
                         trained={n.name: n.trained for n in networks})
    model, meta = load_model(result.best_path, device=evaluation_device())
    val_pred, pred, temperature, inference_ms = _calibrated_predictions(model, data, config, result.best_path)
    parts = fusion_branches(meta["fusion"])
    criterion, fused = fusion_criterion(meta["fusion"])
    selected = (f"its networks as in their rows; fusion weights {' / '.join(f'{n} {w:g}' for n, w, _, _ in parts)} "
                f"(network temperatures {' / '.join(f'{t:.3f}' for _, _, t, _ in parts)}), chosen on val by "
                f"{criterion} ({fused:.3f}; the networks alone "
                f"{' / '.join(f'{alone:.3f}' for _, _, _, alone in parts)}); temperature {temperature:.3f}"
                + _flip(config))
    name = f"affectkit recipe ({result.name})"
    metrics, warning = _recorded(result.best_path, pred, data, folder)
    row = {"key": "recipe", "model": name, "kind": "recipe",
           "backbone": " + ".join(n.row["backbone"] for n in networks),
           **_scores(metrics), "train_time_s": result.train_time_s,
           "inference_ms_per_image": inference_ms, "selected_on_val": selected, TEST_PROBS: pred.probs,
           TEST_VA: pred.valence_arousal}
    return [*networks, TrainedRow(row, name, val_pred, pred, trained=result, warning=warning)]


def _fused(first: TrainedRow, second: TrainedRow, data: PreparedData, key: str, name: str,
           kind: str) -> TrainedRow:
    """``first``'s and ``second``'s calibrated probabilities fused by one weight chosen on val by log-loss;
    valence/arousal ``first``'s."""
    val, test = data.positions("val"), data.positions("test")
    fusion = fit_late_fusion(first.val.probs, second.val.probs, data.expression[val])
    w = fusion.weight
    fused = {}
    for split, a, b in (("val", first.val, second.val), ("test", first.test, second.test)):
        fused[split] = Predictions.from_probs(fusion.apply(a.probs, b.probs), a.valence_arousal)
    metrics = compute_metrics(fused["test"].probs, data.expression[test], fused["test"].valence_arousal,
                              data.valence_arousal[test])
    selected = (f"weight {w:g} on {second.name}'s log-probabilities (temperature {fusion.temperature:.3f}), chosen on "
                f"val by log-loss ({fusion.val_nll:.3f}; {first.name} alone {fusion.val_nll_first:.3f})")
    row = {"key": key, "model": name, "kind": kind, "backbone": f"{first.row['backbone']} + {second.row['backbone']}",
           **_scores(metrics), "selected_on_val": selected, TEST_PROBS: fused["test"].probs,
           TEST_VA: fused["test"].valence_arousal,
           **{cost: first.row[cost] + second.row[cost] for cost in ("train_time_s", "inference_ms_per_image")}}
    return TrainedRow(row, name, fused["val"], fused["test"])


def _hog_member(hog: BaselineResult) -> TrainedRow:
    """HOG + SVM as fit on train alone (the train + val refit has seen the val labels a fusion is chosen on)."""
    def predictions(probs: np.ndarray) -> Predictions:
        return Predictions.from_probs(probs, np.full((len(probs), 2), np.nan, dtype=np.float32))

    costs = {"backbone": hog.backbone, "train_time_s": hog.train_time_s,
             "inference_ms_per_image": hog.inference_ms_per_image}
    return TrainedRow(costs, "HOG + SVM (fit on train only)", predictions(hog.train_only_val_probs),
                      predictions(hog.train_only_test_probs))


def _check(baselines: tuple[str, ...], models: list[str], config: Config,
           recipe: str) -> tuple[list[str], list[str]]:
    """Fail on a typo before any work; the further models to train (neither the recipe nor one of its networks,
    which have their rows already) and a note for each left out that way."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise AffectkitError(f"Unknown baseline {unknown[0]!r}; the baselines are {', '.join(BASELINES)}.")
    recipe_spec = resolve_spec(recipe, config.use_light_models)
    if not recipe_spec.branches:
        raise AffectkitError(f"The benchmark's recipe is a fusion model ({RECIPE_MODEL}, or "
                             f"fusion:<model>+<model>[+...]), not {recipe!r}: name single models with --models.")
    networks = {branch.display_name for branch in recipe_spec.branches}
    extra, notes = [], []
    for key in dict.fromkeys(k.strip() for k in models if k.strip()):
        spec = resolve_spec(key, config.use_light_models)
        if spec.display_name == recipe_spec.display_name:
            continue
        if spec.display_name in networks:
            # Same network, same settings, same start: training it again would only repeat its row.
            stand_in = f" (the light stand-in for {spec.stands_in_for})" if spec.stands_in_for else ""
            notes.append(f"--models {key} is the recipe's {spec.display_name}{stand_in}: its row is "
                         f"\"{spec.display_name} (recipe network)\".")
            continue
        extra.append(key)
    return extra, notes


def _prepare(data: Path, folder: RunFolder, config: Config, index: DatasetIndex | None
             ) -> tuple[DatasetIndex, PreparedData]:
    if index is None:
        index = read_dataset(data, **reader_options(config))
        reporter().note(index.describe())
    prepared = prepare_data(data, config, splits_path=folder.splits, quarantine_path=folder.quarantine, index=index)
    reporter().show(f"{len(index.records)} valid samples ({len(index.rejected)} quarantined); "
                    f"{split_description(prepared.splits, index)}")
    for split in SPLITS:
        if len(prepared.positions(split)) == 0:
            raise AffectkitError(f"The {split} split of {data} is empty (see {folder.splits}): a benchmark needs "
                                 "train, val and test images.")
    return index, prepared


def run_benchmark(data: Path, out: Path, config: Config | None = None, models: list[str] | None = None,
                  baselines: tuple[str, ...] = BASELINES, quiet: bool = False,
                  recipe: str = RECIPE_MODEL, resume: bool = False, index: DatasetIndex | None = None,
                  by: Sequence[str] = (), attributes: Path | None = None) -> BenchmarkResult:
    """Baselines, the recipe (the fusion model ``recipe`` trained with ``config``, by default
    :func:`benchmark_config`) and ``models`` (more model keys, trained with the same config) on one split of
    ``data`` (its ``index``, where it was read already); files into ``out``. ``resume``: an interrupted benchmark in
    ``out`` goes on where its training stopped, on the same split (the baselines, minutes at most, are fit again).
    ``by``: attributes of the faces (columns of ``attributes``, by default the data set's manifest) by whose groups
    every row is scored on the test faces too (``by_<attribute>.csv`` / ``.png``, a section of ``benchmark.md``)."""
    with silenced(quiet):
        data, folder = Path(data), RunFolder(Path(out))
        config = config or benchmark_config(data=data)
        check_hardware(config)
        extra, notes = _check(tuple(baselines), list(models or []), config, recipe)
        check_grouping(by, attributes)
        folder.root.mkdir(parents=True, exist_ok=True)
        config_path = config.to_yaml(folder.config)
        index, prepared = _prepare(data, folder, config, index)
        notes += _data_notes(prepared, config)
        groups = face_attributes(data, attributes, by, prepared)  # a missing table or column fails before training

        rows, hog = [], None
        if baselines:
            task = BaselineTask.from_prepared(prepared, seed=config.seed, cache_dir=config.cache_dir,
                                              workers=cache_workers(config))
            if "hog_svm" in baselines:
                hog = hog_svm(task)
                rows.append(_baseline_row(hog, prepared))
            if "linear_probe" in baselines:
                for key in PROBE_MODELS:
                    try:
                        rows.append(_baseline_row(linear_probe(task, key, config), prepared))
                    except AffectkitError as exc:  # the backbone's pretrained weights are not on this machine
                        notes.append(f"Linear probe on {resolve_spec(key, True).display_name} skipped: {exc}")
            if "fer2013" in baselines:
                if prepared.trains_expression:
                    rows.append(_baseline_row(ready_made(task, "fer2013"), prepared))
                else:
                    notes.append("FER2013's classifier as shipped left out: no face here has an expression class.")
        recipe_rows = _recipe_rows(prepared, folder, config, recipe, resume)
        rows.extend(r.row for r in recipe_rows)
        if hog is not None and prepared.trains_expression:  # fused by expression log-loss
            rows.append(_fused(recipe_rows[-1], _hog_member(hog), prepared, "fusion:recipe+hog_svm",
                               "affectkit recipe + HOG", "fusion").row)
        extra_rows = [_trained_row(key, "model", prepared, folder, config, resume) for key in extra]
        rows.extend(r.row for r in extra_rows)
        notes += [f"{r.row['model']} {r.warning}" for r in (*recipe_rows, *extra_rows) if r.warning]

        sections = _recipe_maps(recipe_rows[-1], prepared, data, folder, notes, config.report_maps)
        predictions = predictions_per_face(rows, prepared)
        table = pd.DataFrame([{**row, **bounds} for row, bounds in zip(rows, _intervals(rows, prepared))],
                             columns=COLUMNS)
        paths = {"csv": folder.benchmark_table, "markdown": folder.benchmark_report, "chart": folder.benchmark_chart,
                 "splits": folder.splits, "config": config_path,
                 "recipe_model": recipe_rows[-1].trained.best_path}
        table.to_csv(paths["csv"], index=False, float_format="%.4f")
        if predictions is not None:
            paths["predictions"] = folder.test_predictions
            predictions.to_csv(paths["predictions"], index=False)
        n_test = len(prepared.positions("test"))
        whiskers = f"; bars: {CONFIDENCE:.0%} bootstrap interval" if _has_intervals(table) else ""
        plot_benchmark(table, paths["chart"], f"Benchmark on the test split ({n_test} images of {data.name}{whiskers})")
        for attribute, values in groups.items():
            _, written, section = _scores_by_group(attribute, values[prepared.positions("test")], rows, prepared,
                                                   folder)
            paths |= written
            sections += section
        paths["markdown"].write_text("\n".join([_markdown(table, index, prepared, data, folder, notes, predictions),
                                                *sections]))
        return BenchmarkResult(table, paths, notes)


def _recipe_maps(recipe: TrainedRow, data: PreparedData, source: Path, folder: RunFolder,
                 notes: list[str], method: str) -> list[str]:
    """``benchmark.md``'s section on where the recipe looks: its mean map by ``method`` (a ``report_maps`` setting)
    by class over the first test faces of each class (``affectkit explain``); none for ``method`` "none" or where no
    test face has a class, a note where the recipe cannot be mapped."""
    if method == "none":
        return []
    if not (data.expression[data.positions("test")] != NO_EXPRESSION).any() or not data.trains_expression:
        return []
    try:
        found = explain_split(recipe.trained.best_path, data, "test", source, folder.root, prefix="recipe_",
                              per_class=REPORTED_PER_CLASS, predicted=recipe.test.probs.argmax(1), method=method)
    except AffectkitError as error:
        notes.append(f"No map of where the recipe looks: {error}")
        return []
    return ["## Where the recipe looks", "", f"![where the recipe looks]({found.paths['plot'].name})", "",
            f"Each class's mean test face under the recipe's mean {MAP_METHODS[method]} map for that class "
            f"(`report_maps: {method}`, `affectkit explain`, "
            f"up to {REPORTED_PER_CLASS} test faces a class; per class `{found.paths['csv'].name}`, per face "
            f"`{found.paths['faces'].name}`): where it finds the evidence for each class. A map on the background, "
            "the hair or a mark rather than the brows, eyes and mouth is a shortcut that no score above can show. "
            "The maps choose nothing.", ""]


def _scores_by_group(attribute: str, values: np.ndarray, rows: list[dict], data: PreparedData,
                     folder: RunFolder) -> tuple[pd.DataFrame, dict[str, Path], list[str]]:
    """Each row's scores on each group of the test faces by ``attribute`` (``values``: each face's group), into
    ``folder`` (:func:`write_group_scores`)."""
    test = data.positions("test")
    people = face_groups(data, test)
    answers = {row["model"]: (np.asarray(row[TEST_PROBS]).argmax(axis=1) if data.trains_expression else None,
                              row[TEST_VA] if any(np.isfinite(row[score]) for score in CCC_SCORES) else None)
               for row in rows}
    tables, gaps = models_by_group(values, data.expression[test], people, answers, data.valence_arousal[test])
    return write_group_scores(folder.root, attribute, tables, gaps, resampled_units(people))


def predictions_per_face(rows: list[dict], data: PreparedData) -> pd.DataFrame | None:
    """One line per test face: its id, its class (blank where it has none) and each row's class for it (named by
    the row's model); None where no face has a class (a valence/arousal set)."""
    test = data.positions("test")
    labels = data.expression[test]
    if not data.trains_expression or not (labels != NO_EXPRESSION).any():
        return None
    return predictions_table(data.splits["id"].astype(str).to_numpy()[test], labels, face_groups(data, test),
                             {row["model"]: np.asarray(row[TEST_PROBS]).argmax(axis=1) for row in rows})


def _has_intervals(table: pd.DataFrame) -> bool:
    return bool(table.filter(like="_low").notna().any().any())


def _people(predictions: pd.DataFrame) -> np.ndarray | None:
    return predictions["person"].astype(str).to_numpy() if "person" in predictions else None


def resampling(data: PreparedData) -> str:
    """How the intervals resampled the test faces, in words."""
    test = data.positions("test")
    groups = face_groups(data, test)
    if groups is None:
        return f"the {len(test)} test faces resampled with replacement"
    return (f"the {len(test)} test faces resampled by person ({len(set(groups))} people, drawn with replacement with "
            "all their faces: a person's faces are not independent)")


def _class_ids(names: pd.Series) -> np.ndarray:
    ids = {name: i for i, name in enumerate(CLASS_NAMES)}
    return np.array([ids.get(name, NO_EXPRESSION) for name in names.fillna("")], dtype=np.int64)


def _intervals(rows: list[dict], data: PreparedData) -> list[dict[str, float]]:
    """For each row, the bootstrap interval of each expression score and of the valence and arousal CCC it has
    (``<score>_low`` / ``_high``), over the test faces drawn as :func:`resampling` says."""
    test = data.positions("test")
    labels, truth, groups = data.expression[test], data.valence_arousal[test], face_groups(data, test)
    out = []
    for row in rows:
        predicted = np.asarray(row[TEST_PROBS]).argmax(axis=1)
        found = score_intervals(labels, predicted, groups) if data.trains_expression else {}
        for column, score in enumerate(CCC_SCORES):
            if np.isfinite(row[score]) and (ccc := ccc_interval(row[TEST_VA][:, column], truth[:, column], groups)):
                found[score] = ccc
        out.append({f"{score}_{end}": value for score, (low, high) in found.items()
                    for end, value in (("low", low), ("high", high))})
    return out


def recipe_comparisons(predictions: pd.DataFrame, table: pd.DataFrame) -> list[tuple[str, PairedComparison]]:
    """The recipe against every other row of ``table`` on the test faces of ``predictions`` (paired)."""
    recipe = table.loc[table["key"] == "recipe", "model"]
    if recipe.empty:
        return []
    labels = _class_ids(predictions["expression"])
    first = _class_ids(predictions[recipe.iloc[0]])
    return [(model, paired_comparison(labels, first, _class_ids(predictions[model]), _people(predictions)))
            for model in table["model"] if model != recipe.iloc[0] and model in predictions]


def _markdown(table: pd.DataFrame, index: DatasetIndex, data: PreparedData, source: Path, folder: RunFolder,
              notes: list[str], predictions: pd.DataFrame | None) -> str:
    test = data.positions("test")
    labels = data.expression[test]
    counts = np.bincount(labels[labels != NO_EXPRESSION], minlength=len(CLASS_NAMES))
    classes = ", ".join(f"{name} {n}" for name, n in zip(CLASS_NAMES, counts) if n)
    if (labels == NO_EXPRESSION).any():
        unclassed = int((labels == NO_EXPRESSION).sum())
        classes = (f"{classes}; {unclassed} with valence/arousal only" if classes
                   else f"none ({unclassed} faces with valence/arousal only)")
    hardware = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{available_cores()} CPU cores"
    lines = [
        "# affectkit benchmark",
        "",
        f"Data: `{source}`, {index.describe()}.",
        "",
        f"Split: {split_description(data.splits, index)} (`{folder.splits.name}`). Test classes: {classes}.",
        "",
        "## Results on the test split",
        "",
        markdown_table(score_cells(table)),
        "",
        f"![benchmark]({folder.benchmark_chart.name})",
        "",
        *([] if not _has_intervals(table) else [
            f"In brackets, the {CONFIDENCE:.0%} bootstrap interval of each score (expression scores and CCC), over "
            f"{resampling(data)}: how far another draw of as many could move it."
            + ("" if predictions is None else
               f" Each row's class for each test face: `{folder.test_predictions.name}`."), ""]),
        *(comparison_lines(recipe_comparisons(predictions, table), "The recipe", "test faces")
          if predictions is not None else []),
        "## Honest selection",
        "",
        HONEST_SELECTION,
        "",
        "- Baselines see the labels of the train and val splits only: each picks its regularisation strength (and its "
        "valence/arousal ridge's) by the validation score, is then refit on train + val with it, and predicts the "
        "test images once.",
        "- FER2013's classifier as shipped reads no label of this data and chooses nothing: it predicts the test "
        "images once.",
        "- Trained models learn on the train split; the checkpoint kept, early stopping and the temperature of "
        "their probabilities are chosen on the validation split; the kept model predicts the test images once.",
        "- The recipe is one model made of its trained networks: the weights that fuse them and each network's "
        "temperature are chosen on the validation split and stored in the model (what `export` and `serve` then "
        "use). The fusion of the recipe with HOG + SVM uses an SVM fit on the train split alone (the strength its "
        "baseline row chose), its weight and temperature chosen on the validation split the same way. Each row "
        "predicts the test images once.",
        "",
        "## How each row was made",
        "",
        *[f"- **{row.model}** ({row.backbone}): {row.selected_on_val}." for row in table.itertuples()],
        *[f"- {note}" for note in notes],
        "",
        "HOG + linear SVM: HOG (9 orientations, 8x8-pixel cells, 2x2-cell blocks) of grayscale 64-px crops, "
        "standardised, a one-vs-rest linear SVM. Linear probes: pooled features of the frozen pretrained backbone "
        "(ImageNet, or FER2013 for MiniXception), one pass over the images decoded again from their files at the "
        f"size the backbone's weights learnt from (the trained models read them at {data.images.shape[1]} px), "
        "standardised, multinomial logistic regression. Both add a ridge regression to valence/arousal where the data "
        "has them. A fusion multiplies the first model's calibrated probabilities, raised to the power 1 - w, with "
        "the second's, raised to w (w = 0 is the first alone); each further network of the recipe joins the fusion "
        "of those before it the same way, and the recipe averages its networks' valence/arousal with the same "
        "weights.",
        "",
        f"Times, on {hardware}: `train_time_s` is the wall-clock of fitting (a baseline's features of train + val, "
        "its search on val and refit; a trained model's two training phases), after the decoded-image cache is "
        "built; `inference_ms_per_image` is the wall-clock of predicting the test split from that cache (features "
        "and classifier; both mirror images where the recipe flips), per image. Full numbers: "
        f"`{folder.benchmark_table.name}`.",
        "",
        "## Recipe settings",
        "",
        "```yaml",
        folder.config.read_text().rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def score_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The shown columns as text: a score to 4 decimals ("n/a" where the row has none), with its standard deviation
    or interval where the table has it (:func:`interval_cells`)."""
    return interval_cells(table[SHOWN], table).map(table_number)


def console_table(table: pd.DataFrame):
    """The benchmark as a rich Table, for the command line."""
    from rich.table import Table

    folds = f"mean ± std over {int(table['folds'].max())} folds" if "folds" in table else "test split"
    out = Table(title=f"affectkit benchmark ({folds})")
    for column in SHOWN:
        out.add_column(column, justify="left" if column == "model" else "right")
    for row in score_cells(table).itertuples(index=False):
        out.add_row(*row)
    return out


__all__ = ["BenchmarkResult", "HONEST_SELECTION", "RECIPE_MODEL", "RECIPE_PROFILE", "benchmark_config",
           "console_table", "recipe_comparisons", "run_benchmark", "score_cells",
           "predictions_per_face"]
