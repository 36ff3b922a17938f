"""``affectkit predict`` over image files, folders and videos: one row per face, results as CSV or JSON.

A file that cannot be read becomes a row with ``status = "error: ..."`` and a warning; the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from affectkit.atomic import atomic_write_text
from affectkit.data.records import IMAGE_SUFFIXES, UNREAD_PHOTO_SUFFIXES
from affectkit.errors import AffectkitError, KindedError
from affectkit.inference.annotate import draw_predictions
from affectkit.inference.images import ImageError, read_image
from affectkit.inference.predictor import Predictor
from affectkit.inference.timeline import TrackSmoother, plot_timeline
from affectkit.progress import reporter, silenced

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
UNCERTAINTY_COLUMNS = ("entropy", "valence_std", "arousal_std")
NO_FACE = "no face found"

Advance = Callable[[], None]


def result_columns(class_names: Sequence[str], uncertainty: bool, abstention: bool = False) -> list[str]:
    """The columns of the results: ``abstained`` where the model abstains below a confidence, the uncertainty ones
    under Monte-Carlo dropout."""
    columns = ["file", "frame", "time", "track", "status", "x1", "y1", "x2", "y2", *(f"p_{c}" for c in class_names),
               "expression", "confidence", *(["abstained"] if abstention else []), "valence", "arousal"]
    return columns + list(UNCERTAINTY_COLUMNS) if uncertainty else columns


def predictor_columns(predictor: Predictor) -> list[str]:
    """The result columns of every row ``predictor`` gives, known before any is made (to write rows as they come)."""
    return result_columns(predictor.class_names, predictor.mc_samples > 0, predictor.abstention is not None)


def face_row(file: Path | str, frame: int | None, face: dict[str, Any], time: float | None = None) -> dict[str, Any]:
    """A face's row; ``time``: a video frame's second in it (a live frame's since the source was opened)."""
    box = face["box"] or [None] * 4
    row = {"file": str(file), "frame": frame, "time": _seconds(time), "track": face.get("track"), "status": "ok",
           **dict(zip(("x1", "y1", "x2", "y2"), box)),
           **{f"p_{name}": p for name, p in face["probabilities"].items()},
           **{k: face[k] for k in ("expression", "confidence", "valence", "arousal")}}
    return row | {k: face[k] for k in ("abstained", *UNCERTAINTY_COLUMNS) if k in face}


def status_row(file: Path | str, frame: int | None, status: str, time: float | None = None) -> dict[str, Any]:
    return {"file": str(file), "frame": frame, "time": _seconds(time), "status": status}


def _seconds(time: float | None) -> float | None:
    return None if time is None else round(float(time), 3)


def frame_rows(file: Path | str, frame: int | None, faces: list[dict[str, Any]], time: float | None = None
               ) -> list[dict[str, Any]]:
    """An image's or frame's rows: one per face, or one saying no face was found."""
    return [face_row(file, frame, face, time) for face in faces] or [status_row(file, frame, NO_FACE, time)]


def json_line(row: dict[str, Any], columns: Sequence[str]) -> str:
    """A row as one JSON object of ``columns`` (null where it has no value): a line of JSON Lines."""
    return json.dumps({column: row.get(column) for column in columns})


def frame_rate_of(capture: cv2.VideoCapture) -> float:
    """Frames a second of an opened video, from its header; 25 where the header gives none."""
    return capture.get(cv2.CAP_PROP_FPS) or 25.0


def expand_inputs(inputs: Sequence[str | Path], videos: bool = True) -> list[Path]:
    """Files as given (videos by suffix, anything else is tried as an image) and folders' images and, with
    ``videos``, videos, recursively. A folder's other files (hidden ones aside) are passed over with a note that
    counts them by suffix."""
    wanted = IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ())
    files: list[Path] = []
    for item in map(Path, inputs):
        if (url := _url(item)) is not None and not item.exists():
            raise AffectkitError(f"{url} is a URL: affectkit reads no network; download the file and give its path.")
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
            files += [p for p in found if p.suffix.lower() in wanted]
            if other := Counter(p.suffix.lower() or "no suffix" for p in found if p.suffix.lower() not in wanted):
                reporter().note(f"{item}: passed over {other.total()} file(s) of other kinds "
                                f"({', '.join(f'{suffix} {n}' for suffix, n in other.most_common())}){_hint(other)}.")
        elif item.is_file():
            files.append(item)
        else:
            raise AffectkitError(f"{item} does not exist.")
    return files


