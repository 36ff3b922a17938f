"""Temporal models of face clips: clips (videos or frame folders) read from class folders, DFEW's layout or a
manifest, the face model run on their frames, the learned sequence model compared with the mean over frames and with
frame statistics, the model kept on validation saved, verified and reloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import affectkit
from affectkit.cli import app
from affectkit.config import CLASS_NAMES
from affectkit.data.records import Reject
from affectkit.errors import AffectkitError
from affectkit.multimodal.face import FrameOutputs, summarise
from affectkit.multimodal.fusion import FACE_AS_IS
from affectkit.temporal import predict_temporal, read_clips, run_temporal
from affectkit.temporal.clips import clip_digest
from affectkit.temporal.demo import _splits, strength_over_time
from affectkit.temporal.model import fit_sequence_model, predict_sequences
from affectkit.temporal.run import ENSEMBLE, SEQUENCE, STATISTICS
from affectkit.temporal.sequences import padded

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """40 clips of 8 people through the command line: class folders inside split folders."""
    out = tmp_path_factory.mktemp("clips") / "clips"
    result = CliRunner().invoke(app, ["make-demo-data", str(out), "--clips", "--n", "40", "--people", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def trained(clips, model_path, tmp_path_factory) -> Path:
    """``affectkit temporal`` on the clips with an untrained face model, through the command line."""
    out = tmp_path_factory.mktemp("temporal")
    result = CliRunner().invoke(app, ["temporal", str(clips), "--face-model", str(model_path), "--no-detect",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Kept (chosen on validation)" in result.output
    return out


def test_a_clip_is_known_by_its_digest_wherever_it_is_read(clips, tmp_path):
    videos = sorted(clips.rglob("*.avi"))
    digests = [clip_digest(video) for video in videos]
    assert len(set(digests)) == len(videos) and all(len(d) == 20 for d in digests)  # one each
    assert clip_digest(Path(shutil.copy(videos[0], tmp_path / "copy.avi"))) == digests[0]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"{i:03d}.png").write_bytes(b"x" * (10 + i))
    same = shutil.copytree(frames, tmp_path / "elsewhere")
    assert clip_digest(same) == clip_digest(frames) != ""
    (same / "002.png").write_bytes(b"other")
    assert clip_digest(same) != clip_digest(frames)
    assert clip_digest(tmp_path / "missing.mp4") == ""


def test_clip_folders_keep_their_split_and_class_and_people_apart(clips):
    manifest = read_clips(clips)
    assert len(manifest.samples) == 40 and not manifest.rejected
    by_split = {split: {s.id.split("/")[2].split("_")[0] for s in manifest.samples if s.split == split}
                for split in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    assert {s.expression for s in manifest.samples} == set(range(8))
    assert all(s.id.split("/")[1] == CLASS_NAMES[s.expression] for s in manifest.samples)


def test_a_clip_shows_its_expression_for_a_stretch_of_its_own():
    times = np.arange(16) / 8.0
    curves = [strength_over_time(np.random.default_rng(i), times) for i in range(40)]
    assert all(c[0] == 0 and c.max() >= 0.45 for c in curves)
    onsets = {int(np.argmax(c > 0)) for c in curves}
    assert len(onsets) >= 4  # the expression starts at different moments
    assert 0.2 < np.mean([c[-1] == 0 for c in curves]) < 0.8  # about half fade before the end
    for people in (3, 5, 24):  # every split gets a person, however few there are
        assert sorted(set(_splits(people, np.random.default_rng(0)).values())) == ["test", "train", "val"]


def _spike_clips(n: int, rng: np.random.Generator) -> tuple[list[FrameOutputs], np.ndarray]:
    """Clips whose class is *when* a face looked happy: in the first half (class 1) or the second (class 2). The
    mean and the peak of every output are the same for both classes; only the order of the frames tells them apart."""
    outputs, labels = [], []
    for i in range(n):
        length = int(rng.integers(8, 13))
        probabilities = np.full((length, 8), 0.1 / 7)
        probabilities[:, 0] = 0.9
        label = 1 + i % 2
        half = length // 2
        spike = int(rng.integers(0, half)) + (half if label == 2 else 0)
        probabilities[spike] = 0.1 / 7
        probabilities[spike, 1] = 0.9
        noise = rng.normal(0, 0.05, length)
        outputs.append(FrameOutputs(np.arange(length) / 4.0, probabilities, noise, -noise))
        labels.append(label)
    return outputs, np.array(labels)


def _arrays(outputs: list[FrameOutputs], labels: np.ndarray) -> tuple[np.ndarray, ...]:
    inputs, lengths = padded(outputs)
    return inputs, lengths, labels, np.full((len(labels), 2), np.nan, dtype=np.float32)


def test_the_temporal_model_learns_what_only_the_order_of_the_frames_tells():
    rng = np.random.default_rng(0)
    train, val, test = (_spike_clips(n, rng) for n in (160, 40, 60))
    fitted = fit_sequence_model(_arrays(*train), _arrays(*val), seed=0)
    probabilities, _ = predict_sequences(fitted.net, *padded(test[0]))
    assert (probabilities.argmax(axis=1) == test[1]).mean() >= 0.9
    # The frame statistics are blind to it: the summaries of both classes are identical but for the noise.
    table = pd.DataFrame([summarise(o, list(CLASS_NAMES)) for o in test[0]])
    means = table.groupby(test[1])[["face_p_happy", "face_peak_p_happy"]].mean()
    assert np.allclose(means.loc[1], means.loc[2], atol=0.01)
    assert 1 <= fitted.epoch and np.isfinite(fitted.val_loss)


def test_leaving_frames_out_finds_the_moment_a_clips_verdict_rests_on():
    from affectkit.temporal.explain import frame_importance, without_frame
    from affectkit.temporal.run import TemporalModel

    rng = np.random.default_rng(0)
    train, val, test = (_spike_clips(n, rng) for n in (160, 40, 20))
    fitted = fit_sequence_model(_arrays(*train), _arrays(*val), seed=0)
    model = TemporalModel({"kept": {"expression": {"method": SEQUENCE}}}, fitted.net, {})
    spikes = [int(np.argmax(o.probabilities[:, 1])) for o in test[0]]
    found = []
    for i, outputs in enumerate(test[0]):
        frames = frame_importance(model, f"clip{i}", outputs, list(CLASS_NAMES))
        assert frames["frame"].tolist() == list(range(len(outputs.times)))
        assert np.allclose(frames["time"], outputs.times)
        assert frames["face_expression"].iloc[spikes[i]] == "Happy"
        assert frames["importance"].iloc[spikes[i]] > 0.1
        found.append(int(frames["importance"].idxmax()) == spikes[i])
        whole = model.predict([outputs], list(CLASS_NAMES)).iloc[0]
        left = model.predict([without_frame(outputs, 0)], list(CLASS_NAMES)).iloc[0]
        column = f"p_{whole['expression'].lower()}"
        assert frames["importance"].iloc[0] == pytest.approx(whole[column] - left[column], abs=1e-5)
    # Without its Happy frame, a clip's class cannot be told: that frame carries the verdict. (Where the frame is
    # near the middle, leaving out a later frame moves it to the other half, and that frame weighs as much.)
    assert np.mean(found) >= 0.8
    one = FrameOutputs(np.zeros(1), test[0][0].probabilities[:1], np.zeros(1), np.zeros(1))
    assert frame_importance(model, "still", one, list(CLASS_NAMES))["importance"].isna().all()


def test_temporal_compares_the_models_and_keeps_the_best_on_validation(trained):
    table = pd.read_csv(trained / "temporal.csv").set_index("method")
    assert list(table.index) == [FACE_AS_IS, STATISTICS, SEQUENCE, ENSEMBLE]
    assert table[["accuracy", "macro_f1"]].notna().all().all()
    # The kept model is the one with the lowest validation log-loss (the face model as it is never is).
    best = table["val_log_loss"].idxmin()
    assert table.loc[best, "kept_for"] == "expression"
    meta = json.loads((trained / "temporal_model.json").read_text())
    assert meta["kept"]["expression"]["method"] == best
    assert ("gru" in meta) == (best in (SEQUENCE, ENSEMBLE))
    assert ("statistics" in meta) == (best in (STATISTICS, ENSEMBLE))
    report = (trained / "temporal.md").read_text()
    assert "split train" in report and "(as given)" in report and "The test clips score every model once" in report
    # Each accuracy with its interval over the test clips.
    assert ((table["accuracy_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_high"])).all()
    assert f"{table.loc[best, 'accuracy']:.4f} [{table.loc[best, 'accuracy_low']:.3f}, " in report
    assert (trained / "temporal.png").stat().st_size > 10_000
    frames = np.load(trained / "frames.npz")
    assert frames["lengths"].tolist() == [8] * 40  # 2-second clips read at 4 frames a second


def test_temporal_predict_reloads_the_kept_model_and_refuses_a_changed_one(trained, clips, model_path, tmp_path):
    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(app, ["temporal-predict", str(trained), str(clips), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    predictions = pd.read_csv(out)
    assert len(predictions) == 40 and predictions["expression"].isin(CLASS_NAMES).all()
    assert np.allclose(predictions.filter(like="p_").sum(axis=1), 1.0, atol=1e-3)
    # The test clips' predictions are the ones the report scored.
    test = predictions[predictions["id"].str.startswith("test/")]
    truth = test["id"].str.split("/").str[1]
    reported = pd.read_csv(trained / "temporal.csv").set_index("method")
    kept = reported["kept_for"].fillna("").eq("expression").idxmax()
    assert (test["expression"] == truth).mean() == pytest.approx(reported.loc[kept, "accuracy"])
    from_python, problems = affectkit.predict_temporal(trained, clips)
    assert not problems and np.allclose(from_python["p_happy"], predictions["p_happy"], atol=1e-4)
    # Labelled clips are scored against their labels (here their class folders).
    assert (predictions["true_expression"] == predictions["id"].str.split("/").str[1]).all()
    scores = json.loads((tmp_path / "predictions_scores.json").read_text())
    # The clips the model was fit on: each one's split then, and the scores warn of those that fit or chose it.
    assert (predictions["fit_split"] == predictions["id"].str.split("/").str[0]).all()
    assert scores["expression_samples"] == 40 and scores["seen_in_training"] == 40 - len(test) > 0
    copied, _ = affectkit.predict_temporal(trained, shutil.copytree(clips, tmp_path / "copy"))
    assert copied["fit_split"].tolist() == predictions["fit_split"].tolist()  # a copy: known by each clip's digest
    assert "these are no test scores" in " ".join(result.output.split())
    assert scores["accuracy"] == pytest.approx((predictions["expression"] == predictions["true_expression"]).mean())
    assert scores["accuracy_low"] <= scores["accuracy"] <= scores["accuracy_high"]
    assert f"accuracy {scores['accuracy']:.3f} [" in " ".join(result.output.split())

    explained = CliRunner().invoke(app, ["temporal-predict", str(trained), str(clips), "--out",
                                         str(tmp_path / "explained.csv"), "--explain", "--quiet"])
    assert explained.exit_code == 0, explained.output
    assert pd.read_csv(tmp_path / "explained.csv").equals(predictions)  # the same verdicts
    frames = pd.read_csv(tmp_path / "explained_frames.csv")
    assert len(frames) == 40 * 8 and frames.groupby("id").size().eq(8).all()  # every frame read, of every clip
    verdicts = predictions.set_index("id")["expression"]
    assert (frames["clip_expression"] == frames["id"].map(verdicts)).all()
    assert frames["importance"].notna().all() and frames["importance"].abs().max() > 0
    assert (tmp_path / "explained_frames.png").stat().st_size > 20_000
    assert affectkit.explain_temporal(trained, clips).frames["importance"].to_numpy() == pytest.approx(
        frames["importance"].to_numpy(), abs=1e-4)

    meta = json.loads((trained / "temporal_model.json").read_text())
    saved = trained / ("temporal_gru.safetensors" if "gru" in meta else "temporal_statistics.skops")
    original = saved.read_bytes()
    try:
        saved.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(AffectkitError, match="does not match the digest"):
            predict_temporal(trained, clips)
    finally:
        saved.write_bytes(original)
    other = tmp_path / "other_model"
    shutil.copytree(model_path.parent, other)
    with open(other / "best_CustomCNN.safetensors", "ab") as f:
        f.write(b"\0")  # other bytes: another model as far as the digest can tell
    with pytest.raises(AffectkitError, match="give that model with --face-model"):
        predict_temporal(trained, clips, face_model=other / "best_CustomCNN.safetensors")


def test_a_rerun_reads_the_frames_back_and_unreadable_clips_are_quarantined(trained, clips, model_path, tmp_path,
                                                                            monkeypatch):
    def unread(*args, **kwargs):
        raise AssertionError("the frames were read again")

    assert not list(trained.glob("frames.part-*"))  # the parts stored while reading, gone once the whole is
    monkeypatch.setattr("affectkit.temporal.run.read_frames", unread)
    again = run_temporal(clips, trained, model_path, detect=False)
    assert again.table["accuracy"].tolist() == pd.read_csv(trained / "temporal.csv")["accuracy"].tolist()
    monkeypatch.undo()

    broken = tmp_path / "clips"
    shutil.copytree(clips, broken)
    victim = next((broken / "train" / "Happy").glob("*.avi"))
    victim.write_bytes(b"not a video")
    run = run_temporal(broken, tmp_path / "out", model_path, detect=False)
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert len(quarantine) == 1 and victim.name in quarantine.loc[0, "reason"]
    assert "1 clip(s) quarantined" in " ".join(run.notes)


def test_an_interrupted_read_of_the_clips_goes_on_from_the_parts_it_stored(clips, model_path, tmp_path, monkeypatch):
    """Reading a large set's clips takes hours: what was read is stored as it goes, and a rerun reads the rest."""
    import affectkit.temporal.sequences as sequences
    from affectkit.inference.predictor import Predictor

    manifest = read_clips(clips)
    predictor = Predictor(model_path, backend="torch", detect=False)
    whole = sequences.read_frames(manifest, predictor, fps=4.0)
    reads = []
    real = sequences.frame_outputs

    def counted(*args, **kwargs):
        reads.append(args[1])
        if stop_after is not None and len(reads) > stop_after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sequences, "frame_outputs", counted)
    store, key = tmp_path / "frames.npz", {"face_model": "a"}
    stop_after = 5
    with pytest.raises(KeyboardInterrupt):
        sequences.read_frames(manifest, predictor, fps=4.0, checkpoint=store, key=key, every_seconds=0)
    assert len(sequences.part_paths(store)) == 5  # one part per clip at every_seconds=0
    reads.clear()
    stop_after = None
    resumed = sequences.read_frames(manifest, predictor, fps=4.0, checkpoint=store, key=key, every_seconds=1e9)
    assert len(reads) == len(manifest.samples) - 5  # the five stored clips were not read again
    assert [s.id for s in resumed.samples] == [s.id for s in whole.samples]
    for mine, theirs in zip(resumed.outputs, whole.outputs):
        assert np.allclose(mine.probabilities, theirs.probabilities) and np.allclose(mine.times, theirs.times)
    # A last part cut short (its .json never written) is read again; parts of another face model are not read.
    sequences.part_paths(store)[-1].with_suffix(".json").unlink()
    reads.clear()
    sequences.read_frames(manifest, predictor, fps=4.0, checkpoint=store, key=key, every_seconds=1e9)
    assert len(reads) == len(manifest.samples) - 4 and len(sequences.part_paths(store)) == 4
    reads.clear()
    sequences.read_frames(manifest, predictor, fps=4.0, checkpoint=store, key={"face_model": "b"}, every_seconds=1e9)
    assert len(reads) == len(manifest.samples) and sequences.part_paths(store) == []


