"""Live video: a camera, a network camera's stream or a video file read frame by frame as it plays, each frame's
faces followed across frames and answered as soon as it is read (one frame per model call: a live source waits
for no batch).

A camera or a stream is read in a thread that keeps only its newest frame: a model slower than the camera then
answers the frame of now, and the frames it had no time for are skipped (their indices are missing from the
results), instead of queueing in OpenCV's buffer and putting the answers further behind every second."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from affectkit.errors import AffectkitError
from affectkit.inference.annotate import draw_predictions
from affectkit.inference.media import VIDEO_SUFFIXES, frame_rate_of, video_frames
from affectkit.inference.predictor import Predictor
from affectkit.inference.timeline import TrackSmoother

STREAM_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)
# A stream that does not answer within these is given up (not waited on forever): on opening, refused; while read,
# taken as broken, and opened again (NewestFrame).
STREAM_OPEN_TIMEOUT_S = 10.0
STREAM_READ_TIMEOUT_S = 5.0


class Capture(Protocol):
    """What is read of a ``cv2.VideoCapture`` (a test's stand-in may be given instead)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class LiveFrame:
    """One frame read from a live source, with its faces."""

    index: int  # the frame's number in the source, from 0 (a camera's skipped frames leave gaps)
    seconds: float  # a file's position in it; a camera's or stream's time since it was opened
    image: np.ndarray  # RGB uint8
    faces: list[dict[str, Any]]  # as Predictor.predict_images gives them, with ``track`` (and smoothed)
    reconnects: int = 0  # the times a network stream was opened again after it broke, so far


def _camera_index(source: int | str | Path) -> int | None:
    """The camera a source names (``0`` or ``"0"``), or None."""
    return int(source) if isinstance(source, int) or str(source).isdigit() else None


def source_name(source: int | str | Path) -> str:
    """How a source is named in results and messages: ``camera 0``, the URL, or the file's path."""
    index = _camera_index(source)
    return str(source) if index is None else f"camera {index}"


def is_live(source: int | str | Path) -> bool:
    """A camera (its index) or a network stream (its URL), as opposed to a video file."""
    return _camera_index(source) is not None or bool(STREAM_URL.match(str(source)))


def check_source(source: int | str | Path) -> None:
    """Refuse a video file that is missing or of a kind not read (cameras and streams are known on opening)."""
    if is_live(source):
        return
    path = Path(source)
    if not path.is_file():
        raise AffectkitError(f"{path} does not exist." if not path.exists() else f"{path} is not a video file.")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise AffectkitError(f"{path} is not a video this reads ({', '.join(VIDEO_SUFFIXES)}), nor a camera's "
                             "index (0, 1, ...) or a stream's URL (rtsp://...).")


def open_source(source: int | str | Path) -> cv2.VideoCapture:
    """The capture of a camera index (0: the first camera), a stream URL (rtsp://, http://...) or a video file;
    a source that does not open is refused, naming it. A stream's capture gives up on a read that waits longer than
    ``STREAM_READ_TIMEOUT_S`` for its frame, as on a broken one."""
    check_source(source)
    index = _camera_index(source)
    target: int | str = str(source) if index is None else index
    # OpenCV logs its backends' failed tries; the refusal below says what failed instead.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(STREAM_OPEN_TIMEOUT_S * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(STREAM_READ_TIMEOUT_S * 1000)]
    try:
        capture = (cv2.VideoCapture(target, cv2.CAP_ANY, timeouts) if STREAM_URL.match(str(target))
                   else cv2.VideoCapture(target))
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not capture.isOpened():
        capture.release()
        if index is not None:
            why = "no camera has that index on this machine, another program holds it, or this user may not open it"
        elif is_live(source):
            why = f"it cannot be reached within {STREAM_OPEN_TIMEOUT_S:g} s or is not a video stream OpenCV decodes"
        else:
            why = "not a readable video"
        raise AffectkitError(f"{source_name(source)} could not be opened: {why}.")
    return capture


RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 8.0)  # seconds before each try to open a stream again after it broke


