"""Abstaining on faces a model is unsure of: the accuracy by confidence stored when a model is calibrated, the
threshold --target-accuracy reads from it (or --min-confidence gives), and the ``abstained`` mark it puts on faces
in predict's results, the annotated images, smoothed videos, the server's answers, metrics and model description."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from skimage import data as skdata
from typer.testing import CliRunner

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config
from affectkit.errors import AffectkitError
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.card import card_path, write_model_card
from affectkit.evaluation.evaluator import Predictions
from affectkit.evaluation.selective import (
    VALIDATION_COVERAGES,
    class_thresholds_held_out,
    selective_accuracy,
    threshold_for_accuracy,
    thresholds_held_out,
)
from affectkit.inference.abstention import Abstention, ClassThreshold
from affectkit.inference.images import read_image
from affectkit.inference.predictor import Predictor
from affectkit.inference.timeline import TrackSmoother
from affectkit.models import build_model, save_model
from affectkit.models.metadata import read_metadata, update_metadata
from affectkit.serving import create_app

pytestmark = pytest.mark.usefixtures("one_thread")


def _copy_model(model_path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / model_path.name
    shutil.copy(model_path, saved)
    shutil.copy(model_path.with_suffix(".json"), saved.with_suffix(".json"))
    return saved


@pytest.fixture(scope="module")
def faces(demo_dir) -> list[np.ndarray]:
    return [read_image(demo_dir / "images" / f"{i}.jpg") for i in range(40)]


@pytest.fixture(scope="module")
def measured(model_path, faces, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of the model whose stored accuracy by confidence is the one measured on ``faces``, labelled so that it
    is right on its surest half and wrong on the rest, and its confidence on each face."""
    saved = _copy_model(model_path, tmp_path_factory.mktemp("measured"))
    found = Predictor(saved, backend="torch", detect=False).predict_batch(faces)
    probabilities = np.array([[f["probabilities"][c] for c in CLASS_NAMES] for f in found])
    confidence = probabilities.max(axis=1)
    labels = probabilities.argmax(axis=1)
    unsure = np.argsort(confidence)[: len(faces) // 2]
    labels[unsure] = (labels[unsure] + 1) % len(CLASS_NAMES)
    update_metadata(saved, validation_coverage={
        "faces": len(faces), "curve": selective_accuracy(probabilities, labels, VALIDATION_COVERAGES)})
    return saved, confidence, labels == probabilities.argmax(axis=1)


def test_the_threshold_is_the_one_answering_most_faces_that_accurately():
    curve = [{"coverage": 1.0, "min_confidence": 0.2, "accuracy": 0.6},
             {"coverage": 0.8, "min_confidence": 0.4, "accuracy": 0.75},
             {"coverage": 0.6, "min_confidence": 0.5, "accuracy": 0.7},  # not monotone: fewer faces, less right
             {"coverage": 0.4, "min_confidence": 0.7, "accuracy": 0.9}]
    assert threshold_for_accuracy(curve, 0.7)["min_confidence"] == 0.4
    assert threshold_for_accuracy(curve, 0.6)["min_confidence"] == 0.2
    assert threshold_for_accuracy(curve, 0.85)["min_confidence"] == 0.7
    assert threshold_for_accuracy(curve, 0.95) is None


def test_calibration_stores_the_accuracy_by_confidence_of_the_calibrated_faces_with_a_class(model_path, tmp_path):
    saved = _copy_model(model_path, tmp_path)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(60, len(CLASS_NAMES))) * 3
    labels = np.where(rng.random(60) < 0.6, logits.argmax(axis=1), rng.integers(0, len(CLASS_NAMES), 60))
    labels[:10] = NO_EXPRESSION  # faces rated for valence/arousal only: not counted
    val = Predictions(logits, rng.uniform(-1, 1, (60, 2)))
    tempered = val.tempered(calibrate(saved, val, labels))
    stored = read_metadata(saved)["validation_coverage"]
    assert stored["faces"] == 50
    assert stored["curve"] == selective_accuracy(tempered.probs[10:], labels[10:], VALIDATION_COVERAGES)
    assert [row["coverage"] for row in stored["curve"]] == sorted((row["coverage"] for row in stored["curve"]),
                                                                   reverse=True)
    card = write_model_card(saved).read_text()
    assert "Abstaining: on its 50 validation faces, 90% answered" in card and "--target-accuracy" in card

    labels[10:45] = NO_EXPRESSION  # too few faces with a class to read a threshold from
    calibrate(saved, val, labels)
    assert read_metadata(saved)["validation_coverage"] is None
    assert "Abstaining" not in write_model_card(saved).read_text()


