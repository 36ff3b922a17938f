"""``affectkit calibrate``: a saved model's probabilities fit again on labelled faces of the domain it will serve.

Training calibrates every model on its own validation faces (its temperature, the profile of its outputs a server's
drift monitor compares with, and its accuracy by confidence that ``--target-accuracy`` reads). A model used on
other faces (the ready-made FER2013 model, which affectkit never calibrated; a model trained on posed faces, served
on webcam faces) is sure of itself at another rate there. Calibrating it on a few hundred labelled faces of that
domain stores all three again; the predicted class never changes (a temperature divides every logit alike)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectkit.config import CLASS_NAMES, NO_EXPRESSION
from affectkit.errors import AffectkitError
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.card import write_model_card
from affectkit.evaluation.evaluator import evaluation_device, predict_split
from affectkit.evaluation.metrics import expected_calibration_error
from affectkit.models.io import load_model
from affectkit.models.metadata import config_from_metadata, trained_classes, update_metadata
from affectkit.pipeline.run import check_split, evaluation_data, seen_in_training, training_source
from affectkit.progress import silenced


@dataclass(frozen=True)
class Calibration:
    temperature_before: float
    temperature: float
    faces: int  # the faces with a class the model learnt, which the temperature was fit on
    ece_before: float | None  # on those faces, at each temperature (None: a valence/arousal model)
    ece: float | None
    validation_coverage: dict | None  # as stored: what --target-accuracy now reads


def calibrate_saved(model_path: Path, data: Path, split: str = "val", splits: Path | None = None,
                    quiet: bool = False) -> Calibration:
    """Calibrate the saved model again on ``split`` of ``data`` (as :func:`evaluation_data` picks it: the model's
    own split of its training data, the data set's own, the ``splits`` file's, or every face for "all"); store the
    temperature, the drift reference and the accuracy by confidence in its ``.json``, where the faces came from
    (``calibrated_on``), and rewrite its card. Faces of a class the model never learnt are left out (it gives them
    probability 0 at any temperature). The test split is refused, and so are faces the model was trained on."""
    check_split(split)
    if split == "test":
        raise AffectkitError("--split test: the test faces score a model once, after everything about it was chosen; "
                             "calibrate on val, or on faces kept aside for it (--split all of another data set).")
    if split in ("train", "all") and training_source(model_path) == Path(data).resolve():
        raise AffectkitError(f"{model_path} was trained on {data}'s {'faces' if split == 'all' else 'train split'}: "
                             "a model is surer of the faces it learnt than of new ones, so calibrate on its val "
                             "split (--split val) or on other faces.")
    with silenced(quiet):
        prepared = evaluation_data(model_path, data, split, splits)
        if split == "all" and (seen := seen_in_training(model_path, prepared, data)):
            raise AffectkitError(f"{seen} of the faces of {data} trained {model_path.name} or chose it (the same "
                                 "images, read from another place): a model is surer of the faces it learnt than of "
                                 "new ones, so calibrate on other faces.")
        positions = prepared.positions("test" if split == "all" else split)
        if len(positions) == 0:
            raise AffectkitError(f"The {split} split of {data} is empty.")
        model, meta = load_model(model_path, device=evaluation_device())
        raw = predict_split(model, prepared, positions, tta_flip=config_from_metadata(meta).tta_flip)
        learnt = [CLASS_NAMES.index(name) for name in trained_classes(meta)]
        labels = np.where(np.isin(prepared.expression[positions], learnt), prepared.expression[positions],
                          NO_EXPRESSION)
        classed = labels != NO_EXPRESSION
        if raw.predicts_expression and not classed.any():
            raise AffectkitError(f"No face of the {split} split of {data} has a class {meta['display_name']} "
                                 f"predicts ({', '.join(trained_classes(meta))}): nothing to calibrate it on.")
        before = float(meta.get("temperature") or 1.0)
        temperature = calibrate(model_path, raw, labels)

        def ece(t: float) -> float | None:
            if not raw.predicts_expression:
                return None
            return expected_calibration_error(raw.tempered(t).probs[classed], labels[classed])

        stored = update_metadata(model_path, calibrated_on={
            "data": str(Path(data).resolve()), "split": split, "faces": int(classed.sum())})
        write_model_card(model_path)
    return Calibration(before, temperature, int(classed.sum()), ece(before), ece(temperature),
                       stored.get("validation_coverage"))
