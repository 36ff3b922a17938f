"""Valence/arousal models: trained on a set where no face has an expression class, they are scored, predict, export,
plot and are served without an expression; what needs one refuses them by name."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from affectkit.config import CLASS_NAMES, NO_EXPRESSION, Config
from affectkit.data.datamodule import normalise, prepare_data
from affectkit.data.reader import read_dataset
from affectkit.errors import AffectkitError
from affectkit.evaluation.drift import output_profile, profile_shift
from affectkit.evaluation.ensemble import FUSION_WEIGHTS, average, stack
from affectkit.evaluation.evaluator import Predictions, score
from affectkit.inference.annotate import draw_predictions
from affectkit.inference.export import export_onnx
from affectkit.inference.predictor import Predictor
from affectkit.inference.timeline import TrackSmoother, plot_timeline, track_summaries
from affectkit.models.io import load_model
from affectkit.models.metadata import read_metadata
from affectkit.pipeline.benchmark import run_benchmark
from affectkit.pipeline.run import evaluate_saved, train_one
from affectkit.serving import create_app
from affectkit.serving.report import feedback_report
from affectkit.training.losses import multitask_loss
from affectkit.training.fusion import VA_CRITERION, choose_fusion

pytestmark = pytest.mark.usefixtures("one_thread")


def _config() -> Config:
    return Config(img_size=32, batch_size=16, epochs=2, fine_tune_epochs=0, num_workers=0, seed=0, precision="32")


@pytest.fixture(scope="module")
def va_manifest(demo_dir, tmp_path_factory) -> Path:
    """The demo faces with their valence and arousal and no expression column."""
    rows = [{"path": str(r.image_path), "valence": r.valence, "arousal": r.arousal}
            for r in read_dataset(demo_dir, progress=False).records]
    path = tmp_path_factory.mktemp("va") / "va.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def va_model(va_manifest, tmp_path_factory) -> Path:
    return train_one("custom_cnn", va_manifest, tmp_path_factory.mktemp("va_run"), _config(), quiet=True)


@pytest.fixture(scope="module")
def crops(demo_dir) -> list[np.ndarray]:
    paths = sorted((demo_dir / "images").glob("*.jpg"))[:3]
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def test_the_expression_term_is_zero_without_classes_and_the_heads_still_learn():
    torch.manual_seed(0)
    logits = torch.randn(6, 8, requires_grad=True)
    valence, arousal = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    target = torch.full((6,), NO_EXPRESSION)
    va = torch.rand(6, 2) * 2 - 1
    total, parts = multitask_loss(logits, valence, arousal, target, va, Config().loss,
                                  classes=torch.zeros(0, dtype=torch.long))
    total.backward()
    assert parts["expression_loss"].item() == 0.0
    assert total.item() == pytest.approx(0.5 * ((valence - va[:, 0]) ** 2).mean().item()
                                         + 0.5 * ((arousal - va[:, 1]) ** 2).mean().item(), rel=1e-6)
    assert logits.grad is None or not logits.grad.any()
    assert valence.grad.abs().sum() > 0 and arousal.grad.abs().sum() > 0


def test_a_set_without_classes_trains_a_valence_arousal_model(va_model, va_manifest):
    run = va_model.parent
    meta = read_metadata(va_model)
    model, _ = load_model(va_model)
    assert meta["predicts_expression"] is False and not model.predicts_expression
    assert not model.output_classes.any()
    assert meta["output_profile"]["expression"] is None and meta["output_profile"]["confidence"] is None
    history = pd.read_csv(run / "CustomCNN_history.csv")
    assert np.isfinite(history["train_loss"]).all() and history["val_acc"].isna().all()
    metrics = meta["evaluations"][-1]
    assert metrics["accuracy"] is None and metrics["valence"]["mae"] > 0
    card = (run / "CustomCNN_card.md").read_text()
    assert "Outputs: valence and arousal, each in [-1, 1]; no expression" in card
    assert "Classes: none" in card and "stratified by valence/arousal quadrant" in card
    assert "| loss | CE idle (no face had a class) + 0.5 x mse(valence) + 0.5 x mse(arousal);" in card

    # The split is stratified by the faces' quadrant of the valence/arousal plane: each split spans it.
    splits = pd.read_csv(run / "splits.csv")
    va = pd.read_csv(va_manifest)
    quadrant = (va["valence"] >= 0).astype(int) * 2 + (va["arousal"] >= 0).astype(int)
    counts = quadrant.value_counts()
    for split in ("train", "val", "test"):
        assert set(quadrant[(splits["split"] == split).to_numpy()]) == set(counts.index[counts >= 3])


def test_a_valence_arousal_model_gives_no_expression_and_its_valence_arousal(va_model, crops, tmp_path):
    model, _ = load_model(va_model)
    with torch.no_grad():
        _, valence, arousal = model(torch.from_numpy(normalise(np.stack([cv2.resize(c, (32, 32),
                                                                                     interpolation=cv2.INTER_AREA)
                                                                          for c in crops]))))
    onnx = export_onnx(va_model)
    for backend, path in (("torch", va_model), ("onnx", onnx)):
        predictor = Predictor(path, backend=backend, detect=False)
        assert predictor.class_names == []
        faces = predictor.predict_batch(crops)
        for face, v, a in zip(faces, valence, arousal):
            assert (face["expression"], face["expression_id"], face["confidence"]) == (None, None, None)
            assert face["probabilities"] == {}
            assert face["valence"] == pytest.approx(float(v), abs=1e-4)
            assert face["arousal"] == pytest.approx(float(a), abs=1e-4)
    frame = Predictor(va_model, backend="torch", detect=False).predict(list(crops)).to_frame()
    assert not [c for c in frame.columns if c.startswith("p_")] and frame["expression"].isna().all()
    sampled = Predictor(va_model, backend="torch", detect=False, mc_samples=2).predict_batch(crops[:1])[0]
    assert sampled["entropy"] is None and sampled["valence_std"] >= 0
    drawn = draw_predictions(crops[0], faces[:1])
    assert drawn.shape == crops[0].shape and not np.array_equal(drawn, crops[0])
    with pytest.raises(AffectkitError, match="predicts valence and arousal only.*comparing the exports"):
        predictor.require_expression("comparing the exports' accuracy reads")


def test_timelines_of_a_valence_arousal_model(tmp_path):
    smoother = TrackSmoother([], alpha=0.5)
    frames = []
    for index, valence in enumerate((0.4, 0.0)):
        face = {"box": [0, 0, 10, 10], "probabilities": {}, "expression": None, "expression_id": None,
                "confidence": None, "valence": valence, "arousal": -valence}
        frames.append((index, smoother.update([face])))
    assert frames[1][1][0]["valence"] == pytest.approx(0.2) and frames[1][1][0]["expression"] is None
    summary = track_summaries(frames, [])[0]
    assert summary["expression"] is None and summary["probabilities"] == {}
    assert summary["valence"] == pytest.approx(0.3)
    rows = [{"frame": i, "status": "ok", "track": f["track"], "valence": f["valence"], "arousal": f["arousal"]}
            for i, faces in frames for f in faces]
    assert plot_timeline(rows, [], tmp_path / "timeline.png", "clip").is_file()


def test_a_valence_arousal_model_is_scored_without_an_expression_even_on_classed_faces(va_model, demo_dir, tmp_path):
    metrics = evaluate_saved(va_model, demo_dir, "all", None, tmp_path, quiet=True)
    assert metrics["expression"] is None and metrics["valence"]["n"] == metrics["n"] == 96
    assert not list(tmp_path.glob("*confusion*"))

    rng = np.random.default_rng(0)
    members = [Predictions(rng.normal(size=(20, 8)), rng.uniform(-1, 1, (20, 2)), predicts_expression=False)
               for _ in range(2)]
    data = prepare_data(demo_dir, _config(), progress=False)
    positions = data.positions("all")[:20]
    y, va = data.expression[positions], data.valence_arousal[positions]
    assert score(average(members), data, positions)["expression"] is None
    stacked = stack(members, members, y, va)
    assert not stacked.predicts_expression and score(stacked, data, positions)["valence"]["n"] == 20
    assert score(Predictions(members[0].logits, members[0].valence_arousal), data, positions)["expression"]


def test_drift_profiles_of_a_valence_arousal_model():
    va = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    profile = output_profile(None, va)
    assert profile["expression"] is None and profile["confidence"] is None
    assert set(profile_shift(profile, output_profile(None, va[::-1]))) == {"valence", "arousal"}


def test_serving_a_valence_arousal_model(va_model, crops, tmp_path):
    def client() -> TestClient:
        return TestClient(create_app(va_model, detect=False, state_dir=tmp_path / "state", drift_min_faces=1,
                                     drift_window=10))

    files = [("files", (f"{i}.png", cv2.imencode(".png", c)[1].tobytes(), "image/png")) for i, c in enumerate(crops)]
    served = client()
    faces = [r["faces"][0] for r in served.post("/v1/predict", files=files).json()["results"]]
    assert all(f["expression"] is None and f["probabilities"] == {} for f in faces)
    refused = served.post("/v1/feedback", json={"prediction_id": faces[0]["prediction_id"], "expression": "Happy"})
    assert refused.status_code == 422 and "valence and arousal only" in refused.json()["detail"]
    assert served.post("/v1/feedback", json={"prediction_id": faces[0]["prediction_id"],
                                             "valence": 0.5}).status_code == 200
    drift = served.get("/v1/drift").json()
    assert drift["status"] in ("stable", "drift") and set(drift["psi"]) == {"valence", "arousal"}
    metrics = served.get("/metrics").text
    assert 'signal="expression"' not in metrics and 'affectkit_faces_total 3' in metrics
    info = served.get("/v1/model").json()
    assert info["outputs"] == {"expression": False, "valence_arousal": True} and info["trained_classes"] == []

    restarted = client()  # from the state file: the faces served and the prediction reported
    assert restarted.get("/v1/drift").json()["window_faces"] == 3
    assert restarted.get("/v1/performance").json()["valence"]["reports"] == 1
    state = next((tmp_path / "state").glob("*.sqlite"))
    report = feedback_report(state, tmp_path / "report", model=va_model)
    assert "expression" not in report.summary and report.summary["valence"]["reports"] == 1
    assert "valence MAE" in (tmp_path / "report" / "feedback.md").read_text()


def test_clips_and_windows_are_read_by_a_valence_arousal_face_model(va_model, rated_clips, tmp_path):
    """`temporal`, `fuse` and a served video's clip verdict read a valence/arousal face model: as is, it gives the
    clips' valence and arousal but no expression; the models fit on its outputs learn all three."""
    from affectkit.multimodal.fusion import FACE_AS_IS, VALENCE_AROUSAL_FACE_MODEL
    from affectkit.multimodal.run import run_fusion
    from affectkit.temporal import predict_temporal, run_temporal

    manifest = rated_clips
    rows = pd.read_csv(manifest).to_dict("records")
    temporal = run_temporal(manifest, tmp_path / "temporal", va_model, detect=False, backend="torch")
    fused = run_fusion(manifest, tmp_path / "fuse", va_model, detect=False, backend="torch")
    for table, kept, notes in ((temporal.table, temporal.kept, temporal.notes),
                               (fused.result.table, fused.result.kept, fused.notes)):
        as_is = table.set_index("method").loc[FACE_AS_IS]
        assert np.isfinite(as_is["valence_ccc"]) and np.isfinite(as_is["arousal_ccc"])
        assert "accuracy" not in as_is or np.isnan(as_is["accuracy"])  # no expression from the face model itself
        assert set(kept) == {"expression", "valence", "arousal"} and VALENCE_AROUSAL_FACE_MODEL in notes
        assert np.isfinite(table.loc[table["method"] != FACE_AS_IS, "accuracy"]).all()
    predicted, problems = predict_temporal(tmp_path / "temporal", manifest, backend="torch")
    assert not problems and len(predicted) == len(rows)
    assert predicted["valence"].between(-1, 1).all() and predicted["expression"].isin(CLASS_NAMES).all()

    served = TestClient(create_app(va_model, detect=False, temporal=tmp_path / "temporal"))
    video = Path(rows[0]["face"])
    response = served.post("/v1/predict-video", files={"file": (video.name, video.read_bytes(), "video/avi")})
    assert response.status_code == 200, response.text
    clip = response.json()["clip"]
    assert clip["status"] == "ok" and clip["expression"] in CLASS_NAMES and -1 <= clip["valence"] <= 1
    expected = predicted.set_index("id").loc["line 2"]  # the manifest's first row
    assert clip["valence"] == pytest.approx(expected["valence"], abs=1e-5)


