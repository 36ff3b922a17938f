"""Monitoring a served model: drift of its outputs from those on its validation faces (stored when it is
calibrated; PSI per signal, GET /v1/drift, Prometheus gauges), and its accuracy on the faces whose truth clients
report (POST /v1/feedback, GET /v1/performance)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from affectkit.config import CLASS_NAMES
from affectkit.errors import AffectkitError
from affectkit.evaluation.calibration import calibrate
from affectkit.evaluation.drift import PSI_SHIFT, output_profile, profile_shift, psi
from affectkit.evaluation.evaluator import Predictions
from affectkit.models.metadata import read_metadata, update_metadata
from affectkit.serving import create_app
from affectkit.serving.drift import DriftMonitor

pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(n: int, rng: np.random.Generator, skew: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [n, 8] and valence/arousal [n, 2]; ``skew`` pushes the faces toward Happy and positive
    valence."""
    logits = rng.normal(size=(n, 8))
    logits[:, 1] += skew * 4
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    va = np.clip(rng.normal(skew, 0.4, size=(n, 2)), -1, 1)
    return probabilities, va


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    reference = output_profile(*_outputs(5000, rng))
    same = output_profile(*_outputs(5000, rng))
    shifted = output_profile(*_outputs(5000, rng, skew=1.0))
    assert sum(reference["expression"]) == pytest.approx(1) and reference["faces"] == 5000
    assert all(v < 0.02 for v in profile_shift(reference, same).values())
    shift = profile_shift(reference, shifted)
    assert shift["expression"] > PSI_SHIFT and shift["valence"] > PSI_SHIFT
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0 and np.isfinite(psi([1.0, 0.0], [0.0, 1.0]))


def test_calibration_stores_the_calibrated_outputs_profile(model_path, tmp_path):
    saved = tmp_path / "best_CustomCNN.safetensors"
    shutil.copy(model_path, saved)
    shutil.copy(model_path.with_suffix(".json"), saved.with_suffix(".json"))
    rng = np.random.default_rng(1)
    probabilities, va = _outputs(200, rng)
    labels = probabilities.argmax(axis=1)
    val = Predictions(np.log(probabilities) * 3, va)  # over-confident: calibration changes the confidences
    temperature = calibrate(saved, val, labels)
    stored = read_metadata(saved)["output_profile"]
    tempered = val.tempered(temperature)
    assert stored == output_profile(tempered.probs, tempered.valence_arousal)
    assert stored != output_profile(val.probs, val.valence_arousal)


def test_the_server_reports_drift_of_the_faces_it_serves(demo_dir, tiny_config, tmp_path):
    from affectkit.inference.images import read_image
    from affectkit.inference.predictor import Predictor
    from affectkit.pipeline import train_one

    saved = train_one("custom_cnn", demo_dir, tmp_path / "run", tiny_config, quiet=True)
    assert read_metadata(saved)["output_profile"]["faces"] == 16  # its validation faces, stored by calibration
    # The reference here is the model's outputs on the faces served first, so that serving them again must read as
    # stable whatever those outputs are.
    faces = [read_image(demo_dir / "images" / f"{i}.jpg") for i in range(60)]
    served = Predictor(saved, backend="torch", detect=False).predict_images(faces)
    probabilities = np.array([[f[0]["probabilities"][c] for c in CLASS_NAMES] for f in served])
    va = np.array([[f[0]["valence"], f[0]["arousal"]] for f in served])
    assert len(set(probabilities.argmax(axis=1))) >= 3  # a model whose verdicts vary from face to face
    update_metadata(saved, output_profile=output_profile(probabilities, va))

    client = TestClient(create_app(saved, detect=False, drift_window=60, drift_min_faces=30, max_files=64))
    files = [("files", (f"{i}.jpg", (demo_dir / "images" / f"{i}.jpg").read_bytes(), "image/jpeg"))
             for i in range(60)]
    assert client.get("/v1/drift").json()["status"] == "collecting"
    assert client.post("/v1/predict", files=files).status_code == 200  # the reference faces themselves
    stable = client.get("/v1/drift").json()
    assert stable["status"] == "stable" and stable["window_faces"] == 60 and stable["shifted"] == []
    assert all(v == pytest.approx(0, abs=1e-6) for v in stable["psi"].values())
    one_face = [("files", ("same.jpg", (demo_dir / "images" / "3.jpg").read_bytes(), "image/jpeg"))] * 50
    assert client.post("/v1/predict", files=one_face).status_code == 200  # now the window is mostly one face
    drifted = client.get("/v1/drift").json()
    assert drifted["status"] == "drift" and "expression" in drifted["shifted"]
    metrics = client.get("/metrics").text
    assert f'affectkit_drift_psi{{signal="expression"}} {drifted["psi"]["expression"]!r}' in metrics

    meta = read_metadata(saved)
    del meta["output_profile"]  # as a model saved by an earlier version
    saved.with_suffix(".json").write_text(json.dumps(meta))
    bare = TestClient(create_app(saved, detect=False))
    assert bare.get("/v1/drift").json()["status"] == "no reference"
    with pytest.raises(AffectkitError, match="--drift-window"):
        DriftMonitor(None, CLASS_NAMES, window=10, min_faces=20)


