"""Scores by group of faces (gender, age band, ...): each group's scores as the whole set's are computed, the widest
gap between groups with its interval, and ``evaluate --by`` / ``compare --by`` reading the groups from the data
set's manifest or a table of their own."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from typer.testing import CliRunner

from affectkit.cli import app
from affectkit.config import CLASS_NAMES
from affectkit.data.face_tables import NOT_GIVEN
from affectkit.data.reader import read_dataset
from affectkit.errors import AffectkitError
from affectkit.evaluation.card import card_path
from affectkit.evaluation.metrics import compute_metrics
from affectkit.evaluation.significance import group_gap
from affectkit.evaluation.subgroups import group_scores, widest_gap
from affectkit.pipeline import compare_saved, evaluate_saved


def _faces(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    values = rng.choice(["female", "male", "unsure"], n, p=[0.48, 0.48, 0.04])
    right = rng.random(n) < np.where(values == "female", 0.8, 0.55)  # a model that fails men more often
    predicted = np.where(right, labels, (labels + rng.integers(1, 8, n)) % 8)
    people = np.array([f"{v}-{i % 30}" for i, v in enumerate(values)], dtype=object)
    return labels, predicted, values, people


def test_each_group_is_scored_as_the_whole_set_is():
    labels, predicted, values, people = _faces()
    rng = np.random.default_rng(1)
    va_truth = rng.uniform(-1, 1, (len(labels), 2))
    va_predicted = va_truth + rng.normal(0, 0.3, va_truth.shape)
    table = group_scores(values, labels, predicted, people, va_predicted, va_truth).set_index("group")
    assert list(table.index) == ["female", "male", "unsure"]
    for group, row in table.iterrows():
        mask = values == group
        assert row["faces"] == row["classed_faces"] == mask.sum() and row["people"] == len(set(people[mask]))
        assert row["accuracy"] == pytest.approx(accuracy_score(labels[mask], predicted[mask]))
        assert row["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels[mask], predicted[mask]))
        present = sorted(set(labels[mask]) | set(predicted[mask]))
        assert row["macro_f1"] == pytest.approx(f1_score(labels[mask], predicted[mask], labels=present,
                                                         average="macro"))
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]
        probs = np.eye(8)[predicted[mask]]
        whole = compute_metrics(probs, labels[mask], va_predicted[mask], va_truth[mask])
        assert row["valence_ccc"] == pytest.approx(whole["valence"]["ccc"], abs=1e-6)
        assert row["arousal_ccc"] == pytest.approx(whole["arousal"]["ccc"], abs=1e-6)


def test_the_widest_gap_is_between_the_best_and_worst_group_large_enough_to_rank():
    labels, predicted, values, people = _faces()
    table = group_scores(values, labels, predicted, people)
    gap = widest_gap(table, values, labels, predicted, people)
    accuracy = table.set_index("group")["accuracy"]
    ranked = accuracy[table.set_index("group")["classed_faces"] >= 20]
    assert 20 <= (values == "unsure").sum() < 30 and "unsure" in ranked  # ranked with 20 faces, not with 30
    assert (gap.first, gap.second) == (ranked.idxmax(), ranked.idxmin())
    gap = widest_gap(table, values, labels, predicted, people, min_faces=30)
    assert (gap.first, gap.second) == ("female", "male")
    assert gap.difference == pytest.approx(accuracy["female"] - accuracy["male"])
    assert gap.low <= gap.difference <= gap.high and gap.low > 0 and gap.verdict() == "a real gap"
    # The same model on both groups: no gap told apart.
    fair = np.where(np.arange(len(labels)) % 10 < 7, labels, (labels + 1) % 8)
    even = group_gap(labels, fair, values, "female", "male", people)
    assert even.low < 0 < even.high and even.verdict() == "not told apart"
    # Drawing people, not faces: ten people each right or wrong on all their faces make a wide interval.
    blocks = np.repeat(np.arange(20), 10)
    sides = np.where(blocks < 10, "a", "b")
    right = np.repeat(np.arange(20) % 2 == 0, 10)
    hits = np.where(right, 0, 1)
    by_people = group_gap(np.zeros(200, dtype=int), hits, sides, "a", "b", blocks.astype(str))
    by_faces = group_gap(np.zeros(200, dtype=int), hits, sides, "a", "b")
    assert (by_people.high - by_people.low) > 2 * (by_faces.high - by_faces.low)
    small = table[table["group"] != "unsure"].assign(classed_faces=5)
    assert widest_gap(small, values, labels, predicted, people) is None


@pytest.fixture
def attributed_manifest(demo_dir, tmp_path):
    """The demo faces as a manifest with each face's person, gender and (for most) age band."""
    records = read_dataset(demo_dir, progress=False).records
    table = pd.DataFrame({"path": [str(r.image_path) for r in records],
                          "expression": [CLASS_NAMES[r.expression] for r in records],
                          "valence": [r.valence for r in records], "arousal": [r.arousal for r in records],
                          "subject": [f"p{i % 16}" for i in range(len(records))],
                          "Gender": ["female" if i % 16 < 8 else "male" for i in range(len(records))],
                          "age": [["0-19", "20-39", "40+", ""][i % 4] for i in range(len(records))]})
    path = tmp_path / "faces.csv"
    table.to_csv(path, index=False)
    return path, table


