"""Multimodal fusion: manifests checked row by row, each modality read into features, fusions fit on train, chosen
on val, scored once on test, kept and reloaded safely."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile
from typer.testing import CliRunner

import affectkit
from affectkit.cli import app
from affectkit.errors import AffectkitError
from affectkit.multimodal import predict_fusion, read_manifest, run_fusion, window_manifest
from affectkit.multimodal.demo import make_multimodal_demo
from affectkit.inference.predictor import Predictor
from affectkit.multimodal.face import face_features, video_window
from affectkit.multimodal.features import extract_features, per_person, read_samples
from affectkit.multimodal.fusion import EARLY, FACE_AS_IS, LATE
from affectkit.multimodal.run import MODEL_FILE
from affectkit.multimodal.signals import physio_features, read_physio

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def multimodal_demo(tmp_path_factory) -> Path:
    return make_multimodal_demo(tmp_path_factory.mktemp("multimodal") / "data", n=128, people=8, seed=0, img_size=64,
                                progress=False)


@pytest.fixture(scope="module")
def fused(multimodal_demo, model_path, tmp_path_factory):
    """``affectkit fuse`` on the demo, read through the command line, with an untrained face model: the face tells
    nothing, the speech and physiological signals tell valence and arousal."""
    out = tmp_path_factory.mktemp("fused")
    result = CliRunner().invoke(app, ["fuse", str(multimodal_demo), "--face-model", str(model_path), "--no-detect",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Kept (chosen on validation)" in result.output
    return out


def test_fusion_reads_every_modality_and_learns_what_the_face_model_misses(fused, multimodal_demo):
    table = pd.read_csv(fused / "fusion.csv").set_index("method")
    assert list(table.index) == [FACE_AS_IS, "face", "audio", "physio", EARLY, LATE]
    # The EMG envelopes carry valence, and an untrained face model none of it.
    assert table.loc[EARLY, "valence_ccc"] > table.loc[FACE_AS_IS, "valence_ccc"] + 0.3
    assert table.loc["physio", "valence_ccc"] > 0.3
    # The kept model of each target is the best on val, not on test.
    for target, column, best in (("valence", "val_valence_ccc", "idxmax"), ("arousal", "val_arousal_ccc", "idxmax"),
                                 ("expression", "val_log_loss", "idxmin")):
        kept = [m for m, targets in table["kept_for"].fillna("").items() if target in targets.split(", ")]
        assert kept == [getattr(table[column], best)()]
    assert "the test split scores every method once" in (fused / "fusion.md").read_text().lower()
    # Each headline score with its interval.
    for score in ("accuracy", "macro_f1", "balanced_accuracy", "valence_ccc", "arousal_ccc"):
        assert (table[f"{score}_low"] <= table[f"{score}_high"]).all(), score
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["accuracy_high"]).all()
    report = (fused / "fusion.md").read_text()
    assert f"{table.loc[EARLY, 'valence_ccc']:.4f} [{table.loc[EARLY, 'valence_ccc_low']:.3f}, " in report
    assert "95% bootstrap interval over the test samples (people drawn" in report
    assert (fused / "fusion.png").stat().st_size > 0
    # People are kept apart: each subject's samples sit in one split only.
    features = pd.read_csv(fused / "features.csv")
    assert features.groupby("group")["split"].nunique().max() == 1
    assert {"audio_pitch_semitones_mean", "audio_pitch_semitones_mean_person_z", "physio_eda_scr_per_min",
            "physio_heart_rate_mean", "face_p_happy", "face_valence"} <= set(features.columns)
    # The demo leaves some samples without audio or physio: their features are empty, not invented.
    manifest = pd.read_csv(multimodal_demo, keep_default_na=False)
    no_audio = manifest.index[manifest["audio"] == ""].map(lambda i: f"line {i + 2}")
    assert len(no_audio) and features.set_index("id").loc[no_audio, "audio_loudness_db_mean"].isna().all()


def test_held_out_intervals_draw_the_people_the_samples_name():
    """fuse's and temporal's test scores: a person's samples are drawn together; a sample of no known person alone;
    macro-F1 counted as everywhere else in affectkit."""
    from affectkit.evaluation.metrics import compute_metrics
    from affectkit.evaluation.significance import ccc_interval, score_intervals
    from affectkit.multimodal.fusion import held_out_scores

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 60)
    probabilities = np.eye(8)[np.where(rng.random(60) < 0.6, truth, rng.integers(0, 8, 60))]
    people = np.array([f"P{i // 6}" if i < 54 else None for i in range(60)], dtype=object)  # 6 samples unnamed
    scores = held_out_scores("expression", probabilities, truth, people)
    expected = score_intervals(truth, probabilities.argmax(axis=1), people)
    for score in ("accuracy", "macro_f1", "balanced_accuracy"):  # each score, as evaluate and benchmark give them
        assert (scores[f"{score}_low"], scores[f"{score}_high"]) == pytest.approx(expected[score]), score
        assert scores[f"{score}_low"] <= scores[score] <= scores[f"{score}_high"], score
    assert expected["accuracy"] != pytest.approx(score_intervals(truth, probabilities.argmax(axis=1))["accuracy"])
    # Macro-F1 as affectkit's metrics count it: over the classes given or predicted (this model also says 4-7).
    assert scores["macro_f1"] == pytest.approx(compute_metrics(probabilities, truth, np.zeros((60, 2)),
                                                               np.full((60, 2), np.nan))["expression"]["macro_f1"])
    valence, rated = rng.uniform(-1, 1, 60), rng.uniform(-1, 1, 60)
    scores = held_out_scores("valence", valence, rated, people)
    assert (scores["valence_ccc_low"], scores["valence_ccc_high"]) == pytest.approx(
        ccc_interval(valence, rated, people))


def test_a_rerun_reads_the_stored_features_back(fused, multimodal_demo, model_path, monkeypatch):
    import affectkit.multimodal.run as run_module

    def no_extraction(*args, **kwargs):
        raise AssertionError("the features should have been read back")

    before = pd.read_csv(fused / "fusion.csv").fillna({"kept_for": ""})
    monkeypatch.setattr(run_module, "extract_features", no_extraction)
    again = run_fusion(multimodal_demo, fused, face_model=model_path, detect=False)
    pd.testing.assert_frame_equal(again.result.table.reset_index(drop=True), before, check_exact=False, atol=1e-4)


class StoppedReading:
    """Each sample's features read as usual, counted in ``reads``, until the ``after``-th: the next is a Ctrl-C, as
    long as :meth:`go_on` was not called."""

    def __init__(self, monkeypatch, after: int):
        import affectkit.multimodal.features as features_module

        self.reads: list[str] = []
        self.stopping = True
        real = features_module.sample_features

        def read(sample, *args):
            self.reads.append(sample.id)
            if self.stopping and len(self.reads) > after:
                raise KeyboardInterrupt
            return real(sample, *args)

        monkeypatch.setattr(features_module, "sample_features", read)

    def go_on(self) -> None:
        self.reads.clear()
        self.stopping = False


def test_an_interrupted_read_of_the_samples_goes_on_from_its_log(fused, multimodal_demo, model_path, tmp_path,
                                                                 monkeypatch):
    """Each sample's features go to a log as read: a run stopped on the way reads only the samples it lacks, and
    ends with the features an uninterrupted run stores."""
    assert not (fused / "features.partial.jsonl").exists()  # gone once features.csv was stored
    reading = StoppedReading(monkeypatch, after=10)
    out = tmp_path / "fused"
    stopped = CliRunner().invoke(app, ["fuse", str(multimodal_demo), "--face-model", str(model_path), "--no-detect",
                                       "--out", str(out), "--quiet"])
    assert stopped.exit_code == 130 and f"is kept ({out}); the same command goes on" in " ".join(stopped.output.split())
    log = (out / "features.partial.jsonl").read_text().splitlines()
    assert len(log) == 1 + 10 and not (out / "features.csv").exists()  # its key, then ten samples
    with (out / "features.partial.jsonl").open("a") as cut:
        cut.write('{"id": "')  # a line a kill cut short: read again
    reading.go_on()
    run_fusion(multimodal_demo, out, face_model=model_path, detect=False)
    assert len(reading.reads) == len(read_manifest(multimodal_demo).samples) - 10
    pd.testing.assert_frame_equal(pd.read_csv(out / "features.csv"), pd.read_csv(fused / "features.csv"))
    assert not (out / "features.partial.jsonl").exists()


def test_a_stopped_fuse_predict_goes_on_from_its_log(fused, multimodal_demo, tmp_path, monkeypatch):
    """fuse-predict logs each sample's features beside --out as read: stopped on the way, the same command reads
    only the samples it lacks, and writes the predictions an uninterrupted one gives."""
    whole, _ = predict_fusion(fused, multimodal_demo)
    reading = StoppedReading(monkeypatch, after=10)
    out, log = tmp_path / "later" / "predicted.csv", tmp_path / "later" / "predicted.csv.features.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        affectkit.fuse_predict(fused, multimodal_demo, checkpoint=log)
    assert len(log.read_text().splitlines()) == 1 + 10  # its key, then ten samples
    reading.go_on()
    result = CliRunner().invoke(app, ["fuse-predict", str(fused), str(multimodal_demo), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(reading.reads) == len(whole) - 10 and not log.exists()
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"id": str}), whole, check_exact=False, atol=1e-4)
    # The manifest the fusion was fit on: its scores say how many of these samples fit or chose it.
    fit = pd.read_csv(fused / "features.csv", dtype={"id": str}).set_index("id")["split"]
    assert (whole["fit_split"] == whole["id"].map(fit)).all()
    scores = json.loads((out.parent / "predicted_scores.json").read_text())
    assert scores["seen_in_training"] == fit.isin(["train", "val"]).sum() > 0
    expression = whole[whole["true_expression"].fillna("") != ""]
    assert scores["accuracy"] == pytest.approx((expression["expression"] == expression["true_expression"]).mean())
    assert "these are no test scores" in " ".join(result.output.split())


def test_fuse_predict_reloads_the_kept_model_and_refuses_a_changed_file(fused, multimodal_demo, tmp_path):
    predictions, problems = affectkit.fuse_predict(fused, multimodal_demo)
    assert problems == [] and len(predictions) == 128
    meta = json.loads((fused / "fusion_model.json").read_text())
    kept_valence = meta["kept"]["valence"]["method"]
    test_rows = pd.read_csv(fused / "features.csv").query("split == 'test'")["id"]
    truth = pd.read_csv(multimodal_demo)["valence"]
    predicted = predictions.set_index("id").loc[test_rows, "valence"].to_numpy()
    reported = pd.read_csv(fused / "fusion.csv").set_index("method").loc[kept_valence, "valence_ccc"]
    true = truth.to_numpy()[[int(i.split()[1]) - 2 for i in test_rows]]
    ccc = 2 * np.cov(predicted, true, bias=True)[0, 1] / (predicted.var() + true.var() + (predicted.mean()
                                                                                           - true.mean()) ** 2)
    assert ccc == pytest.approx(reported, abs=0.02)  # the same model, clipped to [-1, 1]
    np.testing.assert_allclose(predictions.filter(like="p_").sum(axis=1), 1.0, atol=1e-6)

    # The fusion reads audio and physio relative to each person: a manifest that does not say who is who is refused.
    pd.read_csv(multimodal_demo).drop(columns="subject").to_csv(multimodal_demo.parent / "anonymous.csv", index=False)
    with pytest.raises(AffectkitError, match="subject"):
        predict_fusion(fused, multimodal_demo.parent / "anonymous.csv")

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in (MODEL_FILE, "fusion_model.json"):
        (damaged / name).write_bytes((fused / name).read_bytes())
    with open(damaged / MODEL_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(AffectkitError, match="digest"):
        predict_fusion(damaged, multimodal_demo)


def test_fuse_predict_explains_which_modality_each_verdict_rests_on(fused, multimodal_demo, tmp_path):
    """--explain leaves out each modality a sample was read with: the predictions are fuse-predict's, a sample
    recorded without one (the demo leaves some out; here the first without sound) has no row for it, and the
    untrained face model's reading moves valence and arousal less than the speech and physiological signals that
    tell them."""
    partly = multimodal_demo.parent / "partly_heard.csv"
    manifest = pd.read_csv(multimodal_demo)
    manifest.loc[0, "audio"] = ""
    manifest.to_csv(partly, index=False)
    out = tmp_path / "explained.csv"
    result = CliRunner().invoke(app, ["fuse-predict", str(fused), str(partly), "--out", str(out), "--explain",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "explained_modalities.png").is_file()
    predictions, _ = predict_fusion(fused, partly)
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"id": str}), predictions, check_exact=False, atol=1e-4)
    # Another manifest than the fusion's own: scored against its labels, no sample marked as seen in the fit.
    scores = json.loads((tmp_path / "explained_scores.json").read_text())
    assert "fit_split" not in predictions and "seen_in_training" not in scores
    assert scores["valence_samples"] == manifest["valence"].notna().sum() and "valence_ccc_low" in scores
    table = pd.read_csv(tmp_path / "explained_modalities.csv", dtype={"id": str})
    given = pd.read_csv(partly)
    recorded = {f"line {row + 2}": [m for m in ("face", "audio", "physio") if isinstance(given.loc[row, m], str)]
                for row in given.index}
    assert recorded["line 2"] == ["face", "physio"]
    assert table.groupby("id", sort=False)["modality"].agg(list).to_dict() == recorded
    strength = table.groupby("modality")[["valence_pull", "arousal_pull"]].agg(lambda pull: pull.abs().mean())
    assert strength.loc["face"].max() < strength.drop(index="face").max().max()


def test_a_modality_the_kept_model_does_not_read_pulls_its_verdicts_by_nothing():
    """Left out, a modality's features are imputed as for a sample recorded without it (the train median): what
    a model reading only the sound answers moves by the sound's own part, and not at all without the face."""
    from sklearn.linear_model import LogisticRegression, Ridge

    from affectkit.multimodal.explain import modality_importance
    from affectkit.multimodal.fusion import _linear

    rng = np.random.default_rng(0)
    features = pd.DataFrame({"face_x": rng.normal(size=60), "audio_y": rng.normal(size=60)})
    sound = features["audio_y"].to_numpy().copy()
    models = {"expression": _linear(["audio_y"], LogisticRegression()).fit(features, (sound > 0).astype(int)),
              "valence": _linear(["audio_y"], Ridge(alpha=1e-6)).fit(features, 0.25 * sound)}
    meta = {"feature_columns": ["face_x", "audio_y"], "modalities": ["face", "audio"]}
    features.loc[0, "audio_y"] = np.nan  # the first sample recorded without sound
    table = modality_importance(models, meta, [f"s{i}" for i in range(60)], features)
    face, audio = table[table["modality"] == "face"], table[table["modality"] == "audio"]
    assert len(face) == 60 and list(audio["id"]) == [f"s{i}" for i in range(1, 60)] and "arousal_pull" not in table
    assert (face["importance"] == 0).all() and (face["valence_pull"] == 0).all()
    np.testing.assert_allclose(audio["valence_pull"], 0.25 * (sound[1:] - np.median(sound)), atol=1e-4)
    far = np.abs(sound[1:] - np.median(sound)) > 0.5
    assert (audio["importance"].to_numpy()[far] > 0).all()  # the sound is what its answer rests on