def _url(path: Path) -> str | None:
    """The URL a path was given as (``https://host/a.jpg``, which a path reads as ``https:/host/a.jpg``), or None;
    a Windows drive (``C:/``) is no URL scheme."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$", path.as_posix())
    return f"{match.group(1)}://{match.group(2)}" if match else None


def _hint(passed_over: Counter) -> str:
    if unread := sorted(passed_over.keys() & set(UNREAD_PHOTO_SUFFIXES)):
        return f"; {', '.join(suffix[1:].upper() for suffix in unread)} photos are not read: convert them to JPEG"
    if passed_over.keys() & set(VIDEO_SUFFIXES):
        return "; videos are read by `affectkit predict`, frame by frame"
    return ""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _warn_error(file: Path, frame: int | None, reason: str) -> dict[str, Any]:
    said = f"{file}: {reason.rstrip('.')}"
    reporter().note(f"warning: {said}; skipped.", style="yellow")
    return status_row(file, frame, f"error: {reason}")


class _AnnotatedNames:
    """Output names that never collide within a run, so same-named inputs from different folders all survive."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.used: set[str] = set()

    def next(self, stem: str, suffix: str) -> Path:
        name, n = f"{stem}_annotated{suffix}", 2
        while name in self.used:
            name, n = f"{stem}_annotated_{n}{suffix}", n + 1
        self.used.add(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / name


def _write_rgb(path: Path, image_rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise AffectkitError(f"Could not write {path}.")


def _predict_images(
    predictor: Predictor, files: list[Path], names: _AnnotatedNames | None, advance: Advance
) -> list[dict[str, Any]]:
    decoded: list[tuple[Path, np.ndarray]] = []
    rows_by_file: dict[Path, list[dict[str, Any]]] = {}
    for file in files:
        try:
            decoded.append((file, read_image(file)))
        except ImageError as exc:
            rows_by_file[file] = [_warn_error(file, None, exc.reason)]
            advance()
    results = predictor.predict_images([image for _, image in decoded])
    for (file, image), faces in zip(decoded, results):
        rows_by_file[file] = frame_rows(file, None, faces)
        if names is not None:
            _write_rgb(names.next(file.stem, ".jpg"), draw_predictions(image, faces))
        advance()
    return [row for file in files for row in rows_by_file[file]]


def frame_step(frame_rate: float, fps: float) -> int:
    """Every how many frames of a video running at ``frame_rate`` one is read, to read about ``fps`` a second."""
    return max(1, int(round(frame_rate / fps)))


def video_frames(capture: cv2.VideoCapture, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index from the capture's position, RGB frame) of every ``every``-th frame, to the end of the video."""
    index = 0
    while True:
        if index % every == 0:
            ok, bgr = capture.read()
            if not ok:
                return
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        elif not capture.grab():  # grab skips decoding the frames we do not use
            return
        index += 1


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tracked_faces(predictor: Predictor, capture: cv2.VideoCapture, every: int, smooth: float | None
                  ) -> Iterator[tuple[int, np.ndarray, list[dict[str, Any]]]]:
    """(frame index, RGB frame, its faces with ``track`` set and smoothed where ``smooth`` is given) of every
    ``every``-th frame, the frames run through the model in batches."""
    smoother = TrackSmoother(predictor.class_names, smooth, abstention=predictor.abstention)
    for chunk in _chunks(video_frames(capture, every), predictor.batch_size):
        for (index, frame), faces in zip(chunk, predictor.predict_images([f for _, f in chunk])):
            yield index, frame, smoother.update(faces)


def _predict_video(
    predictor: Predictor, file: Path, every: int, smooth: float | None, names: _AnnotatedNames | None,
    timeline_dir: Path | None, advance: Advance,
) -> list[dict[str, Any]]:
    capture = cv2.VideoCapture(str(file))
    if not capture.isOpened():
        return [_warn_error(file, None, "not a readable video")]
    fps = frame_rate_of(capture)
    rows: list[dict[str, Any]] = []
    writer: cv2.VideoWriter | None = None
    try:
        for index, frame, faces in tracked_faces(predictor, capture, every, smooth):
            rows += frame_rows(file, index, faces, index / fps)
            if names is not None:
                if writer is None:
                    writer = cv2.VideoWriter(str(names.next(file.stem, ".mp4")), cv2.VideoWriter_fourcc(*"mp4v"),
                                             fps / every, (frame.shape[1], frame.shape[0]))
                writer.write(cv2.cvtColor(draw_predictions(frame, faces), cv2.COLOR_RGB2BGR))
            advance()
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if not rows:
        return [_warn_error(file, None, "no frames could be decoded")]
    if timeline_dir is not None:
        plot_timeline(rows, predictor.class_names, timeline_dir / f"{file.stem}_timeline.png", file.name,
                      predictor.trained_classes)
    return rows


class VideoError(KindedError):
    """A video that cannot be read (``kind`` "unreadable") or has more frames to read than allowed ("too_long")."""


@dataclass(frozen=True)
class VideoFaces:
    """The faces of the frames read from a video, followed across frames."""

    frame_rate: float  # of the video
    every: int  # every ``every``-th frame was read
    frames: list[tuple[int, list[dict[str, Any]]]]  # (frame index, its faces with ``track``)
    seconds: float  # the video's length, from its header or, where longer, the frames read


def video_faces(predictor: Predictor, path: Path, fps: float, smooth: float | None = None,
                max_frames: int | None = None, name: str | None = None) -> VideoFaces:
    """The tracked (and, with ``smooth``, smoothed) faces of about ``fps`` frames a second of the video at
    ``path``; a video with more than ``max_frames`` such frames is refused before most of it is read."""
    name = name or path.name
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError("unreadable", f"{name}: not a readable video")
    try:
        frame_rate = frame_rate_of(capture)
        every = frame_step(frame_rate, fps)
        length = int(max(capture.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        declared = -(-length // every)
        too_long = f"{name}: more than {max_frames} frames to read at {fps:g} a second; send a shorter video"
        if max_frames is not None and declared > max_frames:
            raise VideoError("too_long", too_long)
        frames = []
        for index, _, faces in tracked_faces(predictor, capture, every, smooth):
            if max_frames is not None and len(frames) == max_frames:  # a header can understate the length
                raise VideoError("too_long", too_long)
            frames.append((index, faces))
    finally:
        capture.release()
    if not frames:
        raise VideoError("unreadable", f"{name}: no frame could be decoded")
    return VideoFaces(frame_rate, every, frames, max(length, frames[-1][0] + 1) / frame_rate)


def frames_to_read(file: Path, every: int | None = None, fps: float = 1.0) -> int:
    """How many frames of the video ``file`` are read, every ``every``-th one (None: about ``fps`` a second), by its
    header: a progress bar's total, at least 1."""
    capture = cv2.VideoCapture(str(file))
    try:
        if not capture.isOpened():
            return 1
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return max(1, -(-count // (every or frame_step(frame_rate_of(capture), fps))))
    finally:
        capture.release()


def predict_media(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    every: int = 1,
    smooth: float | None = None,
    annotate_dir: Path | None = None,
    timeline_dir: Path | None = None,
    progress: bool = True,
    sink: Callable[[list[dict[str, Any]]], None] | None = None,
    done: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Rows in input order; videos also get ``<stem>_timeline.png`` in ``timeline_dir`` when one is given.
    ``sink`` is given the rows of each batch of images and of each video as soon as they are made (to write them
    as they come); files named in ``done`` (as their rows name them, however the path is written) are left out: an
    interrupted run's."""
    if every < 1:
        raise AffectkitError("--every must be at least 1.")
    if smooth is not None and not 0 < smooth <= 1:
        raise AffectkitError("--smooth must be in (0, 1]: the weight of the newest frame.")
    found = expand_inputs(inputs)
    if not found:
        raise AffectkitError(f"No image or video to predict in {', '.join(map(str, inputs))} (images: "
                             f"{', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)}).")
    done_files = {Path(name).resolve() for name in done}  # ./a.jpg, a.jpg and /abs/a.jpg are one file
    files = [file for file in found if file.resolve() not in done_files]
    names = _AnnotatedNames(annotate_dir) if annotate_dir is not None else None
    total = sum(frames_to_read(f, every) if is_video(f) else 1 for f in files)
    rows: list[dict[str, Any]] = []
    with silenced(not progress), reporter().bar() as bar:
        task = bar.add_task("predicting", total=total, info="")

        def advance() -> None:
            bar.advance(task)

        pending: list[Path] = []
        for file in [*files, None]:  # None flushes the last batch of images
            if file is not None and not is_video(file):
                pending.append(file)
                if len(pending) < predictor.batch_size:
                    continue
            made = []
            if pending:
                made += _predict_images(predictor, pending, names, advance)
                pending = []
            if file is not None and is_video(file):
                made += _predict_video(predictor, file, every, smooth, names, timeline_dir, advance)
            if made and sink is not None:
                sink(made)
            rows += made
    return rows


STDOUT = Path("-")  # --out -: JSON Lines on standard output, for a pipe (jq, another program)


def check_output_path(out: Path) -> None:
    """Called before a long run, so a typo in --out does not waste it."""
    if out != STDOUT and out.suffix.lower() not in (".csv", ".json", ".jsonl"):
        raise AffectkitError(f"--out {out}: use a .csv, .json or .jsonl file name, or - for JSON Lines on standard "
                             "output.")


def _rows_columns(rows: list[dict[str, Any]], class_names: Sequence[str]) -> list[str]:
    """The result columns of ``rows``: ``abstained`` and the uncertainty ones where they were predicted with them."""
    return result_columns(class_names, any(UNCERTAINTY_COLUMNS[0] in r for r in rows),
                          any("abstained" in r for r in rows))


def results_frame(rows: list[dict[str, Any]], class_names: Sequence[str]) -> pd.DataFrame:
    """The rows as a table of every result column; frames, tracks and boxes as whole numbers (not 181.0)."""
    columns = _rows_columns(rows, class_names)
    kinds = dict.fromkeys(("frame", "track", "x1", "y1", "x2", "y2"), "Int64")
    if "abstained" in columns:  # empty where a frame had no face, not a float NaN
        kinds["abstained"] = "boolean"
    return pd.DataFrame(rows, columns=columns).astype(kinds)


def partial_path(out: Path) -> Path:
    """Where the rows for ``out`` are written until every input is done."""
    return out.with_name(out.name + ".partial")


def check_partial(out: Path, resume: bool) -> None:
    """Refuse an ``out`` whose partial file an interrupted run left, unless ``resume``: never written over. Called
    before a long run, with :func:`check_output_path`."""
    check_output_path(out)
    if out != STDOUT and partial_path(out).exists() and not resume:
        raise AffectkitError(f"{partial_path(out)} holds the rows of an interrupted run: --resume continues it (its "
                             "files are not predicted again); delete it to start over.")


class ResultsFile:
    """Rows written to ``OUT.partial`` as they come (CSV for a .csv ``out``, else JSON Lines), which becomes ``out``
    when every input is done (:meth:`finish`): a run that stops before leaves the partial file, and ``resume``
    continues it, its files (``done``) left out. A partial file is never written over: without ``resume`` it is
    refused, naming both ways on."""

    def __init__(self, out: Path, columns: list[str], resume: bool = False):
        check_partial(out, resume)
        self.out, self.columns = out, columns
        self.partial = partial_path(out)
        self.csv = out.suffix.lower() == ".csv"
        self.done: set[str] = set()
        self.rows_before = 0
        if resume and self.partial.exists():
            self._read_partial()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.partial.write_text(",".join(columns) + "\n" if self.csv else "")
        self._file = self.partial.open("a", newline="")
        # As in a JSON line: a column a row lacks is empty, a key no column names is left out.
        self._writer = csv.DictWriter(self._file, columns, extrasaction="ignore") if self.csv else None

    def _read_partial(self) -> None:
        text = self.partial.read_text()
        if text and not text.endswith("\n"):  # a line cut short where the process was killed mid-write
            text = text[: text.rfind("\n") + 1]
            self.partial.write_text(text)
        if self.csv:
            reader = csv.DictReader(io.StringIO(text))
            lines, columns = list(reader), reader.fieldnames or []
        else:
            try:
                lines = [json.loads(line) for line in text.splitlines() if line.strip()]
            except ValueError as exc:
                raise AffectkitError(f"{self.partial} is not rows `affectkit predict` wrote ({exc}): delete it to "
                                     "start over.") from None
            columns = list(lines[0]) if lines else self.columns
        if columns != self.columns:
            raise AffectkitError(f"{self.partial} was written with other columns than this run's (another model, "
                                 "--mc-samples or abstention setting): give the same model and options, or delete it "
                                 "to start over.")
        self.done = {row["file"] for row in lines}
        self.rows_before = len(lines)

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if self._writer is not None:
                self._writer.writerow(row)
            else:
                self._file.write(json_line(row, self.columns) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def finish(self) -> Path:
        """Close the partial file and put it in ``out``'s place (JSON: the rows as one array)."""
        self.close()
        if self.out.suffix.lower() == ".json":
            records = [json.loads(line) for line in self.partial.read_text().splitlines() if line.strip()]
            atomic_write_text(self.partial, json.dumps(records, indent=1))
        os.replace(self.partial, self.out)
        return self.out


def write_results(rows: list[dict[str, Any]], out: Path, class_names: Sequence[str]) -> Path:
    """CSV, JSON or JSON Lines by the suffix of ``out``, as ``predict`` writes them; missing values are empty cells
    / null."""
    results = ResultsFile(Path(out), _rows_columns(rows, class_names))
    try:
        results.write(rows)
    finally:
        results.close()
    return results.finish()
