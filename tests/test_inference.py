"""Face detection, prediction over images/folders/videos, ONNX export and Monte-Carlo dropout."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pandas as pd
import pytest
import torch
import typer
from skimage import data as skdata
from typer.testing import CliRunner

from affectkit.config import CLASS_NAMES, Config
from affectkit.errors import AffectkitError
from affectkit.inference.backends import OnnxBackend
from affectkit.inference.export import export_onnx, int8_path, onnx_parity, quantize_onnx
from affectkit.inference import faces as faces_module
from affectkit.inference.faces import Face, FaceDetector, crop_face
from affectkit.inference.media import check_output_path, predict_media
from affectkit.inference.predictor import Predictor, preprocess
from affectkit.models import build_model, save_model

FACE_REGION = (slice(20, 240), slice(130, 320))  # the astronaut's head, with some background around it


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor(model_path, backend="torch")


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[FACE_REGION])


@pytest.fixture
def cli() -> typer.Typer:
    from affectkit.cli import app

    return app


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def two_faces(face: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    h, w = face.shape[:2]
    canvas = np.full((h + 80, 2 * w + 160, 3), (70, 90, 110), np.uint8)
    regions = [(40, 40, 40 + w, 40 + h), (w + 120, 40, 2 * w + 120, 40 + h)]
    for x1, y1, x2, y2 in regions:
        canvas[y1:y2, x1:x2] = face
    return canvas, regions


def _copied(model_path: Path, folder: Path) -> Path:
    folder.mkdir()
    for src in (model_path, model_path.with_suffix(".json")):
        (folder / src.name).write_bytes(src.read_bytes())
    return folder / model_path.name


def invoke(cli: typer.Typer, args: list[str]):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_two_faces_give_two_rows_with_boxes_on_the_faces(cli, model_path, face, tmp_path):
    canvas, regions = two_faces(face)
    image = write_rgb(tmp_path / "pair.png", canvas)
    invoke(cli, ["predict", model_path, image, "--out", tmp_path / "rows.csv", "--backend", "torch", "-q"])
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert len(rows) == 2 and (rows["status"] == "ok").all()
    boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy()
    assert boxes[0][2] <= boxes[1][0] or boxes[1][2] <= boxes[0][0], "boxes overlap"
    for (x1, y1, x2, y2), region in zip(sorted(boxes.tolist()), regions):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        assert region[0] <= cx < region[2] and region[1] <= cy < region[3]
    probs = rows[[f"p_{c}" for c in CLASS_NAMES]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert rows["expression"].isin(CLASS_NAMES).all()


def test_blank_and_tiny_images_report_no_face(predictor, tmp_path):
    blank = write_rgb(tmp_path / "blank.png", np.full((240, 320, 3), 200, np.uint8))
    tiny = write_rgb(tmp_path / "tiny.png", np.full((9, 9, 3), 200, np.uint8))
    rows = predict_media(predictor, [blank, tiny], progress=False)
    assert [(r["status"], r.get("expression")) for r in rows] == [("no face found", None)] * 2


def test_images_without_a_face_point_to_no_detect_for_crops(cli, model_path, face, tmp_path):
    blank = write_rgb(tmp_path / "blank.png", np.full((240, 320, 3), 200, np.uint8))
    hint = "--no-detect reads each whole image as the face"
    found = invoke(cli, ["predict", model_path, blank, "--out", tmp_path / "rows.csv", "-q"])
    assert "0 face(s), 1 without a face" in found.output and hint in " ".join(found.output.split())
    assert "faces cropped with 0.20 of the box on each side, a fixed fifth" in " ".join(found.output.split())
    whole = invoke(cli, ["predict", model_path, blank, "--no-detect", "--out", tmp_path / "rows2.csv", "-q"])
    assert "1 face(s), 0 without a face" in whole.output and hint not in " ".join(whole.output.split())
    assert "faces cropped" not in whole.output  # no detection, no crop


def test_no_detect_treats_the_image_as_one_face(cli, model_path, face, tmp_path):
    crop = write_rgb(tmp_path / "crop.jpg", face)
    invoke(cli, ["predict", model_path, crop, "--no-detect", "--out", tmp_path / "rows.json", "-q"])
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert row["status"] == "ok" and row["x1"] is None and row["frame"] is None
    assert math.isclose(sum(row[f"p_{c}"] for c in CLASS_NAMES), 1.0, abs_tol=1e-5)
    assert -1 <= row["valence"] <= 1 and -1 <= row["arousal"] <= 1


def test_folder_with_corrupt_files_reports_them_and_continues(predictor, face, tmp_path):
    folder = tmp_path / "photos"
    write_rgb(folder / "a_face.png", face)
    (folder / "b_garbage.jpg").write_bytes(b"this is not a jpeg")
    ok, jpeg = cv2.imencode(".jpg", face)
    (folder / "c_truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    write_rgb(folder / "sub" / "d_face.png", face)
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    rows = predict_media(predictor, [folder], annotate_dir=tmp_path / "annotated", progress=False)
    statuses = {Path(r["file"]).name: r["status"] for r in rows}
    assert statuses["a_face.png"] == "ok" and statuses["d_face.png"] == "ok"
    assert statuses["b_garbage.jpg"].startswith("error: not an image")
    assert statuses["c_truncated.jpg"].startswith("error: truncated")
    assert "notes.txt" not in statuses
    annotated = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert annotated == ["a_face_annotated.jpg", "d_face_annotated.jpg"]


def test_predictions_go_to_a_pipe_as_json_lines(cli, model_path, face, tmp_path):
    """``--out -``: one JSON object per face on standard output, for jq or another program; the notes stay on
    standard error. A .jsonl file holds the same lines, a .json file the same records as one array."""
    canvas, _ = two_faces(face)
    image = write_rgb(tmp_path / "pair.png", canvas)
    piped = CliRunner().invoke(cli, ["predict", str(model_path), str(image), "--out", "-", "--backend", "torch"])
    assert piped.exit_code == 0, piped.output
    records = [json.loads(line) for line in piped.stdout.splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" and r["file"] == str(image) for r in records)
    assert "face(s)" in piped.stderr and "face(s)" not in piped.stdout
    invoke(cli, ["predict", model_path, image, "--out", tmp_path / "rows.jsonl", "--backend", "torch", "-q"])
    invoke(cli, ["predict", model_path, image, "--out", tmp_path / "rows.json", "--backend", "torch", "-q"])
    assert [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == records
    assert json.loads((tmp_path / "rows.json").read_text()) == records
    with pytest.raises(AffectkitError, match=r"\.csv, \.json or \.jsonl file name, or - for JSON Lines"):
        check_output_path(tmp_path / "rows.txt")


def test_a_stopped_predict_keeps_its_rows_and_resume_finishes_it_without_redoing_them(cli, model_path, face, tmp_path,
                                                                                     monkeypatch):
    """Rows go to OUT.partial as each batch of images and each video is done; Ctrl-C leaves it, --resume goes on
    with the files it lacks, and the file it ends with is the one an uninterrupted run writes."""
    import affectkit.inference.media as media

    folder = tmp_path / "media"
    write_rgb(folder / "a.png", face)
    write_rgb(folder / "b.png", np.ascontiguousarray(face[:, ::-1]))
    write_clip(folder / "c" / "clip.mp4", face)
    args = ["predict", model_path, folder, "--backend", "torch", "--batch-size", 2, "-q"]
    for suffix in (".csv", ".json"):
        whole, out = tmp_path / f"whole{suffix}", tmp_path / f"rows{suffix}"
        invoke(cli, [*args, "--out", whole])
        with monkeypatch.context() as patch:
            patch.setattr(media, "_predict_video", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
            stopped = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", out]])
        assert stopped.exit_code == 130 and "the same command with --resume goes on" in " ".join(stopped.stderr.split())
        partial = tmp_path / f"rows{suffix}.partial"
        assert not out.exists() and partial.is_file()
        # Starting over would write over those rows: refused, before the model is read, naming both ways on.
        again = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", out]])
        assert isinstance(again.exception, AffectkitError) and "--resume continues it" in str(again.exception)
        with partial.open("a") as cut:
            cut.write(f"{folder / 'c'}" if suffix == ".csv" else '{"file": "')  # a line a kill cut short
        predicted = []
        images = media._predict_images
        with monkeypatch.context() as patch:
            patch.setattr(media, "_predict_images", lambda p, files, *rest: predicted.extend(files) or images(
                p, files, *rest))
            resumed = invoke(cli, [*args, "--out", out, "--resume"])
        assert predicted == [] and "2 file(s) predicted there are left out" in " ".join(resumed.stderr.split())
        assert not partial.exists()
        if suffix == ".csv":
            assert pd.read_csv(out).equals(pd.read_csv(whole))
        else:
            assert json.loads(out.read_text()) == json.loads(whole.read_text())
    # A partial file of other columns (another model's, or abstention on) is not added to.
    partial = tmp_path / "rows.csv.partial"
    partial.write_text("file,frame,track,status\n")
    refused = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", tmp_path / "rows.csv", "--resume"]])
    assert isinstance(refused.exception, AffectkitError) and "written with other columns" in str(refused.exception)
    (tmp_path / "rows.jsonl.partial").write_text("{not rows}\n")
    refused = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", tmp_path / "rows.jsonl", "--resume"]])
    assert isinstance(refused.exception, AffectkitError) and "is not rows `affectkit predict` wrote" in str(
        refused.exception)


def test_resume_knows_a_file_done_however_its_path_was_written(predictor, face, tmp_path, monkeypatch):
    """The files an interrupted run did are left out whether its rows name them relative, absolute or through ./"""
    write_rgb(tmp_path / "media" / "a.png", face)
    write_rgb(tmp_path / "media" / "b.png", face)
    monkeypatch.chdir(tmp_path)
    rows = predict_media(predictor, ["media/"], progress=False, done={str(tmp_path / "media" / "a.png")})
    assert [row["file"] for row in rows] == ["media/b.png"]
    rows = predict_media(predictor, [tmp_path / "media"], progress=False, done={"./media/a.png", "media//b.png"})
    assert rows == []


def test_a_url_is_named_as_one_not_as_a_missing_file(predictor, tmp_path):
    """A URL on the command line reaches the library as a path (``https:/host/a.jpg``): said to be a URL, whole."""
    with pytest.raises(AffectkitError, match="^https://example.com/a.jpg is a URL: affectkit reads no network"):
        predict_media(predictor, [Path("https://example.com/a.jpg")], progress=False)
    with pytest.raises(AffectkitError, match="^C:/faces/a.jpg does not exist"):  # a Windows drive is no URL
        predict_media(predictor, [Path("C:/faces/a.jpg")], progress=False)


def write_clip(video: Path, face: np.ndarray) -> Path:
    """Eight frames of the face moving right, as an MP4."""
    small = cv2.resize(face, (95, 110), interpolation=cv2.INTER_AREA)
    video.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (200, 150))
    for i in range(8):
        frame = np.full((150, 200, 3), 90, np.uint8)
        frame[20:130, 10 + 8 * i : 105 + 8 * i] = small
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return video


def test_a_folder_gives_its_videos_and_names_the_files_it_passes_over(cli, model_path, face, tmp_path):
    folder = tmp_path / "media"
    write_rgb(folder / "photo.png", face)
    write_clip(folder / "clips" / "clip.mp4", face)
    (folder / "notes.txt").write_text("not an image")
    (folder / "IMG_0001.JXL").write_bytes(b"a JPEG XL photo")
    (folder / ".DS_Store").write_bytes(b"")
    result = invoke(cli, ["predict", model_path, folder, "--every", 4, "--out", tmp_path / "rows.csv"])
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert set(rows["file"].map(lambda f: Path(f).name)) == {"photo.png", "clip.mp4"}
    assert sorted(rows.loc[rows["file"].str.endswith("clip.mp4"), "frame"]) == [0, 4]
    said = " ".join(result.output.split())
    assert "passed over 2 file(s) of other kinds (.jxl 1, .txt 1); JXL photos are not read: convert them" in said
    # A folder with nothing to predict is said to be one, not taken for a run that found no face.
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.txt").write_text("not an image")
    empty = CliRunner().invoke(cli, ["predict", str(model_path), str(tmp_path / "nothing")])
    assert isinstance(empty.exception, AffectkitError) and "No image or video to predict in" in str(empty.exception)
    # The Python API reads a folder's images (a video would need its frames): it passes the clip over.
    assert [face.source for face in Predictor(model_path, detect=False).predict(folder)] == [str(folder / "photo.png")]


def test_video_gives_per_frame_rows_and_timeline(cli, model_path, face, tmp_path):
    video = write_clip(tmp_path / "clip.mp4", face)
    out = tmp_path / "out"
    invoke(cli, ["predict", model_path, video, "--every", 2, "--smooth", 0.5, "--annotate", out,
                 "--out", out / "video.csv", "-q"])
    rows = pd.read_csv(out / "video.csv")
    assert sorted(rows["frame"].unique()) == [0, 2, 4, 6]
    assert rows["time"].tolist() == pytest.approx([0, 0.2, 0.4, 0.6])  # the frame's second in the 10-fps clip
    assert (rows["status"] == "ok").all() and rows["track"].nunique() == 1
    assert (out / "clip_timeline.png").stat().st_size > 0
    capture = cv2.VideoCapture(str(out / "clip_annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    # The Python API gives the same rows as a table.
    table = Predictor(model_path).predict_video(video, every=2, smooth=0.5)
    assert list(table.columns) == list(rows.columns) and list(table["frame"]) == list(rows["frame"])
    assert table["valence"].to_numpy() == pytest.approx(rows["valence"].to_numpy(), abs=1e-6)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(AffectkitError, match="broken.mp4: not a readable video"):
        Predictor(model_path).predict_video(tmp_path / "broken.mp4")
    with pytest.raises(AffectkitError, match=r"clip.mp4 is a video: predict_video\(\)"):
        Predictor(model_path).predict(video)


def test_cli_keeps_ffmpeg_lines_about_a_broken_video_off_stderr_unless_asked(model_path, tmp_path):
    """A truncated MP4 gets affectkit's one sentence, not FFmpeg's own "moov atom not found" beside it (twice: probed,
    then opened); a user debugging a camera who sets FFmpeg's and OpenCV's log levels sees FFmpeg's lines again."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    command = [sys.executable, "-m", "affectkit", "predict", str(model_path), str(cut),
               "--out", str(tmp_path / "p.csv")]
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPENCV_")}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "cut.mp4: not a readable video" in quiet.stdout + quiet.stderr
    assert "moov atom" not in quiet.stdout + quiet.stderr
    debugging = {**env, "OPENCV_FFMPEG_LOGLEVEL": "32", "OPENCV_LOG_LEVEL": "INFO"}
    asked = subprocess.run(command, capture_output=True, text=True, env=debugging, timeout=120)
    assert "moov atom not found" in asked.stdout + asked.stderr  # OpenCV passes them on, to stdout


