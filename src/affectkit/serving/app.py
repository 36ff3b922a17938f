"""HTTP API and demo page: ``POST /v1/predict`` with images, ``POST /v1/predict-video`` with a video (faces followed
across frames; with a temporal model, the clip's expression, valence and arousal; with a temporal-frames model,
valence and arousal frame by frame), ``/v1/stream`` (a WebSocket: live frames in, tracked and smoothed faces out),
``POST /v1/predict-multimodal`` (with a fusion model: a sample's face, speech and physiological recordings fused),
``POST /v1/feedback`` (the truth about a served face) with ``GET /v1/performance``, ``GET /v1/drift``, model info,
health, Prometheus metrics.

Every upload is untrusted: the request size is bounded before the body is read, the pixel count is read from the
image header before decoding, a video's container is recognised from its first bytes (only MP4/MOV, AVI and
Matroska/WebM reach the decoder, never a playlist or a stream description) and its length bounded, the content is
sniffed rather than trusting names or content types, and every refusal is a JSON ``{"detail": "..."}`` with a 4xx
status.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from affectkit.config import MAP_METHODS
from affectkit.data.records import Reject
from affectkit.errors import AffectkitError
from affectkit.inference.abstention import check_abstention_request
from affectkit.inference.faces import DetectorMethod
from affectkit.inference.images import UPLOAD_MAX_PIXELS
from affectkit.inference.media import VIDEO_SUFFIXES, VideoError, VideoFaces, frame_step, video_faces
from affectkit.inference.predictor import BackendName, Predictor
from affectkit.inference.timeline import TrackSmoother, smooth_frames, track_summaries
from affectkit.multimodal.face import FrameOutputs, served_frame_outputs
from affectkit.multimodal.manifest import Sample
from affectkit.serving.drift import DEFAULT_MIN_FACES, DEFAULT_WINDOW, DriftMonitor
from affectkit.serving.feedback import (
    DEFAULT_REMEMBERED,
    FeedbackError,
    FeedbackTracker,
    latest_test_evaluation,
)
from affectkit.serving.metrics import CONTENT_TYPE, ServiceMetrics
from affectkit.serving.state import ServingState, StateError
from affectkit.serving.uploads import (
    check_video_window,
    decode_uploads,
    modality_suffix,
    video_container,
)

if TYPE_CHECKING:
    from affectkit.temporal import TemporalModel
    from affectkit.temporal.continuous import ContinuousModel

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_VIDEO_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_VIDEO_FRAMES = 600
# Requests with the model at once, the one answered and those waiting for it; more are refused with 503. At a tenth
# of a second an image, 32 waiting are about three seconds' wait.
DEFAULT_MAX_PENDING = 32
MAX_VIDEO_FPS = 30.0
VIDEO_ROUTE = "/v1/predict-video"
MULTIMODAL_ROUTE = "/v1/predict-multimodal"
MODALITY_FIELDS = ("face", "audio", "physio")
STREAM_ROUTE = "/v1/stream"
EXPLAIN_ROUTE = "/v1/explain"
MODEL_ROUTES = ("/v1/predict", VIDEO_ROUTE, MULTIMODAL_ROUTE, EXPLAIN_ROUTE)
POLICY_VIOLATION = 1008  # WebSocket close code
STATUS_FOR_VIDEO_PROBLEM = {"unreadable": 422, "too_long": 413}
STATUS_FOR_FEEDBACK_PROBLEM = {"unknown": 404, "duplicate": 409, "invalid": 422}
PAGE_HEADERS = {  # the page loads nothing from elsewhere; say so to the browser
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}
PREDICT_BODY = {  # documents the two bodies in /docs, since the route reads the body itself to bound it
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }},
            "application/json": {"schema": {
                "type": "object", "required": ["images"],
                "properties": {"images": {"type": "array", "items": {
                    "type": "string", "description": "an image file's bytes in base64, or a data: URL of them"}}},
            }},
        },
    }
}
DATA_URL = re.compile(r"^data:[\w.+-]*/?[\w.+-]*(;[\w=.+-]+)*;base64,", re.IGNORECASE)


VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }}},
    }
}


MULTIMODAL_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "properties": {field: {"type": "string", "format": "binary"} for field in MODALITY_FIELDS},
        }}},
    }
}


class Feedback(BaseModel):
    """The truth about one served face: its expression (a class name or id), valence and/or arousal."""

    prediction_id: str = Field(max_length=64)
    expression: str | int | None = None
    valence: float | None = None
    arousal: float | None = None


def _smooth_problem(smooth: float | None) -> str | None:
    if smooth is not None and not 0 < smooth <= 1:
        return f"smooth must be in (0, 1] (the weight of the newest frame), got {smooth:g}"
    return None


def _png_data_url(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URL, which a page shows as it is (``<img src=...>``)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def json_images(body: bytes, max_files: int) -> list[tuple[str, bytes]]:
    """The images of a JSON body ``{"images": ["<base64>", "data:image/jpeg;base64,...", ...]}``, as a browser's or
    a mobile app's code sends them, named ``images[i]``; each problem refused by where it is."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(422, f"the body is not JSON ({exc})") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list) or not images:
        raise HTTPException(422, 'a JSON body holds {"images": [...]}: a list of one or more images in base64')
    if len(images) > max_files:
        raise HTTPException(413, f"{len(images)} images exceed the limit of {max_files} per request")
    return [(f"images[{i}]", base64_image(image, f"images[{i}]")) for i, image in enumerate(images)]


