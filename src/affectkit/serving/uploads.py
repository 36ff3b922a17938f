"""What an upload is, from its bytes rather than its name or content type: a video container, an audio format, an
image (decoded within the pixel bound), a CSV's text. Every refusal is an HTTPException with a 4xx status and one
sentence naming the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fastapi import HTTPException

from affectkit.inference.images import ImageError, decode_image
from affectkit.inference.media import frame_rate_of

STATUS_FOR_IMAGE_PROBLEM = {"empty": 400, "not_image": 422, "corrupt": 422, "too_large": 413}


def video_container(data: bytes) -> str | None:
    """The file suffix of the container the bytes begin with (MP4/MOV, AVI, Matroska/WebM), or None."""
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # QuickTime files from before ftyp
        return ".mov"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"
    return None


def audio_container(data: bytes) -> str | None:
    """The file suffix of the audio the bytes begin with (WAV, FLAC, Ogg), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return ".wav"
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"OggS":
        return ".ogg"
    return None


def decode_uploads(uploads: list[tuple[str, bytes]], max_pixels: int) -> list[np.ndarray]:
    """The RGB image of each (name, bytes) upload; the first that is not an image, or too large, refuses them all."""
    try:
        return [decode_image(data, name=name, max_pixels=max_pixels) for name, data in uploads]
    except ImageError as exc:
        raise HTTPException(STATUS_FOR_IMAGE_PROBLEM[exc.kind], str(exc)) from None


def modality_suffix(field: str, name: str, data: bytes, max_pixels: int) -> str:
    """The suffix an upload is stored under, from its content: a face's video container or image, an audio format,
    a physio CSV's text. Raises HTTPException (422) for content that is none of them."""
    if not data:
        raise HTTPException(400, f"{name}: the file is empty")
    if field == "face":
        if suffix := video_container(data):
            return suffix
        try:
            decode_image(data, name=name, max_pixels=max_pixels)
        except ImageError as exc:
            raise HTTPException(STATUS_FOR_IMAGE_PROBLEM[exc.kind], f"{exc} (a face is a photo or a video)") from None
        return ".png"  # read by content, whatever the format
    if field == "audio":
        if suffix := audio_container(data):
            return suffix
        raise HTTPException(422, f"{name}: not audio affectkit reads (WAV, FLAC or Ogg)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, f"{name}: not a CSV text file (physio: a time column in seconds, then "
                                 "signals)") from None
    return ".csv"


def check_video_window(path: Path, name: str, start: float | None, end: float | None, fps: float,
                        max_frames: int) -> None:
    """Refuse a video window with more than ``max_frames`` frames to read at ``fps``, from its header."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise HTTPException(422, f"{name}: not a readable video")
        seconds = capture.get(cv2.CAP_PROP_FRAME_COUNT) / frame_rate_of(capture)
    finally:
        capture.release()
    window = min(seconds, end if end is not None else seconds) - (start or 0.0)
    if window * fps > max_frames:
        raise HTTPException(413, f"{name}: more than {max_frames} frames to read at {fps:g} a second; send a shorter "
                                 "window")
