"""Model cards beside saved models, and the synthetic-data warning wherever such a model is used."""

import json
import shutil

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from affectkit.cli import app
from affectkit.data.analysis import dataset_summary
from affectkit.data.reader import read_dataset
from affectkit.data.synthetic import SYNTHETIC_MARKER
from affectkit.evaluation.card import write_model_card
from affectkit.inference.predictor import Predictor
from affectkit.models.metadata import SYNTHETIC_WARNING, read_metadata
from affectkit.pipeline import evaluate_saved, train_one
from affectkit.serving import create_app


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(demo_dir, tmp_path_factory):
    from affectkit.config import Config

    out = tmp_path_factory.mktemp("card")
    config = Config(img_size=32, batch_size=16, epochs=1, num_workers=0, seed=0, precision="32")
    return train_one("custom_cnn", demo_dir, out, config, quiet=True)


def test_demo_data_is_marked_synthetic_and_other_data_is_not(demo_dir, tmp_path):
    assert json.loads((demo_dir / SYNTHETIC_MARKER).read_text())["synthetic"] is True
    assert dataset_summary(read_dataset(demo_dir, progress=False))["synthetic"] is True
    real = shutil.copytree(demo_dir, tmp_path / "real")
    (real / SYNTHETIC_MARKER).unlink()
    assert dataset_summary(read_dataset(real, progress=False))["synthetic"] is False


def test_the_card_describes_data_weights_recipe_metrics_and_limits(trained, demo_dir):
    card = (trained.parent / "CustomCNN_card.md").read_text()
    meta = read_metadata(trained)
    assert meta["trained_on_synthetic_data"] is True and meta["training_data"]["synthetic"] is True
    assert card.startswith("# Model card: CustomCNN") and f"**Warning:** {SYNTHETIC_WARNING}" in card
    for text in ("AffectNet .npy annotations", "train 64 / val 16 / test 16", "Classes absent: none",
                 "Starting weights: scratch", "| img_size | 32 |", "| ema_decay | 0.0 |",
                 "TrivialAugment False, random erasing 0.0, degrade 0.0, face mask 0.0 |",
                 "| loss | 1.0 x CE + 0.5 x mse(valence) + 0.5 x mse(arousal);", "## Intended use and limits",
                 "must not be used on real people", "temperature",
                 "Stages: 32, 64, 128, 256 channels, 1 convolution(s) each, attention none.",
                 f"(the median of {meta['face_margin_faces']} training faces)"):
        assert text in card, text
    (evaluation,) = meta["evaluations"]
    assert evaluation["split"] == "test" and evaluation["n"] == 16 and evaluation["synthetic"] is True
    assert evaluation["temperature"] == pytest.approx(meta["temperature"])
    assert f"{evaluation['ece']:.3f}" in card and f"{evaluation['accuracy']:.3f}" in card

    # A later evaluation adds its row; the same data and split again replaces it.
    evaluate_saved(trained, demo_dir, "all", None, trained.parent / "eval", quiet=True)
    evaluate_saved(trained, demo_dir, "all", None, trained.parent / "eval", quiet=True)
    evaluations = read_metadata(trained)["evaluations"]
    assert [e["split"] for e in evaluations] == ["test", "all"] and evaluations[1]["n"] == 96
    # All of its training data: the 80 faces of its train and val splits are marked, and the row is no test score.
    card = (trained.parent / "CustomCNN_card.md").read_text()
    assert evaluations[1]["seen_in_training"] == 80 and "| all (80 seen in training) | 96 |" in card
    assert "80 of these 96 faces trained the model or chose its checkpoint (its train and val splits)" in card


def test_a_set_annotated_for_valence_arousal_only_evaluates_them_alone(trained, partial_manifest, tmp_path):
    va_only = tmp_path / "va_only.csv"
    pd.read_csv(partial_manifest).assign(expression="").to_csv(va_only, index=False)
    out = tmp_path / "eval"
    metrics = evaluate_saved(trained, va_only, "all", None, out, quiet=True)
    assert metrics["n"] == 96 and metrics["expression"] is None and metrics["valence"]["n"] == 96
    assert json.loads((out / "CustomCNN_all_metrics.json").read_text())["expression"] is None
    assert not (out / "CustomCNN_all_confusion_matrix.png").exists()  # nothing to draw without classes
    evaluation = read_metadata(trained)["evaluations"][-1]
    assert evaluation["accuracy"] is None and evaluation["valence"]["ccc"] == metrics["valence"]["ccc"]
    # The manifest names the model's own training images: known by their content, its 80 train and val faces too.
    assert metrics["seen_in_training"] == 80
    card = (trained.parent / "CustomCNN_card.md").read_text()
    assert f"| `{va_only}` | all (80 seen in training) | 96 | n/a |" in card


def test_serving_and_predict_show_the_warning_for_a_synthetic_model(trained, demo_dir):
    info = TestClient(create_app(trained, detect=False)).get("/v1/model").json()
    assert info["trained_on_synthetic_data"] is True and info["warning"] == SYNTHETIC_WARNING
    page = TestClient(create_app(trained, detect=False))
    assert 'id="warning"' in page.get("/").text and "info.warning" in page.get("/static/app.js").text
    predicted = CliRunner().invoke(app, ["predict", str(trained), str(demo_dir / "images" / "0.jpg"), "--no-detect",
                                         "-q"])
    assert predicted.exit_code == 0, predicted.output
    assert "must not be used on real people" in " ".join(predicted.output.split())


def test_a_model_of_real_data_has_no_synthetic_data_warning(trained, tmp_path):
    model = shutil.copy(trained, tmp_path / trained.name)
    shutil.copy(trained.with_suffix(".json"), tmp_path / trained.with_suffix(".json").name)
    summary = read_metadata(model)["training_data"]
    card = write_model_card(model, training_data={**summary, "synthetic": False}).read_text()
    assert "**Warning:**" not in card and SYNTHETIC_WARNING not in card and "Synthetic: no" in card
    info = TestClient(create_app(model, detect=False)).get("/v1/model").json()
    assert info["trained_on_synthetic_data"] is False and info["warning"] is None
    assert Predictor(model, detect=False).warning is None