def test_temporal_predict_stopped_on_the_way_goes_on_where_it_stopped(trained, clips, tmp_path, monkeypatch):
    import affectkit.temporal.sequences as sequences

    whole = tmp_path / "whole.csv"
    args = ["temporal-predict", str(trained), str(clips), "--quiet"]
    assert CliRunner().invoke(app, [*args, "--out", str(whole)]).exit_code == 0
    reads, real = [], sequences.frame_outputs

    def stopping(*args, **kwargs):
        reads.append(args[1])
        if len(reads) > 4 and stop:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sequences, "frame_outputs", stopping)
    monkeypatch.setattr(sequences, "CHECKPOINT_SECONDS", 1e9)  # no part stored by the clock: Ctrl-C stores one
    out, stop = tmp_path / "later" / "preds.csv", True
    stopped = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert stopped.exit_code == 130 and "the same command goes on from there" in " ".join(stopped.stderr.split())
    assert len(sequences.part_paths(out.with_name("preds.csv.frames.npz"))) == 1 and not out.exists()
    reads.clear()
    stop = False
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    assert len(reads) == len(read_clips(clips, require_labels=False).samples) - 4  # the stored clips not read again
    assert pd.read_csv(out).equals(pd.read_csv(whole))
    assert sorted(out.parent.iterdir()) == [out, out.with_name("preds_scores.json")]  # no stored part left


