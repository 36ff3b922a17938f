"""HTTP API and demo page: ``POST /v1/predict`` with images, model info, health, Prometheus metrics.

Every upload is untrusted: the request size is bounded before the body is read, the pixel count is read from the
image header before decoding, the content is sniffed rather than trusting names or content types, and every
refusal is a JSON ``{"detail": "..."}`` with a 4xx status.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile

from affectkit.inference.images import DEFAULT_MAX_PIXELS, ImageError, decode_image
from affectkit.inference.predictor import BackendName, Predictor
from affectkit.serving.metrics import CONTENT_TYPE, ServiceMetrics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
STATUS_FOR_IMAGE_PROBLEM = {"empty": 400, "not_image": 422, "corrupt": 422, "too_large": 413}
PAGE_HEADERS = {  # the page loads nothing from elsewhere; say so to the browser
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}
PREDICT_BODY = {  # documents the multipart body in /docs, since the route reads the form itself to bound it
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        }}},
    }
}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


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


def _route_label(path: str, known: set[str]) -> str:
    """Known routes by name; anything else is pooled so random URLs cannot inflate the metric's label set."""
    if path in known:
        return path
    return "/static" if path.startswith("/static/") else "other"


def _decode_uploads(uploads: list[tuple[str, bytes]], max_pixels: int) -> list[np.ndarray]:
    try:
        return [decode_image(data, name=name, max_pixels=max_pixels) for name, data in uploads]
    except ImageError as exc:
        raise HTTPException(STATUS_FOR_IMAGE_PROBLEM[exc.kind], str(exc)) from None


def create_app(
    model_path: str | Path,
    api_key: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    detect: bool = True,
    max_files: int = 16,
    backend: BackendName = "auto",
    mc_samples: int = 0,
) -> FastAPI:
    """Load the model once and build the app. ``max_upload_bytes`` bounds a whole request, all files together."""
    predictor = Predictor(model_path, backend=backend, detect=detect, mc_samples=mc_samples)
    # One prediction at a time: the model already uses every core it is given, and memory stays predictable.
    model_lock = threading.Lock()
    metrics = ServiceMetrics(predictor.class_names)
    # Pillow's own bomb guard as a second line behind the explicit header check.
    Image.MAX_IMAGE_PIXELS = max_pixels

    app = FastAPI(title="affectkit", summary="Facial expression, valence and arousal from face photos.")
    app.state.predictor = predictor
    app.state.metrics = metrics

    def require_api_key(x_api_key: str | None = Header(default=None)) -> None:
        if api_key is None:
            return
        if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"})

    known_routes: set[str] = set()  # filled once every route exists

    @app.middleware("http")
    async def bound_and_observe(request: Request, call_next):
        start = time.perf_counter()
        route = _route_label(request.url.path, known_routes)
        try:
            response = _body_size_problem(request, max_upload_bytes) or await call_next(request)
        except Exception:
            metrics.observe_request(route, 500, time.perf_counter() - start)
            raise
        metrics.observe_request(route, response.status_code, time.perf_counter() - start)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(422, problems)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, f"internal error ({type(exc).__name__}); the server logged the details")

    def decode_and_predict(uploads: list[tuple[str, bytes]]) -> list[list[dict[str, Any]]]:
        images = _decode_uploads(uploads, max_pixels)  # outside the lock: requests decode in parallel
        with model_lock:
            return predictor.predict_images(images)

    @app.post("/v1/predict", dependencies=[Depends(require_api_key)], openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> dict[str, Any]:
        """Faces, expression probabilities, valence and arousal for each image in the multipart field ``files``."""
        async with request.form(max_files=max_files, max_fields=max_files) as form:  # closes the spooled files
            fields = form.getlist("files")
            if not fields:
                raise HTTPException(422, "no images: send one or more files in the multipart field 'files'")
            if not all(isinstance(f, UploadFile) for f in fields):
                raise HTTPException(422, "the field 'files' must hold file uploads, not text")
            uploads = [(f.filename or f"file {i + 1}", await f.read()) for i, f in enumerate(fields)]
        faces_per_image = await run_in_threadpool(decode_and_predict, uploads)
        metrics.observe_predictions(faces_per_image)
        return {"results": [
            {"filename": name, "faces": faces, "status": "ok" if faces else "no face found"}
            for (name, _), faces in zip(uploads, faces_per_image)
        ]}

    @app.get("/v1/model", dependencies=[Depends(require_api_key)])
    def model_info() -> dict[str, Any]:
        meta = predictor.meta
        return {
            "name": meta.get("display_name"),
            "model": meta.get("model"),
            "classes": predictor.class_names,
            "input_size": predictor.input_size,
            "temperature": meta.get("temperature"),
            "metrics": meta.get("metrics"),
            "backend": predictor.backend_name,
            "face_detection": predictor.detector.method if predictor.detector else None,
            "trained_on_synthetic_data": bool(meta.get("trained_on_synthetic_data")),
            "warning": predictor.warning,
        }

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


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model_path, **app_options), host=host, port=port, log_level="info")