def base64_image(text: object, name: str) -> bytes:
    """The bytes of an image given as base64 text, or as a data: URL of it (a canvas's ``toDataURL()``)."""
    if not isinstance(text, str):
        raise HTTPException(422, f"{name} is not a string of base64")
    try:
        return base64.b64decode(DATA_URL.sub("", text.strip()), validate=True)
    except binascii.Error as exc:
        raise HTTPException(422, f"{name} is not base64 ({exc})") from None


def frame_bytes(message: dict[str, Any], name: str, max_bytes: int) -> bytes:
    """The image a stream's message holds: its bytes (a binary message), or its base64 (a text message)."""
    if message.get("bytes") is not None:
        data = message["bytes"]
    elif message.get("text") is not None:
        data = base64_image(message["text"], name)
    else:
        raise HTTPException(422, "send each frame as a binary message holding a JPEG or PNG image, or as a text "
                                 "message of its base64")
    if len(data) > max_bytes:
        raise HTTPException(413, f"frame of {len(data):,} bytes exceeds the limit of {max_bytes:,} bytes")
    return data


def _body_size_problem(request: Request, max_bytes: int) -> JSONResponse | None:
    """Refuse oversized bodies from Content-Length alone; without it the size is unknown until read, so require it."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    length = request.headers.get("content-length")
    if length is None:
        return _error(411, "a Content-Length header is required for uploads")
    if not length.isdigit():
        return _error(400, f"invalid Content-Length header {length!r}")
    if int(length) > max_bytes:
        return _error(413, f"request body of {int(length):,} bytes exceeds the limit of {max_bytes:,} bytes")
    return None


def check_origins(origins: list[str]) -> None:
    """Origins a browser page may call the API from, as the browser sends them (``http://localhost:3000``:
    scheme, host and port only), or ``*`` for any. A path or a trailing slash would never match what the browser
    sends, so every call would be refused with no word of why: such an origin is refused here instead."""
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin):
            raise AffectkitError(f"allowed origin {origin!r} is not an origin as a browser sends it: scheme, host and "
                                 "port only (https://app.example.com, http://localhost:3000), no path or trailing "
                                 "slash; or * for any")


def _check_limits(limits: dict[str, int]) -> None:
    """A limit below one would refuse every request while the server looks healthy: refused at start-up instead."""
    if low := [f"{name} is {value:,}" for name, value in limits.items() if value < 1]:
        raise AffectkitError(f"{'; '.join(low)}: a limit must be at least 1, or it refuses every request.")


def _origin_may_connect(headers: Any, allowed_origins: list[str]) -> bool:
    """Whether a WebSocket handshake may go on: a client that names no origin (a program, not a browser), the
    server's own page (its host as the request names it, or as a reverse proxy forwards it), or a page of an
    allowed origin. A page cannot set the forwarded header on a WebSocket handshake, so trusting it lets no other
    page in."""
    origin = headers.get("origin")
    if origin is None or "*" in allowed_origins or origin in allowed_origins:
        return True
    return origin.partition("://")[2] in {headers.get("host"), headers.get("x-forwarded-host")}


def _route_label(path: str, known: set[str]) -> str:
    """Known routes by name; anything else is pooled so random URLs cannot inflate the metric's label set."""
    if path in known:
        return path
    return "/static" if path.startswith("/static/") else "other"