def test_the_clips_read_are_kept_until_their_answers_are_made(trained, clips, tmp_path, monkeypatch):
    """A failure after the reading (in the model's predictions, or leaving frames out) keeps the parts stored while
    reading: the rerun reads none of those clips again; the parts go once the answers are made."""
    import affectkit.temporal.explain as temporal_explain
    import affectkit.temporal.run as temporal_run
    import affectkit.temporal.sequences as sequences

    monkeypatch.setattr(sequences, "CHECKPOINT_SECONDS", 0.0)  # a part stored after every clip
    checkpoint = tmp_path / "preds.csv.frames.npz"
    reads, real_read, real_predictions = [], sequences.frame_outputs, temporal_run.clip_predictions

    def counted(*args, **kwargs):
        reads.append(args[1])
        return real_read(*args, **kwargs)

    def failing(read):
        raise RuntimeError("the model failed")

    monkeypatch.setattr(sequences, "frame_outputs", counted)
    clip_count = len(read_clips(clips, require_labels=False).samples)
    for module, call in ((temporal_run, predict_temporal), (temporal_explain, affectkit.explain_temporal)):
        monkeypatch.setattr(module, "clip_predictions", failing)
        with pytest.raises(RuntimeError, match="the model failed"):
            call(trained, clips, checkpoint=checkpoint)
        assert len(sequences.part_paths(checkpoint)) > 0  # the reading survives the failure
        monkeypatch.setattr(module, "clip_predictions", real_predictions)
        reads.clear()
        answered = call(trained, clips, checkpoint=checkpoint)
        assert reads == []  # no clip read again: every one was stored
        assert sequences.part_paths(checkpoint) == []  # gone once the answers are made
        predictions = answered[0] if isinstance(answered, tuple) else answered.predictions
        assert len(predictions) == clip_count