def test_compare_scores_other_tools_by_the_groups_the_manifest_gives(attributed_manifest, tmp_path):
    manifest, table = attributed_manifest
    oracle, biased = tmp_path / "oracle.csv", tmp_path / "biased.csv"
    table[["path", "expression"]].to_csv(oracle, index=False)
    wrong = (table["Gender"] == "male") & (np.arange(len(table)) % 2 == 0)  # half of the men's faces
    table.assign(expression=np.where(wrong, "Contempt", table["expression"]))[["path", "expression"]].to_csv(
        biased, index=False)
    result = CliRunner().invoke(app, ["compare", str(manifest), "--predictions", str(oracle), "--predictions",
                                      str(biased), "--split", "all", "--by", "gender", "--by", "age", "--out",
                                      str(tmp_path / "cmp"), "--quiet"])
    assert result.exit_code == 0, result.output
    by_gender = pd.read_csv(tmp_path / "cmp" / "by_gender.csv").set_index(["model", "group"])
    men = table["Gender"] == "male"
    truly_contempt = table["expression"] == "Contempt"
    assert by_gender.loc[("oracle", "male"), "accuracy"] == 1.0
    assert by_gender.loc[("biased", "female"), "accuracy"] == 1.0
    assert by_gender.loc[("biased", "male"), "accuracy"] == pytest.approx(
        1 - (wrong & ~truly_contempt).sum() / men.sum(), abs=1e-4)  # written to 4 decimals
    assert by_gender.loc[("biased", "male"), "people"] == 8
    by_age = pd.read_csv(tmp_path / "cmp" / "by_age.csv", keep_default_na=False)
    assert list(by_age.loc[by_age["model"] == "oracle", "group"]) == ["0-19", "20-39", "40+", NOT_GIVEN]
    assert (tmp_path / "cmp" / "by_gender.png").is_file()
    markdown = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "## By gender" in markdown and "![by gender](by_gender.png)" in markdown
    assert "biased: accuracy +0." in result.output and "on female against male" in result.output
    assert "a real gap" in result.output