def test_onnx_export_matches_torch_and_auto_backend_uses_it(model_path, tmp_path):
    onnx_path = export_onnx(model_path, out=tmp_path / "m.onnx")
    assert onnx_parity(model_path, onnx_path) < 1e-4
    batch_axis = onnx.load(str(onnx_path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_axis.dim_param == "batch"
    default = export_onnx(model_path)
    assert default == model_path.with_suffix(".onnx")
    try:
        assert Predictor(model_path, detect=False).backend_name == "onnx"
    finally:
        default.unlink()


def test_threads_are_given_to_the_backend_that_runs_the_model(model_path, tmp_path):
    import torch

    onnx_path = export_onnx(model_path, out=tmp_path / "m.onnx")
    onnx_model = Predictor(onnx_path, detect=False, threads=1)
    options = onnx_model.backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    # Its threads sleep between calls, leaving the cores to the detector and decoding that run between them.
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    before = torch.get_num_threads()
    try:
        Predictor(model_path, backend="torch", detect=False, threads=2)
        assert torch.get_num_threads() == 2  # PyTorch's budget is the process's
    finally:
        torch.set_num_threads(before)
    with pytest.raises(AffectkitError, match="--threads must be at least 1"):
        Predictor(tmp_path / "absent.onnx", detect=False, threads=0)


@pytest.mark.parametrize("opset", [0, 99])
def test_an_opset_the_exporter_cannot_write_is_refused_by_name(model_path, tmp_path, opset):
    import inspect

    from affectkit.cli.infer import export
    from affectkit.inference.export import DEFAULT_OPSET

    with pytest.raises(AffectkitError, match=f"ONNX opset {opset} failed .*the default, opset {DEFAULT_OPSET}"):
        export_onnx(model_path, out=tmp_path / "m.onnx", opset=opset)
    assert not list(tmp_path.iterdir())  # nothing half-written
    assert inspect.signature(export).parameters["opset"].default == DEFAULT_OPSET  # the default named is the CLI's


def test_an_onnx_export_alone_predicts_and_serves_as_the_model_does(model_path, tmp_path, face):
    """Deployed as one file: the export carries the model's description, so it needs no .json beside it."""
    from fastapi.testclient import TestClient

    from affectkit.serving.app import create_app

    alone = export_onnx(model_path, out=tmp_path / "deploy" / "emotion.onnx")
    assert sorted(p.name for p in alone.parent.iterdir()) == ["emotion.onnx"]
    beside = Predictor(model_path, backend="torch", detect=False)
    deployed = Predictor(alone, detect=False)
    assert deployed.backend_name == "onnx" and deployed.meta == beside.meta
    ours, theirs = deployed.predict(face)[0], beside.predict(face)[0]
    assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    assert ours.valence == pytest.approx(theirs.valence, abs=1e-4)
    served = TestClient(create_app(alone, detect=False)).get("/v1/model").json()
    assert served["name"] == beside.meta["display_name"]
    # An export that carries no description (an older one) and has no .json beside it is refused by name.
    bare = onnx.load(str(alone))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "old.onnx"))
    with pytest.raises(AffectkitError, match=r"old.onnx has no old.json beside it .*export it again"):
        Predictor(tmp_path / "old.onnx", detect=False)