def test_reports_of_the_truth_score_the_served_predictions(model_path, tmp_path):
    from affectkit.serving.feedback import FeedbackTracker

    saved = tmp_path / "best_CustomCNN.safetensors"
    shutil.copy(model_path, saved)
    shutil.copy(model_path.with_suffix(".json"), saved.with_suffix(".json"))
    update_metadata(saved, evaluations=[{"split": "test", "data": "faces", "n": 40, "accuracy": 0.8,
                                         "valence": {"mae": 0.2}, "arousal": {"mae": 0.25}}])
    client = TestClient(create_app(saved, detect=False, remembered_predictions=5, max_files=16))
    images = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(6)]
    files = [("files", (f"{i}.png", cv2.imencode(".png", im)[1].tobytes(), "image/png")) for i, im in enumerate(images)]
    faces = [r["faces"][0] for r in client.post("/v1/predict", files=files).json()["results"]]
    assert len({f["prediction_id"] for f in faces}) == 6

    said = [f["expression"] for f in faces]
    other = next(c for c in CLASS_NAMES if c != said[2])
    reports = [
        {"prediction_id": faces[1]["prediction_id"], "expression": said[1].lower(), "valence": 0.5},
        {"prediction_id": faces[2]["prediction_id"], "expression": CLASS_NAMES.index(other)},
        {"prediction_id": faces[3]["prediction_id"], "arousal": -0.5},
    ]
    for report in reports:
        response = client.post("/v1/feedback", json=report)
        assert response.status_code == 200 and response.json() == {"status": "recorded"}, response.text
    performance = client.get("/v1/performance").json()
    assert performance["reports"] == 3 and performance["expression"]["accuracy"] == pytest.approx(0.5)
    assert performance["expression"]["recall"][said[1]] == 1.0 and performance["expression"]["recall"][other] == 0.0
    assert performance["valence"]["mae"] == pytest.approx(abs(0.5 - faces[1]["valence"]), abs=1e-6)
    assert performance["arousal"] == {"reports": 1, "mae": pytest.approx(abs(-0.5 - faces[3]["arousal"]), abs=1e-6)}
    assert performance["model_test"] == {"data": "faces", "n": 40, "accuracy": 0.8, "valence": 0.2, "arousal": 0.25}
    assert "affectkit_feedback_accuracy 0.5" in client.get("/metrics").text

    refusals = [
        ({"prediction_id": faces[1]["prediction_id"], "expression": "happy"}, 409, "reported already"),
        ({"prediction_id": faces[0]["prediction_id"], "expression": "happy"}, 404, "last 5 predictions"),  # forgotten
        ({"prediction_id": "nope", "expression": "happy"}, 404, "unknown, or too old"),
        ({"prediction_id": faces[4]["prediction_id"], "expression": "bored"}, 422, "not one of Neutral"),
        ({"prediction_id": faces[4]["prediction_id"], "valence": 1.5}, 422, "outside [-1, 1]"),
        ({"prediction_id": faces[4]["prediction_id"]}, 422, "gives an expression, a valence or an arousal"),
        ({"expression": "happy"}, 422, "prediction_id"),
    ]
    for body, status, message in refusals:
        response = client.post("/v1/feedback", json=body)
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert client.get("/v1/performance").json()["reports"] == 3
    with pytest.raises(AffectkitError, match="--feedback-window"):
        FeedbackTracker(CLASS_NAMES, window=0)


def _png_uploads(n: int, start: int = 0) -> list[tuple[str, tuple[str, bytes, str]]]:
    images = [np.full((64, 64, 3), (37 * i) % 256, np.uint8) for i in range(start, start + n)]
    return [("files", (f"{i}.png", cv2.imencode(".png", im)[1].tobytes(), "image/png")) for i, im in enumerate(images)]


