"""Live prediction: a camera, a stream or a video file played through, each frame answered as it is read."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import closing
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data as skdata
from typer.testing import CliRunner

from affectkit.errors import AffectkitError
from affectkit.inference import live
from affectkit.inference.live import (
    LiveFrame,
    LiveRecording,
    NewestFrame,
    is_live,
    live_faces,
    recording_for,
    source_name,
)
from affectkit.inference.predictor import Predictor
from tests.test_inference import FACE_REGION, write_clip

pytestmark = pytest.mark.usefixtures("one_thread")


class FakeCamera:
    """A capture that gives ``frames`` numbered frames, one every ``interval`` seconds, then ends."""

    def __init__(self, frames: int, interval: float = 0.0):
        self.frames, self.interval, self.given = frames, interval, 0
        self.released = threading.Event()

    def read(self):
        if self.given == self.frames:
            return False, None
        time.sleep(self.interval)
        frame = np.full((48, 48, 3), self.given % 256, np.uint8)  # the frame's number, in its pixels
        self.given += 1
        return True, frame

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released.set()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    face = np.ascontiguousarray(skdata.astronaut()[FACE_REGION])
    return write_clip(tmp_path_factory.mktemp("live") / "clip.mp4", face)


def test_a_slow_reader_gets_the_newest_frame_and_skips_the_ones_it_had_no_time_for():
    camera = FakeCamera(frames=40, interval=0.002)
    reader = NewestFrame(camera)
    taken = []
    while (item := reader.next()) is not None:
        index, frame = item
        assert frame[0, 0, 0] == index  # the frame given is the one its number says
        taken.append(index)
        time.sleep(0.05)  # a model 25 times slower than the camera
    reader.close()
    assert camera.released.is_set()
    assert taken == sorted(set(taken)) and taken[-1] == 39  # in order, none twice, up to the newest
    assert 2 <= len(taken) < 20  # most frames skipped, not queued
    # A reader faster than the camera gets every frame.
    fast = NewestFrame(FakeCamera(frames=10, interval=0.01))
    indices = []
    while (item := fast.next()) is not None:
        indices.append(item[0])
    assert indices == list(range(10))


def test_a_broken_stream_is_opened_again_and_its_frames_numbered_on():
    first = FakeCamera(frames=3)
    again = [FakeCamera(frames=2)]
    tries = []

    def reopen():
        tries.append(len(tries))
        if len(tries) == 2:  # the stream's server is back on the second try
            return again[0]
        raise AffectkitError("rtsp://cam/live could not be opened")

    reader = NewestFrame(first, reopen, delays=(0.01, 0.01, 0.01))
    indices = []
    while (item := reader.next()) is not None:
        indices.append(item[0])
        time.sleep(0.005)
    reader.close()
    assert reader.reconnects == 1 and first.released.is_set() and again[0].released.is_set()
    assert indices[-1] == 4 and indices == sorted(set(indices))  # 3 frames, then 2 more, numbered on
    # After the second break every try fails: the reading ends, having tried each delay once more.
    assert len(tries) == 2 + 3
    # A camera, or a stream without a way to reopen it, ends at its first failure.
    plain = NewestFrame(FakeCamera(frames=1))
    assert plain.next()[0] == 0 and plain.next() is None and plain.reconnects == 0


def _stalling_server(video: bytes, replies: list[str]) -> tuple[str, socket.socket]:
    """A local HTTP server of ``video``: its n-th connection gets what ``replies[n]`` says (``stall``: half the
    file, then nothing, the connection held open; ``whole``: the file; ``silent``: no answer at all)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []  # the connections, kept open: a stalled server does not hang up

    def serve():
        for reply in replies:
            conn, _ = server.accept()
            held.append(conn)
            if reply == "silent":
                continue
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/x-msvideo\r\nContent-Length: %d\r\n\r\n"
                         % len(video))
            conn.sendall(video[: len(video) // 2] if reply == "stall" else video)
            if reply == "whole":
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/live.avi", server


def test_a_stream_that_stalls_is_given_up_and_opened_again(tmp_path, monkeypatch):
    """A stream whose server stops sending (the connection held open) is taken as broken after the read timeout,
    and opened again; one that does not answer at all is refused after the open timeout, not waited on forever."""
    path = str(tmp_path / "live.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(40):
        writer.write(np.full((64, 64, 3), i * 5, np.uint8))
    writer.release()
    monkeypatch.setattr(live, "STREAM_OPEN_TIMEOUT_S", 1.0)
    monkeypatch.setattr(live, "STREAM_READ_TIMEOUT_S", 1.0)
    url, server = _stalling_server(Path(path).read_bytes(), ["stall", "whole", "silent"])
    reader = NewestFrame(live.open_source(url), partial(live.open_source, url), delays=(0.05,))
    indices: list[int] = []

    def read_all():
        while (item := reader.next()) is not None:
            indices.append(item[0])

    started = time.monotonic()
    reading = threading.Thread(target=read_all, daemon=True)
    reading.start()
    reading.join(timeout=30)
    assert not reading.is_alive(), "a stalled stream's read never returned"
    reader.close()
    server.close()
    # Part of the file, the stall given up after a second, then the whole file: its frames numbered on; the third
    # connection gets no answer, so the reopening is refused after the open timeout and the reading ends.
    assert reader.reconnects == 1 and indices == sorted(set(indices)) and indices[-1] >= 40
    assert time.monotonic() - started < 15
    url, server = _stalling_server(b"", ["silent"])
    with pytest.raises(AffectkitError, match="cannot be reached within 1 s"):
        live.open_source(url)
    server.close()


def test_a_video_played_through_gives_the_rows_predict_video_gives(model_path, clip):
    predictor = Predictor(model_path, backend="torch")
    frames = list(predictor.stream(clip, smooth=0.5))
    table = predictor.predict_video(clip, smooth=0.5)
    assert [frame.index for frame in frames] == list(table["frame"]) == list(range(8))
    assert [frame.seconds for frame in frames] == pytest.approx([i / 10 for i in range(8)])  # 10 frames a second
    live_valence = [frame.faces[0]["valence"] for frame in frames]
    assert live_valence == pytest.approx(table["valence"].tolist(), abs=1e-5)
    assert {face["track"] for frame in frames for face in frame.faces} == {0}
    assert frames[0].image.shape == (150, 200, 3)
    # Stopped by frames, by the file's seconds, or by every-th frame, as asked.
    assert [f.index for f in predictor.stream(clip, max_frames=3)] == [0, 1, 2]
    assert [f.index for f in predictor.stream(clip, seconds=0.35)] == [0, 1, 2, 3]
    assert [f.index for f in predictor.stream(clip, every=3)] == [0, 3, 6]


def test_a_live_capture_is_answered_frame_by_frame_and_released_when_the_loop_is_left(model_path):
    predictor = Predictor(model_path, backend="torch", detect=False)
    camera = FakeCamera(frames=1000, interval=0.002)
    seen = []
    for frame in live_faces(predictor, camera):
        seen.append(frame)
        if len(seen) == 3:
            break
    assert camera.released.wait(5)  # the reading thread stopped and let the camera go
    assert [len(frame.faces) for frame in seen] == [1, 1, 1]  # no detection: the whole frame is the face
    assert all(b.index > a.index for a, b in zip(seen, seen[1:]))
    assert all(b.seconds >= a.seconds for a, b in zip(seen, seen[1:]))


def test_seconds_end_a_live_reading_even_while_no_frame_comes(model_path):
    """A stream that stalls (or is being opened again) still ends when the seconds asked for are up."""
    predictor = Predictor(model_path, backend="torch", detect=False)
    camera = FakeCamera(frames=1)
    given = camera.read

    def stalling():  # one frame, then nothing for 20 s
        return given() if camera.given == 0 else (time.sleep(20), (False, None))[1]

    camera.read = stalling
    started = time.monotonic()
    frames = list(live_faces(predictor, camera, seconds=1.0))
    # Ended at 1 s; letting the reader go waits up to 5 s for the stalled read (a stream's read timeout) to return.
    assert len(frames) == 1 and time.monotonic() - started < 10


def test_sources_are_named_and_bad_ones_refused_before_any_frame(model_path, tmp_path):
    assert (source_name(0), source_name("1"), source_name("rtsp://cam.local/live")) == (
        "camera 0", "camera 1", "rtsp://cam.local/live")
    assert is_live(0) and is_live("2") and is_live("http://10.0.0.5:8080/video") and not is_live("clip.mp4")
    # A recording is named after its source and when it starts, at 15 frames a second for a live one.
    names = [recording_for(source, tmp_path) for source in ("0", "rtsp://cam.local:554/live?x=1")]
    assert [r.path.name.split("_2")[0] for r in names] == ["camera0", "cam_local_554_live_x_1"]
    assert all(r.rate == 15 and r.path.name.endswith("_annotated.mp4") for r in names)
    predictor = Predictor(model_path, backend="torch", detect=False)
    with pytest.raises(AffectkitError, match="missing.mp4 does not exist"):
        predictor.stream(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(AffectkitError, match=r"notes.txt is not a video this reads .* nor a camera's index"):
        predictor.stream(tmp_path / "notes.txt")
    with pytest.raises(AffectkitError, match="camera 97 could not be opened: no camera has that index"):
        predictor.stream(97)
    with pytest.raises(AffectkitError, match="every=2: a camera or stream is read at the model's pace"):
        predictor.stream(0, every=2)
    for bad in ({"smooth": 0}, {"max_frames": 0}, {"seconds": -1}):
        with pytest.raises(AffectkitError):
            predictor.stream(FakeCamera(1), **bad)


def test_predict_camera_streams_json_lines_and_writes_a_file_when_stopped(model_path, clip, tmp_path):
    from affectkit.cli import app

    result = CliRunner().invoke(app, ["predict", str(model_path), "--camera", str(clip), "--frames", "3", "--out", "-",
                                      "--backend", "torch", "-q"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(row["file"], row["frame"], row["status"]) for row in lines] == [(str(clip), i, "ok") for i in range(3)]
    assert "3 frame(s) answered" in result.stderr
    # A file --out is written with the rows of every frame read.
    out = tmp_path / "live.csv"
    result = CliRunner().invoke(app, ["predict", str(model_path), "--camera", str(clip), "--every", "2", "--out",
                                      str(out), "--backend", "torch", "--annotate", str(tmp_path / "seen")])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert list(rows["frame"]) == [0, 2, 4, 6] and rows["time"].tolist() == pytest.approx([0, 0.2, 0.4, 0.6])
    assert "frame 6 (0.6 s): track 0" in result.stderr  # a log gets a line per frame
    # The annotated recording, at the clip's 10 frames a second: each frame read held until the next, 0.7 s in all.
    (recording,) = (tmp_path / "seen").glob("clip_*_annotated.mp4")
    assert _video_frames(recording).shape[0] == 7 and f"Wrote {recording}" in " ".join(result.stderr.split())


def _video_frames(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.array(frames)


def test_a_live_recording_plays_in_real_time_whatever_pace_the_frames_came_at(tmp_path):
    """Each answered frame is held until the next by its time, so a model slower than the camera gives a recording
    of fewer distinct frames, not a shorter one; a frame of another size is scaled to the first's."""
    def frame(seconds: float, grey: int, size=(48, 64)) -> LiveFrame:
        return LiveFrame(0, seconds, np.full((*size, 3), grey, np.uint8), [])

    with closing(LiveRecording(tmp_path / "rec.mp4", rate=10)) as recording:
        for seconds, grey in ((3.0, 0), (3.5, 80), (3.52, 160)):  # a stream's clock: from when it was opened
            recording.add(frame(seconds, grey))
        recording.add(frame(5.0, 240, size=(96, 128)))
    assert recording.written == 21  # 2 s at 10 a second, and the last frame
    greys = _video_frames(tmp_path / "rec.mp4").mean(axis=(1, 2, 3))
    assert greys.shape == (21,)
    held = [0] * 5 + [80] + [160] * 14 + [240]  # at 3.5 s 80 is the newest; from 3.6 s on, 160 (3.52 s)
    assert np.abs(greys - held).max() < 12  # mp4v is lossy


def test_ctrl_c_ends_the_reading_and_keeps_the_rows(model_path, clip, tmp_path, monkeypatch):
    from affectkit.cli import app

    played = Predictor.stream

    def interrupted(self, source, **options):
        yield from (frame for frame, _ in zip(played(self, source, **options), range(2)))
        raise KeyboardInterrupt

    monkeypatch.setattr(Predictor, "stream", interrupted)
    out = tmp_path / "live.jsonl"
    result = CliRunner().invoke(app, ["predict", str(model_path), "--camera", str(clip), "--out", str(out),
                                      "--backend", "torch", "--annotate", str(tmp_path / "seen")])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 1]
    assert "Stopped (Ctrl-C)" in result.stderr and "2 frame(s) answered" in result.stderr
    (recording,) = (tmp_path / "seen").glob("*.mp4")
    assert _video_frames(recording).shape[0] == 2  # the recording of the frames answered, finished


@pytest.mark.parametrize("args, refusal", [
    ([], "Give images, videos or folders to predict, or --camera 0"),
    (["photo.jpg", "--camera", "0"], "--camera reads one live source: give it, or INPUTS, not both"),
    (["--camera", "0", "--every", "2"], "--every is for video files"),
    (["--camera", "0", "--frames", "0"], "--frames must be at least 1"),
    (["--camera", "nowhere.mp4"], "nowhere.mp4 does not exist"),
    (["photo.jpg", "--seconds", "5"], "--seconds and --frames stop a --camera"),
])
def test_bad_live_requests_are_refused_before_the_model_is_read(tmp_path, args, refusal):
    from affectkit.cli import app

    result = CliRunner().invoke(app, ["predict", str(tmp_path / "no_model.safetensors"), *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, AffectkitError) and refusal in str(result.exception)