def test_clip_manifests_and_bad_clip_folders_are_read_or_refused_clearly(clips, tmp_path, model_path):
    videos = sorted(clips.rglob("*.avi"))[:3]
    manifest = tmp_path / "clips.csv"
    pd.DataFrame({"face": [str(v) for v in videos] + ["missing.avi"], "start": ["0.5", "", "", ""],
                  "expression": ["happy", "sad", "2", "fear"], "subject": ["a", "b", "c", "d"]}).to_csv(
        manifest, index=False)
    read = read_clips(manifest)
    assert len(read.samples) == 3 and read.samples[0].start == 0.5
    assert [r.kind for r in read.rejected] == ["face_missing"]

    with pytest.raises(AffectkitError, match="no face column"):
        pd.DataFrame({"audio": ["a.wav"], "expression": [1]}).to_csv(tmp_path / "audio.csv", index=False)
        (tmp_path / "a.wav").write_bytes(b"")
        read_clips(tmp_path / "audio.csv")
    odd = tmp_path / "odd"
    (odd / "Screaming").mkdir(parents=True)
    (odd / "Screaming" / "x.avi").write_bytes(videos[0].read_bytes())
    with pytest.raises(AffectkitError, match="Screaming are not expression names"):
        read_clips(odd)
    empty = tmp_path / "empty"
    (empty / "Happy").mkdir(parents=True)
    with pytest.raises(AffectkitError, match="has no folder of clips"):
        read_clips(empty)
    with pytest.raises(AffectkitError, match="nowhere does not exist: give class folders of clips"):
        read_clips(tmp_path / "nowhere")
    refused = CliRunner().invoke(app, ["temporal", str(clips), "--out", str(tmp_path / "x")])
    assert refused.exit_code != 0 and "--face-model" in refused.output


