"""``affectkit robustness``: fixed corruptions of face crops, the table of a model's scores on them against the clean
faces, and the command on the ready-made FER2013 model (a trained model: its accuracy moves when faces degrade)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from affectkit.data.corruptions import CORRUPTIONS, SEVERITIES, CorruptedFaces, setting_of
from affectkit.errors import AffectkitError
from affectkit.evaluation.evaluator import Predictions
from affectkit.config import Config
from affectkit.evaluation.robustness import Corrupted, hardest, remedies, robustness_markdown, robustness_table

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def faces(demo_dir) -> np.ndarray:
    """Eight demo faces at 112 px, uint8 RGB."""
    import cv2

    paths = sorted((demo_dir / "images").glob("*.jpg"))[:8]
    return np.stack([cv2.resize(cv2.imread(str(p))[..., ::-1], (112, 112), interpolation=cv2.INTER_AREA)
                     for p in paths])


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_faces_more_at_each_severity(faces, name):
    before = faces.copy()
    distances = [np.abs(CorruptedFaces(faces, name, s)[np.arange(8)].astype(float) - faces).mean()
                 for s in SEVERITIES]
    assert 0 < distances[0] < distances[1] < distances[2]
    assert (faces == before).all()  # a view: the faces it reads stay as they are


def test_a_face_reads_the_same_in_any_batch_and_seeds_draw_other_noise(faces):
    noisy = CorruptedFaces(faces, "noise", 2, seed=0)
    together = noisy[np.array([5, 2, 7])]
    assert (together[0] == noisy[5]).all() and (together[1] == noisy[np.array([2])][0]).all()
    assert (together[2] == noisy[7]).all() and noisy.shape == faces.shape and len(noisy) == 8
    assert not (CorruptedFaces(faces, "noise", 2, seed=1)[5] == noisy[5]).all()


def test_blur_is_set_for_the_crop_size_and_unknown_settings_are_refused(faces):
    assert setting_of("blur", 2, 112) == "Gaussian blur, sigma 1.5 px"
    assert setting_of("blur", 2, 56) == "Gaussian blur, sigma 0.75 px"
    assert setting_of("low-resolution", 3, 112) == "28 px wide, scaled back up"
    with pytest.raises(ValueError, match="unknown corruption 'fog': choose from low-resolution, jpeg"):
        CorruptedFaces(faces, "fog", 1)
    with pytest.raises(ValueError, match="severity 4 is not one of 1, 2, 3"):
        CorruptedFaces(faces, "jpeg", 4)


def _predictions(classes: np.ndarray, valence_arousal: np.ndarray | None = None) -> Predictions:
    logits = np.eye(8)[classes] * 5.0
    va = np.zeros((len(classes), 2)) if valence_arousal is None else valence_arousal
    return Predictions(logits, va, predicts_valence_arousal=valence_arousal is not None)


def test_the_table_sets_each_corruption_against_the_same_faces_clean():
    labels = np.arange(200) % 7
    clean = _predictions(labels)
    hurt = labels.copy()
    hurt[:80] = (hurt[:80] + 1) % 7  # 80 of the 200 faces lost
    table = robustness_table(labels, np.full((200, 2), np.nan), None, clean,
                             [Corrupted("jpeg", 3, "JPEG quality 15", _predictions(hurt)),
                              Corrupted("dark", 1, "60% of the light", _predictions(labels))])
    assert list(table["corruption"]) == ["none", "jpeg", "dark"] and list(table["severity"]) == [0, 3, 1]
    assert table.loc[0, "accuracy"] == 1.0 and pd.isna(table.loc[0, "accuracy_change"])
    jpeg = table.loc[1]
    assert jpeg["accuracy"] == pytest.approx(0.6) and jpeg["accuracy_change"] == pytest.approx(-0.4)
    assert jpeg["accuracy_change_high"] < 0 and jpeg["verdict"] == "worse" and jpeg["p_value"] < 1e-6
    assert table.loc[2, "accuracy_change"] == 0 and table.loc[2, "verdict"] == "not told apart"
    assert "valence_ccc" not in table  # the model predicts no valence/arousal
    assert hardest(table)["corruption"] == "jpeg"


def test_losses_told_from_chance_name_the_training_option_that_draws_such_faces():
    labels = np.arange(200) % 7
    hurt = labels.copy()
    hurt[:80] = (hurt[:80] + 1) % 7
    lost, kept = _predictions(hurt), _predictions(labels)
    table = robustness_table(labels, np.full((200, 2), np.nan), None, kept,
                             [Corrupted("jpeg", 3, "q", lost), Corrupted("noise", 3, "s", lost),
                              Corrupted("blur", 1, "s", kept), Corrupted("mask", 1, "m", lost),
                              Corrupted("dark", 3, "d", lost)])
    advice = remedies(table)
    assert advice == ["For faces like these (jpeg, noise): train with `--set augmentation.degrade=0.3`, then measure "
                      "again (clean faces may lose a little).",
                      "For faces like these (mask): train with `--set augmentation.face_mask=0.3`, then measure "
                      "again (clean faces may lose a little)."]  # blur lost nothing; dark has no remedy
    assert robustness_markdown(table, []).rstrip().endswith(advice[-1])
    for remedy in {CORRUPTIONS[name].remedy for name in CORRUPTIONS} - {None}:  # each a change a config takes
        key, value = remedy.split("=")
        field = key.removeprefix("augmentation.")
        assert Config().override(**{key: float(value)}).augmentation.model_dump()[field] == float(value)
    assert remedies(table[table["corruption"].isin(["none", "blur", "dark"])]) == []


def test_a_valence_arousal_model_is_scored_by_its_concordance():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (120, 2))
    clean = Predictions(np.zeros((120, 8)), truth + rng.normal(0, 0.05, truth.shape), predicts_expression=False)
    blurred = Predictions(np.zeros((120, 8)), truth * 0.3, predicts_expression=False)  # shrunk towards 0
    table = robustness_table(np.full(120, -1), truth, None, clean, [Corrupted("blur", 3, "sigma", blurred)])
    assert "accuracy" not in table
    assert table.loc[0, "valence_ccc"] > 0.95 and table.loc[1, "valence_ccc"] < 0.7
    assert table.loc[1, "ccc_change"] < 0 and table.loc[1, "ccc_verdict"] == "worse"


def test_the_command_scores_a_trained_model_clean_and_corrupted(demo_dir, tmp_path):
    import affectkit
    from affectkit.cli import app
    from affectkit.models.ready import write_ready_model
    from affectkit.serving.app import create_app

    model = write_ready_model("fer2013", tmp_path / "ready")
    metrics = affectkit.evaluate(model, demo_dir, "all", out=tmp_path / "eval")  # which writes its card
    card_file = tmp_path / "ready" / "FER2013-MiniXception_card.md"
    assert "`affectkit robustness MODEL DATA` measures how much" in " ".join(card_file.read_text().split())
    done = CliRunner().invoke(app, ["robustness", str(model), str(demo_dir), "--split", "all", "--corruptions",
                                    "low-resolution,noise", "--severities", "1,3", "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    table = pd.read_csv(tmp_path / "out" / "robustness.csv")
    assert list(zip(table["corruption"], table["severity"])) == [("none", 0), ("low-resolution", 1),
                                                                   ("low-resolution", 3), ("noise", 1), ("noise", 3)]
    assert (table["faces"] == 96).all()
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 10_000
    # The clean row is the model as `evaluate` scores it on the same faces.
    assert table.loc[0, "accuracy"] == pytest.approx(metrics["expression"]["accuracy"], abs=1e-4)
    # A face at a quarter of the model's side has lost the detail an expression is read from.
    assert table.loc[2, "accuracy"] < table.loc[0, "accuracy"] and table.loc[2, "verdict"] == "worse"
    report = (tmp_path / "out" / "robustness.md").read_text()
    assert "| noise | 3 | Gaussian noise, sigma 24 grey levels |" in report and "Hardest here:" in report
    assert "For faces like these (low-resolution" in report and "`--set augmentation.degrade=0.3`" in report
    assert f"Faces: every face of `{demo_dir}`, 96 faces, the same clean and corrupted" in report
    card = " ".join(card_file.read_text().split())
    assert "## Robustness to corrupted faces" in card and f"on `{demo_dir.resolve()}` (synthetic) (all, 96" in card
    assert "`affectkit robustness MODEL DATA` measures how much" not in card
    recorded = json.loads(model.with_suffix(".json").read_text())["robustness"]
    assert [(r["corruption"], r["severity"]) for r in recorded[0]["rows"]] == list(zip(table["corruption"][1:],
                                                                                       table["severity"][1:]))
    served = TestClient(create_app(model, detect=False)).get("/v1/model").json()
    assert served["robustness"] == recorded  # what a client of the server reads about it

    option = next(p for p in typer.main.get_command(app).commands["robustness"].params if p.name == "corruptions")
    assert f"of {', '.join(CORRUPTIONS)} (default: all)" in option.help  # the help names every corruption

    refused = CliRunner().invoke(app, ["robustness", str(model), str(demo_dir), "--corruptions", "fog"])
    assert isinstance(refused.exception, AffectkitError)  # which the command line prints as one line
    assert "robustness: unknown corruption 'fog': choose from low-resolution, jpeg" in str(refused.exception)
