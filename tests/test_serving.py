"""The HTTP API: predictions, refusal of bad uploads with JSON errors, API keys and Prometheus metrics."""

from __future__ import annotations

import base64
import re
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from skimage import data as skdata

from affectkit.config import CLASS_NAMES
from affectkit.errors import AffectkitError
from affectkit.inference.predictor import Predictor
from affectkit.serving import create_app


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client(model_path) -> TestClient:
    return TestClient(create_app(model_path))


def encode(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(skdata.astronaut(), ".jpg")


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG signature and IHDR declaring a huge image, with a tiny IDAT: a decompression-bomb shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def post(client: TestClient, *files: tuple[str, bytes, str], headers: dict | None = None):
    return client.post("/v1/predict", files=[("files", f) for f in files], headers=headers)


def assert_valid_prediction(response) -> list[dict]:
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["status"] == "ok"
    for face in result["faces"]:
        assert list(face["probabilities"]) == list(CLASS_NAMES)
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-5
        assert len(face["box"]) == 4 and face["expression"] in CLASS_NAMES
    return result["faces"]


def test_valid_image_gets_a_prediction(client, photo):
    faces = assert_valid_prediction(post(client, ("astronaut.jpg", photo, "image/jpeg")))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0]["box"]
    assert 150 < (x1 + x2) / 2 < 300 and 60 < (y1 + y2) / 2 < 180


def test_several_files_and_a_faceless_one(client, photo):
    blank = encode(np.full((120, 160, 3), 210, np.uint8))
    response = post(client, ("a.jpg", photo, "image/jpeg"), ("blank.png", blank, "image/png"))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "blank.png"]
    assert results[1] == {"filename": "blank.png", "faces": [], "status": "no face found"}


def test_a_request_may_send_face_crops_to_read_whole(client, model_path, photo):
    blank = encode(np.full((120, 160, 3), 210, np.uint8))
    files = [("files", ("blank.png", blank, "image/png")), ("files", ("a.jpg", photo, "image/jpeg"))]
    results = client.post("/v1/predict?detect=false", files=files).json()["results"]
    assert [(r["status"], len(r["faces"]), r["faces"][0]["box"]) for r in results] == [("ok", 1, None)] * 2
    # The same crop the CLI reads with --no-detect gives the same probabilities.
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    whole = Predictor(model_path, detect=False).predict_images([decoded])[0][0]
    assert results[1]["faces"][0]["probabilities"] == pytest.approx(whole["probabilities"], abs=1e-5)
    undetecting = TestClient(create_app(model_path, detect=False))
    refused = undetecting.post("/v1/predict?detect=true", files=files)
    assert refused.status_code == 422 and "--no-detect" in refused.json()["detail"]
    assert undetecting.post("/v1/predict", files=files).status_code == 200