def test_a_clip_without_a_face_in_any_frame_is_quarantined_with_the_reason(tmp_path, model_path):
    from affectkit.inference.predictor import Predictor
    from affectkit.multimodal.demo import write_video
    from affectkit.temporal.sequences import read_frames

    write_video(tmp_path / "wall.avi", [np.full((96, 96, 3), 128, np.uint8)] * 8)
    pd.DataFrame({"face": ["wall.avi"], "expression": ["happy"]}).to_csv(tmp_path / "clips.csv", index=False)
    frames = read_frames(read_clips(tmp_path / "clips.csv"), Predictor(model_path, backend="torch"), fps=4.0)
    assert not frames.samples
    assert [(r.kind, r.reason) for r in frames.rejected] == [
        ("no_face", "wall.avi: the face detector found no face in any frame read")]


def test_the_temporal_model_can_read_the_face_models_embedding_of_each_face(clips, model_path, tmp_path):
    from affectkit.models.io import load_model

    run = run_temporal(clips, tmp_path / "out", model_path, detect=False, embeddings=True)
    width = load_model(model_path)[0].num_features
    with np.load(tmp_path / "out" / "frames.npz") as frames:
        assert frames["embeddings"].shape == (40 * 8, width) and np.isfinite(frames["embeddings"]).all()
    assert f"({8 + 3 + width} numbers a frame)" in " ".join(run.notes)
    meta = json.loads((tmp_path / "out" / "temporal_model.json").read_text())
    assert meta["embeddings"] is True
    predictions, problems = predict_temporal(tmp_path / "out", clips)
    test = predictions[predictions["id"].str.startswith("test/")]
    kept = run.kept["expression"].method
    accuracy = (test["expression"] == test["id"].str.split("/").str[1]).mean()
    assert not problems and accuracy == pytest.approx(run.table.set_index("method").loc[kept, "accuracy"])
    with pytest.raises(AffectkitError, match="--backend torch"):
        run_temporal(clips, tmp_path / "onnx", model_path, detect=False, embeddings=True, backend="onnx")


def _as_frame_folders(videos: list[Path], folder_of) -> list[Path]:
    """Each video's frames written as PNG files (lossless: the same pixels the video gives) in ``folder_of(video)``."""
    import cv2

    folders = []
    for video in videos:
        folder = folder_of(video)
        folder.mkdir(parents=True)
        capture = cv2.VideoCapture(str(video))
        index = 0
        while (ok_frame := capture.read())[0]:
            index += 1
            cv2.imwrite(str(folder / f"frame_{index}.png"), ok_frame[1])  # frame_10 after frame_9: natural order
        capture.release()
        folders.append(folder)
    return folders


def test_folders_of_frames_are_clips_read_at_their_frame_rate(clips, model_path, tmp_path):
    from affectkit.inference.predictor import Predictor
    from affectkit.multimodal.face import folder_window, frame_outputs, video_window

    # AFEW's split folder names; each clip a folder of its frames.
    renamed = {"train": "Train_AFEW", "val": "Val_AFEW", "test": "Test_AFEW"}
    videos = sorted(clips.rglob("*.avi"))
    _as_frame_folders(videos, lambda v: tmp_path.joinpath("afew", renamed[v.parts[-3]], v.parts[-2], v.stem))
    manifest = read_clips(tmp_path / "afew")
    assert [(s.split, s.expression) for s in manifest.samples] == [(s.split, s.expression)
                                                                  for s in read_clips(clips).samples]
    assert all(s.files["face"].is_dir() for s in manifest.samples)

    predictor = Predictor(model_path, backend="torch", detect=False)
    video, folder = videos[0], manifest.samples[0].files["face"]
    # frame_1 ... frame_16: frame_10 comes after frame_9, so the folder's frames are the video's, in order.
    video_frames, _ = video_window(video, None, None, fps=4.0)
    folder_frames, _ = folder_window(folder, None, None, fps=4.0, frame_rate=8.0)
    assert len(folder_frames) == 8 and all(np.array_equal(a, b) for a, b in zip(video_frames, folder_frames))
    from_video = frame_outputs(predictor, video, None, None, fps=4.0)
    from_folder = frame_outputs(predictor, folder, None, None, fps=4.0, frame_rate=8.0)  # the demo's 8 fps
    assert np.allclose(from_folder.times, from_video.times) and len(from_folder.times) == 8
    assert np.allclose(from_folder.probabilities, from_video.probabilities, atol=1e-5)
    window = frame_outputs(predictor, folder, 0.5, 1.0, fps=8.0, frame_rate=8.0)
    assert np.allclose(window.times, [0.5, 0.625, 0.75, 0.875])
    (folder / "frame_3.png").write_bytes(b"not an image")
    with pytest.raises(Reject, match="frame_3.png"):
        frame_outputs(predictor, folder, None, None, fps=8.0, frame_rate=8.0)