def test_bad_rows_are_quarantined_with_their_line_and_reason(tmp_path):
    soundfile.write(tmp_path / "ok.wav", np.zeros(8000, dtype=np.float32), 8000)
    (tmp_path / "broken.wav").write_text("not sound")
    rows = [
        {"audio": "ok.wav", "start": "", "end": "", "expression": "happy"},
        {"audio": "gone.wav", "start": "", "end": "", "expression": "happy"},
        {"audio": "ok.wav", "start": "2", "end": "1", "expression": "sad"},
        {"audio": "ok.wav", "start": "", "end": "", "expression": "happyish"},
        {"audio": "ok.wav", "start": "5", "end": "6", "expression": "sad"},
        {"audio": "broken.wav", "start": "", "end": "", "expression": "sad"},
        {"audio": "", "start": "", "end": "", "expression": "sad"},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    manifest = read_manifest(tmp_path / "m.csv")
    assert {r.id: r.kind for r in manifest.rejected} == {
        "line 3": "audio_missing", "line 4": "window_invalid", "line 5": "expression_invalid", "line 8": "no_modality"}
    assert "gone.wav" in manifest.rejected[0].reason and "m.csv line 3" in manifest.rejected[0].reason
    features = extract_features(manifest, None)
    assert {r.id: r.kind for r in features.rejected} == {"line 6": "window_outside", "line 7": "audio_unreadable"}
    assert "broken.wav" in features.rejected[1].reason
    assert list(features.frame["id"]) == ["line 2"]


def test_manifests_without_a_modality_or_a_label_are_refused_clearly(tmp_path, model_path):
    pd.DataFrame({"path": ["a.jpg"], "expression": [1]}).to_csv(tmp_path / "faces.csv", index=False)
    with pytest.raises(AffectkitError, match="none of the modality columns face, audio, physio"):
        read_manifest(tmp_path / "faces.csv")
    soundfile.write(tmp_path / "ok.wav", np.zeros(8000, dtype=np.float32), 8000)
    pd.DataFrame({"audio": ["ok.wav"], "subject": ["a"]}).to_csv(tmp_path / "unlabelled.csv", index=False)
    with pytest.raises(AffectkitError, match="no label column"):
        read_manifest(tmp_path / "unlabelled.csv")
    assert len(read_manifest(tmp_path / "unlabelled.csv", require_labels=False).samples) == 1
    pd.DataFrame({"face": ["x.jpg"], "expression": [1]}).to_csv(tmp_path / "needs_face.csv", index=False)
    (tmp_path / "x.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    with pytest.raises(AffectkitError, match="--face-model"):
        run_fusion(tmp_path / "needs_face.csv", tmp_path / "out")


def test_a_manifest_of_another_machines_absolute_paths_reads_the_files_beside_it(multimodal_demo):
    table = pd.read_csv(multimodal_demo, dtype=str, keep_default_na=False)
    for column in ("face", "audio", "physio"):
        table[column] = ["D:\\study\\" + value.replace("/", "\\") if value else "" for value in table[column]]
    moved = multimodal_demo.with_name("moved.csv")
    table.to_csv(moved, index=False)
    try:
        assert [s.files for s in read_manifest(moved).samples] == [
            s.files for s in read_manifest(multimodal_demo).samples]
    finally:
        moved.unlink()  # the demo folder is the module's


def test_person_relative_features_remove_each_persons_own_level():
    features = pd.DataFrame({"audio_pitch": [100.0, 110.0, 120.0, 200.0, 210.0, 220.0, np.nan]})
    groups = pd.Series(["a", "a", "a", "b", "b", "b", "b"])
    relative = per_person(features, groups)["audio_pitch_person_z"]
    np.testing.assert_allclose(relative[:3], relative[3:6])  # the same rise, whatever the person's level
    assert relative[:3].mean() == pytest.approx(0.0) and math.isnan(relative[6])


def test_physio_windows_give_skin_conductance_responses_and_generic_statistics(tmp_path):
    import neurokit2 as nk

    rate = 32
    eda = nk.eda_simulate(duration=20, sampling_rate=rate, scr_number=4, random_state=0)
    table = pd.DataFrame({"time": np.arange(len(eda)) / rate, "eda": eda, "temperature": np.linspace(33, 34, len(eda))})
    table.to_csv(tmp_path / "p.csv", index=False)
    window, found_rate = read_physio(tmp_path / "p.csv", 0.0, 20.0)
    assert found_rate == pytest.approx(rate)
    features = physio_features(window, found_rate)
    assert features["physio_eda_scr_per_min"] > 0
    assert features["physio_temperature_slope_per_s"] == pytest.approx(1 / 20, rel=0.05)
    with pytest.raises(Exception, match="window"):
        read_physio(tmp_path / "p.csv", 30.0, 40.0)

    ecg = nk.ecg_simulate(duration=12, sampling_rate=250, heart_rate=72, random_state=0)
    pd.DataFrame({"time": np.arange(len(ecg)) / 250, "ecg": ecg}).to_csv(tmp_path / "ecg.csv", index=False)
    heart = physio_features(*read_physio(tmp_path / "ecg.csv", 1.0, 11.0))
    assert heart["physio_ecg_heart_rate_mean"] == pytest.approx(72, abs=4)
    assert heart["physio_ecg_rmssd_ms"] >= 0
    # Two seconds hold two beats: no heart-rate variability, which is left empty rather than invented.
    short = physio_features(*read_physio(tmp_path / "ecg.csv", 1.0, 2.0))
    assert math.isnan(short["physio_ecg_rmssd_ms"]) and math.isfinite(short["physio_ecg_mean"])


def test_video_windows_are_read_at_the_asked_frame_rate(tmp_path, model_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for i in range(50):  # 5 s at 10 frames a second; each frame's brightness is its index
        writer.write(np.full((32, 32, 3), i * 5, np.uint8))
    writer.release()
    frames, times = video_window(path, 1.0, 3.0, fps=2.0)
    assert len(frames) == 4 and list(times) == [1.0, 1.5, 2.0, 2.5]
    assert [round(float(f.mean()) / 5) for f in frames] == [10, 15, 20, 25]

    # The face model reads those frames; its verdicts are averaged, and how much they moved is kept.
    predictor = Predictor(model_path, backend="torch", detect=False)
    features = face_features(predictor, path, 1.0, 3.0, fps=2.0)
    single = [predictor.predict_batch([frame])[0] for frame in frames]
    assert features["face_valence"] == pytest.approx(np.mean([f["valence"] for f in single]), abs=1e-5)
    assert features["face_arousal_std"] == pytest.approx(np.std([f["arousal"] for f in single]), abs=1e-5)
    assert features["face_valence_slope"] == pytest.approx(np.polyfit(times, [f["valence"] for f in single], 1)[0],
                                                           abs=1e-4)
    assert features["face_peak_p_happy"] == pytest.approx(max(f["probabilities"]["Happy"] for f in single), abs=1e-5)
    assert sum(v for k, v in features.items() if k.startswith("face_p_")) == pytest.approx(1.0, abs=1e-5)

    # The same clip as a folder of its frames, taken --frame-rate 10 a second, gives the same features.
    every_frame, _ = video_window(path, None, None, fps=10.0)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(every_frame):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    from_folder = face_features(predictor, tmp_path / "frames", 1.0, 3.0, fps=2.0, frame_rate=10.0)
    assert from_folder == pytest.approx(features, abs=1e-5)


def test_continuously_rated_sessions_become_labelled_windows(tmp_path):
    sessions = tmp_path / "corpus"
    sessions.mkdir()
    rate = 25  # ratings every 40 ms, as RECOLA's
    time = np.arange(10 * rate) / rate
    pd.DataFrame({"time": time, "valence": time / 10, "arousal": -time / 10}).to_csv(sessions / "p1_labels.csv",
                                                                                    index=False)
    soundfile.write(sessions / "p1.wav", np.random.default_rng(0).normal(0, 0.1, 10 * 8000).astype(np.float32), 8000)
    pd.DataFrame({"labels": ["p1_labels.csv"], "audio": ["p1.wav"], "subject": ["p1"]}).to_csv(
        sessions / "sessions.csv", index=False)
    result = CliRunner().invoke(app, ["make-windows", str(sessions / "sessions.csv"), "--out",
                                      str(tmp_path / "out" / "windows.csv"), "--window", "4", "--hop", "2"])
    assert result.exit_code == 0, result.output
    windows = pd.read_csv(tmp_path / "out" / "windows.csv")
    assert list(windows["start"]) == [0, 2, 4, 6] and list(windows["end"]) == [4, 6, 8, 10]
    # Each window's label is the mean rating inside it: valence rises 0.1 a second.
    np.testing.assert_allclose(windows["valence"], [0.198, 0.398, 0.598, 0.798], atol=1e-6)
    np.testing.assert_allclose(windows["arousal"], -windows["valence"])
    # The new manifest, in another folder, still finds the session's files, and each window reads its own sound.
    manifest = read_manifest(tmp_path / "out" / "windows.csv")
    assert [s.files["audio"].resolve() for s in manifest.samples] == [(sessions / "p1.wav").resolve()] * 4
    read = read_samples(manifest, None)
    assert len(read.features) == 4 and not read.rejected
    assert read.features["audio_loudness_db_mean"].notna().all()
    # With the raters' lag, a window takes the ratings 2 s after it: one window fewer fits the session.
    delayed, count = window_manifest(sessions / "sessions.csv", tmp_path / "delayed.csv", window=4, hop=2, delay=2)
    np.testing.assert_allclose(pd.read_csv(delayed)["valence"], [0.398, 0.598, 0.798], atol=1e-6)
    assert count == 3 and list(pd.read_csv(delayed)["start"]) == [0, 2, 4]
    # A sessions CSV written on another machine (its absolute paths there) reads the files that came beside it.
    pd.DataFrame({"labels": ["C:\\lab\\corpus\\p1_labels.csv"], "audio": ["C:\\lab\\corpus\\p1.wav"],
                  "subject": ["p1"]}).to_csv(sessions / "moved.csv", index=False)
    moved, _ = window_manifest(sessions / "moved.csv", tmp_path / "elsewhere" / "windows.csv", window=4, hop=2)
    assert pd.read_csv(moved).equals(pd.read_csv(tmp_path / "out" / "windows.csv"))

    pd.DataFrame({"time": [0.0, 0.04], "valence": [0.1, 1.7], "arousal": [0.0, 0.0]}).to_csv(
        sessions / "p1_labels.csv", index=False)
    refused = CliRunner().invoke(app, ["make-windows", str(sessions / "sessions.csv"), "--out",
                                       str(tmp_path / "bad.csv")])
    assert refused.exit_code != 0
    assert "p1_labels.csv line 3: valence" in str(refused.exception) + refused.output


def test_the_video_demo_gives_each_sample_its_window_of_a_session_video(tmp_path, model_path):
    manifest_path = make_multimodal_demo(tmp_path / "data", n=24, people=3, seed=0, img_size=64, video=True,
                                         progress=False)
    manifest = read_manifest(manifest_path)
    assert not manifest.rejected and {s.files["face"].name for s in manifest.samples} == {
        "person00.avi", "person01.avi", "person02.avi"}
    labels = pd.read_csv(manifest_path)
    assert labels[["valence", "arousal"]].abs().max().max() <= 1 and labels["valence"].std() > 0.1
    read = read_samples(manifest, Predictor(model_path, backend="torch", detect=False), fps=4.0)
    assert not read.rejected and read.features["face_valence"].notna().all()
    # A window's frames move the model's verdict as the expression rises (a neutral face has nothing to move).
    moving = labels["expression"].to_numpy() != 0
    assert (read.features["face_valence_std"].to_numpy()[moving] > 0).all()


def test_a_manifest_left_too_small_by_its_quarantine_says_so(multimodal_demo, tmp_path):
    """Most audio files missing: the few samples left cannot be fit, and the error counts them and the quarantine."""
    table = pd.read_csv(multimodal_demo, keep_default_na=False).drop(columns=["face", "physio"])
    gone = ~table.index.isin(table.groupby("subject").head(1).index[:3])  # one sample each of three people left
    table.loc[gone, "audio"] = "missing/" + table.loc[gone, "audio"]
    table.to_csv(tmp_path / "mostly_missing.csv", index=False)
    shutil.copytree(multimodal_demo.parent / "audio", tmp_path / "audio")
    with pytest.raises(AffectkitError, match=r"(\d+) of the manifest's rows were quarantined: see .*quarantine.csv"
                       ) as refused:
        run_fusion(tmp_path / "mostly_missing.csv", tmp_path / "fused", seed=0)
    quarantined = int(re.search(r"(\d+) of the manifest's rows were quarantined", str(refused.value)).group(1))
    assert len(pd.read_csv(tmp_path / "fused" / "quarantine.csv")) == quarantined >= len(table) - 3


def test_a_fusion_without_the_face_predicts_on_manifests_that_have_one(multimodal_demo, tmp_path):
    audio_only = tmp_path / "audio_only.csv"
    pd.read_csv(multimodal_demo, keep_default_na=False).drop(columns=["face", "physio"]).to_csv(audio_only,
                                                                                                 index=False)
    shutil.copytree(multimodal_demo.parent / "audio", tmp_path / "audio")
    run = run_fusion(audio_only, tmp_path / "fused", seed=0)
    assert list(run.result.table["method"]) == ["audio"]
    predictions, problems = predict_fusion(tmp_path / "fused", multimodal_demo)  # its face column goes unread
    assert len(predictions) == 128 and not problems
    assert predictions[["valence", "arousal"]].notna().all().all()


def test_the_server_fuses_one_samples_recordings(fused, multimodal_demo, model_path, tmp_path):
    from fastapi.testclient import TestClient

    from affectkit.serving import create_app

    with pytest.raises(AffectkitError, match="relative to each person's samples"):
        create_app(model_path, detect=False, fusion=fused)
    out = tmp_path / "fused"
    result = CliRunner().invoke(app, ["fuse", str(multimodal_demo), "--face-model", str(model_path), "--no-detect",
                                      "--no-person-relative", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    client = TestClient(create_app(model_path, detect=False, fusion=out))
    assert client.get("/v1/model").json()["fusion"]["modalities"] == ["face", "audio", "physio"]

    manifest = pd.read_csv(multimodal_demo)
    row = manifest.dropna(subset=["audio", "physio"]).iloc[0]
    line = f"line {row.name + 2}"  # the manifest's own id for the sample
    expected = predict_fusion(out, multimodal_demo)[0].set_index("id").loc[line]
    files = {field: (Path(row[field]).name, (multimodal_demo.parent / row[field]).read_bytes())
             for field in ("face", "audio", "physio")}
    window = {"start": row["start"], "end": row["end"]}
    response = client.post("/v1/predict-multimodal", files=files, params=window)
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["modalities"] == ["face", "audio", "physio"] and verdict["missing"] == []
    assert verdict["expression"] == expected["expression"]
    assert verdict["probabilities"]["Sad"] == pytest.approx(expected["p_sad"], abs=1e-6)
    assert verdict["valence"] == pytest.approx(expected["valence"], abs=1e-6)
    without_audio = client.post("/v1/predict-multimodal", files={k: files[k] for k in ("face", "physio")},
                                params=window).json()
    assert without_audio["missing"] == ["audio"] and "valence" in without_audio
    # Which modality it rests on: leaving the sound out answers as the sample sent without it.
    explained = client.post("/v1/predict-multimodal", files=files, params=window | {"explain_modalities": True})
    rows = {row["modality"]: row for row in explained.json()["modality_importance"]}
    assert list(rows) == ["face", "audio", "physio"] and "modality_importance" not in verdict
    assert rows["audio"]["valence_pull"] == pytest.approx(verdict["valence"] - without_audio["valence"], abs=1e-6)
    answered = verdict["expression"]
    assert rows["audio"]["importance"] == pytest.approx(
        verdict["probabilities"][answered] - without_audio["probabilities"][answered], abs=1e-6)

    refusals = [
        (client.post("/v1/predict-multimodal", params=window), 422, "send the fusion's modalities"),
        (client.post("/v1/predict-multimodal", files={"audio": ("a.wav", b"hello")}), 422, "not audio affectkit reads"),
        (client.post("/v1/predict-multimodal", files={"face": ("f.jpg", b"\x00\x01 nope")}), 422, "not an image"),
        (client.post("/v1/predict-multimodal", files={"physio": ("p.csv", b"\xff\xfe\x00")}), 422, "not a CSV"),
        (client.post("/v1/predict-multimodal", files={"physio": files["physio"]}, params={"start": 900, "end": 903}),
         422, "holds 0 samples"),
        (client.post("/v1/predict-multimodal", files=files, params={"start": 3, "end": 1}), 422, "0 <= start < end"),
        (TestClient(create_app(model_path, detect=False)).post("/v1/predict-multimodal", files=files), 404,
         "no fusion model"),
    ]
    for response, status, message in refusals:
        assert response.status_code == status and message in response.json()["detail"], response.text
    with pytest.raises(AffectkitError, match="face detection off"):
        create_app(model_path, detect=True, fusion=out)

    # The model lock is held while the face model reads the face, not while speech and physio are read.
    from contextlib import contextmanager

    from affectkit.multimodal.manifest import Sample
    from affectkit.multimodal.run import fusion_verdict, load_fusion

    held = []

    @contextmanager
    def lock():
        held.append("face")
        yield

    models, meta = load_fusion(out)
    predictor = Predictor(model_path, detect=False)
    sample = Sample("s", {f: multimodal_demo.parent / row[f] for f in ("face", "audio", "physio")}, row["start"],
                    row["end"])
    assert fusion_verdict(models, meta, sample, predictor, lock())["expression"] == expected["expression"]
    no_face = Sample("s", {f: multimodal_demo.parent / row[f] for f in ("audio", "physio")}, row["start"], row["end"])
    assert fusion_verdict(models, meta, no_face, predictor, lock())["missing"] == ["face"]
    assert held == ["face"]