def test_the_monitoring_state_outlives_the_server(model_path, tmp_path):
    import torch

    from affectkit.config import Config
    from affectkit.models import build_model, save_model
    from affectkit.serving.state import state_file

    state_dir = tmp_path / "state"
    options = dict(detect=False, remembered_predictions=5, drift_window=8, drift_min_faces=4, state_dir=state_dir)
    first = TestClient(create_app(model_path, **options))
    faces = [r["faces"][0] for r in first.post("/v1/predict", files=_png_uploads(6)).json()["results"]]
    reported = {"prediction_id": faces[1]["prediction_id"], "expression": faces[1]["expression"], "valence": 0.5}
    assert first.post("/v1/feedback", json=reported).status_code == 200
    path = state_file(state_dir, model_path)
    assert path.is_file() and path.name.startswith("best_CustomCNN-")

    # A restart: the report, the window and the still-remembered predictions are all there.
    second = TestClient(create_app(model_path, **options))
    performance = second.get("/v1/performance").json()
    assert performance["reports"] == 1 and performance["expression"]["accuracy"] == 1.0
    assert performance["valence"]["mae"] == pytest.approx(abs(0.5 - faces[1]["valence"]), abs=1e-6)
    assert second.get("/v1/drift").json()["window_faces"] == 6
    assert second.post("/v1/feedback", json=reported).status_code == 409
    assert second.post("/v1/feedback", json={"prediction_id": faces[0]["prediction_id"], "arousal": 0.1}
                       ).status_code == 404  # the sixth-latest of a server remembering five
    assert second.post("/v1/feedback", json={"prediction_id": faces[2]["prediction_id"], "arousal": 0.1}
                       ).status_code == 200
    newer = second.post("/v1/predict", files=_png_uploads(4, start=6)).json()["results"]
    assert second.get("/v1/drift").json()["window_faces"] == 8
    assert "affectkit_feedback_reports_total 2" in second.get("/metrics").text

    # A report the file cannot take is refused (503) and not counted; predictions are still served.
    second.app.state.serving_state.close()
    late = {"prediction_id": newer[0]["faces"][0]["prediction_id"], "expression": "happy"}
    refused = second.post("/v1/feedback", json=late)
    assert refused.status_code == 503 and "could not be stored" in refused.json()["detail"]
    assert second.get("/v1/performance").json()["reports"] == 2
    assert second.post("/v1/predict", files=_png_uploads(1)).status_code == 200

    # Another model in the same folder starts afresh; a file that is not a state is named in the error.
    torch.manual_seed(1)
    config = Config(img_size=64)
    other = save_model(build_model("custom_cnn", config), tmp_path / "other" / "best_CustomCNN", config)
    fresh = TestClient(create_app(other, **options))
    assert fresh.get("/v1/performance").json()["reports"] == 0 and fresh.get("/v1/drift").json()["window_faces"] == 0
    assert state_file(state_dir, other) != path
    broken = state_file(tmp_path / "broken", model_path)
    broken.parent.mkdir()
    broken.write_bytes(b"not a database" * 100)
    with pytest.raises(AffectkitError, match=f"{broken.name}: not a usable affectkit serving state"):
        create_app(model_path, **options | {"state_dir": broken.parent})


def test_the_state_file_keeps_the_windows_and_every_report(model_path, tmp_path):
    import sqlite3

    from affectkit.serving.state import PRUNE_EVERY, ServingState

    state = ServingState(tmp_path, model_path, CLASS_NAMES, served_window=10, remembered=20)
    state.add_predictions([(f"id{i}", ("Happy", 0.1 * (i % 10), 0.0, None)) for i in range(PRUNE_EVERY)])
    state.add_served([("Sad", -0.5, 0.2, 0.9)] * PRUNE_EVERY)
    for i in range(PRUNE_EVERY - 30, PRUNE_EVERY):
        state.add_report(f"id{i}", (("Happy", 0.0, 0.0, None), "Sad" if i % 2 else None, None, 0.5))
    reports, total = state.reports(latest=5)
    assert total == 30 and len(reports) == 5 and reports[-1] == (("Happy", 0.0, 0.0, None), "Sad", None, 0.5)
    remembered = state.remembered()
    assert [pid for pid, _, _ in remembered] == [f"id{i}" for i in range(PRUNE_EVERY - 20, PRUNE_EVERY)]
    assert all(reported for _, _, reported in remembered)
    assert state.recent_served() == [("Sad", -0.5, 0.2, 0.9)] * 10
    state.close()
    with sqlite3.connect(state.path) as db:  # pruned on disk, reports all kept
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("served", "predictions", "reports")}
    assert counts == {"served": 10, "predictions": 20, "reports": 30}