def test_valence_arousal_models_are_fused_by_their_valence_arousal_error():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (200, 2))
    target[:20] = np.nan  # faces without valence/arousal do not count
    good = np.clip(target + rng.normal(0, 0.1, target.shape), -1, 1)
    poor = np.clip(target + rng.normal(0, 0.5, target.shape), -1, 1)
    logits = rng.normal(size=(200, 8))
    fit = choose_fusion([Predictions(logits, poor, False), Predictions(logits, good, False)],
                        np.full(200, NO_EXPRESSION), target)
    annotated = np.isfinite(target).all(1)
    mse = {w: float(((((1 - w) * poor + w * good)[annotated] - target[annotated]) ** 2).mean())
           for w in FUSION_WEIGHTS}
    assert fit.weights[1] == min(mse, key=mse.get) > 0.5  # the grid's best weight, towards the better branch
    assert fit.criterion == VA_CRITERION and fit.val_va_mse == pytest.approx(min(mse.values()))
    assert fit.temperatures == (1.0, 1.0) and fit.val_va_mse < min(fit.val_va_mse_branches)
    with pytest.raises(AffectkitError, match="no validation face has valence and arousal"):
        choose_fusion([Predictions(logits, poor, False)] * 2, np.full(200, NO_EXPRESSION), np.full((200, 2), np.nan))


