"""Expression models: trained on a set where no face has valence or arousal (FER2013, RAF-DB, CK+), their
valence/arousal outputs were never trained, so they are not reported, scored, served, drawn or monitored."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from affectkit.config import CLASS_NAMES, Config
from affectkit.data.datamodule import prepare_data
from affectkit.data.reader import read_dataset
from affectkit.evaluation.card import card_path
from affectkit.evaluation.drift import output_profile, profile_shift
from affectkit.evaluation.ensemble import average, stack
from affectkit.evaluation.evaluator import Predictions, score
from affectkit.inference.annotate import draw_predictions
from affectkit.inference.export import export_onnx
from affectkit.inference.predictor import Predictor
from affectkit.inference.timeline import TrackSmoother, plot_timeline, timeline_figure, track_summaries
from affectkit.models.io import load_model
from affectkit.models.metadata import model_paths, read_metadata
from affectkit.pipeline.run import evaluate_saved, train_one
from affectkit.serving import create_app

pytestmark = pytest.mark.usefixtures("one_thread")


def _config() -> Config:
    return Config(img_size=32, batch_size=16, epochs=2, fine_tune_epochs=0, num_workers=0, seed=0, precision="32")


@pytest.fixture(scope="module")
def expression_model(demo_dir, tmp_path_factory) -> Path:
    """A custom CNN trained on the demo faces listed with their class alone, without Contempt (as FER2013, RAF-DB
    and most expression sets)."""
    rows = [{"path": str(r.image_path), "expression": CLASS_NAMES[r.expression]}
            for r in read_dataset(demo_dir, progress=False).records if CLASS_NAMES[r.expression] != "Contempt"]
    folder = tmp_path_factory.mktemp("expression")
    pd.DataFrame(rows).to_csv(folder / "faces.csv", index=False)
    return train_one("custom_cnn", folder / "faces.csv", folder / "run", _config(), quiet=True)


@pytest.fixture(scope="module")
def crops(demo_dir) -> list[np.ndarray]:
    paths = sorted((demo_dir / "images").glob("*.jpg"))[:3]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_a_set_without_valence_arousal_trains_an_expression_model(expression_model, model_path, tmp_path):
    meta = read_metadata(expression_model)
    assert meta["predicts_valence_arousal"] is False and meta["predicts_expression"] is True
    assert not load_model(expression_model)[0].predicts_valence_arousal
    assert meta["output_profile"]["valence"] is None and meta["output_profile"]["expression"] is not None
    card = expression_model.parent / "CustomCNN_card.md"
    assert "no valence or arousal (no face it was trained on had them)" in card.read_text()
    assert "| loss | 1.0 x CE + mse(valence/arousal) idle (no face had them);" in card.read_text()
    assert "of which Contempt always 0 (not in the training data)" in card.read_text()
    # A model saved before this was recorded (no flag among its tensors) reports valence and arousal, as it did.
    weights, description = model_paths(model_path)
    old = tmp_path / "best_CustomCNN"
    state = load_file(str(weights))
    del state["valence_arousal_trained"]
    save_file(state, str(old) + ".safetensors")
    Path(str(old) + ".json").write_text(description.read_text().replace('"predicts_valence_arousal": true,', ""))
    assert "predicts_valence_arousal" not in read_metadata(old)
    assert load_model(old)[0].predicts_valence_arousal and Predictor(old, detect=False).predicts_valence_arousal


def test_an_expression_model_is_not_scored_for_valence_arousal_even_on_rated_faces(expression_model, demo_dir,
                                                                                   tmp_path):
    metrics = evaluate_saved(expression_model, demo_dir, "all", None, tmp_path, quiet=True)
    assert metrics["valence"] is None and metrics["arousal"] is None and metrics["expression"]["n"] == 96
    # It never learnt Contempt, whose 12 faces here count as errors: counted apart, and noted on its card.
    unlearnt = metrics["expression"]["unlearnt_classes"]
    assert unlearnt["faces"] == {"Contempt": 12} and unlearnt["other_faces"] == 84
    assert unlearnt["accuracy_on_learnt_classes"] == pytest.approx(metrics["expression"]["accuracy"] * 96 / 84)
    card = card_path(expression_model).read_text()
    assert f"Note (`{demo_dir.resolve()}`, all): 12 faces are of classes the model never learnt (Contempt 12" in card

    rng = np.random.default_rng(0)
    members = [Predictions(rng.normal(size=(20, 8)), rng.uniform(-1, 1, (20, 2)), predicts_valence_arousal=False)
               for _ in range(2)]
    data = prepare_data(demo_dir, _config(), progress=False)
    positions = data.positions("all")[:20]
    y, va = data.expression[positions], data.valence_arousal[positions]
    assert score(average(members), data, positions)["valence"] is None
    stacked = stack(members, members, y, va)
    assert not stacked.predicts_valence_arousal and score(stacked, data, positions)["expression"]["n"] == 20
    assert score(members[0].tempered(2.0), data, positions)["valence"] is None  # tempering keeps what it predicts
    assert score(Predictions(members[0].logits, members[0].valence_arousal), data, positions)["valence"]


def test_an_expression_model_gives_no_valence_arousal(expression_model, crops, tmp_path):
    onnx = export_onnx(expression_model)
    for backend, path in (("torch", expression_model), ("onnx", onnx)):
        predictor = Predictor(path, backend=backend, detect=False)
        assert not predictor.predicts_valence_arousal and predictor.class_names == list(CLASS_NAMES)
        for face in predictor.predict_batch(crops):
            assert face["valence"] is None and face["arousal"] is None
            assert face["expression"] in CLASS_NAMES and sum(face["probabilities"].values()) == pytest.approx(1)
    predictor = Predictor(expression_model, backend="torch", detect=False)
    assert predictor.trained_classes == list(CLASS_NAMES[:7])
    frame = predictor.predict(list(crops)).to_frame()
    assert frame["valence"].isna().all() and frame["expression"].notna().all()
    sampled = Predictor(expression_model, backend="torch", detect=False, mc_samples=2).predict_batch(crops[:1])[0]
    assert sampled["valence_std"] is None and sampled["entropy"] >= 0
    faces = Predictor(expression_model, backend="torch", detect=False).predict_batch(crops[:1])
    drawn = draw_predictions(crops[0], [{**faces[0], "box": [0, 0, 40, 40]}])
    assert drawn.shape == crops[0].shape and not np.array_equal(drawn, crops[0])


def test_timelines_of_an_expression_model(tmp_path):
    smoother = TrackSmoother(list(CLASS_NAMES), alpha=0.5)
    frames = []
    for index, happy in enumerate((1.0, 0.0)):
        probabilities = {name: 0.0 for name in CLASS_NAMES} | {"Happy": happy, "Sad": 1 - happy}
        face = {"box": [0, 0, 10, 10], "probabilities": probabilities, "expression": None, "expression_id": None,
                "confidence": None, "valence": None, "arousal": None}
        frames.append((index, smoother.update([face])))
    smoothed = frames[1][1][0]
    assert smoothed["probabilities"]["Happy"] == pytest.approx(0.5) and smoothed["valence"] is None
    summary = track_summaries(frames, list(CLASS_NAMES))[0]
    assert summary["valence"] is None and summary["probabilities"]["Happy"] == pytest.approx(0.75)  # 1 and 0.5
    rows = [{"frame": i, "status": "ok", "track": f["track"], "valence": None, "arousal": None,
             **{f"p_{c}": p for c, p in f["probabilities"].items()}} for i, faces in frames for f in faces]
    assert plot_timeline(rows, list(CLASS_NAMES), tmp_path / "timeline.png", "clip").is_file()
    # A model that never saw Contempt: no Contempt band in the legend, which names it as not learnt instead.
    legend = timeline_figure(rows, list(CLASS_NAMES), "clip", list(CLASS_NAMES[:7])).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(CLASS_NAMES[:7])
    assert legend.get_title().get_text() == "not learnt: Contempt"
    everything = timeline_figure(rows, list(CLASS_NAMES), "clip").axes[0].get_legend()
    assert len(everything.get_texts()) == len(CLASS_NAMES) and everything.get_title().get_text() == ""


def test_drift_profiles_of_an_expression_model():
    probabilities = np.random.default_rng(0).dirichlet(np.ones(8), 50)
    profile = output_profile(probabilities, None)
    assert profile["valence"] is None and profile["arousal"] is None
    assert set(profile_shift(profile, output_profile(probabilities[::-1], None))) == {"expression", "confidence"}


def test_serving_an_expression_model(expression_model, crops, tmp_path):
    def client() -> TestClient:
        return TestClient(create_app(expression_model, detect=False, state_dir=tmp_path / "state",
                                     drift_min_faces=1, drift_window=10))

    files = [("files", (f"{i}.png", cv2.imencode(".png", c)[1].tobytes(), "image/png")) for i, c in enumerate(crops)]
    served = client()
    faces = [r["faces"][0] for r in served.post("/v1/predict", files=files).json()["results"]]
    assert all(f["valence"] is None and f["arousal"] is None and f["expression"] in CLASS_NAMES for f in faces)
    refused = served.post("/v1/feedback", json={"prediction_id": faces[0]["prediction_id"], "valence": 0.5})
    assert refused.status_code == 422 and "predicts expressions only" in refused.json()["detail"]
    assert served.post("/v1/feedback", json={"prediction_id": faces[0]["prediction_id"],
                                             "expression": "Happy"}).status_code == 200
    drift = served.get("/v1/drift").json()
    assert drift["status"] in ("stable", "drift") and set(drift["psi"]) == {"expression", "confidence"}
    metrics = served.get("/metrics").text
    assert 'dimension="valence"' not in metrics and "affectkit_faces_total 3" in metrics
    info = served.get("/v1/model").json()
    assert info["outputs"] == {"expression": True, "valence_arousal": False}
    assert info["classes"] == list(CLASS_NAMES) and info["trained_classes"] == list(CLASS_NAMES[:7])

    restarted = client()  # from the state file: the faces served and the prediction reported
    assert restarted.get("/v1/drift").json()["window_faces"] == 3
    assert restarted.get("/v1/performance").json()["expression"]["reports"] == 1


def test_clips_and_windows_are_read_by_an_expression_face_model(expression_model, rated_clips, tmp_path):
    """`temporal` and `fuse` read an expression face model: as is, it gives the clips' expression but no valence or
    arousal; the models fit on its outputs learn all three."""
    from affectkit.multimodal.fusion import EXPRESSION_FACE_MODEL, FACE_AS_IS
    from affectkit.multimodal.run import run_fusion
    from affectkit.temporal import predict_temporal, run_temporal

    temporal = run_temporal(rated_clips, tmp_path / "temporal", expression_model, detect=False, backend="torch")
    fused = run_fusion(rated_clips, tmp_path / "fuse", expression_model, detect=False, backend="torch")
    for table, kept, notes in ((temporal.table, temporal.kept, temporal.notes),
                               (fused.result.table, fused.result.kept, fused.notes)):
        as_is = table.set_index("method").loc[FACE_AS_IS]
        assert np.isfinite(as_is["accuracy"]) and np.isnan(as_is["valence_ccc"])  # no valence from the model itself
        assert set(kept) == {"expression", "valence", "arousal"} and EXPRESSION_FACE_MODEL in notes
        assert np.isfinite(table.loc[table["method"] != FACE_AS_IS, "valence_ccc"]).all()
    for report in (tmp_path / "temporal" / "temporal.md", tmp_path / "fuse" / "fusion.md"):
        as_is = next(line for line in report.read_text().splitlines() if line.startswith(f"| {FACE_AS_IS} |"))
        assert as_is.count("| n/a ") >= 2 and "nan" not in as_is  # its valence and arousal CCC
    predicted, problems = predict_temporal(tmp_path / "temporal", rated_clips, backend="torch")
    assert not problems and predicted["valence"].between(-1, 1).all()
    assert torch.isfinite(torch.as_tensor(predicted["arousal"].to_numpy())).all()