def test_reports_on_faces_abstained_on_are_scored_apart_and_kept_even_in_a_state_from_before(model_path, tmp_path):
    import sqlite3
    from contextlib import closing

    from affectkit.inference.predictor import Predictor
    from affectkit.serving.report import feedback_report
    from affectkit.serving.state import SCHEMA, read_reports, state_file

    state_dir = tmp_path / "state"
    older = state_file(state_dir, model_path)  # written by a server that kept no abstentions: no such columns
    state_dir.mkdir()
    with closing(sqlite3.connect(older)) as db, db:
        db.executescript(SCHEMA.replace(",\n    abstained INTEGER", "").replace(", said_abstained INTEGER", ""))
        db.executemany("INSERT INTO model VALUES (?, ?)", [("model", model_path.name),
                                                           ("class_names", ",".join(CLASS_NAMES))])
        db.execute("INSERT INTO reports (time, prediction_id, expression, said_expression, said_valence, "
                   "said_arousal) VALUES (0, 'before', 'Happy', 'Happy', 0, 0)")
    assert read_reports(older)[0]["said_abstained"].isna().all()

    uploads = _png_uploads(8)
    confidence = [f["confidence"] for f in Predictor(model_path, detect=False).predict_batch(
        [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for _, (_, data, _) in uploads])]
    options = dict(detect=False, state_dir=state_dir, min_confidence=float(np.median(confidence)))
    client = TestClient(create_app(model_path, **options))
    faces = [r["faces"][0] for r in client.post("/v1/predict", files=uploads).json()["results"]]
    held_back = [f["abstained"] for f in faces]
    assert held_back == [c < options["min_confidence"] for c in confidence] and 0 < sum(held_back) < 8
    for face in faces:  # right wherever it answered, wrong wherever it abstained
        wrong = next(c for c in CLASS_NAMES if c != face["expression"])
        truth = wrong if face["abstained"] else face["expression"]
        assert client.post("/v1/feedback", json={"prediction_id": face["prediction_id"], "expression": truth}
                           ).status_code == 200
    expected = {"answered": {"reports": 8 - sum(held_back), "accuracy": 1.0},
                "abstained": {"reports": sum(held_back), "accuracy": 0.0}}
    performance = client.get("/v1/performance").json()["expression"]
    assert {k: performance[k] for k in expected} == expected
    assert performance["accuracy"] == pytest.approx((9 - sum(held_back)) / 9)  # with the right one from before
    assert "affectkit_feedback_answered_accuracy 1.0" in client.get("/metrics").text
    restarted = TestClient(create_app(model_path, **options)).get("/v1/performance").json()["expression"]
    assert {k: restarted[k] for k in expected} == expected

    report = feedback_report(older, tmp_path / "report")  # the report from before counts in neither part
    assert report.summary["expression"]["reports"] == 9
    assert {k: report.summary["expression"][k] for k in expected} == expected
    assert f"{8 - sum(held_back)} answered, accuracy 1.000" in (tmp_path / "report" / "feedback.md").read_text()


