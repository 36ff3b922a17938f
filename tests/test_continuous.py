"""Valence and arousal frame by frame over clips annotated frame by frame (AFEW-VA's layout): the face model as is,
smoothed over each clip and read by a per-frame GRU, compared on validation, saved, reloaded and predicted with."""

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
from affectkit.config import Config
from affectkit.data.datamodule import prepare_data
from affectkit.errors import AffectkitError
from affectkit.pipeline.run import train_one
from affectkit.temporal.continuous import (
    AS_IS,
    GRU_FILE,
    SEQUENCE,
    SMOOTHED,
    ContinuousModel,
    frame_clips,
    frame_truth,
    predict_continuous,
    run_continuous,
    smooth,
)
from affectkit.temporal.demo import make_rated_clip_demo

pytestmark = pytest.mark.usefixtures("one_thread")
CLIPS, FRAMES, ACTORS = 12, 24, 6


@pytest.fixture(scope="module")
def afew_va(tmp_path_factory) -> Path:
    return make_rated_clip_demo(tmp_path_factory.mktemp("afew") / "AFEW-VA", CLIPS, FRAMES, ACTORS, progress=False)


@pytest.fixture(scope="module")
def face_model(afew_va, tmp_path_factory) -> Path:
    config = Config(img_size=32, batch_size=16, epochs=4, fine_tune_epochs=0, num_workers=0, seed=0, precision="32")
    return train_one("custom_cnn", afew_va, tmp_path_factory.mktemp("face_run"), config, quiet=True)


def test_frames_are_grouped_into_clips_in_order_and_smoothed_within_them(afew_va, tmp_path):
    data = prepare_data(afew_va, Config(img_size=32, num_workers=0), progress=False)
    clips = frame_clips(data)
    assert len(clips) == CLIPS and all(len(c.positions) == FRAMES for c in clips)
    names = [data.records[i].id for i in clips[0].positions]
    assert names == [f"001/{f:05d}.png" for f in range(FRAMES)]
    assert smooth(np.array([0.0, 3.0, 0.0, 3.0]), 3).tolist() == [1.0, 1.0, 2.0, 2.0]  # edges repeat
    assert smooth(np.arange(4.0), 1).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_frame_truth_reads_each_frames_labels_from_afew_va_and_aff_wild2_folders(afew_va, tmp_path):
    from tests.test_layouts import _affwild2

    truth = frame_truth(afew_va)
    label = json.loads((afew_va / "002" / "002.json").read_text())["frames"]["00003"]
    assert len(truth) == CLIPS * FRAMES
    valence, arousal, person, digest = truth[str((afew_va / "002" / "00003.png").resolve())]
    assert (valence, arousal, person) == pytest.approx((label["valence"] / 10, label["arousal"] / 10, "actor:Actor 1"))
    assert len(digest) == 20 and len({found[3] for found in truth.values()}) == len(truth)  # each frame's own
    assert frame_truth(afew_va / "002") == {file: found for file, found in truth.items()
                                            if Path(file).parent.name == "002"} != {}  # one clip's folder alone
    _affwild2(tmp_path / "affwild2")
    truth = frame_truth(tmp_path / "affwild2")
    frames = tmp_path / "affwild2" / "cropped_aligned" / "118-30-640x480"
    # The valence/arousal challenge's frames, by their video; frame 3's -5 is no rating.
    assert truth[str((frames / "00006.jpg").resolve())][:3] == pytest.approx((0.1, 0.2, "118-30-640x480"))
    assert str((frames / "00003.jpg").resolve()) not in truth and len(truth) == 5 * 9 - 2
    assert frame_truth(frames) == {}  # a folder of frames of no data set
    assert frame_truth(tmp_path / "no such folder") == {}


