"""The model card beside each saved model, ``<Model>_card.md``: what the model is, where its weights started, what
data it learned from and how, how it scored, and what it is (not) for.

The card is rebuilt from the model's own description (``best_<Model>.json``), which keeps the facts it needs:
``training_data`` (recorded when the run evaluates the model), ``trained_on_synthetic_data``, and ``evaluations``
(one entry per data set and split, so a later ``affectkit evaluate`` adds its numbers beside the run's), and
``robustness`` (``affectkit robustness``'s scores on corrupted faces, one entry per data set and split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from affectkit.config import CLASS_NAMES, dotted_items
from affectkit.data.synthetic import is_synthetic_data
from affectkit.evaluation.comparison import (class_threshold_sentence, held_out_threshold_sentence, listed_shares,
                                             table_number)
from affectkit.evaluation.selective import MIN_COVERAGE_FACES
from affectkit.models.metadata import (
    SYNTHETIC_WARNING,
    config_from_metadata,
    export_label,
    fusion_branches,
    fusion_criterion,
    model_paths,
    predicts_expression,
    predicts_valence_arousal,
    read_metadata,
    trained_classes,
    update_metadata,
)
from affectkit.runs import RunFolder

TRAINING_DATA_KEYS = ("source", "layout", "layout_description", "synthetic", "valid_samples", "rejected_samples",
                      "rejected_by_reason", "absent_classes", "class_counts", "grouped_by", "split", "split_sizes",
                      "has_landmarks")
# The recipe's keys a reader needs to reproduce or judge the training; the full config is in the model's JSON.
RECIPE_KEYS = ("img_size", "batch_size", "epochs", "fine_tune_epochs", "learning_rate", "fine_tune_lr", "lr_schedule",
               "optimizer", "weight_decay", "selection_metric", "early_stopping_patience", "fine_tune_warmup_epochs",
               "fine_tune_batchnorm", "backbone_lr_scale", "fine_tune_min_steps", "ema_decay", "use_light_models",
               "pretrained", "weighted_sampler", "label_distribution", "tta_flip", "precision", "seed", "max_samples")


def card_path(model_path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """``<Model>_card.md`` in the saved model's folder."""
    weights, _ = model_paths(model_path)
    meta = meta or read_metadata(model_path)
    return RunFolder(weights.parent).card(meta["display_name"])


def seen_warning(seen: int, n: int) -> str:
    """The sentence for an evaluation of ``n`` faces, ``seen`` of which trained the model or chose its checkpoint."""
    return (f"{seen} of these {n} faces trained the model or chose its checkpoint (its train and val splits): this "
            "is no test score; `--split test` scores the faces it never saw.")


def _evaluation(metrics: dict[str, Any], data: str | Path, split: str, export: str | None) -> dict[str, Any]:
    from affectkit.evaluation.metrics import prior_collapse  # see _evaluation_section

    expression = metrics["expression"] or {}  # empty where no face had a class
    entry = {"data": str(Path(data).resolve()), "split": split, "synthetic": is_synthetic_data(data), "n": metrics["n"],
             "export": export,  # the export's file name where that file was scored, not the model's weights
             **{k: expression.get(k) for k in ("accuracy", "macro_f1", "balanced_accuracy", "nll", "ece")},
             "temperature": expression.get("temperature", 1.0),
             "accuracy_interval": (expression.get("intervals") or {}).get("accuracy"),
             "warning": prior_collapse(metrics["expression"], CLASS_NAMES),
             "seen_in_training": metrics.get("seen_in_training", 0),
             "unlearnt_classes": expression.get("unlearnt_classes"),
             "by": metrics.get("by"),  # scores by group of faces, where the evaluation measured them
             "coverage": expression.get("coverage"),  # accuracy on its surest faces
             "validation_thresholds": expression.get("validation_thresholds"),  # --target-accuracy's, tried here
             "class_thresholds": expression.get("class_thresholds")}  # --per-class-thresholds's, tried here
    for dim in ("valence", "arousal"):
        scores = metrics.get(dim)
        entry[dim] = None if scores is None else {k: scores[k] for k in ("mae", "rmse", "ccc")}
    return entry