class NewestFrame:
    """Reads ``capture`` in a thread, keeping only the newest frame: :meth:`next` waits for a frame newer than the
    one it last gave and returns it with its number, or None once the source has ended (or failed). Where it fails
    and ``reopen`` is given (a network stream: a dropped connection is common), the source is opened again after
    each of ``delays`` in turn until it gives frames, ``reconnects`` counting the times it did, and the numbering
    goes on. The thread releases each capture when done with it: never while a read of it is under way."""

    def __init__(self, capture: Capture, reopen: Callable[[], Capture] | None = None,
                 delays: Sequence[float] = RECONNECT_DELAYS):
        self._capture = capture
        self._reopen = reopen
        self._delays = tuple(delays)
        self._changed = threading.Condition()
        self._frame: np.ndarray | None = None
        self._count = 0  # frames read so far; the newest is number count - 1
        self._taken = 0  # frames read when next() last returned
        self._ended = False
        self.reconnects = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="affectkit-live-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while self._read_until_it_fails() and self._reconnect():
                pass
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def _read_until_it_fails(self) -> bool:
        """Read until stopped (False) or until the source gives no frame (True), then let the capture go."""
        try:
            while not self._stopping.is_set():
                ok, bgr = self._capture.read()
                if not ok or bgr is None:
                    return True
                with self._changed:
                    self._frame, self._count = bgr, self._count + 1
                    self._changed.notify_all()
            return False
        finally:
            self._capture.release()

    def _reconnect(self) -> bool:
        """Open the source again, waiting each of the delays before a try; False where there is no way to, every
        try failed, or the reader was stopped meanwhile."""
        if self._reopen is None:
            return False
        for delay in self._delays:
            if self._stopping.wait(delay):
                return False
            try:
                self._capture = self._reopen()
            except AffectkitError:
                continue
            self.reconnects += 1
            return True
        return False

    def next(self, timeout: float | None = None) -> tuple[int, np.ndarray] | None:
        """The newest frame with its number, once there is one newer than the last given; None where the source
        has ended, or no new frame came within ``timeout`` seconds (a stream being opened again, a stalled one)."""
        with self._changed:
            self._changed.wait_for(lambda: self._count > self._taken or self._ended, timeout)
            if self._count == self._taken:
                return None
            self._taken = self._count
            return self._count - 1, self._frame

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading; a stalled read (of a stream: until its read timeout) may outlast ``timeout``, and its thread
        then ends when it returns."""
        self._stopping.set()
        self._thread.join(timeout)


def _frames(capture: Capture, live: bool, every: int, reopen: Callable[[], Capture] | None,
            seconds: float | None = None) -> Iterator[tuple[int, float, np.ndarray, int]]:
    """(index, seconds, RGB frame, reconnects so far): a live source's newest frames (opened again with ``reopen``
    where it breaks) until ``seconds`` have passed, even where none comes meanwhile; a file's every ``every``-th
    frame in order."""
    if not live:
        rate = frame_rate_of(capture)
        try:
            for index, rgb in video_frames(capture, every):
                yield index, index / rate, rgb, 0
        finally:
            capture.release()
        return
    start, reader = time.monotonic(), NewestFrame(capture, reopen)

    def left() -> float | None:
        return None if seconds is None else max(0.0, start + seconds - time.monotonic())

    try:
        while (item := reader.next(left())) is not None:
            index, bgr = item
            yield index, time.monotonic() - start, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), reader.reconnects
    finally:
        reader.close()


def live_faces(predictor: Predictor, source: int | str | Path | Capture, smooth: float | None = None,
               every: int = 1, max_frames: int | None = None, seconds: float | None = None,
               live: bool | None = None) -> Iterator[LiveFrame]:
    """Each frame of ``source`` (a camera's index, a stream's URL, a video file, or an opened capture) with its
    faces, as soon as it is read and answered: tracked across frames and, with ``smooth`` in (0, 1] (the newest
    frame's weight), smoothed per face. A camera or stream gives its newest frame each time (``every`` is for
    files); a file is read in order. A network stream that breaks is opened again (:class:`NewestFrame`). Stops at
    the source's end, after ``max_frames`` frames or ``seconds`` (of the file, or of the clock for a live source),
    or when the caller stops iterating; the source is then released. ``live``: whether an opened capture is a live
    source (default: it is). Bad options and a source that does not open are refused here, before the first frame
    is asked for."""
    if every < 1:
        raise AffectkitError("every must be at least 1.")
    if smooth is not None and not 0 < smooth <= 1:
        raise AffectkitError("smooth must be in (0, 1]: the weight of the newest frame.")
    if max_frames is not None and max_frames < 1:
        raise AffectkitError("max_frames must be at least 1.")
    if seconds is not None and seconds <= 0:
        raise AffectkitError("seconds must be above 0.")
    reopen = None
    if isinstance(source, (int, str, Path)):
        live = is_live(source)
        if live and every != 1:
            raise AffectkitError(f"every={every}: a camera or stream is read at the model's pace, its newest frame "
                                 "each time, so no frames are skipped by number; every is for video files.")
        capture: Capture = open_source(source)
        if STREAM_URL.match(str(source)):
            reopen = partial(open_source, source)
    else:
        capture, live = source, True if live is None else live
    return _answered(predictor, capture, live, reopen, smooth, every, max_frames, seconds)


def _answered(predictor: Predictor, capture: Capture, live: bool, reopen: Callable[[], Capture] | None,
              smooth: float | None, every: int, max_frames: int | None, seconds: float | None
              ) -> Iterator[LiveFrame]:
    smoother = TrackSmoother(predictor.class_names, smooth, abstention=predictor.abstention)
    frames = _frames(capture, live, every, reopen, seconds)
    try:
        for count, (index, at, rgb, reconnects) in enumerate(frames, start=1):
            if seconds is not None and at > seconds:
                return
            (faces,) = predictor.predict_images([rgb])
            yield LiveFrame(index, at, rgb, smoother.update(faces), reconnects)
            if max_frames is not None and count >= max_frames:
                return
    finally:
        frames.close()


RECORDING_RATE = 15.0  # frames a second of a live source's annotated recording


class LiveRecording:
    """The answered frames of a live source, annotated, written to an .mp4 at ``rate`` frames a second that plays
    in real time: each of its frames shows the newest frame answered by then (a model slower than the camera gives
    a recording of fewer distinct frames, not a shorter one). Frames of another size (a stream opened again at
    another resolution) are scaled to the first's. Finished by :meth:`close` (``contextlib.closing``)."""

    def __init__(self, path: Path, rate: float = RECORDING_RATE):
        self.path, self.rate = path, rate
        self.written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self._start = 0.0
        self._newest: np.ndarray | None = None  # shown from its time until the next frame's

    def add(self, frame: LiveFrame) -> None:
        image = cv2.cvtColor(draw_predictions(frame.image, frame.faces), cv2.COLOR_RGB2BGR)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size, self._start = (image.shape[1], image.shape[0]), frame.seconds
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.rate, self._size)
            if not self._writer.isOpened():
                raise AffectkitError(f"Could not write {self.path}.")
        # The recording's frames timed before this one show the frame before it.
        self._hold(math.ceil((frame.seconds - self._start) * self.rate - 1e-9))
        self._newest = image if image.shape[1::-1] == self._size else cv2.resize(image, self._size,
                                                                                 interpolation=cv2.INTER_AREA)

    def _hold(self, until: int) -> None:
        while self._newest is not None and self.written < until:
            self._writer.write(self._newest)
            self.written += 1

    def close(self) -> None:
        """Write the newest frame's own place in the recording, and finish it."""
        if self._writer is not None:
            self._hold(self.written + 1)
            self._writer.release()
            self._writer = None


def recording_for(source: int | str | Path, directory: Path) -> LiveRecording:
    """The annotated recording of ``source`` in ``directory``, named after it and the time it starts (an earlier
    one is never written over): a camera's or stream's at :data:`RECORDING_RATE`, a file's at its own rate."""
    index = _camera_index(source)
    if index is not None:
        name = f"camera{index}"
    elif is_live(source):
        name = re.sub(r"[^A-Za-z0-9]+", "_", STREAM_URL.sub("", str(source))).strip("_")[:60] or "stream"
    else:
        name = Path(source).stem
    rate = RECORDING_RATE
    if not is_live(source):
        capture = cv2.VideoCapture(str(source))
        rate = frame_rate_of(capture)
        capture.release()
    return LiveRecording(directory / f"{name}_{datetime.now():%Y%m%d-%H%M%S}_annotated.mp4", rate)