def test_a_set_without_classes_is_benchmarked_by_valence_arousal(va_manifest, tmp_path):
    config = _config().override(fine_tune_epochs=1, pretrained=True, use_light_models=True)
    result = run_benchmark(va_manifest, tmp_path, config=config, baselines=("hog_svm",), quiet=True)
    table = result.table.set_index("key")
    assert list(table.index) == ["hog_svm", "recipe_network:resnet50", "recipe_network:mini_xception", "recipe"]
    assert table["accuracy"].isna().all() and table[["valence_ccc", "arousal_ccc"]].notna().all().all()
    assert table.loc["hog_svm", "model"] == "HOG + ridge" and "ridge alpha=" in table.loc["hog_svm", "selected_on_val"]
    assert "chosen on val by valence/arousal MSE" in table.loc["recipe", "selected_on_val"]
    markdown = (tmp_path / "benchmark.md").read_text()
    assert "every row is a valence/arousal model" in markdown and "Test classes: none" in markdown
    assert "| HOG + ridge | n/a | n/a | n/a | " in markdown  # no accuracy, macro-F1 or balanced accuracy
    fused = read_metadata(tmp_path / "models" / "best_MobileNetV2+MiniXception.json")
    assert fused["predicts_expression"] is False and fused["fusion"]["criterion"] == VA_CRITERION