def test_temporal_frames_compares_keeps_on_validation_and_predicts(afew_va, face_model, model_path, tmp_path,
                                                                   monkeypatch):
    out = tmp_path / "frames"
    result = CliRunner().invoke(app, ["temporal-frames", str(afew_va), "--face-model", str(face_model), "--out",
                                      str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "continuous.csv").set_index("method")
    assert list(table.index) == [AS_IS, SMOOTHED, SEQUENCE]
    meta = json.loads((out / "continuous_model.json").read_text())
    for name in ("valence", "arousal"):
        val = table[f"val_{name}_ccc"]
        assert val.notna().all() and np.isfinite(table[f"{name}_ccc"]).all()
        assert meta["kept"][name]["method"] == val.idxmax()  # chosen on validation
        assert val[SMOOTHED] >= val[AS_IS] - 1e-9  # a window of one frame is the face model as is
    assert "split the face model's own" in (out / "continuous.md").read_text()
    assert "| n/a" not in (out / "continuous.md").read_text()

    predicted = CliRunner().invoke(app, ["temporal-frames-predict", str(out), str(afew_va), "--out",
                                         str(tmp_path / "frames.csv"), "--no-detect", "--quiet"])
    assert predicted.exit_code == 0, predicted.output
    frames = pd.read_csv(tmp_path / "frames.csv", dtype={"clip": str})
    assert len(frames) == CLIPS * FRAMES and frames["clip"].nunique() == CLIPS
    assert frames[["valence", "arousal"]].stack().between(-1, 1).all()
    first = frames[frames["clip"] == "001"]
    assert first["time"].tolist() == pytest.approx([f / 25 for f in range(FRAMES)])  # every frame, in order
    _predicted_frames_are_scored_against_their_labels(frames, afew_va, out, tmp_path / "frames_scores.json",
                                                      predicted.output)
    alone = CliRunner().invoke(app, ["temporal-frames-predict", str(out), str(afew_va / "002"), "--out",
                                     str(tmp_path / "alone.csv"), "--no-detect", "--quiet"])  # one clip's folder
    assert alone.exit_code == 0, alone.output
    one, same = pd.read_csv(tmp_path / "alone.csv", dtype={"clip": str}), frames[frames["clip"] == "002"]
    assert one[["true_valence", "fit_split", "person"]].equals(same[["true_valence", "fit_split", "person"]]
                                                               .reset_index(drop=True))
    assert json.loads((tmp_path / "alone_scores.json").read_text())["valence_samples"] == FRAMES
    copy = shutil.copytree(afew_va / "002", tmp_path / "elsewhere" / "002")  # the frames read from a copy
    copied, _ = affectkit.predict_temporal_frames(out, copy, detect=False)
    assert copied["fit_split"].tolist() == one["fit_split"].tolist()  # known by their content

    assert not (tmp_path / "frames.csv.frames.partial.jsonl").exists()  # the read log, gone once all was read
    _stopped_prediction_goes_on_from_its_log(out, afew_va, tmp_path / "later" / "stopped.jsonl", monkeypatch)
    _served_video_gets_every_frames_valence_arousal(out, afew_va, face_model, model_path, tmp_path)

    with open(out / GRU_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(AffectkitError, match="does not match the digest"):
        affectkit.predict_temporal_frames(out, afew_va, detect=False)


def _predicted_frames_are_scored_against_their_labels(frames: pd.DataFrame, afew_va: Path, model: Path,
                                                     scores_file: Path, output: str) -> None:
    """Given AFEW-VA's folder, each predicted frame carries its own labels, its actor and its split in the fit, and
    the frames are scored against the labels by CCC, with a warning for the frames the model was fit or chosen on."""
    from affectkit.multimodal.fusion import ccc

    annotations = {clip: json.loads((afew_va / clip / f"{clip}.json").read_text()) for clip in frames["clip"].unique()}
    labels = [annotations[clip]["frames"][Path(name).stem] for clip, name in zip(frames["clip"], frames["frame_file"])]
    assert frames["frame_file"].tolist()[:3] == ["00000.png", "00001.png", "00002.png"]
    assert frames["true_valence"].tolist() == pytest.approx([label["valence"] / 10 for label in labels], abs=1e-4)
    assert frames["true_arousal"].tolist() == pytest.approx([label["arousal"] / 10 for label in labels], abs=1e-4)
    assert frames["person"].tolist() == [f"actor:{annotations[clip]['actor']}" for clip in frames["clip"]]
    fit = pd.read_csv(model / "frame_splits.csv").set_index("path")["split"]
    assert frames["fit_split"].tolist() == [fit[str((afew_va / clip / name).resolve())]
                                            for clip, name in zip(frames["clip"], frames["frame_file"])]
    assert set(frames["fit_split"]) == {"train", "val", "test"}
    scores = json.loads(scores_file.read_text())
    for name in ("valence", "arousal"):
        assert scores[f"{name}_samples"] == len(frames)
        # The CSV holds four decimals; the scores, the unrounded values.
        assert scores[f"{name}_ccc"] == pytest.approx(ccc(frames[name].to_numpy(), frames[f"true_{name}"].to_numpy()),
                                                      abs=1e-3)
        assert scores[f"{name}_ccc_low"] <= scores[f"{name}_ccc"] <= scores[f"{name}_ccc_high"]
    assert scores["seen_in_training"] == frames["fit_split"].isin(["train", "val"]).sum() > 0
    assert "fit the model or chose it" in output


def _stopped_prediction_goes_on_from_its_log(out, afew_va, log, monkeypatch):
    """Each clip's rows go to a log as read: a prediction stopped on the way reads only the clips it lacks, and ends
    with the rows an uninterrupted one gives."""
    whole, _ = predict_continuous(out, afew_va, detect=False)
    real, reads = ContinuousModel.read, []

    def stopping(self, predictor, path, *args):
        reads.append(path)
        if len(reads) > 5 and stop:
            raise KeyboardInterrupt
        return real(self, predictor, path, *args)

    monkeypatch.setattr(ContinuousModel, "read", stopping)
    stop = True
    with pytest.raises(KeyboardInterrupt):
        predict_continuous(out, afew_va, detect=False, log=log)
    assert len(log.read_text().splitlines()) == 1 + 5  # its key, then five clips
    reads.clear()
    stop = False
    again, problems = affectkit.predict_temporal_frames(out, afew_va, detect=False, checkpoint=log)
    assert len(reads) == CLIPS - 5 and problems == [] and not log.exists()
    pd.testing.assert_frame_equal(again, whole)


def test_temporal_frames_refuses_what_it_cannot_read(afew_va, face_model, demo_dir, model_path, tmp_path):
    with pytest.raises(AffectkitError, match="faces are not frames of clips"):
        affectkit.train_temporal_frames(demo_dir, model_path, tmp_path / "a")
    expression_model = tmp_path / "expression" / "best_CustomCNN"
    (tmp_path / "expression").mkdir()
    for suffix in (".safetensors", ".json"):
        text = Path(str(face_model.with_suffix("")) + suffix).read_bytes()
        if suffix == ".json":
            text = text.replace(b'"predicts_valence_arousal": true', b'"predicts_valence_arousal": false')
        Path(str(expression_model) + suffix).write_bytes(text)
    with pytest.raises(AffectkitError, match="predicts expressions only"):
        run_continuous(afew_va, tmp_path / "b", Path(str(expression_model) + ".safetensors"))


def _served_video_gets_every_frames_valence_arousal(out: Path, afew_va: Path, face_model: Path, other_model: Path,
                                                    tmp_path: Path):
    """``serve --temporal-frames``: a video posted to /v1/predict-video gets the kept methods' valence and arousal
    for each frame, as ``temporal-frames-predict`` gives them for the same video."""
    import cv2
    from fastapi.testclient import TestClient

    from affectkit.serving import create_app

    frames = sorted((afew_va / "001").glob("*.png"))
    video = tmp_path / "videos" / "clip.avi"
    video.parent.mkdir()
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, first.shape[1::-1])
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    client = TestClient(create_app(face_model, detect=False, temporal_frames=out))
    assert client.get("/v1/model").json()["temporal_frames"]["fps"] == 25.0
    response = client.post("/v1/predict-video?fps=4", files={"file": ("clip.avi", video.read_bytes(), "video/avi")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["frames_read"] < len(frames)  # the request's 4 a second; the model reads its own 25
    continuous = answer["continuous"]
    expected, problems = affectkit.predict_temporal_frames(out, video.parent, detect=False)
    assert continuous["status"] == "ok" and not problems and len(continuous["frames"]) == len(frames)
    assert list(expected.columns) == ["clip", "frame_file", "time", "valence", "arousal"]  # a video: no labels
    assert continuous["methods"] == {d: json.loads((out / "continuous_model.json").read_text())["kept"][d]["method"]
                                     for d in ("valence", "arousal")}
    assert [f["valence"] for f in continuous["frames"]] == pytest.approx(expected["valence"].tolist(), abs=1e-5)
    assert [f["arousal"] for f in continuous["frames"]] == pytest.approx(expected["arousal"].tolist(), abs=1e-5)
    with pytest.raises(AffectkitError, match="serve that model with it"):
        create_app(other_model, detect=False, temporal_frames=out)  # not the face model it learnt on