def _dfew(clips: Path, root: Path) -> dict[str, int]:
    """DFEW's layout made of the demo clips: frame folders named by number in Clip/clip_224x224, fold 1's CSVs
    with DFEW's label numbers; plus a clip labelled 0 (not single-labelled) and one whose folder is missing. Returns
    each clip's affectkit class by its folder name."""
    dfew_label = {0: 3, 1: 1, 2: 2, 3: 5, 4: 7, 5: 6, 6: 4}  # affectkit id -> DFEW's number; DFEW has no contempt
    videos = [v for v in sorted(clips.rglob("*.avi")) if v.parts[-2] != "Contempt"]
    folders = _as_frame_folders(videos, lambda v: root / "Clip" / "clip_224x224" / f"{videos.index(v) + 1:05d}")
    classes = {f.name: CLASS_NAMES.index(v.parts[-2]) for v, f in zip(videos, folders)}
    for split in ("train", "test"):
        rows = [(int(f.name), dfew_label[classes[f.name]]) for v, f in zip(videos, folders)
                if (v.parts[-3] == "test") == (split == "test")]
        if split == "train":
            rows += [(rows[0][0], 0), (99999, 1)]
        sets = root / "EmoLabel_DataSplit" / f"{split}(single-labeled)"
        sets.mkdir(parents=True)
        pd.DataFrame(rows, columns=["video_name", "label"]).to_csv(sets / "set_1.csv", index=False)
    return classes


