"""``affectkit robustness MODEL DATA``: a saved model scored on the same faces clean and corrupted (low resolution,
JPEG compression, blur, sensor noise, under-exposure, a face mask; :mod:`affectkit.data.corruptions`), each at three
severities: how much of its accuracy survives a webcam, a compressed upload, a dim room or a masked face, and which
corruption costs the most.

The faces are those ``evaluate`` scores (the model's test split by default), read as the model reads them and
predicted with its stored temperature and flip setting; each is corrupted at the model's input size. Writes
``robustness.csv``, ``robustness.md`` and ``robustness.png`` into the output folder, and the scores into the
model's card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from affectkit.data.corruptions import CORRUPTIONS, SEVERITIES, CorruptedFaces, check_corruptions, setting_of
from affectkit.data.synthetic import is_synthetic_data
from affectkit.errors import AffectkitError
from affectkit.evaluation.card import seen_warning, write_model_card
from affectkit.evaluation.evaluator import evaluation_device, face_groups
from affectkit.evaluation.plots import plot_robustness
from affectkit.evaluation.robustness import (
    Corrupted,
    headline,
    remedies,
    robustness_entry,
    robustness_markdown,
    robustness_table,
)
from affectkit.evaluation.subgroups import resampled_units
from affectkit.inference.backends import OnnxBackend
from affectkit.models.io import load_model
from affectkit.models.metadata import export_tag, model_paths, read_metadata
from affectkit.pipeline.run import evaluation_data, saved_predictions, scored_model, scored_name, seen_in_training
from affectkit.progress import reporter, silenced


@dataclass
class RobustnessResult:
    table: pd.DataFrame  # the clean row, then one per corruption and severity (see robustness_table)
    paths: dict[str, Path]  # csv, markdown, plot
    notes: list[str]


def robustness_saved(model_path: Path, data: Path, split: str = "test", splits: Path | None = None,
                     out: Path | None = None, corruptions: Sequence[str] | None = None,
                     severities: Sequence[int] = SEVERITIES, seed: int = 0,
                     quiet: bool = False) -> RobustnessResult:
    """Score the saved model, or its export (:func:`scored_model`), on ``split`` of ``data`` (as ``evaluate`` picks
    it) clean and under each of ``corruptions`` (default: all) at each of ``severities``; ``seed`` draws the noise.
    Files into ``out`` (default: ``robustness`` beside the model, ``robustness_int8_ONNX`` and the like beside an
    export)."""
    corruptions = list(corruptions or CORRUPTIONS)
    try:
        check_corruptions(corruptions, list(severities))
    except ValueError as error:
        raise AffectkitError(f"robustness: {error}.") from None
    with silenced(quiet):
        model_path, export = scored_model(model_path)
        prepared = evaluation_data(model_path, data, split, splits)
        meta = read_metadata(model_path)
        # One session of an export for the clean faces and every corruption.
        model = OnnxBackend(export) if export is not None else load_model(model_path, device=evaluation_device())[0]
        model_name = scored_name(meta, export)
        scored = "every face" if split == "all" else f"the {split} split"
        reporter().show(f"Scoring {model_name} on {scored} of {data}, clean")
        positions, clean = saved_predictions(model_path, model, prepared, split, data, export)
        corrupted = []
        for name in corruptions:
            for severity in sorted(severities):
                setting = setting_of(name, severity, prepared.images.shape[1])
                reporter().show(f"{name}, severity {severity}: {setting}")
                degraded = replace(prepared, images=CorruptedFaces(prepared.images, name, severity, seed))
                corrupted.append(Corrupted(name, severity, setting,
                                           saved_predictions(model_path, model, degraded, split, data, export)[1]))
        groups = face_groups(prepared, positions)
        table = robustness_table(prepared.expression[positions], prepared.valence_arousal[positions], groups,
                                 clean, corrupted)
        notes = []
        if split == "all" and (seen := seen_in_training(model_path, prepared, data, splits)):
            notes.append(seen_warning(seen, len(positions)))
        if out is None:
            out = (model_paths(model_path)[0].parent / "robustness" if export is None else
                   export.parent / f"robustness_{export_tag(export)}")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "robustness.csv", "markdown": out / "robustness.md", "plot": out / "robustness.png"}
        table.to_csv(paths["csv"], index=False, float_format="%.4f")
        side = prepared.images.shape[1]
        about = [f"Model: {model_name} (`{export or model_path}`), with its stored temperature "
                 f"({float(meta.get('temperature', 1.0)):.3f}) and flip setting, as `affectkit evaluate` scores it.",
                 f"Faces: {scored} of `{data}`, {len(positions)} faces, the same clean and corrupted; each corrupted "
                 f"on the {side} x {side} px crop the model reads (noise drawn with seed {seed}). "
                 f"Intervals draw {resampled_units(groups)} with replacement.",
                 *(f"Warning: {note}" for note in notes)]
        paths["markdown"].write_text(robustness_markdown(table, about))
        summary = headline(table)
        plot_robustness(table, summary.values if summary else None, summary.name if summary else "", paths["plot"],
                        title=f"{model_name}: robustness to corrupted faces")
        if summary is not None:
            entry = robustness_entry(table, str(Path(data).resolve()), split, is_synthetic_data(data))
            paths["card"] = write_model_card(model_path, robustness=entry | {"export": export and export.name})
        for note in notes:
            reporter().note(f"Warning: {note}")
        for advice in remedies(table):
            reporter().note(advice)
        reporter().note(f"Wrote {', '.join(str(path) for path in paths.values())}")
        return RobustnessResult(table, paths, notes)


__all__ = ["RobustnessResult", "robustness_saved"]