def test_calibration_stores_the_accuracy_by_confidence_of_the_faces_predicted_as_each_class(model_path, tmp_path):
    saved = _copy_model(model_path, tmp_path)
    rng = np.random.default_rng(4)
    predicted = np.repeat([0, 1, 2], [30, 22, 8])  # Sad is predicted on too few faces to read a threshold from
    logits = rng.normal(size=(60, len(CLASS_NAMES)))
    logits[np.arange(60), predicted] += 4 + rng.random(60) * 3
    labels = np.where(rng.random(60) < 0.7, predicted, (predicted + 1) % len(CLASS_NAMES))
    val = Predictions(logits, rng.uniform(-1, 1, (60, 2)))
    probs = val.tempered(calibrate(saved, val, labels)).probs
    by_class = read_metadata(saved)["validation_coverage"]["by_class"]
    assert list(by_class) == ["Neutral", "Happy"]
    for index, name in enumerate(by_class):
        chosen = predicted == index
        assert by_class[name] == {"faces": int(chosen.sum()), "curve": selective_accuracy(
            probs[chosen], labels[chosen], VALIDATION_COVERAGES)}
        assert by_class[name]["curve"][0]["accuracy"] == pytest.approx((labels[chosen] == index).mean(), abs=1e-4)
    card = " ".join(write_model_card(saved).read_text().split())
    assert "By the class predicted" in card and "Neutral (30 faces): all" in card and "Sad (" not in card


def test_a_class_with_a_threshold_of_its_own_is_answered_by_it_and_the_others_by_the_overall_one():
    abstention = Abstention(0.5, 0.9, 0.8, 0.92, by_class={
        "Happy": ClassThreshold(0.8, 30, 0.7, 0.93), "Fear": ClassThreshold(None, 25, None, 0.6)})
    asked = {("Happy", 0.7): True, ("Happy", 0.85): False, ("Fear", 0.99): True, ("Sad", 0.6): False,
             ("Sad", 0.4): True}
    assert {face: abstention.abstains(*face) for face in asked} == asked
    said = abstention.describe()
    assert "Happy below 0.80 (answering 70% of its 30 faces, 93.0% right)" in said
    assert "Fear always unsure (60.0% of its 25 faces right at best)" in said
    assert "any other class: confidence below 0.50" in said
    assert abstention.as_dict()["by_class"]["Fear"] == {"min_confidence": None, "faces": 25,
                                                        "validation_coverage": None, "validation_accuracy": 0.6}
    assert Abstention(0.5).as_dict()["by_class"] is None
    none_own = Abstention(0.5, 0.9, 0.8, 0.92, by_class={})  # no class predicted on enough validation faces
    assert none_own.abstains("Happy", 0.4) and not none_own.abstains("Happy", 0.6)
    assert "no class was predicted on enough validation faces" in none_own.describe()


def _with_class_curve(measured: tuple[Path, np.ndarray, np.ndarray], folder: Path, accuracy: float) -> Path:
    """A copy of the measured model whose faces (all predicted as one class by the untrained model) were, as that
    class's validation faces, answered with ``accuracy`` at every share."""
    saved, confidence, _ = measured
    copy = _copy_model(saved, folder)
    recorded = read_metadata(saved)["validation_coverage"]
    curve = [{"coverage": row["coverage"], "min_confidence": row["min_confidence"], "accuracy": accuracy}
             for row in recorded["curve"]]
    update_metadata(copy, validation_coverage={**recorded, "by_class": {"Fear": {"faces": len(confidence),
                                                                                  "curve": curve}}})
    return copy