def test_dfew_is_read_as_distributed_and_its_fold_trained_on(clips, model_path, tmp_path):
    classes = _dfew(clips, tmp_path / "DFEW")
    manifest = read_clips(tmp_path / "DFEW")
    assert {s.id.split("/")[1]: s.expression for s in manifest.samples} == classes
    assert {s.split for s in manifest.samples} == {"train", "test"}
    assert sorted(r.kind for r in manifest.rejected) == ["face_missing", "label_invalid"]
    with pytest.raises(AffectkitError, match=r"no train set_2.csv \(found: set_1.csv\)"):
        read_clips(tmp_path / "DFEW", fold=2)

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["temporal", str(tmp_path / "DFEW"), "--face-model", str(model_path),
                                      "--no-detect", "--frame-rate", "8", "--fold", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train/test as given, val carved from train" in result.output
    assert "2 clip(s) quarantined" in result.output
    assert json.loads((out / "temporal_model.json").read_text())["frame_rate"] == 8.0
    predictions, problems = predict_temporal(out, tmp_path / "DFEW")
    assert len(predictions) == len(classes) and len(problems) == 2


def test_ferv39k_is_read_as_distributed(clips, trained, tmp_path):
    videos = [v for v in sorted(clips.rglob("*.avi")) if v.parts[-2] != "Contempt"][:8]
    root = tmp_path / "FERV39k"
    crops = root / "2_ClipsforFaceCrop" / "2_ClipsforFaceCrop"  # unpacked into a folder of the archive's name
    names = {v: f"{('Action', 'Talkshow')[i % 2]}/{v.parts[-2]}/{i + 1:04d}" for i, v in enumerate(videos)}
    _as_frame_folders(videos, lambda v: crops / names[v])
    setups = root / "4_setups" / "All_scenes"
    setups.mkdir(parents=True)
    train = [f"{names[v]} {v.parts[-2]}" for v in videos[:6]] + ["Action/Happy/9999 Happy", "Action/Bored/0001 Bored"]
    (setups / "train_All.csv").write_text("name label\n" + "\n".join(train) + "\n")
    (setups / "test_All.csv").write_text("\n".join(f"{names[v]},{v.parts[-2]}" for v in videos[6:]))

    manifest = read_clips(root)
    assert {s.id: (s.expression, s.split) for s in manifest.samples} == {
        f"2_ClipsforFaceCrop/{names[v]}": (CLASS_NAMES.index(v.parts[-2]), "test" if i >= 6 else "train")
        for i, v in enumerate(videos)}
    assert sorted((r.kind, r.id) for r in manifest.rejected) == [
        ("face_missing", "train_All.csv line 8"), ("label_invalid", "train_All.csv line 9")]
    predictions, problems = predict_temporal(trained, root)
    assert len(predictions) == 8 and len(problems) == 2
    (setups / "test_All.csv").unlink()
    with pytest.raises(AffectkitError, match="test_All.csv is missing"):
        read_clips(root)


def test_ckplus_sequences_are_read_as_clips_of_their_subjects(clips, trained, tmp_path):
    ckplus_code = {0: 0, 1: 5, 2: 6, 3: 7, 4: 4, 5: 3, 6: 1, 7: 2}  # affectkit id -> CK+'s label
    videos = sorted(clips.rglob("*.avi"))[:6]
    root = tmp_path / "CK+"
    names = {v: (f"S{10 + i // 2:03d}", f"{i % 2 + 1:03d}") for i, v in enumerate(videos)}
    _as_frame_folders(videos, lambda v: root / "cohn-kanade-images" / names[v][0] / names[v][1])
    for v, (subject, sequence) in names.items():
        if (subject, sequence) == ("S012", "002"):
            continue  # an unlabelled sequence: not read
        label = root / "Emotion" / subject / sequence / f"{subject}_{sequence}_00000016_emotion.txt"
        label.parent.mkdir(parents=True)
        label.write_text(f"   {ckplus_code[CLASS_NAMES.index(v.parts[-2])]:.7e}\n")
    (root / "Emotion" / "S099" / "001").mkdir(parents=True)  # labelled, without its frames
    (root / "Emotion" / "S099" / "001" / "S099_001_00000001_emotion.txt").write_text("   1.0000000e+00\n")

    manifest = read_clips(root)
    assert {s.id: (s.group, s.expression) for s in manifest.samples} == {
        f"{subject}/{sequence}": (subject, CLASS_NAMES.index(v.parts[-2]))
        for v, (subject, sequence) in names.items() if (subject, sequence) != ("S012", "002")}
    assert [(r.id, r.kind) for r in manifest.rejected] == [("S099/001", "face_missing")]
    predictions, problems = predict_temporal(trained, root)
    assert len(predictions) == 5 and len(problems) == 1


def test_the_server_gives_a_videos_clip_level_verdict_from_the_temporal_model(trained, clips, model_path, tmp_path,
                                                                             monkeypatch):
    from fastapi.testclient import TestClient

    from affectkit.serving import create_app
    from affectkit.temporal.run import TemporalModel

    client = TestClient(create_app(model_path, detect=False, temporal=trained))
    video = sorted((clips / "test").rglob("*.avi"))[0]
    upload = {"file": (video.name, video.read_bytes(), "video/avi")}
    expected = predict_temporal(trained, clips)[0].set_index("id").loc[video.relative_to(clips).as_posix()]
    second_passes = []
    read_again = TemporalModel.read
    monkeypatch.setattr(TemporalModel, "read", lambda *args: second_passes.append(1) or read_again(*args))
    # At the temporal model's own 4 frames a second the video is read once, smoothed or not; at 2 it reads it again.
    for params, passes in (({}, 0), ({"smooth": 0.3}, 0), ({"fps": 2}, 1)):
        response = client.post("/v1/predict-video", files=upload, params=params)
        assert response.status_code == 200, response.text
        assert len(second_passes) == passes, params
        clip = response.json()["clip"]
        assert clip["status"] == "ok" and clip["frames"] == 8
        assert clip["expression"] == expected["expression"]
        assert clip["probabilities"]["Happy"] == pytest.approx(expected["p_happy"], abs=1e-5)
        assert all(clip[t] == pytest.approx(expected[t], abs=1e-5) for t in ("valence", "arousal") if t in clip)
        second_passes.clear()
    explained = client.post("/v1/predict-video", files=upload, params={"explain_frames": "true"}).json()["clip"]
    frames = affectkit.explain_temporal(trained, video).frames
    assert [f["time"] for f in explained["frame_importance"]] == pytest.approx(frames["time"].tolist())
    assert [f["importance"] for f in explained["frame_importance"]] == pytest.approx(
        frames["importance"].tolist(), abs=1e-5)
    assert "frame_importance" not in clip  # asked for only
    smoothed = client.post("/v1/predict-video", files=upload, params={"smooth": 0.3}).json()["frames"]
    raw = client.post("/v1/predict-video", files=upload).json()["frames"]
    assert smoothed[0]["faces"] == raw[0]["faces"] and smoothed[-1]["faces"] != raw[-1]["faces"]
    assert set(clip["methods"]) == {"expression", "valence", "arousal"} & set(clip)  # what the clips were labelled with
    assert client.get("/v1/model").json()["temporal"]["fps"] == 4.0
    # A 2 s clip read at 1 frame a second is 2 frames for the request, but 8 for the temporal model (4 a second).
    bounded = TestClient(create_app(model_path, detect=False, temporal=trained, max_video_frames=5))
    refused = bounded.post("/v1/predict-video", params={"fps": 1},
                           files={"file": (video.name, video.read_bytes(), "video/avi")})
    assert refused.status_code == 413 and "the temporal model, which reads 4 a second" in refused.json()["detail"]

    with pytest.raises(AffectkitError, match="face detection off"):
        create_app(model_path, detect=True, temporal=trained)
    other = tmp_path / "other_model"
    shutil.copytree(model_path.parent, other)
    with open(other / "best_CustomCNN.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(AffectkitError, match="serve that model with it"):
        create_app(other / "best_CustomCNN.safetensors", detect=False, temporal=trained)


def test_odd_class_folders_are_mapped_and_unlabelled_clips_predicted_wherever_they_sit(trained, clips, tmp_path):
    videos = sorted(clips.rglob("*.avi"))[:3]
    odd = tmp_path / "odd"
    for folder, video in zip(("Screaming", "Happy", "Other"), videos):
        (odd / folder).mkdir(parents=True)
        shutil.copy(video, odd / folder / video.name)
    manifest = read_clips(odd, class_map={"screaming": "fear", "Other": "ignore"})
    assert sorted((s.id.split("/")[0], s.expression) for s in manifest.samples) == [("Happy", 1), ("Screaming", 4)]
    with pytest.raises(AffectkitError, match="--class-map Other=fear"):
        read_clips(odd, class_map={"Screaming": "fear"})
    with pytest.raises(AffectkitError, match="neither a class name"):
        read_clips(odd, class_map={"Screaming": "shouting"})
    refused = CliRunner().invoke(app, ["temporal", str(odd), "--face-model", "m.safetensors", "--class-map", "Other"])
    assert refused.exit_code == 2 and "give FOLDER=CLASS" in refused.output

    # Prediction reads every clip, whatever (if anything) its folders are called.
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(videos[0], loose / "a.avi")
    _as_frame_folders([videos[1]], lambda v: loose / "nested" / "b")
    predictions, problems = predict_temporal(trained, loose)
    assert predictions["id"].tolist() == ["a.avi", "nested/b"] and not problems
    single, _ = predict_temporal(trained, loose / "nested" / "b")
    assert single["id"].tolist() == ["b"]
    assert single["p_happy"].iloc[0] == pytest.approx(predictions["p_happy"].iloc[1])
    video, _ = predict_temporal(trained, loose / "a.avi")  # one video, given as it is
    assert video["id"].tolist() == ["a.avi"]
    assert video["p_happy"].iloc[0] == pytest.approx(predictions["p_happy"].iloc[0])
    with pytest.raises(AffectkitError, match="a.avi is one video, with no label to learn from"):
        read_clips(loose / "a.avi")


def test_clip_frames_writes_an_image_set_that_keeps_each_clips_frames_together(clips, tmp_path, monkeypatch):
    import cv2

    from affectkit.data.reader import read_dataset
    from affectkit.data.splits import make_splits
    from affectkit.multimodal.face import read_window
    from affectkit.temporal.frames import DONE_FILE

    out = tmp_path / "frames"
    result = CliRunner().invoke(app, ["clip-frames", str(clips), "--out", str(out), "--fps", "2", "--size", "48",
                                      "--no-detect", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Wrote 160 face images of 40 clips" in result.output  # 2 s clips at 2 frames a second
    index = read_dataset(out, group_pattern=r"^(.+?)__", progress=False)
    assert len(index.records) == 160 and not index.rejected
    by_clip = {}
    for record in index.records:
        by_clip.setdefault(record.group, set()).add((record.split, record.expression))
        assert record.width == record.height == 48
    assert len(by_clip) == 40 and all(len(v) == 1 for v in by_clip.values())  # one split and class per clip
    assert {CLASS_NAMES[e] for _, e in set().union(*by_clip.values())} == set(CLASS_NAMES)
    assert "group_pattern" in (out / "affectkit.yaml").read_text()
    # A split carved from the train clips keeps every clip's frames on one side.
    splits = make_splits([r for r in index.records if r.split != "val"], 0.2, 0.2, seed=0)
    assert splits.groupby("group")["split"].nunique().max() == 1

    # An interrupted run resumes: clips already written are not read again; another folder's files are refused.
    (out / DONE_FILE).write_text("\n".join((out / DONE_FILE).read_text().splitlines()[:-1]) + "\n")
    read = []

    def counted(path, *args, **kwargs):
        read.append(path)
        return read_window(path, *args, **kwargs)

    monkeypatch.setattr("affectkit.temporal.frames.read_window", counted)
    again = CliRunner().invoke(app, ["clip-frames", str(clips), "--out", str(out), "--fps", "2", "--size", "48",
                                     "--no-detect", "--quiet"])
    assert again.exit_code == 0 and len(read) == 1 and "Wrote 160 face images of 40 clips" in again.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(app, ["clip-frames", str(clips), "--out", str(tmp_path / "busy")])
    assert refused.exit_code != 0 and "not empty and was not written by clip-frames" in str(refused.exception)

    # Onset-to-apex clips: only each clip's last faces, the latest of the frames read.
    apex = CliRunner().invoke(app, ["clip-frames", str(clips), "--out", str(tmp_path / "apex"), "--fps", "2",
                                    "--size", "48", "--no-detect", "--last", "1", "--quiet"])
    assert apex.exit_code == 0 and "Wrote 40 face images of 40 clips" in apex.output
    assert {p.stem.rsplit("_f", 1)[1] for p in (tmp_path / "apex").rglob("*.jpg")} == {"000"}
    one = next((tmp_path / "apex").rglob("*.jpg"))
    whole = next(out.rglob(one.name.replace("_f000", "_f003")))  # the same clip's fourth and last frame read
    assert np.array_equal(cv2.imread(str(one)), cv2.imread(str(whole)))


def test_a_predictions_table_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """temporal-predict (and each predict command) writes its table after hours of reading clips: a stop while it is
    being written leaves the table it replaces, not half of the new one."""
    from affectkit.cli.common import write_table

    out = tmp_path / "predictions.csv"
    write_table(pd.DataFrame({"id": ["a"], "p_happy": [0.5]}), out)
    before = out.read_text()

    class Stopped(Exception):
        pass

    def half_written(self, path, **kwargs):
        Path(path).write_text("id,p_happy\nb,")
        raise Stopped

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    with pytest.raises(Stopped):
        write_table(pd.DataFrame({"id": ["b"], "p_happy": [0.1]}), out)
    assert out.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
