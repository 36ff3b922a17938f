"""``affectkit calibrate``: a saved model's temperature, drift reference and accuracy by confidence fit again on
labelled faces of another domain (here the ready-made FER2013 model, never calibrated, on the demo faces)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from affectkit.data.reader import read_dataset
from affectkit.data.splits import make_splits
from affectkit.errors import AffectkitError
from affectkit.inference.predictor import Predictor
from affectkit.models.metadata import read_metadata, update_metadata
from affectkit.models.ready import write_ready_model
from affectkit.pipeline.calibrate import calibrate_saved

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    return write_ready_model("fer2013", tmp_path_factory.mktemp("ready"))


def test_calibrating_the_ready_model_on_other_faces_stores_what_abstaining_and_drift_read(ready, demo_dir, tmp_path):
    from affectkit.cli import app

    model = tmp_path / ready.name
    for suffix in (".safetensors", ".json"):
        shutil.copy(ready.with_suffix(suffix), model.with_suffix(suffix))
    faces = [str(p) for p in sorted((demo_dir / "images").glob("*.jpg"))[:20]]
    before = Predictor(model, backend="torch", detect=False).predict(faces)
    with pytest.raises(AffectkitError, match="records no accuracy on its validation faces"):
        Predictor(model, backend="torch", detect=False, target_accuracy=0.5)

    done = CliRunner().invoke(app, ["calibrate", str(model), str(demo_dir), "--split", "all"])
    assert done.exit_code == 0, done.output
    meta = read_metadata(model)
    # The demo's 12 Contempt faces are left out: the model gives that class probability 0 at any temperature.
    assert meta["calibrated_on"] == {"data": str(demo_dir.resolve()), "split": "all", "faces": 84}
    said = " ".join(done.output.split())
    assert f"temperature 1.000 -> {meta['temperature']:.3f} on 84 faces" in said and meta["temperature"] != 1
    assert meta["validation_coverage"]["faces"] == 84 and meta["output_profile"]
    after = Predictor(model, backend="torch", detect=False).predict(faces)
    assert [f.expression for f in after] == [f.expression for f in before]  # a temperature never changes the class
    assert [f.confidence for f in after] != [f.confidence for f in before]
    Predictor(model, backend="torch", detect=False, target_accuracy=0.3)  # now it has something to read
    card = " ".join((tmp_path / "FER2013-MiniXception_card.md").read_text().split())
    assert f"fit by `affectkit calibrate` on 84 faces of `{demo_dir.resolve()}` (all)" in card
    assert "Abstaining: on its 84 calibration faces" in card

    scored = CliRunner().invoke(app, ["evaluate", str(model), str(demo_dir), "--split", "all", "--out",
                                      str(tmp_path / "eval")])
    assert scored.exit_code == 0, scored.output
    assert "its temperature was fit on the all faces of this data set" in " ".join(scored.output.split())
    metrics = json.loads((tmp_path / "eval" / "FER2013-MiniXception_all_metrics.json").read_text())
    assert metrics["expression"]["temperature"] == pytest.approx(meta["temperature"])


def test_the_fit_lowers_the_calibration_error_of_the_faces_it_was_fit_on(ready, demo_dir, tmp_path):
    model = tmp_path / ready.name
    for suffix in (".safetensors", ".json"):
        shutil.copy(ready.with_suffix(suffix), model.with_suffix(suffix))
    found = calibrate_saved(model, demo_dir, "all", quiet=True)
    assert found.temperature_before == 1.0 and found.faces == 84
    assert found.ece < found.ece_before
    assert found.validation_coverage == read_metadata(model)["validation_coverage"]


def test_the_test_split_and_a_models_own_training_faces_are_refused(ready, demo_dir, tmp_path):
    model = tmp_path / ready.name
    for suffix in (".safetensors", ".json"):
        shutil.copy(ready.with_suffix(suffix), model.with_suffix(suffix))
    with pytest.raises(AffectkitError, match="--split test: the test faces score a model once"):
        calibrate_saved(model, demo_dir, "test", quiet=True)
    update_metadata(model, training_data={"source": str(demo_dir.resolve())})  # as if trained on the demo faces
    for split in ("all", "train"):
        with pytest.raises(AffectkitError, match="a model is surer of the faces it learnt"):
            calibrate_saved(model, demo_dir, split, quiet=True)
    with pytest.raises(AffectkitError, match="--split must be test, val, train or all"):
        calibrate_saved(model, demo_dir, "everything", quiet=True)
    # Its training faces read from a copy: known by their content, refused alike.
    records = read_dataset(demo_dir, progress=False).records
    make_splits(records, 0.2, 0.2, seed=0).to_csv(tmp_path / "splits.csv", index=False)
    fit = (pd.read_csv(tmp_path / "splits.csv")["split"] != "test").sum()
    with pytest.raises(AffectkitError, match=f"{fit} of the faces of .*copy trained .* or chose it"):
        calibrate_saved(model, shutil.copytree(demo_dir, tmp_path / "copy"), "all", quiet=True)
    assert "temperature" not in read_metadata(model)  # nothing was stored


def test_a_model_without_a_run_reads_the_data_sets_own_split(ready, demo_dir, tmp_path):
    """The ready-made model has no run whose splits.csv would say which faces are val: a data set split in folders
    gives its own, for calibrate as for evaluate."""
    from affectkit.config import CLASS_NAMES
    from affectkit.pipeline import evaluate_saved

    model = tmp_path / ready.name
    for suffix in (".safetensors", ".json"):
        shutil.copy(ready.with_suffix(suffix), model.with_suffix(suffix))
    folders = tmp_path / "split"
    for i, record in enumerate(read_dataset(demo_dir, progress=False).records):
        folder = folders / ("train", "val", "test")[i % 3] / CLASS_NAMES[record.expression]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(record.image_path, folder / record.image_path.name)
    found = calibrate_saved(model, folders, "val", quiet=True)
    assert found.faces == sum(1 for p in (folders / "val").rglob("*.jpg") if p.parent.name != "Contempt")
    metrics = evaluate_saved(model, folders, "test", None, tmp_path / "eval", quiet=True)
    assert metrics["n"] == len(list((folders / "test").rglob("*.jpg")))
    with pytest.raises(AffectkitError, match="gives no val split of its own and best_FER2013-MiniXception"):
        calibrate_saved(model, demo_dir, "val", quiet=True)