@pytest.mark.parametrize(
    ("upload", "status", "message"),
    [
        (("notes.jpg", b"just some text, not pixels", "image/jpeg"), 422, "not an image"),
        (("empty.png", b"", "image/png"), 400, "empty"),
        (("bomb.png", png_header_only(20000, 20000), "image/png"), 413, "exceed"),
        ("truncated", 422, "truncated"),
    ],
)
def test_bad_uploads_are_refused_and_the_server_keeps_serving(client, photo, upload, status, message):
    if upload == "truncated":
        upload = ("cut.jpg", photo[: len(photo) // 2], "image/jpeg")
    response = post(client, upload)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert_valid_prediction(post(client, ("again.jpg", photo, "image/jpeg")))


def test_missing_body_and_unframed_bodies_get_json_errors(client):
    response = client.post("/v1/predict")
    assert response.status_code == 422 and "files" in response.json()["detail"]
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    chunked = client.post("/v1/predict", content=iter([b"--x\r\n"]), headers=multipart)
    assert chunked.status_code == 411 and "Content-Length" in chunked.json()["detail"]
    text_field = client.post("/v1/predict", data={"files": "hello"})
    assert text_field.status_code == 422 and "file uploads" in text_field.json()["detail"]


def test_a_json_body_of_base64_images_is_read_as_the_files_are(client, photo):
    """A browser's or a mobile app's code sends images as base64 in JSON (a canvas's data: URL, say)."""
    by_file = assert_valid_prediction(post(client, ("photo.jpg", photo, "image/jpeg")))
    encoded = base64.b64encode(photo).decode()
    response = client.post("/v1/predict", json={"images": [encoded, f"data:image/jpeg;base64,{encoded}"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["images[0]", "images[1]"]
    for result in results:
        assert result["faces"][0]["probabilities"] == pytest.approx(by_file[0]["probabilities"], abs=1e-6)
    for body, status, problem in [
        ({"images": [encoded, "not base64!"]}, 422, "images[1] is not base64"),
        ({"images": []}, 422, 'a JSON body holds {"images": [...]}'),
        ({"image": encoded}, 422, 'a JSON body holds {"images": [...]}'),
        ({"images": [12]}, 422, "images[0] is not a string of base64"),
        ({"images": [base64.b64encode(b"hello").decode()]}, 422, "images[0]: not an image"),
    ]:
        refused = client.post("/v1/predict", json=body)
        assert refused.status_code == status and problem in refused.json()["detail"], refused.text
    broken = client.post("/v1/predict", content=b"{images", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422 and "the body is not JSON" in broken.json()["detail"]


def test_request_size_limit(model_path, photo):
    small = TestClient(create_app(model_path, detect=False, max_upload_bytes=20_000))
    response = post(small, ("big.jpg", photo, "image/jpeg"))
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]
    tiny = encode(np.full((32, 32, 3), 100, np.uint8))
    assert post(small, ("tiny.png", tiny, "image/png")).status_code == 200


def test_api_key(model_path, photo):
    keyed = TestClient(create_app(model_path, api_key="s3cret", detect=False))
    upload = ("a.jpg", photo, "image/jpeg")
    for headers in (None, {"X-API-Key": "wrong"}):
        response = post(keyed, upload, headers=headers)
        assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]
    assert keyed.get("/v1/model").status_code == 401
    assert keyed.get("/healthz").json() == {"status": "ok"}
    response = post(keyed, upload, headers={"X-API-Key": "s3cret"})
    assert response.status_code == 200 and response.json()["results"][0]["faces"][0]["box"] is None


def test_pages_of_allowed_origins_may_call_the_api_from_a_browser(model_path, client):
    """A front end served elsewhere (http://localhost:3000) calls the API from the browser: the browser asks first
    (a preflight naming the X-API-Key header) and reads the answer only where the server names its origin."""
    app_origin, stranger = "http://localhost:3000", "https://elsewhere.example"
    open_to_app = TestClient(create_app(model_path, api_key="s3cret", detect=False, allowed_origins=[app_origin]))
    preflight = open_to_app.options("/v1/predict", headers={
        "Origin": app_origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == app_origin
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    answer = open_to_app.get("/v1/model", headers={"Origin": app_origin, "X-API-Key": "s3cret"})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == app_origin
    refused = open_to_app.get("/v1/model", headers={"Origin": app_origin})  # the key still counts
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == app_origin
    assert "access-control-allow-origin" not in open_to_app.get("/healthz", headers={"Origin": stranger}).headers
    # Without --allow-origin, no page of another origin may read an answer.
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": app_origin}).headers


def test_only_pages_the_server_allows_may_open_the_stream(model_path, photo):
    """A page of any origin may open a WebSocket and read what comes back (CORS does not cover it): the stream
    refuses the handshake of a page from elsewhere unless --allow-origin names it; programs send no Origin."""
    from starlette.websockets import WebSocketDisconnect

    app_origin, stranger = "http://localhost:3000", "https://elsewhere.example"
    for allowed, origin, opens in [
        (None, None, True),  # a program
        (None, "http://testserver", True),  # the server's own page (TestClient's host is testserver)
        (None, "https://emotions.example", True),  # its page behind a reverse proxy that forwards the host
        (None, stranger, False),
        ([app_origin], app_origin, True),
        ([app_origin], stranger, False),
        (["*"], stranger, True),
    ]:
        client = TestClient(create_app(model_path, detect=False, allowed_origins=allowed))
        headers = ({} if origin is None else {"Origin": origin}) | {"X-Forwarded-Host": "emotions.example"}
        if opens:
            with client.websocket_connect("/v1/stream", headers=headers) as ws:
                ws.send_bytes(photo)
                assert len(ws.receive_json()["faces"]) == 1, (allowed, origin)
        else:
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/v1/stream", headers=headers):
                    pass
            assert refused.value.code == 1008 and "--allow-origin" in refused.value.reason, (allowed, origin)


@pytest.mark.parametrize("origin", ["http://localhost:3000/", "localhost:3000", "https://app.example.com/ui"])
def test_an_origin_no_browser_sends_is_refused_by_name(model_path, origin):
    with pytest.raises(AffectkitError, match=re.escape(repr(origin)) + ".*no path or trailing slash"):
        create_app(model_path, allowed_origins=[origin])


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_predictions_per_class(client, photo):
    before = client.get("/metrics").text
    faces = assert_valid_prediction(post(client, ("a.jpg", photo, "image/jpeg")))
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    predicted = faces[0]["expression"]
    for name in CLASS_NAMES:
        labels = f'{{class="{name}"}}'
        counted = [metric(text, "affectkit_predicted_class_total", labels) for text in (before, after)]
        assert counted[1] - counted[0] == (1 if name == predicted else 0)
    assert metric(after, "affectkit_faces_total") - metric(before, "affectkit_faces_total") == 1
    ok_requests = '{route="/v1/predict",status="200"}'
    assert metric(after, "affectkit_requests_total", ok_requests) >= 1
    assert 'affectkit_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}' in after


def test_model_info_and_page(client, model_path):
    info = client.get("/v1/model").json()
    assert info["classes"] == list(CLASS_NAMES) and info["input_size"] == 64 and info["backend"] == "torch"
    assert info["face_margin"] == 0.2  # a model saved without its training faces' framing: the fixed fifth
    assert TestClient(create_app(model_path, face_margin=0.05)).get("/v1/model").json()["face_margin"] == 0.05
    page = client.get("/")
    assert page.status_code == 200 and 'id="status"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_monte_carlo_dropout_uncertainty_is_returned(model_path, photo):
    uncertain = TestClient(create_app(model_path, mc_samples=4))
    (face,) = assert_valid_prediction(post(uncertain, ("face.jpg", photo, "image/jpeg")))
    assert face["entropy"] > 0 and face["valence_std"] > 0 and face["arousal_std"] > 0


def video_bytes(tmp_path, frames: list[np.ndarray], fps: float, suffix: str = ".avi") -> bytes:
    """RGB frames as a video file's bytes: MJPG AVI, or MPEG-4 in an MP4 container."""
    path = tmp_path / f"clip{suffix}"
    codec = "mp4v" if suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, frames[0].shape[1::-1])
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def post_video(client: TestClient, name: str, data: bytes, **params):
    return client.post("/v1/predict-video", files={"file": (name, data, "video/mp4")}, params=params)


@pytest.fixture(scope="module")
def walking_astronaut(tmp_path_factory) -> list[np.ndarray]:
    """Twelve frames of the astronaut's photo moving a few pixels each frame: one face to follow."""
    image = skdata.astronaut()
    return [np.roll(image, 3 * i, axis=1) for i in range(12)]


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_video_gets_its_faces_followed_across_frames(client, walking_astronaut, tmp_path, suffix):
    response = post_video(client, f"walk{suffix}", video_bytes(tmp_path, walking_astronaut, 8.0, suffix), fps=4)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["filename"], result["every"], result["frames_read"]) == (f"walk{suffix}", 2, 6)
    assert result["seconds"] == pytest.approx(1.5)  # 12 frames at 8 a second
    assert [f["frame"] for f in result["frames"]] == [0, 2, 4, 6, 8, 10]
    assert [f["time"] for f in result["frames"]] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25])
    assert all(len(f["faces"]) == 1 and f["faces"][0]["track"] == 0 for f in result["frames"])
    (track,) = result["tracks"]
    assert (track["track"], track["frames"], track["first_frame"], track["last_frame"]) == (0, 6, 0, 10)
    mean_happy = np.mean([f["faces"][0]["probabilities"]["Happy"] for f in result["frames"]])
    assert track["probabilities"]["Happy"] == pytest.approx(mean_happy)
    assert track["expression"] == max(track["probabilities"], key=track["probabilities"].get)
    assert "clip" not in result  # no temporal model on this server
    refused = post_video(client, "walk.avi", video_bytes(tmp_path, walking_astronaut, 8.0), explain_frames="true")
    assert refused.status_code == 422 and "start the server with --temporal" in refused.json()["detail"]

    smoothed = post_video(client, "walk.avi", video_bytes(tmp_path, walking_astronaut, 8.0), fps=4, smooth=0.2)
    raw_valence = [f["faces"][0]["valence"] for f in result["frames"]]
    smooth_valence = [f["faces"][0]["valence"] for f in smoothed.json()["frames"]]
    assert smooth_valence[0] == pytest.approx(raw_valence[0], abs=0.02)
    assert np.std(np.diff(smooth_valence)) <= np.std(np.diff(raw_valence)) + 1e-6


def test_bad_videos_are_refused_with_the_reason(model_path, walking_astronaut, photo, tmp_path):
    client = TestClient(create_app(model_path, detect=False, max_video_frames=4, max_video_bytes=2_000_000))
    video = video_bytes(tmp_path, walking_astronaut[:6], 8.0)
    cases = [
        (post_video(client, "photo.jpg", photo), 422, "photo.jpg: not a video affectkit reads"),
        (post_video(client, "list.mp4", b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.com/a.ts\n"), 422,
         "not a video affectkit reads"),
        (post_video(client, "empty.mp4", b""), 400, "empty.mp4: the file is empty"),
        (post_video(client, "cut.avi", video[:300]), 422, "cut.avi: "),
        (post_video(client, "long.avi", video, fps=8), 413, "long.avi: more than 4 frames to read at 8 a second"),
        (post_video(client, "a.avi", video, fps=0), 422, "fps must be in (0, 30]"),
        (post_video(client, "a.avi", video, smooth=2), 422, "smooth must be in (0, 1]"),
        (client.post("/v1/predict-video", data={"file": "hello"}), 422, "a file upload, not text"),
        (client.post("/v1/predict-video"), 422, "send one file in the multipart field 'file'"),
        (post_video(client, "big.avi", b"RIFF" + bytes(2_100_000)), 413, "exceeds the limit"),
    ]
    for response, status, message in cases:
        assert response.status_code == status and message in response.json()["detail"], response.text
    assert post_video(client, "short.avi", video, fps=2).json()["frames_read"] == 2
    assert client.get("/v1/model").json()["temporal"] is None


def test_the_stream_follows_and_smooths_faces_across_live_frames(model_path, walking_astronaut, photo):
    from starlette.websockets import WebSocketDisconnect

    client = TestClient(create_app(model_path, api_key="s3cret", max_upload_bytes=2_000_000))
    frames = [encode(f, ".jpg") for f in walking_astronaut[:4]]
    with client.websocket_connect("/v1/stream?smooth=0.3", headers={"X-API-Key": "s3cret"}) as ws:
        answers = []
        for i, frame in enumerate(frames):
            ws.send_bytes(frame)
            answers.append(ws.receive_json())
            if i == 1:  # a bad frame and a text message in between: answered, and the stream goes on
                ws.send_bytes(b"not a picture")
                bad = ws.receive_json()
                assert bad["frame"] == 2 and bad["error"].startswith("frame 2: ") and "faces" not in bad
                ws.send_text("hello")
                assert ws.receive_json()["error"].startswith("frame 3 is not base64")
    assert [a["frame"] for a in answers] == [0, 1, 4, 5]
    assert all(len(a["faces"]) == 1 and a["faces"][0]["track"] == 0 for a in answers)
    # Smoothing with weight 0.3 for the newest frame: the second frame's valence is 0.3 of its own and 0.7 of the
    # first's, so it lies between the first frame's raw value and the second's.
    raw = TestClient(create_app(model_path))
    alone = [post(raw, ("f.jpg", f, "image/jpeg")).json()["results"][0]["faces"][0]["valence"] for f in frames[:2]]
    assert answers[0]["faces"][0]["valence"] == pytest.approx(alone[0], abs=1e-4)
    assert answers[1]["faces"][0]["valence"] == pytest.approx(0.3 * alone[1] + 0.7 * alone[0], abs=1e-4)

    for url, headers, message in [("/v1/stream", {}, "missing or wrong API key"),
                                  ("/v1/stream?api_key=s3cret&smooth=3", {}, "smooth must be in (0, 1]")]:
        with client.websocket_connect(url, headers=headers) as ws:
            assert message in ws.receive_json()["error"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
    with client.websocket_connect("/v1/stream?api_key=s3cret") as ws:  # a browser's way to give the key
        ws.send_bytes(photo)
        assert len(ws.receive_json()["faces"]) == 1
        ws.send_text("data:image/jpeg;base64," + base64.b64encode(photo).decode())  # a canvas's toDataURL()
        assert len(ws.receive_json()["faces"]) == 1
        ws.send_bytes(b"x" * 2_000_001)
        assert "exceeds the limit of 2,000,000 bytes" in ws.receive_json()["error"]


def test_serve_starts_with_the_apps_own_defaults():
    """`affectkit serve` spells its defaults out (the command line starts without importing the server); they must
    stay those of create_app, which the Python API and every test serve with."""
    import inspect

    from affectkit.cli.infer import serve

    cli, app = inspect.signature(serve).parameters, inspect.signature(create_app).parameters
    as_app = {"max_upload_mb": ("max_upload_bytes", lambda mb: int(mb * 1024 * 1024)),
              "max_video_mb": ("max_video_bytes", lambda mb: int(mb * 1024 * 1024)),
              "no_detect": ("detect", lambda off: not off), "allow_origin": ("allowed_origins", lambda given: given)}
    compared = 0
    for name, option in cli.items():
        key, convert = as_app.get(name, (name, lambda value: value))
        if key in app:
            assert convert(option.default) == app[key].default, name
            compared += 1
    assert compared >= 16


def test_a_busy_server_refuses_more_requests_than_it_takes_at_once_and_recovers(model_path, photo, monkeypatch):
    """Requests beyond --max-pending get 503 with Retry-After at once, not a place in an unbounded queue."""
    import threading

    app = create_app(model_path, detect=False, max_pending=2)
    client = TestClient(app)
    release, inside = threading.Event(), threading.Semaphore(0)
    predict_batch = Predictor.predict_batch

    def held(self, images, *args, **kwargs):  # the model holds the first request until released
        inside.release()
        release.wait(30)
        return predict_batch(self, images, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict_batch", held)
    upload = ("a.jpg", photo, "image/jpeg")
    answers = []
    workers = [threading.Thread(target=lambda: answers.append(post(client, upload))) for _ in range(2)]
    for worker in workers:
        worker.start()
    assert inside.acquire(timeout=30)  # one with the model, the other waiting for it
    deadline = time.monotonic() + 30
    while app.state.metrics.pending.value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = post(client, upload)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "busy: 2 requests are with the model already" in refused.json()["detail"]
    assert client.get("/healthz").status_code == 200  # the rest of the API still answers
    assert "affectkit_model_requests_in_progress 2" in client.get("/metrics").text
    release.set()
    for worker in workers:
        worker.join(30)
    assert [answer.status_code for answer in answers] == [200, 200]
    assert app.state.metrics.pending.value == 0 and post(client, upload).status_code == 200


@pytest.mark.parametrize("limit", ["max_upload_bytes", "max_pixels", "max_video_bytes", "max_video_frames",
                                   "max_files", "max_pending"])
def test_a_limit_that_would_refuse_every_request_is_refused_at_start_up(model_path, limit):
    with pytest.raises(AffectkitError, match=rf"{limit}.* is 0: a limit must be at least 1"):
        create_app(model_path, **{limit: 0})


def test_serve_refuses_a_port_no_socket_has(model_path):
    from typer.testing import CliRunner

    from affectkit.cli import app

    done = CliRunner().invoke(app, ["serve", str(model_path), "--port", "99999"])
    assert done.exit_code == 2 and "--port" in done.output and "Traceback" not in done.output