def create_app(
    model_path: str | Path,
    api_key: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = UPLOAD_MAX_PIXELS,
    detect: bool = True,
    detector: DetectorMethod = "auto",
    max_files: int = 16,
    backend: BackendName = "auto",
    mc_samples: int = 0,
    max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES,
    max_video_frames: int = DEFAULT_MAX_VIDEO_FRAMES,
    temporal: str | Path | None = None,
    drift_window: int = DEFAULT_WINDOW,
    drift_min_faces: int = DEFAULT_MIN_FACES,
    feedback_window: int = 1000,
    remembered_predictions: int = DEFAULT_REMEMBERED,
    state_dir: str | Path | None = None,
    fusion: str | Path | None = None,
    temporal_frames: str | Path | None = None,
    face_margin: float | None = None,
    allowed_origins: list[str] | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
    min_confidence: float | None = None,
    target_accuracy: float | None = None,
    per_class_thresholds: bool = False,
    threads: int | None = None,
) -> FastAPI:
    """Load the model once and build the app. ``max_upload_bytes`` bounds an image request, all files together;
    ``max_video_bytes`` a video request, and ``max_video_frames`` the frames read from one video. ``temporal``: a
    folder ``affectkit temporal`` wrote for this face model, which then gives each video's clip-level verdict.
    ``drift_window``: the last faces served that the drift monitor compares with the model's validation outputs,
    once there are ``drift_min_faces`` of them. ``remembered_predictions``: how many of the latest faces served by
    ``/v1/predict`` and ``/v1/stream`` a report of the truth may refer to; ``feedback_window``: the latest reports
    ``/v1/performance`` scores. ``state_dir``: a folder where the drift window, the remembered predictions and
    every report are kept (one SQLite file per model), so they outlive the process. ``fusion``: a folder
    ``affectkit fuse`` wrote (on this face model's outputs, where it reads the face), which then serves
    ``/v1/predict-multimodal``. ``temporal_frames``: a folder ``affectkit temporal-frames`` wrote on this face
    model's outputs, which then gives each video's valence and arousal frame by frame. ``face_margin``: crop detected
    faces with that share of the box on each side instead of the framing measured on the model's training faces.
    ``allowed_origins``: web pages of these origins (``http://localhost:3000``, or ``*``) may call the HTTP routes
    from a browser (CORS) and open the stream; without it only the server's own page can. ``max_pending``: requests
    for the model (images, videos, multimodal samples) answered or waiting at once; one more is refused at once with
    503 and ``Retry-After``, so that a client or a load balancer tries again or elsewhere instead of queueing without
    bound. ``detector``: how faces are found (see :class:`~affectkit.inference.faces.FaceDetector`); ``threads``:
    the CPU threads of the model and the face detector.
    ``min_confidence`` or ``target_accuracy`` (and ``per_class_thresholds``): every face says whether it is
    ``abstained`` on (see :class:`~affectkit.inference.predictor.Predictor`)."""
    allowed_origins = allowed_origins or []
    check_origins(allowed_origins)
    _check_limits({"max_upload_bytes (--max-upload-mb)": max_upload_bytes, "max_pixels": max_pixels,
                   "max_video_bytes (--max-video-mb)": max_video_bytes, "max_video_frames": max_video_frames,
                   "max_files": max_files, "max_pending (--max-pending)": max_pending})
    check_abstention_request(min_confidence, target_accuracy, per_class_thresholds)  # before any model loads
    # The temporal and fusion models' code (PyTorch, scikit-learn) is imported for a server given one only: a server
    # of an ONNX model on face crops runs without PyTorch.
    temporal_model = frames_model = None
    if temporal is not None:
        from affectkit.temporal import load_temporal

        temporal_model = load_temporal(temporal)
    if temporal_frames is not None:
        from affectkit.temporal.continuous import load_continuous

        frames_model = load_continuous(temporal_frames)
    if frames_model is not None:
        frames_model.check_face_model(Path(model_path), "serve that model with it")
    if temporal_model is not None:  # before the face model is loaded: a mismatch fails fast
        temporal_model.check_face_model(Path(model_path), "serve that model with it")
    predictor = Predictor(model_path, backend=backend, detect=detect, detector_method=detector, mc_samples=mc_samples,
                          face_margin=face_margin, min_confidence=min_confidence, target_accuracy=target_accuracy,
                          per_class_thresholds=per_class_thresholds, threads=threads)
    if temporal_model is not None:
        _check_reads_alike(temporal_model, temporal, predictor)
    fusion_models = fusion_meta = None
    if fusion is not None:
        from affectkit.multimodal.run import load_fusion

        fusion_models, fusion_meta = load_fusion(fusion)
        _check_servable_fusion(fusion_meta, fusion, model_path, predictor)
    # One prediction at a time: the model already uses every core it is given, and memory stays predictable.
    model_lock = threading.Lock()
    state = None if state_dir is None else ServingState(state_dir, model_path, predictor.class_names, drift_window,
                                                          remembered_predictions)
    drift = DriftMonitor(predictor.meta.get("output_profile"), predictor.class_names, drift_window, drift_min_faces,
                         state)
    feedback = FeedbackTracker(predictor.class_names, remembered_predictions, feedback_window,
                               latest_test_evaluation(predictor.meta, model_path), state,
                               predictor.predicts_valence_arousal)
    metrics = ServiceMetrics(predictor.class_names, drift, feedback)

    app = FastAPI(title="affectkit", summary="Facial expression, valence and arousal from face photos.")
    app.state.predictor = predictor
    app.state.metrics = metrics
    app.state.serving_state = state

    def key_accepted(given: str | None) -> bool:
        return api_key is None or (given is not None and secrets.compare_digest(given.encode(), api_key.encode()))

    def require_api_key(x_api_key: str | None = Header(default=None)) -> None:
        if not key_accepted(x_api_key):
            raise HTTPException(401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})

    known_routes: set[str] = set()  # filled once every route exists

    @app.middleware("http")
    async def bound_and_observe(request: Request, call_next):
        start = time.perf_counter()
        route = _route_label(request.url.path, known_routes)
        for_model = request.method == "POST" and request.url.path in MODEL_ROUTES
        try:
            limit = max_video_bytes if request.url.path in (VIDEO_ROUTE, MULTIMODAL_ROUTE) else max_upload_bytes
            if for_model and metrics.pending.value >= max_pending:
                response = _error(503, f"busy: {metrics.pending.value} requests are with the model already (the "
                                       f"server takes {max_pending} at once, --max-pending); try again shortly",
                                  headers={"Retry-After": "1"})
            else:
                metrics.pending.value += int(for_model)
                try:
                    response = _body_size_problem(request, limit) or await call_next(request)
                finally:
                    metrics.pending.value -= int(for_model)
        except Exception:
            metrics.observe_request(route, 500, time.perf_counter() - start)
            raise
        metrics.observe_request(route, response.status_code, time.perf_counter() - start)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    if allowed_origins:  # added last, so outermost: a preflight is answered before the body bound and the key check
        app.add_middleware(CORSMiddleware, allow_origins=allowed_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Content-Type"], max_age=600)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(422, problems)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, f"internal error ({type(exc).__name__}); the server logged the details")

    def decode_and_predict(uploads: list[tuple[str, bytes]], detect: bool = True) -> list[list[dict[str, Any]]]:
        images = decode_uploads(uploads, max_pixels)  # outside the lock: requests decode in parallel
        with model_lock:
            if not detect:  # each image is one face crop already
                return [[face] for face in predictor.predict_batch(images)]
            return predictor.predict_images(images)

    async def uploaded_images(request: Request, detect: bool | None) -> list[tuple[str, bytes]]:
        """(name, bytes) of each image in the multipart field ``files``, or in a JSON body's ``images`` (base64)."""
        if detect and predictor.detector is None:
            raise HTTPException(422, "this server was started with --no-detect: it reads each image as one face")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
            return json_images(await request.body(), max_files)
        async with request.form(max_files=max_files, max_fields=max_files) as form:  # closes the spooled files
            fields = form.getlist("files")
            if not fields:
                raise HTTPException(422, "no images: send one or more files in the multipart field 'files', or "
                                         'JSON {"images": [...]} of base64')
            if not all(isinstance(f, UploadFile) for f in fields):
                raise HTTPException(422, "the field 'files' must hold file uploads, not text")
            return [(f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(fields)]

    @app.post("/v1/predict", dependencies=[Depends(require_api_key)], openapi_extra=PREDICT_BODY)
    async def predict(request: Request, detect: bool | None = None) -> dict[str, Any]:
        """Faces, expression probabilities, valence and arousal for each image in the multipart field ``files``, or
        in a JSON body's ``images`` (base64); ``detect=false``: each image is a face crop already (a data set's
        aligned faces), read whole."""
        uploads = await uploaded_images(request, detect)
        faces_per_image = await run_in_threadpool(decode_and_predict, uploads, detect is not False)
        metrics.observe_predictions(faces_per_image)
        for faces in faces_per_image:
            feedback.remember(faces)
        return {"results": [
            {"filename": name, "faces": faces, "status": "ok" if faces else "no face found"}
            for (name, _), faces in zip(uploads, faces_per_image)
        ]}

    explaining: list[Any] = []  # the PyTorch network Grad-CAM and integrated gradients run on, loaded when first asked

    def explaining_model(method: str) -> Any:
        if not explaining:
            from affectkit.inference.torch_backend import TorchBackend

            if isinstance(predictor.backend, TorchBackend):
                explaining.append(predictor.backend.model)
            else:  # served from its ONNX export: the weights it was exported from, where they are beside it
                from affectkit.inference.predictor import model_files
                from affectkit.models.io import load_model

                weights = model_files(model_path)[0]
                if not weights.is_file():
                    raise HTTPException(422, f"{MAP_METHODS[method]} needs the PyTorch model, and {weights.name} "
                                             "is not beside the ONNX file this server was started with: ask "
                                             "method=occlusion")
                explaining.append(load_model(weights)[0])
        return explaining[0]

    def explain_images(uploads: list[tuple[str, bytes]], detect: bool, target: str, layer: str,
                       method: str) -> list[list[dict[str, Any]]]:
        from affectkit.inference.explain import explain_image, needs_network, overlay, png_bytes

        images = decode_uploads(uploads, max_pixels)
        with model_lock:
            model = explaining_model(method) if needs_network(method) else None  # occlusion: the served backend
            explained = [explain_image(predictor, model, image, target, layer, detect, method) for image in images]
        return [[{**face.result, "explanation": {
            "target": face.target, "method": MAP_METHODS[method],
            "upper_half_share": None if np.isnan(face.upper_half_share) else face.upper_half_share,
            "peak": None if np.isnan(face.peak).any() else [float(v) for v in face.peak],
            "image": _png_data_url(png_bytes(overlay(face.crop, face.heatmap), "the map"))}}
            for face in faces] for faces in explained]

    @app.post(EXPLAIN_ROUTE, dependencies=[Depends(require_api_key)], openapi_extra=PREDICT_BODY)
    async def explain(request: Request, target: str = "predicted", layer: str = "auto", method: str = "gradcam",
                      detect: bool | None = None) -> dict[str, Any]:
        """Where the model finds the evidence for its answer (Grad-CAM; ``method=occlusion``: finer maps from the
        served model itself, ONNX included, at a forward pass per patch place; ``method=ig``: integrated gradients,
        a value per pixel, at a forward and a backward pass per point of its path; as ``affectkit explain``), for each
        face of the images sent as to ``/v1/predict``: each face's result with an ``explanation``: its ``target`` (the
        class it was answered, by default; or ``target=`` an expression by name, ``valence``, ``arousal``), the share
        of the map on the crop's upper half, where the map peaks (x, y as shares of the crop's side) and ``image``,
        the face crop under its map as a PNG data URL. ``layer``: Grad-CAM's final, finer or auto (see ``affectkit
        explain``)."""
        from affectkit.inference.explain import check_layer, check_target

        try:
            check_layer(layer, method)
            check_target(target, predictor.class_names, predictor.trained_classes, predictor.predicts_valence_arousal)
        except AffectkitError as exc:
            raise HTTPException(422, str(exc)) from None
        uploads = await uploaded_images(request, detect)
        faces_per_image = await run_in_threadpool(explain_images, uploads, detect is not False, target, layer,
                                                  method)
        return {"results": [
            {"filename": name, "faces": faces, "status": "ok" if faces else "no face found"}
            for (name, _), faces in zip(uploads, faces_per_image)
        ]}

    def video_job(name: str, data: bytes, suffix: str, fps: float, smooth: float | None,
                  explain_frames: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {}  # the temporal models' answers, where the server has them
        with tempfile.TemporaryDirectory(prefix="affectkit-video-") as folder:
            path = Path(folder) / f"upload{suffix}"  # the name OpenCV sees: never the client's
            path.write_bytes(data)
            with model_lock:
                try:
                    if temporal_model is None and frames_model is None:
                        read = video_faces(predictor, path, fps, smooth, max_video_frames, name=name)
                        frames = read.frames
                    else:  # unsmoothed first: the temporal models may read the same frames' outputs
                        read = video_faces(predictor, path, fps, None, max_video_frames, name=name)
                        if temporal_model is not None:
                            extra["clip"] = _clip_verdict(temporal_model, predictor, path, read, max_video_frames,
                                                          name, explain_frames)
                        if frames_model is not None:
                            extra["continuous"] = _frame_affect(frames_model, predictor, path, read,
                                                                max_video_frames, name)
                        frames = smooth_frames(read.frames, predictor.class_names, smooth, predictor.abstention)
                except VideoError as exc:
                    raise HTTPException(STATUS_FOR_VIDEO_PROBLEM[exc.kind], str(exc)) from None
        metrics.observe_predictions([faces for _, faces in frames])
        result = {
            "filename": name, "seconds": read.seconds, "frame_rate": read.frame_rate, "every": read.every,
            "frames_read": len(frames),
            "frames": [{"frame": index, "time": index / read.frame_rate, "faces": faces} for index, faces in frames],
            "tracks": track_summaries(frames, predictor.class_names, predictor.abstention),
        }
        return result | extra

    @app.post(VIDEO_ROUTE, dependencies=[Depends(require_api_key)], openapi_extra=VIDEO_BODY)
    async def predict_video(request: Request, fps: float = 4.0, smooth: float | None = None,
                            explain_frames: bool = False) -> dict[str, Any]:
        """The faces of about ``fps`` frames a second of the video in the multipart field ``file``, followed across
        frames (``track``; ``smooth`` in (0, 1] smooths each track's predictions over time), each track's mean
        verdict and, where the server has a temporal model, the clip's expression, valence and arousal (with
        ``explain_frames``, which frames that verdict rests on: ``frame_importance``, as ``temporal-predict
        --explain``); where it has a temporal-frames model, each frame's valence and arousal (``continuous``)."""
        if not 0 < fps <= MAX_VIDEO_FPS:
            raise HTTPException(422, f"fps must be in (0, {MAX_VIDEO_FPS:g}], got {fps:g}")
        if explain_frames and temporal_model is None:
            raise HTTPException(422, "explain_frames explains the clip's verdict of a temporal model: start the "
                                     "server with --temporal DIR")
        if problem := _smooth_problem(smooth):
            raise HTTPException(422, problem)
        async with request.form(max_files=1, max_fields=1) as form:
            upload = form.get("file")
            if upload is None:
                raise HTTPException(422, "no video: send one file in the multipart field 'file'")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "the field 'file' must hold a file upload, not text")
            name, data = upload.filename or "video", await upload.read()
        if not data:
            raise HTTPException(400, f"{name}: the file is empty")
        suffix = video_container(data)
        if suffix is None:
            raise HTTPException(422, f"{name}: not a video affectkit reads (MP4/MOV, AVI or Matroska/WebM)")
        return await run_in_threadpool(video_job, name, data, suffix, fps, smooth, explain_frames)

    def multimodal_job(uploads: dict[str, tuple[str, bytes]], start: float | None, end: float | None,
                       explain: bool) -> dict[str, Any]:
        from affectkit.multimodal.run import fusion_verdict  # loaded with the fusion models already

        with tempfile.TemporaryDirectory(prefix="affectkit-multimodal-") as folder:
            files = {}
            for field, (name, data) in uploads.items():
                suffix = modality_suffix(field, name, data, max_pixels)
                files[field] = Path(folder) / f"{field}{suffix}"  # never the client's name
                files[field].write_bytes(data)
            if "face" in files and files["face"].suffix in VIDEO_SUFFIXES:
                check_video_window(files["face"], uploads["face"][0], start, end, fusion_meta["fps"],
                                    max_video_frames)
            try:
                return fusion_verdict(fusion_models, fusion_meta, Sample("upload", files, start, end),
                                      predictor if "face" in fusion_meta["modalities"] else None, model_lock,
                                      explain=explain)
            except Reject as exc:
                raise HTTPException(422, exc.reason) from None

    @app.post(MULTIMODAL_ROUTE, dependencies=[Depends(require_api_key)], openapi_extra=MULTIMODAL_BODY)
    async def predict_multimodal(request: Request, start: float | None = None, end: float | None = None,
                                 explain_modalities: bool = False) -> dict[str, Any]:
        """The fusion's expression, valence and arousal for one sample: any of the multipart files ``face`` (a photo
        or a video), ``audio`` (WAV, FLAC or Ogg) and ``physio`` (a CSV with a time column in seconds) that the
        fusion reads, over the window ``start``-``end`` seconds (the whole recording without them). With
        ``explain_modalities``, which modality the verdict rests on (``modality_importance``: each modality read left
        out in turn, as ``fuse-predict --explain`` does)."""
        if fusion_meta is None:
            raise HTTPException(404, "this server has no fusion model: start it with --fusion DIR")
        if (start is not None and start < 0) or (end is not None and end <= (start or 0)):
            raise HTTPException(422, "the window needs 0 <= start < end (seconds)")
        async with request.form(max_files=len(MODALITY_FIELDS), max_fields=len(MODALITY_FIELDS)) as form:
            uploads = {}
            for field in MODALITY_FIELDS:
                item = form.get(field)
                if item is None:
                    continue
                if not isinstance(item, UploadFile):
                    raise HTTPException(422, f"the field {field!r} must hold a file upload, not text")
                uploads[field] = (item.filename or field, await item.read())
        unread = [field for field in uploads if field not in fusion_meta["modalities"]]
        if unread or not uploads:
            raise HTTPException(422, f"send the fusion's modalities ({', '.join(fusion_meta['modalities'])}) as "
                                     "multipart files" + (f"; it does not read {', '.join(unread)}" if unread else ""))
        return await run_in_threadpool(multimodal_job, uploads, start, end, explain_modalities)

    def predict_frame(name: str, data: bytes, smoother: TrackSmoother) -> list[dict[str, Any]]:
        (faces,) = decode_and_predict([(name, data)])
        return smoother.update(faces)

    @app.websocket(STREAM_ROUTE)
    async def stream(websocket: WebSocket, smooth: float | None = None, x_api_key: str | None = Header(default=None),
                     key: str | None = Query(default=None, alias="api_key")) -> None:
        """Live frames: each binary message is one frame (JPEG or PNG bytes), or each text message its base64 or
        data: URL (a canvas's ``toDataURL()``); each answer, in order, is
        ``{"frame": n, "faces": [...]}`` with the faces followed across the connection's frames (``track``) and,
        with ``smooth`` in (0, 1], smoothed over them; or ``{"frame": n, "error": "..."}`` for a frame that cannot
        be used. The key goes in the X-API-Key header, or in ``api_key`` where the client cannot set headers (a
        browser)."""
        if not _origin_may_connect(websocket.headers, allowed_origins):
            # Browsers let any page open a WebSocket and read its answers (CORS does not cover it), so a page of
            # another origin is refused at the handshake, as the HTTP routes refuse its reads.
            await websocket.close(POLICY_VIOLATION, "this page's origin may not use the stream: serve with "
                                                    "--allow-origin naming it")
            return
        await websocket.accept()
        refusal = ("missing or wrong API key (X-API-Key header or api_key parameter)"
                   if not key_accepted(x_api_key or key) else _smooth_problem(smooth))
        if refusal:
            await websocket.send_json({"error": refusal})
            await websocket.close(POLICY_VIOLATION, refusal)
            return
        smoother = TrackSmoother(predictor.class_names, smooth, abstention=predictor.abstention)
        frame = 0
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    data = frame_bytes(message, f"frame {frame}", max_upload_bytes)
                    faces = await run_in_threadpool(predict_frame, f"frame {frame}", data, smoother)
                    metrics.observe_predictions([faces])
                    feedback.remember(faces)
                    answer: dict[str, Any] = {"faces": faces}
                except HTTPException as exc:
                    answer = {"error": exc.detail}
                await websocket.send_json({"frame": frame, **answer})
                frame += 1
        except WebSocketDisconnect:
            return

    @app.get("/v1/model", dependencies=[Depends(require_api_key)])
    def model_info() -> dict[str, Any]:
        meta = predictor.meta
        return {
            "name": meta.get("display_name"),
            "model": meta.get("model"),
            "classes": predictor.class_names,
            "trained_classes": predictor.trained_classes,
            # What its faces carry: an expression model (trained without valence/arousal) gives them as null.
            "outputs": {"expression": bool(predictor.class_names),
                        "valence_arousal": predictor.predicts_valence_arousal},
            "input_size": predictor.input_size,
            "temperature": meta.get("temperature"),
            "evaluations": meta.get("evaluations", []),
            "robustness": meta.get("robustness", []),  # its scores on corrupted faces (`affectkit robustness`)
            "backend": predictor.backend_name,
            # An int8 export's. Rows of the evaluations above that name an "export" are that file's own scores
            # (`affectkit evaluate model.int8.onnx`); the others are the weights' it was exported from.
            "quantization": predictor.quantization,
            "face_detection": predictor.detector.method if predictor.detector else None,
            "face_margin": predictor.face_margin if predictor.detector else None,  # of the box, on each side
            "abstention": None if predictor.abstention is None else predictor.abstention.as_dict(),
            "trained_on_synthetic_data": bool(meta.get("trained_on_synthetic_data")),
            "warning": predictor.warning,
            "fusion": None if fusion_meta is None else {
                "modalities": fusion_meta["modalities"],
                "kept": {t: k["method"] for t, k in fusion_meta["kept"].items()},
            },
            "temporal_frames": None if frames_model is None else {"kept": frames_model.methods,
                                                                   "fps": frames_model.fps},
            "temporal": None if temporal_model is None else {
                "kept": {t: k["method"] for t, k in temporal_model.meta["kept"].items()},
                "fps": temporal_model.meta["fps"],
            },
        }

    @app.post("/v1/feedback", dependencies=[Depends(require_api_key)])
    def report_truth(report: Feedback) -> dict[str, str]:
        """The truth about a face served by ``/v1/predict`` or ``/v1/stream``, named by its ``prediction_id``: its
        expression (class name or id), valence and/or arousal. Each prediction can be reported once."""
        try:
            feedback.record(report.prediction_id, report.expression, report.valence, report.arousal)
        except FeedbackError as exc:
            raise HTTPException(STATUS_FOR_FEEDBACK_PROBLEM[exc.kind], str(exc)) from None
        except StateError as exc:
            log.error("%s", exc)  # the server's own file: its path is for the log, not the client
            raise HTTPException(503, "the report could not be stored; try again later") from None
        return {"status": "recorded"}

    @app.get("/v1/performance", dependencies=[Depends(require_api_key)])
    def performance() -> dict[str, Any]:
        """Accuracy and valence/arousal MAE of the latest reports of the truth, beside the model's own test scores."""
        return feedback.summary()

    @app.get("/v1/drift", dependencies=[Depends(require_api_key)])
    def drift_status() -> dict[str, Any]:
        """How far the last faces served have moved from the model's outputs on its validation faces (PSI per
        signal: predicted expression, valence, arousal, confidence)."""
        return drift.status()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    known_routes.update(getattr(r, "path", "") for r in app.routes)
    return app


def _check_detection(detect: bool, predictor: Predictor, what: str) -> None:
    """Refuse a model fit on faces found otherwise (``detect``) than this server finds them; ``what`` read them."""
    if detect != (predictor.detector is not None):
        raise AffectkitError(f"{what} with face detection {'on' if detect else 'off (--no-detect)'}: serve it with "
                             "the same setting.")


def _check_reads_alike(model: TemporalModel, folder: str | Path, predictor: Predictor) -> None:
    """Refuse a temporal model that read its clips' faces otherwise than this server finds them."""
    _check_detection(model.meta["detect"], predictor, f"The temporal model in {folder} read its clips")
    if model.embeddings and predictor.backend_name != "torch":
        raise AffectkitError(f"The temporal model in {folder} reads the face model's embeddings: serve it with "
                             "--backend torch or auto.")


def _check_servable_fusion(meta: dict[str, Any], folder: str | Path, model_path: str | Path,
                           predictor: Predictor) -> None:
    """Refuse a fusion this server cannot feed one sample at a time, or whose face features another model gave."""
    from affectkit.multimodal.run import reads_per_person, require_face_model

    if reads_per_person(meta):
        raise AffectkitError(f"The fusion in {folder} reads features relative to each person's samples, which one "
                             "request cannot give: refit it with `affectkit fuse --no-person-relative` to serve it.")
    if "face" not in meta["modalities"]:
        return
    require_face_model(meta["face_model_sha256"], Path(model_path), f"The fusion in {folder}",
                       "serve that model with it")
    _check_detection(meta["detect"], predictor, f"The fusion in {folder} read its faces")


def _model_frames(read: VideoFaces, fps: float, reusable: bool, own_pass: Callable[[], FrameOutputs | None],
                  predictor: Predictor, max_frames: int, name: str, what: str) -> FrameOutputs | None:
    """The face model's outputs on the frames a temporal model reads at ``fps`` (the largest face of each): the
    faces ``read`` already holds (unsmoothed) where they are those frames and ``reusable``, else ``own_pass``
    over the video, bounded by ``max_frames`` (``what``: the model, for the message)."""
    if reusable and read.every == frame_step(read.frame_rate, fps):
        return served_frame_outputs([(index / read.frame_rate, faces) for index, faces in read.frames],
                                    predictor.class_names)
    if read.seconds * fps > max_frames:
        raise VideoError("too_long", f"{name}: more than {max_frames} frames for the {what}, which reads {fps:g} a "
                                     "second")
    try:
        return own_pass()
    except Reject as exc:
        raise VideoError("unreadable", exc.reason) from None


def _clip_verdict(model: TemporalModel, predictor: Predictor, path: Path, read: VideoFaces, max_frames: int,
                  name: str, explain_frames: bool = False) -> dict[str, Any]:
    """The temporal model's expression, probabilities, valence and arousal for the whole video; with
    ``explain_frames``, each frame's importance to them (:func:`affectkit.temporal.explain.frame_importance`)."""
    from affectkit.multimodal.fusion import verdict_of

    outputs = _model_frames(read, model.meta["fps"], not model.embeddings, lambda: model.read(predictor, path),
                            predictor, max_frames, name, "temporal model")
    if outputs is None:
        return {"status": "no face found"}
    row = model.predict([outputs], predictor.class_names).iloc[0]
    verdict = {"status": "ok", "frames": len(outputs.times),
               "methods": {t: k["method"] for t, k in model.meta["kept"].items()}} | verdict_of(row)
    if explain_frames:
        from affectkit.temporal.explain import frame_importance

        frames = frame_importance(model, name, outputs, list(predictor.class_names))
        kept = [c for c in ("time", "face_expression", "importance", "valence_pull", "arousal_pull") if c in frames]
        verdict["frame_importance"] = json.loads(frames[kept].to_json(orient="records"))  # NaN: null
    return verdict


def _frame_affect(model: ContinuousModel, predictor: Predictor, path: Path, read: VideoFaces, max_frames: int,
                  name: str) -> dict[str, Any]:
    """The temporal-frames model's valence and arousal of each frame it reads (the largest face)."""
    outputs = _model_frames(read, model.fps, True, lambda: model.read(predictor, path), predictor, max_frames, name,
                            "temporal-frames model")
    if outputs is None:
        return {"status": "no face found"}
    return {"status": "ok", "methods": model.methods,
            "frames": [{"time": float(t), "valence": float(v), "arousal": float(a)}
                       for t, (v, a) in zip(outputs.times, model.values(outputs))]}


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model_path, **app_options), host=host, port=port, log_level="info")