def test_evaluate_scores_a_model_by_group_from_a_table_of_attributes(attributed_manifest, model_path, demo_dir,
                                                                     tmp_path):
    manifest, table = attributed_manifest
    metrics = evaluate_saved(model_path, manifest, "all", None, tmp_path / "eval", quiet=True, by=["gender"])
    groups = pd.DataFrame(metrics["by"]["gender"]["groups"]).set_index("group")
    assert list(groups.index) == ["female", "male"] and groups["faces"].sum() == metrics["n"]
    accuracy = metrics["expression"]["accuracy"]
    assert (groups["accuracy"] * groups["classed_faces"]).sum() / groups["classed_faces"].sum() == pytest.approx(
        accuracy, abs=1e-6)
    assert json.loads((tmp_path / "eval" / "CustomCNN_all_metrics.json").read_text())["by"]["gender"]["groups"]
    assert (tmp_path / "eval" / "CustomCNN_all_by_gender.csv").is_file()
    assert (tmp_path / "eval" / "CustomCNN_all_by_gender.png").is_file()
    card = card_path(model_path).read_text()  # a model card measures performance per group, as model cards should
    assert f"By gender (`{manifest.resolve()}`, all):" in card and "| female | 48 |" in card
    assert "this card measures performance per group by gender only (above)" in card
    assert f"Answering only its surest faces (`{manifest.resolve()}`, all): accuracy on all" in card
    import affectkit

    through_api = affectkit.evaluate(model_path, manifest, "all", out=tmp_path / "api", by=["gender"])
    assert through_api["by"]["gender"]["groups"] == metrics["by"]["gender"]["groups"]
    # A client of the server reads them, and the accuracy on the surest faces, to choose its own threshold.
    from fastapi.testclient import TestClient

    from affectkit.serving import create_app

    served = TestClient(create_app(model_path, detect=False)).get("/v1/model").json()["evaluations"][-1]
    assert served["by"]["gender"]["groups"] == metrics["by"]["gender"]["groups"]
    assert served["coverage"] == metrics["expression"]["coverage"]
    # Class folders hold no attributes: a table of them, naming the images by file name, some of them only.
    attributes = tmp_path / "attributes.csv"
    names = [r.image_path.name for r in read_dataset(demo_dir, progress=False).records]
    pd.DataFrame({"file": names[:60], "glasses": ["yes", "no"] * 30}).to_csv(attributes, index=False)
    metrics = evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval2", quiet=True, by=["glasses"],
                             attributes=attributes)
    faces = {row["group"]: row["faces"] for row in metrics["by"]["glasses"]["groups"]}
    assert faces == {"no": 30, "yes": 30, NOT_GIVEN: len(names) - 60}
    # What cannot be grouped by is refused in a sentence, before any scoring.
    with pytest.raises(AffectkitError, match="has no manifest to hold them: give --attributes FILE"):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, by=["gender"])
    with pytest.raises(AffectkitError, match=r"attributes.csv is the table --by reads: name the attribute"):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, attributes=attributes)
    with pytest.raises(AffectkitError, match=r"has no column 'height' to group the faces by; its columns are file, "):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, by=["height"],
                       attributes=attributes)
    pd.DataFrame({"file": ["elsewhere.jpg"], "glasses": ["yes"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(AffectkitError, match="no row names one of the 96 faces read"):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, by=["glasses"],
                       attributes=tmp_path / "other.csv")
    pd.DataFrame({"file": names, "age": range(len(names))}).to_csv(tmp_path / "ages.csv", index=False)
    with pytest.raises(AffectkitError, match=r"age has 96 values \(0, 1, 2, ...\), too many groups to score apart"):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, by=["age"],
                       attributes=tmp_path / "ages.csv")
    pd.DataFrame({"file": names[:2] + names[:1], "glasses": ["yes", "no", "no"]}).to_csv(tmp_path / "twice.csv",
                                                                                       index=False)
    with pytest.raises(AffectkitError, match=r"twice.csv, line 4: a second row for .* with another glasses"):
        evaluate_saved(model_path, demo_dir, "all", None, tmp_path / "eval3", quiet=True, by=["glasses"],
                       attributes=tmp_path / "twice.csv")
    result = CliRunner().invoke(app, ["evaluate", str(model_path), str(manifest), "--split", "all", "--by", "age",
                                      "--out", str(tmp_path / "eval4"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "CustomCNN by age" in result.output and "(its best and worst groups by age)" in result.output
    groups = pd.read_csv(tmp_path / "eval4" / "CustomCNN_all_by_age.csv", keep_default_na=False)["group"]
    assert list(groups) == ["0-19", "20-39", "40+", NOT_GIVEN]


def test_compare_refuses_grouping_where_no_table_holds_the_attributes(demo_dir, tmp_path):
    records = read_dataset(demo_dir, progress=False).records
    pd.DataFrame({"file": [str(r.image_path) for r in records],
                  "expression": [CLASS_NAMES[r.expression] for r in records]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(AffectkitError, match="has no manifest to hold them"):
        compare_saved([], demo_dir, tmp_path / "cmp", split="all", predictions=[tmp_path / "a.csv"] * 2,
                      by=["gender"], quiet=True)


def test_compare_reads_the_attributes_before_it_scores_any_model(attributed_manifest, model_path, tmp_path,
                                                                 monkeypatch):
    import affectkit.pipeline.compare as compare_module

    def scored_too_soon(*args):
        raise AssertionError("a model was scored before the attributes were read")

    monkeypatch.setattr(compare_module, "_score_model", scored_too_soon)
    with pytest.raises(AffectkitError, match="has no column 'glasses' to group the faces by"):
        compare_saved([model_path, model_path], attributed_manifest[0], tmp_path / "cmp", split="all",
                      by=["glasses"], quiet=True)


def test_a_run_scores_every_row_by_group_and_refuses_a_missing_attribute_before_training(attributed_manifest,
                                                                                       tmp_path):
    from affectkit.config import Config
    from affectkit.pipeline import run_pipeline

    manifest, _ = attributed_manifest
    config = Config(img_size=32, batch_size=16, epochs=1, fine_tune_epochs=0, num_workers=0, seed=0)
    with pytest.raises(AffectkitError, match="has no column 'height'"):
        run_pipeline(manifest, tmp_path / "refused", ["custom_cnn"], config, quiet=True, by=["height"])
    assert not list((tmp_path / "refused").glob("best_*"))
    report = run_pipeline(manifest, tmp_path / "run", ["custom_cnn", "mini_xception"], config, quiet=True,
                          by=["gender"]).read_text()
    rows = pd.read_csv(tmp_path / "run" / "model_comparison_results.csv").set_index("model")
    by_gender = pd.read_csv(tmp_path / "run" / "by_gender.csv")
    assert list(dict.fromkeys(by_gender["model"])) == list(rows.index)  # every row, the ensembles' too
    for model, groups in by_gender.groupby("model"):
        weighted = (groups["accuracy"] * groups["classed_faces"]).sum() / groups["classed_faces"].sum()
        assert weighted == pytest.approx(rows.loc[model, "accuracy"], abs=1e-3)
        assert groups["valence_ccc"].notna().all()
    assert "## By gender" in report and "![by gender](by_gender.png)" in report
    # This split's test faces are of one person per gender: a single person's faces give no interval to draw.
    assert (by_gender["people"] == 1).all() and by_gender["accuracy_low"].isna().all()


def test_a_benchmark_scores_every_row_by_group(attributed_manifest, tmp_path):
    tiny = [part for key in ("img_size=32", "epochs=1", "fine_tune_epochs=1", "num_workers=0", "precision=32",
                             "batch_size=16", "phase1_views=1", "fine_tune_min_steps=0") for part in ("--set", key)]
    manifest, _ = attributed_manifest
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", str(manifest), "--out", str(out), "--baselines", "hog_svm",
                                      "--by", "gender", "--quiet", *tiny])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "benchmark.csv").set_index("model")
    by_gender = pd.read_csv(out / "by_gender.csv")
    assert list(dict.fromkeys(by_gender["model"])) == list(rows.index)
    for model, groups in by_gender.groupby("model"):
        weighted = (groups["accuracy"] * groups["classed_faces"]).sum() / groups["classed_faces"].sum()
        assert weighted == pytest.approx(rows.loc[model, "accuracy"], abs=1e-3)
    report = (out / "benchmark.md").read_text()
    assert "## By gender" in report and "![by gender](by_gender.png)" in report
    refused = CliRunner().invoke(app, ["benchmark", str(manifest), "--out", str(out), "--by", "gender", "--folds",
                                       "3", "--quiet", *tiny])
    assert refused.exit_code != 0 and "--by scores the groups of one split's test faces" in str(refused.exception)


def test_rafdbs_manual_annotation_gives_its_faces_gender_race_and_age(tmp_path):
    """RAF-DB's Annotation/manual/<name>_manu_attri.txt: five landmark lines, then gender, race and age band codes."""
    import cv2

    from affectkit.data.synthetic import render_face, sample_rng

    root = tmp_path / "rafdb"
    lines, truth = [], []
    for i in range(24):
        name = f"{'train' if i < 8 else 'test'}_{i:05d}.jpg"
        label = i % 7 + 1
        image = render_face(i % 7, sample_rng(0, i), img_size=48)[0]
        (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")), image[..., ::-1])
        lines.append(f"{name} {label}")
        gender, race, age = i % 2, i % 3, i % 5
        annotation = root / "Annotation" / "manual" / name.replace(".jpg", "_manu_attri.txt")
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text("".join(f"{10 + k}.5\t{20 + k}.25\n" for k in range(5)) + f"{gender}\n{race}\n{age}\n")
        truth.append({"file": name.replace(".jpg", "_aligned.jpg"), "label": label, "gender": gender})
    (root / "EmoLabel").mkdir()
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    rafdb_order = ["surprise", "fear", "disgust", "happy", "sad", "anger", "neutral"]
    table = pd.DataFrame(truth)
    table.assign(emotion=[rafdb_order[label - 1] for label in table["label"]])[["file", "emotion"]].to_csv(
        tmp_path / "oracle.csv", index=False)
    table.assign(emotion=np.where(table["gender"] == 1, "happy",  # wrong on women's faces unless they are happy
                                  [rafdb_order[label - 1] for label in table["label"]]))[["file", "emotion"]].to_csv(
        tmp_path / "biased.csv", index=False)
    result = compare_saved([], root, tmp_path / "cmp", predictions=[tmp_path / "oracle.csv", tmp_path / "biased.csv"],
                           by=["gender", "race", "age"], quiet=True)  # RAF-DB's own test split: 16 faces
    by_gender = result.by["gender"].set_index(["model", "group"])
    test = table.iloc[8:]
    assert by_gender.loc[("oracle", "female"), "faces"] == (test["gender"] == 1).sum()
    assert by_gender.loc[("biased", "male"), "accuracy"] == 1.0
    women = test[test["gender"] == 1]
    assert by_gender.loc[("biased", "female"), "accuracy"] == pytest.approx((women["label"] == 4).mean())
    assert set(result.by["race"]["group"]) == {"Caucasian", "African-American", "Asian"}
    assert set(result.by["age"]["group"]) == {"0-3", "4-19", "20-39", "40-69", "70+"}

    # As released, the annotation is a zip beside the folder it unpacks to: read in place, it gives the same.
    from affectkit.data.layouts import rafdb

    unpacked = rafdb.attributes(root)
    manual = root / "Annotation" / "manual"
    with zipfile.ZipFile(root / "Annotation" / "manual.zip", "w") as archive:
        for file in sorted(manual.iterdir()):
            archive.write(file, f"manual/{file.name}")
    shutil.rmtree(manual)
    pd.testing.assert_frame_equal(rafdb.attributes(root), unpacked)
    zipped = compare_saved([], root, tmp_path / "cmp_zip", predictions=[tmp_path / "oracle.csv",
                                                                        tmp_path / "biased.csv"],
                           by=["gender"], quiet=True)
    pd.testing.assert_frame_equal(zipped.by["gender"], result.by["gender"])
    (root / "Annotation" / "manual.zip").write_bytes(b"not a zip")
    with pytest.raises(AffectkitError, match="manual.zip: not a readable zip archive"):
        rafdb.attributes(root)


def test_a_hugging_face_tables_columns_are_attributes_too(model_path, tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def png(seed):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()

    labels = [i % 7 for i in range(28)]
    images = pa.array([{"bytes": png(i), "path": None} for i in range(28)],
                      type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    features = {"image": {"_type": "Image"}, "label": {"names": ["angry", "disgust", "fear", "happy", "sad",
                                                                 "surprise", "neutral"], "_type": "ClassLabel"}}
    table = pa.table({"image": images, "label": pa.array(labels, type=pa.int64()),
                      "skin_tone": pa.array(["dark" if i < 10 else "light" for i in range(28)])})
    pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})}),
                   tmp_path / "test-00000-of-00001.parquet")
    metrics = evaluate_saved(model_path, tmp_path / "test-00000-of-00001.parquet", "all", None, tmp_path / "eval",
                             quiet=True, by=["skin_tone"])
    faces = {row["group"]: row["faces"] for row in metrics["by"]["skin_tone"]["groups"]}
    assert faces == {"dark": 10, "light": 18}


def test_analyze_counts_the_faces_people_and_classes_of_each_group(attributed_manifest, tmp_path):
    manifest, table = attributed_manifest
    result = CliRunner().invoke(app, ["analyze", str(manifest), "--by", "gender", "--by", "age", "--out",
                                      str(tmp_path / "an")])
    assert result.exit_code == 0, result.output
    by_gender = pd.read_csv(tmp_path / "an" / "by_gender.csv").set_index("group")
    for gender, faces in table.groupby("Gender"):
        assert by_gender.loc[gender, "faces"] == len(faces) and by_gender.loc[gender, "people"] == 8
        counts = faces["expression"].value_counts()
        assert all(by_gender.loc[gender, name] == counts.get(name, 0) for name in CLASS_NAMES)
        assert by_gender.loc[gender, "valence_mean"] == pytest.approx(faces["valence"].mean(), abs=1e-4)
    summary = json.loads((tmp_path / "an" / "dataset_summary.json").read_text())
    assert [group["group"] for group in summary["by"]["age"]] == ["0-19", "20-39", "40+", NOT_GIVEN]
    assert (tmp_path / "an" / "by_age.png").is_file()
    assert "gender female: 48 faces, 8 people; " in " ".join(result.output.split())