def test_per_class_thresholds_answer_the_faces_of_a_class_from_its_own_validation_faces(measured, faces, tmp_path):
    saved, confidence, _ = measured
    overall = Predictor(saved, backend="torch", detect=False, target_accuracy=0.9).predict(faces)
    assert {f.expression for f in overall} == {"Fear"} and 0 < sum(f.abstained for f in overall) < len(faces)

    precise = _with_class_curve(measured, tmp_path / "precise", accuracy=0.95)
    predictor = Predictor(precise, backend="torch", detect=False, target_accuracy=0.9, per_class_thresholds=True)
    assert predictor.abstention.by_class["Fear"].min_confidence == pytest.approx(confidence.min())
    assert not any(f.abstained for f in predictor.predict(faces))  # Fear was right often enough at every share
    same = Predictor(precise, backend="torch", detect=False, target_accuracy=0.9)  # without the flag: as before
    assert [f.abstained for f in same.predict(faces)] == [f.abstained for f in overall]

    vague = _with_class_curve(measured, tmp_path / "vague", accuracy=0.6)
    predictor = Predictor(vague, backend="torch", detect=False, target_accuracy=0.9, per_class_thresholds=True)
    assert all(f.abstained for f in predictor.predict(faces))  # Fear never right often enough: always unsure
    assert "Fear always unsure" in predictor.abstention.describe()

    # A model calibrated before the classes' curves were recorded has none to read.
    with pytest.raises(AffectkitError, match="not on those predicted as each class.*train it again"):
        Predictor(saved, backend="torch", detect=False, target_accuracy=0.9, per_class_thresholds=True)
    with pytest.raises(AffectkitError, match="--per-class-thresholds reads .* give --target-accuracy"):
        Predictor(tmp_path / "absent.safetensors", backend="torch", detect=False, min_confidence=0.5,
                  per_class_thresholds=True)