def test_feedback_report_scores_every_report_kept_in_the_state(model_path, tmp_path):
    import sqlite3

    import pandas as pd
    from typer.testing import CliRunner

    from affectkit.cli import app
    from affectkit.serving.state import ServingState

    state = ServingState(tmp_path / "state", model_path, CLASS_NAMES, served_window=10, remembered=100)
    said = ["Happy", "Sad", "Happy", "Anger", "Neutral", "Happy"]
    state.add_predictions([(f"id{i}", (e, 0.5, 0.0, None)) for i, e in enumerate(said)])
    truths = [("Happy", 0.4, None), ("Happy", None, None), ("Happy", None, -0.2), ("Anger", 0.1, None),
              (None, None, 0.3), ("Fear", -0.5, None)]
    for i, (expression, valence, arousal) in enumerate(truths):
        state.add_report(f"id{i}", ((said[i], 0.5, 0.0, None), expression, valence, arousal))
    state.close()
    day = 24 * 3600
    with sqlite3.connect(state.path) as db:  # the first three reports a day earlier
        db.execute("UPDATE reports SET time = time - ? WHERE seq <= 3", (day,))

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["feedback-report", str(state.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    said_line = " ".join(result.output.split())  # the console wraps long lines
    assert "6 reports" in said_line and "expression accuracy 0.600 over 5" in said_line
    table = pd.read_csv(out / "reports.csv")
    assert len(table) == 6 and table["said_expression"].tolist() == said
    text = (out / "feedback.md").read_text()
    assert "accuracy 0.600" in text and "Valence: 3 reports, MAE 0.500" in text  # |0.4-0.5|, |0.1-0.5|, |-0.5-0.5|
    assert "Happy 0.67" in text and "Anger 1.00" in text and "Fear 0.00" in text  # recall
    rows = [line for line in text.splitlines() if line.startswith("| 20")]
    assert len(rows) == 2 and rows[0].split("|")[2].strip() == "3"  # two days: 3 reports, then 3
    assert (out / "feedback.png").stat().st_size > 10_000 and (out / "feedback_confusion.png").is_file()
    from affectkit.serving.report import feedback_report

    weekly = feedback_report(state.path, tmp_path / "weekly", every="week").periods
    assert all(start.weekday() == 0 and start.hour == 0 for start in weekly["period"])  # each week by its Monday
    assert weekly["reports"].sum() == 6 and weekly["period"].max() <= pd.Timestamp.now(tz="UTC")

    # With the served model, its own test scores go beside the reports; another model's state is refused.
    update_metadata(model_path, evaluations=[{"split": "test", "data": "faces", "n": 40, "accuracy": 0.8,
                                              "valence": {"mae": 0.2}}])
    result = CliRunner().invoke(app, ["feedback-report", str(state.path), "--out", str(out), "--model",
                                      str(model_path)])
    assert result.exit_code == 0 and "(its own test split: accuracy 0.800)" in " ".join(result.output.split())
    assert "- The model's own test split (faces, 40 faces): accuracy 0.800, valence MAE 0.200" in (
        out / "feedback.md").read_text()
    other = tmp_path / "other" / model_path.name
    other.parent.mkdir()
    other.write_bytes(model_path.read_bytes() + b"\0")
    shutil.copy(model_path.with_suffix(".json"), other.with_suffix(".json"))
    refused = CliRunner().invoke(app, ["feedback-report", str(state.path), "--out", str(out), "--model", str(other)])
    assert refused.exit_code != 0 and "while serving another model" in str(refused.exception)

    bad = tmp_path / "notes.sqlite"
    bad.write_text("not a database")
    refused = CliRunner().invoke(app, ["feedback-report", str(bad), "--out", str(out)])
    assert refused.exit_code != 0 and "is not a state file" in str(refused.exception)
    empty = ServingState(tmp_path / "empty", model_path, CLASS_NAMES, served_window=10, remembered=10)
    refused = CliRunner().invoke(app, ["feedback-report", str(empty.path), "--out", str(out)])
    assert "holds no report of the truth yet" in str(refused.exception)


def test_a_served_file_is_compared_with_its_own_test_scores():
    """An export evaluated itself (affectkit evaluate model.int8.onnx) has its own card row: served, it is held to
    that row; the weights, and an export never scored alone, to the weights' latest one."""
    from affectkit.serving.feedback import latest_test_evaluation

    weights = {"split": "test", "data": "faces", "accuracy": 0.80}
    int8 = {"split": "test", "data": "faces", "accuracy": 0.77, "export": "best_X.int8.onnx"}
    meta = {"evaluations": [weights, {"split": "val", "data": "faces", "accuracy": 0.9}, int8]}
    assert latest_test_evaluation(meta, "runs/best_X.safetensors") == weights
    assert latest_test_evaluation(meta, "runs/best_X.int8.onnx") == int8
    assert latest_test_evaluation(meta, "runs/best_X.onnx") == weights
    assert latest_test_evaluation({"evaluations": [int8]}, "runs/best_X.safetensors") is None


def test_the_reference_scores_leave_out_what_the_test_split_had_none_of(model_path, tmp_path):
    """A model tested on faces without valence/arousal (FER2013, RAF-DB, CK+) or without a class records None there:
    served, its performance and metrics still answer."""
    from affectkit.serving.feedback import reference_scores

    assert reference_scores({"split": "test", "data": "fer", "n": 9, "accuracy": 0.7, "valence": None,
                             "arousal": None}) == {"data": "fer", "n": 9, "accuracy": 0.7}
    assert reference_scores({"split": "test", "data": "va", "n": 9, "accuracy": None, "valence": {"mae": 0.3},
                             "arousal": {"mae": 0.2}}) == {"data": "va", "n": 9, "valence": 0.3, "arousal": 0.2}
    saved = tmp_path / "best_CustomCNN.safetensors"
    shutil.copy(model_path, saved)
    shutil.copy(model_path.with_suffix(".json"), saved.with_suffix(".json"))
    update_metadata(saved, evaluations=[{"split": "test", "data": "fer", "n": 9, "accuracy": 0.7, "valence": None,
                                         "arousal": None}])
    client = TestClient(create_app(saved, detect=False))
    assert client.get("/v1/performance").json()["model_test"] == {"data": "fer", "n": 9, "accuracy": 0.7}
    assert client.get("/metrics").status_code == 200