@pytest.mark.parametrize("device, problem", [
    ("banana", "'banana' is not a device PyTorch knows"),
    ("mps", "no Apple GPU"),
    pytest.param("cuda", "no CUDA GPU on this machine", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_a_device_this_machine_lacks_is_refused_by_name(model_path, device, problem):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an Apple GPU")
    with pytest.raises(AffectkitError, match=problem):
        Predictor(model_path, device=device, detect=False)


def test_a_model_and_its_onnx_export_alone_have_one_digest(model_path, tmp_path):
    """Serving state files and the face model a fusion or temporal model was trained with are keyed by this digest,
    so serving the export alone must not look like another model."""
    import shutil

    from affectkit.inference.predictor import model_digest
    from affectkit.models.metadata import sha256_of
    from affectkit.multimodal.run import face_model_digest

    weights = sha256_of(model_path.with_suffix(".safetensors"))
    alone = tmp_path / "alone"
    alone.mkdir()
    onnx_path = export_onnx(model_path, out=alone / "best_CustomCNN.onnx")
    assert model_digest(model_path) == weights == model_digest(onnx_path) == face_model_digest(onnx_path)
    # An ONNX file that records no weights is its own model.
    bare = onnx.load(str(onnx_path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert model_digest(tmp_path / "bare.onnx") == sha256_of(tmp_path / "bare.onnx") != weights
    shutil.rmtree(alone)
    with pytest.raises(AffectkitError, match="no such model"):
        face_model_digest(onnx_path)


def test_auto_backend_ignores_a_stale_onnx_export(model_path, tmp_path):
    cfg = Config(img_size=64)
    stem = tmp_path / "best_CustomCNN"
    save_model(build_model("custom_cnn", cfg), stem, cfg)
    export_onnx(stem)
    assert Predictor(stem, detect=False).backend_name == "onnx"
    save_model(build_model("custom_cnn", cfg), stem, cfg)  # retrained: the export no longer matches
    assert Predictor(stem, detect=False).backend_name == "torch"


def test_int8_export_runs_and_stays_close(model_path, tmp_path):
    fp32 = export_onnx(model_path, out=tmp_path / "m.onnx", int8=True)
    quantized = int8_path(fp32)
    ops = {n.op_type for n in onnx.load(str(quantized)).graph.node}
    assert "MatMulInteger" in ops  # the dense layers; convolutions stay float (see export.INT8_OP_TYPES)
    assert Predictor(quantized, detect=False).quantization == "dynamic int8: dense layers"
    assert onnx_parity(model_path, quantized) < 0.05
    assert quantized.stat().st_size < fp32.stat().st_size


def test_an_ort_export_runs_alone_on_any_cpu_and_lists_the_operators_it_needs(cli, model_path, demo_dir, face,
                                                                             tmp_path):
    """--format ort: ONNX Runtime Mobile's file of each export, answering as the PyTorch model does, deployable alone,
    with no x86-only layout in it, and the operator list a reduced ONNX Runtime build is made from."""
    import affectkit
    from affectkit.pipeline.calibrate import calibrate_saved
    from affectkit.pipeline.run import evaluate_saved

    model_copy = _copied(model_path, tmp_path / "model")
    result = invoke(cli, ["export", model_copy, "--format", "ort", "--int8", "--out", tmp_path / "deploy" / "e.ort"])
    deploy = tmp_path / "deploy"
    assert sorted(p.name for p in deploy.iterdir()) == ["e.int8.onnx", "e.int8.ort", "e.onnx", "e.ort",
                                                       "e.required_operators.config"]
    assert "max |ORT - PyTorch|" in result.output and "e.required_operators.config" in result.output
    for ort_file in (deploy / "e.ort", deploy / "e.int8.ort"):
        assert ort_file.read_bytes()[4:8] == b"ORTM"  # the flatbuffer's identifier: ONNX Runtime's format
    operators = (deploy / "e.required_operators.config").read_text()
    assert "e.ort" in operators and "e.int8.ort" in operators and "Conv" in operators
    assert "nchwc" not in operators  # blocked x86 layouts would tie the file to this CPU
    # The .ort file alone predicts as the PyTorch model does.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "emotion.ort").write_bytes((deploy / "e.ort").read_bytes())
    deployed, beside = Predictor(alone / "emotion.ort", detect=False), Predictor(model_copy, backend="torch",
                                                                                  detect=False)
    assert deployed.backend_name == "onnx" and deployed.meta == beside.meta
    assert deployed.predict(face)[0].probabilities == pytest.approx(beside.predict(face)[0].probabilities, abs=1e-4)
    # From Python: each file checked (the int8 .ort against the int8 .onnx it was converted from).
    exported = affectkit.export(model_copy, tmp_path / "api" / "m.onnx", int8=True, format="ort")
    assert exported.ort == tmp_path / "api" / "m.ort" and exported.ort_parity < 1e-4
    assert exported.ort_int8 == tmp_path / "api" / "m.int8.ort" and exported.ort_int8_parity < 1e-6
    # What needs the saved model says so, and which file to give, instead of looking for m.int8.json.
    with pytest.raises(AffectkitError, match=r"e.int8.ort is an int8 export: .*\(e.safetensors\); `affectkit "
                                             r"evaluate e.int8.ort DATA` scores the int8 file itself"):
        calibrate_saved(deploy / "e.int8.ort", demo_dir, "all", quiet=True)
    with pytest.raises(AffectkitError, match=r"emotion.ort is an export: predict and serve run it alone, but this "
                                             r"reads the saved model it came from \(emotion.json"):
        calibrate_saved(alone / "emotion.ort", demo_dir, "all", quiet=True)
    with pytest.raises(AffectkitError, match=r"emotion.ort has no emotion.json beside it: an export is scored with "
                                             r"the description of the model it came from"):
        evaluate_saved(alone / "emotion.ort", demo_dir, "all", None, tmp_path / "evaluation", quiet=True)
    with pytest.raises(AffectkitError, match="--format tflite: choose onnx, or ort"):
        affectkit.export(model_copy, format="tflite")
    with pytest.raises(AffectkitError, match="--out m.ort is an ONNX Runtime Mobile file: add --format ort"):
        affectkit.export(model_copy, Path("m.ort"))


def test_evaluate_compare_and_robustness_score_an_export_itself(cli, model_path, demo_dir, tmp_path, monkeypatch):
    """An export is scored as ONNX Runtime runs it where it is deployed, not through the weights beside it: its own
    answers, under a name of its kind, in a card row of its own, set against the model face by face."""
    from affectkit.pipeline.compare import compare_saved
    from affectkit.pipeline.export import export_model
    from affectkit.pipeline.robustness import robustness_saved
    from affectkit.pipeline.run import evaluation_data, evaluate_saved

    model = _copied(model_path, tmp_path / "model")
    export_model(model, int8=True, calibration=demo_dir)
    float_export, int8 = model.with_suffix(".onnx"), model.with_suffix(".int8.onnx")
    evaluated = tmp_path / "evaluated"
    by_weights = evaluate_saved(model, demo_dir, "all", None, evaluated, quiet=True)
    by_float_export = evaluate_saved(float_export, demo_dir, "all", None, evaluated, quiet=True)
    assert by_float_export["export"] == float_export.name and "export" not in by_weights
    assert by_float_export["expression"]["nll"] == pytest.approx(by_weights["expression"]["nll"], abs=1e-4)
    compared = compare_saved([int8, model], demo_dir, tmp_path / "compared", split="all", quiet=True)
    assert list(compared.table["model"]) == ["CustomCNN (int8 ONNX)", "CustomCNN"]
    # Weights trained again after the export: the .json beside it no longer describes the export.
    weights = model.read_bytes()
    model.write_bytes(weights + b"\0")
    with pytest.raises(AffectkitError, match=r"best_CustomCNN.int8.onnx was exported from other weights than "
                                             r"best_CustomCNN.safetensors beside it .*Export it again"):
        evaluate_saved(int8, demo_dir, "all", None, evaluated, quiet=True)
    model.write_bytes(weights)
    # Deployed as the int8 file and the description alone: no weights to fall back on.
    model.unlink()
    float_export.unlink()
    by_int8 = evaluate_saved(int8, demo_dir, "all", None, None, quiet=True)
    assert compared.table["accuracy"].iloc[0] == pytest.approx(by_int8["expression"]["accuracy"])
    assert by_int8["export"] == int8.name and by_int8["n"] == by_weights["n"]
    prepared = evaluation_data(model, demo_dir, "all", None)
    faces = list(prepared.images[prepared.positions("test")])
    expected = [[face["probabilities"][c] for c in CLASS_NAMES]
                for face in Predictor(int8, detect=False).predict_batch(faces)]
    answers = pd.read_csv(int8.parent / "CustomCNN_int8_ONNX_all_predictions.csv")
    np.testing.assert_allclose(answers[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(), expected, atol=1e-4)
    assert {p.name for p in evaluated.glob("*_metrics.json")} == {"CustomCNN_all_metrics.json",
                                                                  "CustomCNN_ONNX_all_metrics.json"}
    card = next(model.parent.glob("*_card.md")).read_text()
    assert "its ONNX export `best_CustomCNN.onnx` scored | all |" in card
    assert "its int8 ONNX export `best_CustomCNN.int8.onnx` scored | all |" in card
    assert card.count("(synthetic) | all |") == 1  # the weights' own row, kept beside the exports'
    sessions, opening = [], OnnxBackend.__init__
    monkeypatch.setattr(OnnxBackend, "__init__",
                        lambda self, path, *args: sessions.append(path) or opening(self, path, *args))
    robust = robustness_saved(int8, demo_dir, "all", corruptions=["noise"], severities=[1, 2], quiet=True)
    # One to read which weights it came from (scored_model); one for the clean faces and both corrupted sets.
    assert sessions == [int8, int8]
    assert robust.paths["csv"].parent == int8.parent / "robustness_int8_ONNX"
    assert robust.table["accuracy"].iloc[0] == pytest.approx(by_int8["expression"]["accuracy"])
    card = next(model.parent.glob("*_card.md")).read_text()
    assert "its int8 ONNX export `best_CustomCNN.int8.onnx` scored (all," in card
    sessions.clear()
    result = invoke(cli, ["evaluate", int8, demo_dir, "--split", "all", "--out", tmp_path / "by_cli"])
    assert result.exit_code == 0 and f"CustomCNN (int8 ONNX) on {by_int8['n']} images" in result.output
    assert sessions == [int8, int8]  # as robustness: naming it in the printed table opens none


def test_export_command_compares_int8_on_a_data_set_or_a_folder(cli, model_path, demo_dir, face, tmp_path):
    from affectkit.pipeline.export import compare_exports_on
    from affectkit.pipeline.run import evaluate_saved

    model_copy = _copied(model_path, tmp_path / "model")
    result = invoke(cli, ["export", model_copy, "--format", "onnx", "--int8", "--data", demo_dir, "--split", "all",
                          "--limit", "40"])
    fp32, int8 = model_copy.with_suffix(".onnx"), model_copy.with_suffix(".int8.onnx")
    assert int8.is_file()
    assert f"40 faces of {demo_dir} (all split), 40 of them labelled" in " ".join(result.output.split())
    assert "delta" in result.output
    # The data set's faces as the model reads them: the fp32 export scores what evaluate scores (an untrained
    # model's near-ties may flip a face between PyTorch and ONNX).
    report = compare_exports_on(model_copy, fp32, int8, demo_dir, "all")
    evaluated = evaluate_saved(model_copy, demo_dir, "all", None, tmp_path / "evaluation", quiet=True)
    assert report["labelled"] == evaluated["n"] == 96
    assert abs(report["fp32"]["accuracy"] - evaluated["expression"]["accuracy"]) <= 1 / 96
    # No run's splits.csv beside the model, and the demo faces give no test split of their own.
    with pytest.raises(AffectkitError, match="gives no test split of its own and best_CustomCNN.safetensors no run's "
                                             "splits.csv: --split all"):
        compare_exports_on(model_copy, fp32, int8, demo_dir)
    # A folder of face crops without labels: agreement only; an unreadable file is named, not passed over.
    crops = tmp_path / "crops"
    for i in range(3):
        write_rgb(crops / f"{i}.jpg", np.roll(face, 7 * i, axis=1))
    (crops / "broken.jpg").write_bytes(b"not an image")
    report = compare_exports_on(model_copy, fp32, int8, crops)
    assert report["faces"] == 3 and report["labelled"] == 0 and report["fp32"]["accuracy"] is None
    assert 0 <= report["agreement"] <= 1 and "1 unreadable, left out (the first: " in report["source"]
    assert "broken.jpg: not an image" in report["source"]


def test_static_int8_export_quantises_the_convolutions_and_answers_faces_as_fp32_does(model_path, demo_dir, tmp_path):
    from affectkit.pipeline.export import calibration_faces

    model = _copied(model_path, tmp_path / "model")
    faces, source = calibration_faces(model, demo_dir, limit=48)
    assert len(faces) == 48 and source == f"drawn from every face of {demo_dir}"  # no run behind it: any face
    fp32 = export_onnx(model, int8=True, calibration=faces)
    graph = onnx.load(str(int8_path(fp32))).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions and all(made_by.get(node.input[1]) == "DequantizeLinear" for node in convolutions)
    assert int8_path(fp32).stat().st_size < fp32.stat().st_size / 3  # int8 weights throughout
    # On the faces it was calibrated on, its outputs stay close to fp32's, measured against how much fp32's outputs
    # vary from face to face (an untrained model's probabilities barely do); ranges read from black images are off.
    meta = json.loads(model.with_suffix(".json").read_text())
    mean, std = (np.asarray(meta["normalization"][key], np.float32) for key in ("mean", "std"))
    batch = preprocess(faces, int(meta["input_size"]), mean, std)
    reference = OnnxBackend(fp32)(batch)

    def error_by_output() -> list[float]:
        quantized = OnnxBackend(int8_path(fp32))(batch)  # the file alone: its description and weights inside
        return [float(np.abs(q - r).max() / r.std()) for q, r in zip(quantized, reference)]

    logits, valence, arousal = error_by_output()
    assert logits < 0.05 and valence < 0.5 and arousal < 0.5
    export_onnx(model, int8=True, calibration=[np.zeros_like(f) for f in faces])
    logits, valence, arousal = error_by_output()
    assert logits > 0.1 and max(valence, arousal) > 1
    # It says what it is, where it is served: its scores in the description are its float model's.
    assert Predictor(int8_path(fp32), detect=False).quantization == ("static int8: convolutions and dense layers, "
                                                                      "activation ranges from 48 faces")
    assert Predictor(fp32, detect=False).quantization is None
    from fastapi.testclient import TestClient

    from affectkit.serving import create_app

    served = TestClient(create_app(int8_path(fp32), detect=False)).get("/v1/model").json()
    assert served["quantization"].startswith("static int8") and served["backend"] == "onnx"
    with pytest.raises(AffectkitError, match="add int8"):
        export_onnx(model, calibration=faces)


def test_a_static_quantisation_that_fails_names_the_file_and_leaves_no_export(model_path, tmp_path):
    fp32 = export_onnx(_copied(model_path, tmp_path / "model"))
    wrong_size = [np.zeros((2, 3, 5, 5), np.float32)]  # onnxruntime refuses it inside the quantiser
    failed = f"(?s)Static int8 quantisation of {fp32.name} failed .*without --calibration"
    with pytest.raises(AffectkitError, match=failed):
        quantize_onnx(fp32, int8_path(fp32), wrong_size)
    assert sorted(p.name for p in fp32.parent.iterdir()) == sorted([fp32.name, model_path.name,
                                                                    model_path.with_suffix(".json").name])


def test_calibration_faces_come_from_the_train_split_of_the_models_own_data(model_path, demo_dir, face, tmp_path):
    """The test faces of the data set a model was trained on stay unseen by its int8 export; a folder of crops is read
    whole."""
    from affectkit.data.reader import read_dataset
    from affectkit.pipeline.export import calibration_faces

    model = _copied(model_path, tmp_path / "run")
    description = json.loads(model.with_suffix(".json").read_text())
    description["training_data"] = {**(description.get("training_data") or {}), "source": str(demo_dir)}
    model.with_suffix(".json").write_text(json.dumps(description))
    ids = [record.id for record in read_dataset(demo_dir).records]
    pd.DataFrame({"id": ids, "split": ["train" if i % 4 else "test" for i in range(len(ids))]}).to_csv(
        model.parent / "splits.csv", index=False)
    faces, source = calibration_faces(model, demo_dir)
    assert len(faces) == sum(1 for i in range(len(ids)) if i % 4)
    assert source == f"drawn from the train split of {demo_dir}"
    crops = tmp_path / "crops"
    for i in range(3):
        write_rgb(crops / f"{i}.jpg", np.roll(face, 7 * i, axis=1))
    faces, source = calibration_faces(model, crops, limit=2)
    assert len(faces) == 2 and source == f"drawn from the images of {crops}, each read whole as a face"
    (tmp_path / "empty").mkdir()
    with pytest.raises(AffectkitError, match="empty: no readable image, and not a data set affectkit reads"):
        calibration_faces(model, tmp_path / "empty")


def test_a_limited_folder_of_crops_is_drawn_at_random_and_only_the_drawn_decoded(tmp_path, monkeypatch):
    from affectkit.inference import quant_report
    from affectkit.inference.images import read_image

    for shade in range(12):
        write_rgb(tmp_path / "crops" / f"{shade:02d}.png", np.full((8, 8, 3), shade * 20, np.uint8))
    decoded = []
    monkeypatch.setattr(quant_report, "read_image", lambda path: decoded.append(path) or read_image(path))
    draws = [sorted(int(image[0, 0, 0]) // 20 for image in quant_report.folder_images(tmp_path / "crops", 4, seed)[0])
             for seed in (0, 1)]
    assert all(len(draw) == 4 for draw in draws) and draws[0] != draws[1] and len(decoded) == 8
    assert len(quant_report.folder_images(tmp_path / "crops")[0]) == 12


def test_export_command_makes_a_static_int8_export_from_calibration_faces(cli, model_path, face, tmp_path):
    model = _copied(model_path, tmp_path / "model")
    crops = tmp_path / "crops"
    for i in range(4):
        write_rgb(crops / f"{i}.jpg", np.roll(face, 5 * i, axis=0))
    refused = CliRunner().invoke(cli, ["export", str(model), "--calibration", str(crops)])
    assert isinstance(refused.exception, AffectkitError)  # main() prints it as "error: ..."
    assert str(refused.exception) == "--calibration makes the int8 export static; add --int8."
    result = invoke(cli, ["export", model, "--int8", "--calibration", crops])
    said = " ".join(result.output.split())
    assert (f"static int8: convolutions and dense layers, activation ranges from 4 faces, drawn from the images of "
            f"{crops}, each read whole as a face" in said)
    assert "its accuracy against fp32: add --data" in said
    assert "DequantizeLinear" in {node.op_type for node in onnx.load(str(model.with_suffix(".int8.onnx"))).graph.node}


def test_mc_dropout_gives_spread_and_entropy(model_path, face):
    results = Predictor(model_path, detect=False, mc_samples=8).predict_batch([face, face[:, ::-1].copy()])
    for r in results:
        assert r["valence_std"] > 0 and r["arousal_std"] > 0
        assert 0 < r["entropy"] <= math.log(len(CLASS_NAMES)) + 1e-6
        assert math.isclose(sum(r["probabilities"].values()), 1.0, abs_tol=1e-5)


def test_mc_dropout_samples_the_predictor_the_model_was_kept_with(face, tmp_path):
    """With the head's dropout off, sampling gives the prediction itself: mirror images averaged where the model was
    kept with flip test-time augmentation."""
    torch.manual_seed(0)
    config = Config(img_size=64, tta_flip=True, dropout_scale=0.0)
    path = save_model(build_model("custom_cnn", config), tmp_path / "best_CustomCNN", config)
    mirrored = np.ascontiguousarray(face[:, ::-1])
    plain = Predictor(path, backend="torch", detect=False).predict_batch([face, mirrored])
    sampled = Predictor(path, backend="torch", detect=False, mc_samples=3).predict_batch([face, mirrored])
    for one, many in zip(plain, sampled):
        assert many["probabilities"] == pytest.approx(one["probabilities"], abs=1e-5)
        assert (many["valence"], many["arousal"]) == pytest.approx((one["valence"], one["arousal"]), abs=1e-5)
        assert many["valence_std"] == pytest.approx(0, abs=1e-6)
    assert sampled[0]["probabilities"] == pytest.approx(sampled[1]["probabilities"], abs=1e-5)


def test_temperature_from_metadata_scales_the_logits(face, tmp_path):
    cfg = Config(img_size=64)
    model = build_model("custom_cnn", cfg)
    confidence = {}
    for t in (1.0, 0.05):
        path = save_model(model, tmp_path / f"t{t}" / "best_CustomCNN", cfg, extra={"temperature": t})
        confidence[t] = Predictor(path, detect=False).predict_batch([face])[0]["confidence"]
    assert confidence[0.05] > confidence[1.0]


def test_the_framing_of_training_faces_is_measured_and_served(face, tmp_path):
    """Faces filling their frame measure a small margin, the same faces with a border around them a larger one; a
    model's stored margin is the one its detected faces are cropped at; faces the detector cannot find give none."""
    from affectkit.data.synthetic import render_face, sample_rng
    from affectkit.inference.faces import DEFAULT_MARGIN, training_margin

    detector = FaceDetector()
    tight = [render_face(i % 7, sample_rng(5, i), 120)[0] for i in range(12)]
    bordered = [cv2.copyMakeBorder(f, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(128, 128, 128)) for f in tight]
    (small, found), (large, found_bordered) = training_margin(tight, detector), training_margin(bordered, detector)
    assert found >= 8 and found_bordered >= 8 and small < DEFAULT_MARGIN < large and large > small + 0.2
    assert training_margin([np.full((64, 64, 3), 128, np.uint8)] * 10, detector) == (None, 0)

    cfg = Config(img_size=64)
    crops = {}
    for margin in (None, small, large):
        extra = {} if margin is None else {"face_margin": margin}
        path = save_model(build_model("custom_cnn", cfg), tmp_path / str(margin) / "best_CustomCNN", cfg, extra=extra)
        predictor = Predictor(path)
        assert predictor.face_margin == (DEFAULT_MARGIN if margin is None else margin)
        (found_face,), (crop,) = predictor.find_faces(bordered[0])
        crops[margin] = crop
        assert np.array_equal(crop, crop_face(bordered[0], found_face, margin=predictor.face_margin, size=64))
    assert not np.array_equal(crops[None], crops[small])
    assert Predictor(path, face_margin=0.3).face_margin == 0.3  # asked for, it wins over the stored one
    with pytest.raises(AffectkitError, match="--face-margin must be in \\[0, 1\\]"):
        Predictor(path, face_margin=-0.1)


def test_crop_levels_the_eyes():
    image = np.zeros((200, 200, 3), np.uint8)
    eyes = np.array([[70.0, 90.0], [130.0, 110.0]])  # right eye 20 px lower: a tilted head
    for x, y in eyes:
        cv2.circle(image, (int(x), int(y)), 4, (255, 255, 255), -1)
    landmarks = np.vstack([eyes, [[100, 130], [80, 150], [120, 150]]]).astype(np.float32)
    crop = crop_face(image, Face((50, 60, 150, 180), 1.0, landmarks), margin=0.1, size=120)
    ys, xs = np.nonzero(crop[:, :, 0] > 128)
    left, right = ys[xs < 60].mean(), ys[xs >= 60].mean()
    assert abs(left - right) < 1.5
    unaligned = crop_face(image, Face((50, 60, 150, 180), 1.0, landmarks), margin=0.1, size=120, align=False)
    ys, xs = np.nonzero(unaligned[:, :, 0] > 128)
    assert ys[xs >= 60].mean() - ys[xs < 60].mean() > 10


def test_haar_fallback_finds_the_face(monkeypatch):
    def unavailable():
        raise ImportError("No module named 'facenet_pytorch'")

    monkeypatch.setattr(faces_module, "_import_mtcnn_class", unavailable)
    detector = FaceDetector("auto")
    assert detector.method == "haar"
    faces = detector.detect(skdata.astronaut())
    assert len(faces) >= 1 and faces[0].landmarks5 is None
    x1, y1, x2, y2 = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180


def test_the_detector_is_chosen_by_name_and_an_unknown_one_refused(model_path):
    from fastapi.testclient import TestClient

    from affectkit.cli import app
    from affectkit.serving import create_app

    with pytest.raises(AffectkitError, match="Unknown face detector 'yunet': choose auto"):
        FaceDetector("yunet")
    client = TestClient(create_app(model_path, detector="haar"))
    assert client.get("/v1/model").json()["face_detection"] == "haar"
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    faces = client.post("/v1/predict", files=[("files", ("a.jpg", jpeg.tobytes(), "image/jpeg"))]).json()
    assert faces["results"][0]["faces"]  # the cascade finds the astronaut's face
    absent = model_path.parent / "absent.safetensors"  # refused before any model is read
    refused = CliRunner().invoke(app, ["predict", str(absent), "x.jpg", "--detector", "yunet"])
    assert isinstance(refused.exception, AffectkitError) and "Unknown face detector" in str(refused.exception)


def test_a_48_megapixel_phone_photo_is_read_from_its_file_but_refused_as_an_upload(tmp_path):
    from affectkit.inference.images import ImageError, decode_image, read_image

    photo = write_rgb(tmp_path / "phone.jpg", np.full((6000, 8000, 3), 90, np.uint8))
    assert read_image(photo).shape == (6000, 8000, 3)
    with pytest.raises(ImageError, match="48,000,000 pixels exceeds the limit"):
        decode_image(photo.read_bytes(), name="phone.jpg")


HEIC_FACE = Path(__file__).parent / "data" / "face.heic"  # render_face(1, sample_rng(0, 3), 128, intensity=0.8),
# saved by pillow-heif at quality 90: affectkit's own dependencies decode HEIC but write none


def test_phone_photos_heic_and_avif_are_read_as_their_pixels_by_predict_and_the_server(model_path, tmp_path):
    from PIL import Image

    from affectkit.data.synthetic import render_face, sample_rng
    from affectkit.inference.images import decode_image, read_image
    from affectkit.serving.app import create_app
    from fastapi.testclient import TestClient

    rendered = render_face(1, sample_rng(0, 3), 128, intensity=0.8)[0]
    avif = tmp_path / "face.avif"
    Image.fromarray(rendered).save(avif, quality=90)
    png = write_rgb(tmp_path / "face.png", rendered)
    for photo in (HEIC_FACE, avif):
        decoded = read_image(photo)
        assert decoded.shape == rendered.shape and np.abs(decoded.astype(float) - rendered).mean() < 3, photo
    predictor = Predictor(model_path, detect=False)
    (from_png,), (from_heic,), (from_avif,) = (predictor.predict(p) for p in (png, HEIC_FACE, avif))
    for result in (from_heic, from_avif):
        assert max(abs(result.probabilities[c] - from_png.probabilities[c]) for c in CLASS_NAMES) < 0.05
    client = TestClient(create_app(model_path, detect=False))
    response = client.post("/v1/predict", files=[("files", ("IMG_0001.HEIC", HEIC_FACE.read_bytes(), "image/heic"))])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["faces"][0]["expression"] == from_heic.expression
    with pytest.raises(AffectkitError, match="not an image"):
        decode_image(HEIC_FACE.read_bytes()[:40], name="cut.heic")


def test_the_printed_table_names_every_file_whole_and_leaves_out_columns_no_row_fills(cli, model_path, face,
                                                                                       tmp_path):
    folder = tmp_path / "a folder whose name is long enough to be cut short in a narrow terminal"
    for name in ("first_photo_of_the_session.png", "second_photo_of_the_session.png"):
        write_rgb(folder / name, face)
    printed = CliRunner().invoke(cli, ["predict", str(model_path), str(folder), "-q"], env={"COLUMNS": "80"})
    assert printed.exit_code == 0, printed.output
    assert "…" not in printed.output and "2 face(s)" in printed.output
    header = next(line for line in printed.output.splitlines() if "file" in line and "status" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == [
        "file", "box", "expression", "conf", "valence", "arousal", "status"]