def test_predict_and_serve_take_per_class_thresholds(measured, demo_dir, tmp_path):
    from affectkit.cli import app

    precise = _with_class_curve(measured, tmp_path / "precise", accuracy=0.95)
    result = CliRunner().invoke(app, ["predict", str(precise), str(demo_dir / "images" / "0.jpg"), "--no-detect",
                                      "--backend", "torch", "--target-accuracy", "0.9", "--per-class-thresholds"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Abstained on 0 of the 1 face(s): per class, from the validation faces predicted as it: Fear below" in said
    client = TestClient(create_app(precise, detect=False, target_accuracy=0.9, per_class_thresholds=True))
    assert client.get("/v1/model").json()["abstention"]["by_class"]["Fear"]["validation_accuracy"] == 0.95


def test_target_accuracy_abstains_below_the_confidence_read_from_the_validation_faces(measured, faces):
    saved, confidence, right = measured
    predictor = Predictor(saved, backend="torch", detect=False, target_accuracy=0.9)
    threshold = predictor.min_confidence
    answered = confidence >= threshold
    assert right[answered].mean() >= 0.9
    assert right[answered].mean() == pytest.approx(predictor.abstention.validation_accuracy, abs=1e-4)
    assert answered.sum() == round(predictor.abstention.validation_coverage * len(faces))
    assert right[confidence >= np.sort(confidence[~answered])[-1]].mean() < 0.9  # answering one more falls short
    results = predictor.predict(faces)
    assert [f.abstained for f in results] == list(~answered)
    assert all(f.expression in CLASS_NAMES for f in results)  # the most probable class is still given
    frame = results.to_frame()
    assert frame["abstained"].tolist() == list(~answered)
    assert list(frame.columns).index("abstained") == list(frame.columns).index("confidence") + 1

    everything = Predictor(saved, backend="torch", detect=False, target_accuracy=0.45)
    assert everything.abstention.validation_coverage == 1.0 and not any(f.abstained for f in everything.predict(faces))
    assert "abstained" not in Predictor(saved, backend="torch", detect=False).predict(faces).to_frame()


def test_a_threshold_that_cannot_be_read_or_makes_no_sense_is_refused_by_name(measured, model_path, tmp_path):
    saved, _, _ = measured
    problems = {
        "give one of them": dict(target_accuracy=0.9, min_confidence=0.5),
        "--min-confidence must be in": dict(min_confidence=1.5),
        "--target-accuracy must be in": dict(target_accuracy=1.0),
    }
    for problem, asked in problems.items():
        with pytest.raises(AffectkitError, match=problem):
            Predictor(saved, backend="torch", detect=False, **asked)
        # Refused before any model is read: a model that is not there is not what the refusal names.
        with pytest.raises(AffectkitError, match=problem):
            Predictor(tmp_path / "absent.safetensors", backend="torch", detect=False, **asked)
        with pytest.raises(AffectkitError, match=problem):
            create_app(tmp_path / "absent.safetensors", detect=False, **asked)
    capped = _copy_model(saved, tmp_path / "capped")
    update_metadata(capped, validation_coverage={"faces": 40, "curve": [
        {"coverage": 1.0, "min_confidence": 0.1, "accuracy": 0.5}, {"coverage": 0.5, "min_confidence": 0.2,
                                                                    "accuracy": 0.6}]})
    with pytest.raises(AffectkitError, match=r"gets 60.0% of its 40 validation faces right at best \(answering its "
                                             r"surest 50%\), short of --target-accuracy 0.9"):
        Predictor(capped, backend="torch", detect=False, target_accuracy=0.9)
    with pytest.raises(AffectkitError, match="records no accuracy on its validation faces.*--min-confidence"):
        Predictor(model_path, backend="torch", detect=False, target_accuracy=0.8)
    config = Config(img_size=64)
    affect_only = save_model(build_model("custom_cnn", config), tmp_path / "va" / "best_CustomCNN", config,
                             extra={"predicts_expression": False})
    with pytest.raises(AffectkitError, match="valence and arousal only"):
        Predictor(affect_only, backend="torch", detect=False, min_confidence=0.5)


def test_smoothed_faces_are_abstained_on_by_their_smoothed_confidence():
    names = CLASS_NAMES[:2]
    smoother = TrackSmoother(names, alpha=0.5, abstention=Abstention(0.7))
    sure = {"box": [0, 0, 10, 10], "probabilities": {"Neutral": 0.9, "Happy": 0.1}, "expression": "Neutral",
            "expression_id": 0, "confidence": 0.9, "abstained": False, "valence": 0.0, "arousal": 0.0}
    torn = {**sure, "probabilities": {"Neutral": 0.3, "Happy": 0.7}, "expression": "Happy", "confidence": 0.7}
    first, = smoother.update([sure])
    second, = smoother.update([torn])  # on its own answered (0.7); smoothed with the frame before, 0.6 Neutral
    assert not first["abstained"]
    assert second["expression"] == "Neutral" and second["confidence"] == pytest.approx(0.6) and second["abstained"]


def test_predict_marks_abstained_faces_in_its_files_table_and_pictures(measured, demo_dir, tmp_path):
    from affectkit.cli import app

    saved, confidence, _ = measured
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(40):
        shutil.copy(demo_dir / "images" / f"{i}.jpg", images / f"{i:02d}.jpg")
    threshold = float(np.quantile(confidence, 0.5))
    result = CliRunner().invoke(app, ["predict", str(saved), str(images), "--no-detect", "--backend", "torch",
                                      "--min-confidence", str(threshold), "--out", str(tmp_path / "out.csv"),
                                      "--annotate", str(tmp_path / "drawn")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out.csv")
    assert table["abstained"].tolist() == list(confidence < threshold)
    assert f"Abstained on {int((confidence < threshold).sum())} of the 40 face(s): confidence below " in result.output
    assert len(list((tmp_path / "drawn").iterdir())) == 40

    shown = CliRunner().invoke(app, ["predict", str(saved), str(images / "00.jpg"), "--no-detect", "--backend",
                                     "torch", "--min-confidence", "1"])
    assert shown.exit_code == 0 and "unsure (" in shown.output
    refused = CliRunner().invoke(app, ["predict", str(saved), str(images), "--no-detect", "--target-accuracy", "2"])
    assert isinstance(refused.exception, AffectkitError) and "--target-accuracy must be in (0, 1)" in str(
        refused.exception)


def test_the_server_marks_counts_and_describes_its_abstentions(measured, demo_dir):
    saved, confidence, _ = measured
    client = TestClient(create_app(saved, detect=False, max_files=64, target_accuracy=0.9))
    described = client.get("/v1/model").json()["abstention"]
    assert described["target_accuracy"] == 0.9 and 0 < described["min_confidence"] <= 1
    files = [("files", (f"{i}.jpg", (demo_dir / "images" / f"{i}.jpg").read_bytes(), "image/jpeg")) for i in range(40)]
    answer = client.post("/v1/predict", files=files).json()
    marked = [result["faces"][0]["abstained"] for result in answer["results"]]
    assert marked == list(confidence < described["min_confidence"])
    assert f"affectkit_abstained_faces_total {sum(marked)}" in client.get("/metrics").text
    plain = TestClient(create_app(saved, detect=False))
    assert plain.get("/v1/model").json()["abstention"] is None
    one = plain.post("/v1/predict", files=files[:1]).json()["results"][0]["faces"][0]
    assert "abstained" not in one and one["expression"] in CLASS_NAMES


def test_the_validation_thresholds_are_tried_on_other_faces():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    targets = np.array([0, 1, 1, 0])  # right, wrong, right, wrong: the surest two are half right
    curve = [{"coverage": 1.0, "min_confidence": 0.5, "accuracy": 0.6}, {"coverage": 0.5, "min_confidence": 0.75,
                                                                          "accuracy": 0.9},
             {"coverage": 0.1, "min_confidence": 0.95, "accuracy": 1.0}]
    tried = thresholds_held_out(probs, targets, curve)
    assert [(t["coverage"], t["accuracy"]) for t in tried] == [(1.0, 0.5), (0.5, 0.5), (0.0, None)]
    assert [(t["validation_coverage"], t["validation_accuracy"], t["min_confidence"]) for t in tried] == [
        (c["coverage"], c["accuracy"], c["min_confidence"]) for c in curve]


def test_thresholds_per_class_are_tried_on_other_faces_against_the_overall_one():
    confidence = np.array([0.9, 0.7, 0.6, 0.95, 0.8, 0.55])
    predicted = np.array([0, 0, 0, 1, 1, 1])
    probs = np.where(predicted[:, None] == [0, 1], confidence[:, None], 1 - confidence[:, None])
    targets = np.array([0, 0, 1, 0, 0, 1])  # Neutral: right, right, wrong; Happy: wrong, wrong, right
    recorded = {"curve": [{"coverage": 1.0, "min_confidence": 0.5, "accuracy": 0.5},
                          {"coverage": 0.5, "min_confidence": 0.75, "accuracy": 0.9}],
                "by_class": {"Neutral": {"faces": 30, "curve": [{"coverage": 1.0, "min_confidence": 0.6,
                                                                 "accuracy": 0.95}]},
                             "Happy": {"faces": 25, "curve": [{"coverage": 1.0, "min_confidence": 0.5,
                                                               "accuracy": 0.3}]}}}
    tried = class_thresholds_held_out(probs, targets, recorded, ["Neutral", "Happy"], (0.4, 0.9, 0.95))
    assert tried == [  # 0.95: no share of the validation faces reaches it
        {"target_accuracy": 0.4, "overall": {"coverage": 1.0, "accuracy": 0.5},
         "per_class": {"coverage": 0.5, "accuracy": 0.6667}},  # Happy never reaches 0.4: all its faces held back
        {"target_accuracy": 0.9, "overall": {"coverage": 0.5, "accuracy": 0.3333},
         "per_class": {"coverage": 0.5, "accuracy": 0.6667}}]


def test_an_evaluation_tries_the_validation_thresholds_on_its_own_faces(measured, demo_dir, tmp_path):
    from affectkit.pipeline import evaluate_saved

    saved, _, _ = measured
    metrics = evaluate_saved(saved, demo_dir, "all", None, tmp_path / "eval", quiet=True)
    tried = metrics["expression"]["validation_thresholds"]
    curve = read_metadata(saved)["validation_coverage"]["curve"]
    assert [t["min_confidence"] for t in tried] == [c["min_confidence"] for c in curve]
    coverages = [t["coverage"] for t in tried]
    assert coverages == sorted(coverages, reverse=True) and coverages[0] > 0  # a higher threshold answers fewer
    card = card_path(saved).read_text()
    assert "The abstention thresholds read on the validation faces, on these" in card
    assert f"answers {tried[VALIDATION_COVERAGES.index(0.8)]['coverage']:.0%} here" in card

    from affectkit.cli import app

    printed = CliRunner().invoke(app, ["evaluate", str(saved), str(demo_dir), "--split", "all", "--out",
                                       str(tmp_path / "again"), "--quiet"])
    assert printed.exit_code == 0, printed.output
    said = " ".join(printed.output.split())  # the console wraps long lines
    assert "Abstaining (predict/serve --target-accuracy): the thresholds read on the validation faces" in said
    assert f"answers {tried[VALIDATION_COVERAGES.index(0.5)]['coverage']:.0%} here" in said
    assert "class_thresholds" not in metrics["expression"]  # the model records no thresholds per class

    precise = _with_class_curve(measured, tmp_path / "precise", accuracy=0.95)
    metrics = evaluate_saved(precise, demo_dir, "all", None, tmp_path / "per_class", quiet=True)
    compared = {t["target_accuracy"]: t for t in metrics["expression"]["class_thresholds"]}
    # Fear (every face's class) was right often enough at every share: its own threshold answers more faces.
    per_class, overall = compared[0.9]["per_class"], compared[0.9]["overall"]
    assert per_class["coverage"] > 0.9 > overall["coverage"]
    card = " ".join(card_path(precise).read_text().split())
    assert "A threshold per class (`--per-class-thresholds`) against one for all, on these" in card
    said = (f"for 0.9, {per_class['coverage']:.0%} answered, {per_class['accuracy']:.3f} right against "
            f"{overall['coverage']:.0%} answered")
    assert said in card
    printed = CliRunner().invoke(app, ["evaluate", str(precise), str(demo_dir), "--split", "all", "--out",
                                       str(tmp_path / "per_class_again"), "--quiet"])
    assert said in " ".join(printed.output.split())


def test_an_exported_model_predicts_serves_and_abstains_without_pytorch(measured, demo_dir, tmp_path):
    """`affectkit predict MODEL.onnx` and a server of it, on face crops, and `predict` finding faces with OpenCV's
    cascade, with a threshold per class read from the export's description: no PyTorch, timm, torchmetrics or
    Lightning is loaded (an ONNX deployment needs none)."""
    import subprocess
    import sys

    from affectkit.inference.export import export_onnx

    exported = export_onnx(_with_class_curve(measured, tmp_path / "precise", accuracy=0.95))
    alone = tmp_path / "alone" / exported.name  # the .onnx file alone: its description is the copy it carries
    alone.parent.mkdir()
    shutil.copy(exported, alone)
    face = demo_dir / "images" / "0.jpg"
    photo = tmp_path / "astronaut.jpg"  # a photograph: OpenCV's cascade finds its face
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    loaded = "print([m for m in ('torch', 'timm', 'torchmetrics', 'lightning') if m in sys.modules])"

    def predict(image: Path, *options: str) -> str:
        return ("import sys\nfrom affectkit.cli import main\n"
                f"sys.argv = ['affectkit', 'predict', {str(alone)!r}, {str(image)!r}, *{options!r}, "
                "'--target-accuracy', '0.9', '--per-class-thresholds', '--out', '-']\n"
                f"try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n{loaded}")

    serve = ("import sys\nfrom fastapi.testclient import TestClient\nfrom affectkit.serving import create_app\n"
             f"app = create_app({str(alone)!r}, detect=False, target_accuracy=0.9, per_class_thresholds=True)\n"
             f"files = [('files', ('0.jpg', open({str(face)!r}, 'rb').read(), 'image/jpeg'))]\n"
             "face, = TestClient(app).post('/v1/predict', files=files).json()['results'][0]['faces']\n"
             f"print(face['expression'], face['abstained'])\n{loaded}")
    answers = []
    for code in (predict(face, "--no-detect", "--threads", "1"), serve, predict(photo, "--detector", "haar")):
        ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        answer, modules = ran.stdout.strip().splitlines()[-2:]
        assert modules == "[]"
        answers.append(answer)
    assert '"abstained": false' in answers[0] and '"expression": "Fear"' in answers[0]
    assert answers[1] == "Fear False"
    assert '"status": "ok"' in answers[2] and '"x1": ' in answers[2]  # a face found, and read, without PyTorch


def test_a_served_video_marks_its_frames_and_tracks(model_path, demo_dir, tmp_path):
    import cv2

    face = read_image(demo_dir / "images" / "0.jpg")
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4.0, face.shape[1::-1])
    for shift in range(6):
        writer.write(cv2.cvtColor(np.roll(face, shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    for threshold, marked in ((1.0, True), (0.01, False)):
        client = TestClient(create_app(model_path, detect=False, min_confidence=threshold))
        result = client.post("/v1/predict-video", files={"file": ("clip.avi", path.read_bytes(), "video/x-msvideo")},
                             params={"fps": 4, "smooth": 0.5}).json()
        assert [f["faces"][0]["abstained"] for f in result["frames"]] == [marked] * 6
        assert [t["abstained"] for t in result["tracks"]] == [marked]