def _with_entry(entries: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``entries`` with ``entry`` last, in place of any earlier one for the same data set, split and file scored."""
    def key(e: dict[str, Any]) -> tuple:
        return e["data"], e["split"], e.get("export")

    return [*(e for e in entries if key(e) != key(entry)), entry]


def write_model_card(model_path: str | Path, training_data: dict[str, Any] | None = None,
                     metrics: dict[str, Any] | None = None, data: str | Path | None = None,
                     split: str = "test", robustness: dict[str, Any] | None = None,
                     export: str | Path | None = None) -> Path:
    """Record ``training_data`` (a :func:`~affectkit.data.analysis.dataset_summary` of the run's data), the
    ``metrics`` of an evaluation on ``split`` of ``data`` (which ``metrics`` needs; ``export``: the export of the
    model that was scored, where not its weights) and a ``robustness`` entry
    (:func:`~affectkit.evaluation.robustness.robustness_entry`) in the model's description, then rewrite its card."""
    meta = read_metadata(model_path)
    updates: dict[str, Any] = {}
    if training_data is not None:
        updates["training_data"] = {**{k: training_data.get(k) for k in TRAINING_DATA_KEYS},
                                    "source": str(Path(training_data["source"]).resolve())}
        updates["trained_on_synthetic_data"] = bool(training_data.get("synthetic"))
    if metrics is not None:
        updates["evaluations"] = _with_entry(meta.get("evaluations", []), _evaluation(
            metrics, data, split, None if export is None else Path(export).name))
    if robustness is not None:
        updates["robustness"] = _with_entry(meta.get("robustness", []), robustness)
    if updates:
        meta = update_metadata(model_path, **updates)
    path = card_path(model_path, meta)
    path.write_text(render_card(meta, model_paths(model_path)[0].name))
    return path


def _number(value: Any, digits: int = 3) -> str:
    return table_number(None if value is None else float(value), digits)


def _fusion_line(meta: dict[str, Any]) -> list[str]:
    if averaged := meta.get("ensemble"):
        each = ", ".join(f"{name} (temperature {t:.3f})" for name, t in zip(averaged["members"],
                                                                          averaged["temperatures"]))
        return [f"- Ensemble: the mean of its members' probabilities, each at the temperature calibrated on the "
                f"validation split when it was trained: {each}; valence and arousal their mean too. Its own "
                "temperature, below, is fit on the same faces."]
    fusion = meta.get("fusion")
    if not fusion:
        return []
    branches = fusion_branches(fusion)
    criterion, fused = fusion_criterion(fusion)
    each = ", ".join(f"{name} {weight:g} (temperature {t:.3f}; alone {alone:.3f})"
                     for name, weight, t, alone in branches)
    affect = "; valence and arousal weighted the same" if predicts_valence_arousal(meta) else ""
    return [f"- Fusion: the branches' log-probabilities, each divided by its temperature, weighted {each}, chosen on "
            f"the validation split by {criterion} ({fused:.3f} fused){affect}."]


def _custom_cnn_line(meta: dict[str, Any]) -> list[str]:
    if meta.get("backbone") != "custom_cnn":
        return []
    config = config_from_metadata(meta)
    return [f"- Stages: {', '.join(map(str, config.cnn_widths))} channels, {config.cnn_convs_per_stage} "
            f"convolution(s) each, attention {config.attention}."]


def _outputs_line(meta: dict[str, Any]) -> str:
    if not predicts_expression(meta):
        return ("- Outputs: valence and arousal, each in [-1, 1]; no expression (no face it was trained on had an "
                "expression class).")
    names = meta["class_names"]
    trained = trained_classes(meta)
    expressions = f"- Outputs: probabilities of {len(names)} expressions ({', '.join(names)})"
    if len(trained) < len(names):
        untrained = [name for name in names if name not in trained]
        expressions += f", of which {', '.join(untrained)} always 0 (not in the training data)"
    if not predicts_valence_arousal(meta):
        return expressions + "; no valence or arousal (no face it was trained on had them)."
    return expressions + "; valence and arousal, each in [-1, 1]."


def _framing_line(meta: dict[str, Any]) -> list[str]:
    if "face_margin" not in meta:
        return []
    if meta.get("ready_made"):  # set where the model was made, not measured on training faces it never had here
        return [f"- Faces found in photos are cropped with {meta['face_margin']:.2f} of the detector's box added on "
                "each side: MTCNN's box frames a face as fer frames the inputs of this network."]
    if meta["face_margin"] is None:
        return [f"- Faces found in photos are cropped with a fifth of the detector's box added on each side: the "
                f"detector found too few of the training faces ({meta['face_margin_faces']}) to measure their "
                "framing."]
    return [f"- Faces found in photos are cropped as the training faces frame theirs: {meta['face_margin']:.2f} of "
            f"the detector's box added on each side (the median of {meta['face_margin_faces']} training faces)."]


def _model_section(meta: dict[str, Any], weights: str) -> list[str]:
    stand_in = f", the light stand-in for {meta['stands_in_for']}" if meta.get("stands_in_for") else ""
    size = meta["input_size"]
    return [
        "## Model", "",
        f"- Architecture: {meta['display_name']} (model key `{meta['model']}`, backbone `{meta['backbone']}`"
        f"{stand_in}).",
        *_custom_cnn_line(meta),
        f"- Input: one {size}x{size} {meta.get('color', 'RGB')} face crop, ImageNet mean/std normalisation.",
        *_framing_line(meta),
        _outputs_line(meta),
        f"- Files: `{weights}` (weights) and `{Path(weights).with_suffix('.json')}` (description, format "
        f"{meta['format']}).",
        f"- Starting weights: {meta.get('initial_weights', 'unknown')}"
        + (f"; {meta['initial_weights_detail']}" if meta.get("initial_weights_detail") else "") + ".",
        *_fusion_line(meta),
        "",
    ]


def _data_section(meta: dict[str, Any]) -> list[str]:
    data = meta.get("training_data")
    if meta.get("ready_made") and not data:
        return ["## Training data", "", f"Not affectkit's: this is {meta['ready_made_description']}. `affectkit "
                "evaluate MODEL DATA --split all` scores it on your faces.", ""]
    if not data:
        return ["## Training data", "", "Not recorded: this model was saved without a run's evaluation.", ""]
    present = [c for c in CLASS_NAMES if c not in (data.get("absent_classes") or [])]
    sizes = data.get("split_sizes") or {}
    rejected = data.get("rejected_by_reason") or {}
    lines = [
        "## Training data", "",
        f"- Source: `{data['source']}`, read as {data['layout_description']}.",
        f"- Synthetic: {'yes, affectkit demo faces' if data.get('synthetic') else 'no'}.",
        f"- Samples: {data['valid_samples']} valid, {data['rejected_samples']} quarantined"
        + (f" ({', '.join(f'{k}: {v}' for k, v in rejected.items())})" if rejected else "") + ".",
        f"- Split: {' / '.join(f'{s} {n}' for s, n in sizes.items())} ({data.get('split') or 'not recorded'}).",
    ]
    if present:
        lines += [
            f"- Classes present: {', '.join(present)}.",
            f"- Classes absent: {', '.join(data['absent_classes']) or 'none'}"
            + (" (the model never saw them, so it never predicts them: their probability is 0)."
               if data["absent_classes"] else "."),
            "- Class counts: " + ", ".join(f"{k} {v}" for k, v in (data.get("class_counts") or {}).items()) + ".",
        ]
    else:
        lines.append("- Classes: none; every face is annotated for valence/arousal only.")
    if data.get("grouped_by"):
        lines.append(f"- Grouped by {data['grouped_by']} (no subject on two sides of the split).")
    return [*lines, ""]


def _recipe_section(meta: dict[str, Any]) -> list[str]:
    if meta.get("ready_made"):  # trained elsewhere: affectkit's recipe settings never acted on it
        return []
    config = config_from_metadata(meta)
    rows = [(key, getattr(config, key)) for key in RECIPE_KEYS]
    loss, aug = config.loss, config.augmentation
    # A term whose labels no training face had never acted: the card says so rather than list its weight.
    expression = f"{loss.expression_weight} x CE" if predicts_expression(meta) else "CE idle (no face had a class)"
    regression = (f"{loss.valence_weight} x {loss.regression}(valence) + {loss.arousal_weight} x "
                  f"{loss.regression}(arousal)" if predicts_valence_arousal(meta)
                  else f"{loss.regression}(valence/arousal) idle (no face had them)")
    rows += [("loss", f"{expression} + {regression}; focal gamma {loss.focal_gamma}, label smoothing "
                      f"{loss.label_smoothing}, class weighting {loss.class_weighting}"),
             ("augmentation", f"rotation {aug.rotation_range}, shifts {aug.width_shift_range}/"
                              f"{aug.height_shift_range}, zoom {aug.zoom_range}, shear {aug.shear_range}, flip "
                              f"{aug.horizontal_flip}, mixup {aug.mixup_alpha}, cutmix {aug.cutmix_alpha}, "
                              f"RandAugment {aug.rand_augment}, TrivialAugment {aug.trivial_augment}, random erasing "
                              f"{aug.random_erasing}, degrade {aug.degrade}, face mask {aug.face_mask}")]
    if config.model_settings:  # a fusion's row above is the run's setting; a branch named here trained otherwise
        rows.append(("model_settings", "; ".join(
            f"{model}: {', '.join(f'{k}={v}' for k, v in dotted_items(changes).items())}"
            for model, changes in config.model_settings.items())))
    lines = ["## Training recipe", "", "| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if meta.get("best"):
        lines += ["", f"Kept: {_kept(meta['best'])}."]
    elif meta.get("branch_best"):  # a fusion model: each network was kept on its own
        lines += ["", "Kept: " + "; ".join(f"{name} {_kept(best)}" for name, best in meta["branch_best"].items()) + "."]
    return [*lines, ""]


def _kept(best: dict[str, Any]) -> str:
    return (f"epoch {best['epoch']} (phase {best['phase']}), validation loss {_number(best.get('val_loss'))}, "
            f"validation accuracy {_number(best.get('val_acc'))}")


def _scored_source(entry: dict[str, Any]) -> str:
    """What an evaluation or robustness entry scored: its data set, and the export of the model where one was."""
    source = f"`{entry['data']}`" + (" (synthetic)" if entry["synthetic"] else "")
    if entry.get("export"):
        source += f", its {export_label(entry['export'])} export `{entry['export']}` scored"
    return source


def _evaluation_section(meta: dict[str, Any]) -> list[str]:
    # Imported here: metrics loads torchmetrics, and the predictor (serving) imports this module for the warning.
    from affectkit.evaluation.metrics import ECE_BINS, unlearnt_note

    evaluations = meta.get("evaluations") or []
    if not evaluations:
        recalibrated = ["", _calibration_sentence(meta, ECE_BINS)] if meta.get("calibrated_on") else []
        return ["## Evaluation", "", "Not evaluated yet (`affectkit evaluate MODEL DATA`).", *recalibrated,
                *_abstention_lines(meta), ""]
    lines = ["## Evaluation", "",
             "| data | split | n | accuracy | macro-F1 | balanced accuracy | NLL | ECE | temperature "
             "| valence MAE / CCC | arousal MAE / CCC |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in evaluations:
        va = ["n/a" if e[d] is None else f"{_number(e[d]['mae'])} / {_number(e[d]['ccc'])}"
              for d in ("valence", "arousal")]
        source = _scored_source(e)
        split = e["split"] + (f" ({e['seen_in_training']} seen in training)" if e.get("seen_in_training") else "")
        interval = e.get("accuracy_interval")  # evaluations recorded before intervals carry none
        accuracy = _number(e["accuracy"]) + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
        lines.append(f"| {source} | {split} | {e['n']} | {accuracy} | {_number(e['macro_f1'])} | "
                     f"{_number(e['balanced_accuracy'])} | {_number(e['nll'])} | {_number(e['ece'])} | "
                     f"{_number(e['temperature'])} | {va[0]} | {va[1]} |")
    for e in evaluations:
        if e.get("warning"):  # evaluations recorded before the check carry none
            lines += ["", f"**Warning** (`{e['data']}`, {e['split']}): the model {e['warning']}"]
        if e.get("seen_in_training"):
            lines += ["", f"**Warning** (`{e['data']}`, {e['split']}): {seen_warning(e['seen_in_training'], e['n'])}"]
        if e.get("unlearnt_classes"):
            lines += ["", f"Note (`{e['data']}`, {e['split']}): {unlearnt_note(e['unlearnt_classes'])}"]
    for e in evaluations:
        if e.get("coverage"):  # evaluations recorded before it carry none
            shares = "; ".join(f"{p['coverage']:.0%} (probability {p['min_confidence']:.2f} or more): "
                               f"{p['accuracy']:.3f}" for p in e["coverage"][1:])  # after all of them
            lines += ["", f"Answering only its surest faces (`{e['data']}`, {e['split']}): accuracy on all "
                          f"{_number(e['accuracy'])}; on the surest {shares}."]
        if e.get("validation_thresholds"):
            lines += ["", f"The abstention thresholds read on the validation faces, on these (`{e['data']}`, "
                          f"{e['split']}): " + held_out_threshold_sentence(e["validation_thresholds"])]
        if e.get("class_thresholds"):
            lines += ["", f"A threshold per class (`--per-class-thresholds`) against one for all, on these "
                          f"(`{e['data']}`, {e['split']}): " + class_threshold_sentence(e["class_thresholds"])]
        for attribute, found in (e.get("by") or {}).items():
            lines += ["", *_group_lines(attribute, found, e)]
    if any(e.get("accuracy_interval") for e in evaluations):
        lines += ["", "In brackets, the accuracy's 95% bootstrap interval over the faces scored (people drawn with all "
                      "their faces where the data says who is who): how far another draw of as many could move it."]
    return [*lines, "", _calibration_sentence(meta, ECE_BINS), *_abstention_lines(meta), ""]


def _robustness_section(meta: dict[str, Any]) -> list[str]:
    entries = meta.get("robustness") or []
    if not entries:
        return []
    lines = ["## Robustness to corrupted faces", ""]
    for e in entries:
        source = _scored_source(e)
        lines += [f"Measured by `affectkit robustness` on {source} ({e['split']}, {e['faces']} faces): {e['score']} "
                  f"{_number(e['clean'])} on the faces as given, then on the same faces corrupted.", "",
                  f"| corruption | severity | setting | {e['score']} | change from clean [95% interval] | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['corruption']} | {r['severity']} | {r['setting']} | {_number(r['score'])} | "
                  f"{r['change']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['verdict']} |" for r in e["rows"]]
        lines.append("")
    return lines


def _calibration_sentence(meta: dict[str, Any], ece_bins: int) -> str:
    """Where the temperature that divides the logits was fit: the validation split after training, or the faces
    ``affectkit calibrate`` was given since."""
    where = "on the validation split after training"
    if found := meta.get("calibrated_on"):
        where = (f"by `affectkit calibrate` on {found['faces']} faces of `{found['data']}` ({found['split']}): "
                 f"{_number(meta.get('temperature'))}; each evaluation row gives the temperature it was scored at")
    return (f"Calibration: the probabilities are the logits divided by the temperature, fit {where} (temperature "
            f"scaling); NLL and ECE (expected calibration error, {ece_bins} bins) are measured on them.")


def _abstention_lines(meta: dict[str, Any]) -> list[str]:
    """What abstaining below a confidence did on the validation (or calibration) faces, the table
    ``--target-accuracy`` reads."""
    recorded = meta.get("validation_coverage")
    if not recorded:  # a valence/arousal model, too few validation faces, or one saved before it was recorded
        return []
    faces = "calibration" if meta.get("calibrated_on") else "validation"
    shares = "; ".join(f"{p['coverage']:.0%} answered (probability {p['min_confidence']:.2f} or more), "
                       f"{p['accuracy']:.3f} right"
                       for p in listed_shares(recorded["curve"]))
    lines = ["", f"Abstaining: on its {recorded['faces']} {faces} faces, {shares}. `affectkit predict` and `serve` "
                 "mark a face `abstained` below `--min-confidence P`, or below the probability at which these faces "
                 "were answered `--target-accuracy A` right."]
    if recorded.get("by_class"):  # models calibrated before it was recorded carry none
        classes = "; ".join(f"{name} ({found['faces']} faces): all {found['curve'][0]['accuracy']:.3f} right, "
                            f"the surest {row['coverage']:.0%} (probability {row['min_confidence']:.2f} or more) "
                            f"{row['accuracy']:.3f}"
                            for name, found in recorded["by_class"].items()
                            for row in listed_shares(found["curve"])[:1])
        lines += ["", f"By the class predicted (the classes predicted on {MIN_COVERAGE_FACES} or more of those faces; "
                      f"the share right is the class's precision): {classes}. With `--per-class-thresholds`, each "
                      "of these classes is answered from its own threshold for `--target-accuracy A`."]
    return lines


def _group_lines(attribute: str, found: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """The scores of each group of faces by ``attribute`` in one evaluation, and the widest gap between groups."""
    from affectkit.evaluation.subgroups import gap_sentence  # see _evaluation_section

    lines = [f"By {attribute} (`{evaluation['data']}`, {evaluation['split']}):", "",
             "| group | faces | accuracy | macro-F1 | valence CCC | arousal CCC |", "|---|---|---|---|---|---|"]
    for group in found["groups"]:
        interval = "" if group.get("accuracy_low") is None else (f" [{group['accuracy_low']:.3f}, "
                                                                 f"{group['accuracy_high']:.3f}]")
        lines.append(f"| {group['group']} | {group['faces']} | {_number(group.get('accuracy'))}{interval} | "
                     f"{_number(group.get('macro_f1'))} | {_number(group.get('valence_ccc'))} | "
                     f"{_number(group.get('arousal_ccc'))} |")
    return [*lines, "", gap_sentence("The model", found["gap"], attribute)]


def _use_section(meta: dict[str, Any]) -> list[str]:
    lines = ["## Intended use and limits", ""]
    if meta.get("trained_on_synthetic_data"):
        lines += [f"**{SYNTHETIC_WARNING}** It is meant for trying affectkit end to end (training, evaluation, "
                  "export, serving), and its numbers describe rendered faces only.", ""]
    measured = sorted({attribute for e in meta.get("evaluations") or [] for attribute in e.get("by") or {}})
    per_group = (f", and this card measures performance per group by {', '.join(measured)} only (above)." if measured
                 else ", and this card does not measure performance per group (`affectkit evaluate MODEL DATA --by "
                      "gender` does, where the data names each face's group).")
    if not meta.get("robustness"):
        per_group += (" Blurred, compressed, low-resolution, noisy, dim or masked faces can score lower still: "
                      "`affectkit robustness MODEL DATA` measures how much.")
    lines += [
        "- Intended use: research, teaching and prototyping of facial-expression and valence/arousal recognition on "
        "face crops like those it was trained on.",
        "- A facial expression is not a felt emotion: the model reads faces, not minds. Do not use it to make or "
        "support decisions about people (hiring, education, policing, credit, health, surveillance).",
        "- Its numbers hold for data like its test split only; other cameras, poses, ages, skin tones and cultures "
        "can score very differently" + per_group,
        "- Expression classes absent from the training data are not learned and never predicted (probability 0); "
        "valence/arousal are not learned where the data had no such annotations.",
    ]
    return [*lines, ""]


def render_card(meta: dict[str, Any], weights: str) -> str:
    """The card's Markdown, from a saved model's description and the name of its weights file."""
    lines = [f"# Model card: {meta['display_name']}", ""]
    if meta.get("trained_on_synthetic_data"):
        lines += [f"> **Warning:** {SYNTHETIC_WARNING}", ""]
    lines += _model_section(meta, weights)
    for section in (_data_section, _recipe_section, _evaluation_section, _robustness_section, _use_section):
        lines += section(meta)
    return "\n".join(lines).rstrip() + "\n"
