"""The demo page in headless Chromium against the real server: upload a face and see it drawn; stream the camera."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
import torch
from skimage import data as skdata


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(os.environ.get("AFFECTKIT_SCREENSHOT", "/tmp/serve_page.png"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, **options) -> Iterator[str]:
    import uvicorn

    from affectkit.serving import create_app

    torch.set_num_threads(1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model, **options), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        pytest.fail("server did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def browser_page(*extra_args: str) -> Iterator[Any]:
    """A page of headless Chromium (``extra_args`` added to its command line), closed with the browser after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(extra_args))
        try:
            yield browser.new_page(viewport={"width": 1100, "height": 800})
        finally:
            browser.close()


@contextlib.contextmanager
def answered_page(url: str, photo: Path) -> Iterator[Any]:
    """A browser page of the server at ``url`` that has sent ``photo`` and shown the answer."""
    from playwright.sync_api import expect

    with browser_page() as page:
        page.goto(url)
        page.set_input_files("#file", str(photo))
        expect(page.locator("#status")).to_contain_text("done", timeout=30_000)
        yield page


@pytest.fixture(scope="module")
def server_url(model_path) -> Iterator[str]:
    with serving(model_path) as url:
        yield url


@pytest.fixture
def face_photo(tmp_path) -> Path:
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_page_predicts_and_draws(server_url, face_photo):
    from playwright.sync_api import expect

    with browser_page() as page:
        outside = []
        page.on("request", lambda r: outside.append(r.url) if r.url.startswith("http") and not
                r.url.startswith(server_url) else None)
        page.goto(server_url)
        page.set_input_files("#file", str(face_photo))
        # A locator assertion polls without eval(), which the page's Content-Security-Policy forbids.
        expect(page.locator("#status")).to_contain_text("done", timeout=30_000)
        assert page.text_content("#status") == "done: 1 face(s)"
        drawn = page.evaluate("""() => {
            const c = document.querySelector('#canvas');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 0) lit++;
            return {width: c.width, lit};
        }""")
        assert drawn["width"] == 512 and drawn["lit"] > 0.5 * 512 * 512
        assert page.locator("#faces .bar-row").count() == 8
        assert page.locator("#circumplex .dot").count() == 1
        # The server's health under the page: the faces it has served so far, no report of the truth yet.
        expect(page.locator("#monitor")).to_contain_text("reported truth: no reports yet")
        assert "output drift: this model carries no reference profile" in page.text_content("#monitor")
        assert outside == [], f"the page fetched from elsewhere: {outside}"
        page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_page_streams_the_camera_and_stops(server_url):
    """Chromium's stand-in camera (a moving test pattern, no face) streamed over the WebSocket: frames are answered
    and drawn one after the other until the camera is stopped."""
    from playwright.sync_api import expect

    fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    with browser_page(*fake_camera) as page:
        page.goto(server_url)
        page.click("#camera")
        expect(page.locator("#status")).to_have_text(re.compile(r"camera: frame ([3-9]|\d\d+), "), timeout=60_000)
        assert page.text_content("#camera") == "Stop the camera"
        # The canvas starts blank (all zeros): lit pixels are the camera's frame, drawn.
        lit, area = page.evaluate("""() => {
            const c = document.querySelector('#canvas');
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let lit = 0;
            for (let i = 0; i < px.length; i += 4) if (px[i] + px[i + 1] + px[i + 2] > 0) lit++;
            return [lit, c.width * c.height];
        }""")
        assert lit > 0.5 * area
        page.click("#camera")
        expect(page.locator("#status")).to_contain_text("camera stopped after", timeout=10_000)
        assert page.text_content("#camera") == "Use the camera"


@pytest.mark.parametrize("kind", ["valence/arousal", "expression"])
def test_page_shows_only_what_the_model_predicts(kind, tmp_path, face_photo):
    """A model trained on faces without a class: the page labels its faces with valence and arousal, no bars. One
    trained on faces without valence/arousal: bars (of the classes it learnt), and no point on the circumplex."""
    from affectkit.config import Config
    from affectkit.models import build_model, save_model

    config = Config(img_size=64)
    model = build_model("custom_cnn", config)
    if kind == "valence/arousal":
        model.set_output_classes([False] * 8)
    else:  # and without Contempt, as FER2013 and RAF-DB
        model.valence_arousal_trained.fill_(False)
        model.set_output_classes([True] * 7 + [False])
    with serving(save_model(model, tmp_path / "best_CustomCNN", config)) as url, answered_page(url, face_photo) as page:
        if kind == "valence/arousal":
            assert page.text_content("#faces h3") == "Face 1: valence/arousal model"
            assert page.locator("#faces .bar-row").count() == 0
            assert page.locator("#circumplex .dot").count() == 1
            assert "valence" in page.text_content("#faces .va")
        else:
            assert page.locator("#faces .bar-row").count() == 7  # no bar for the class it never learnt
            assert page.text_content("#faces .unlearnt") == "not learnt (absent from its training data): Contempt"
            assert page.locator("#circumplex .dot").count() == 0
            assert "expressions only" in page.text_content("#circumplex")
            assert page.text_content("#faces .va") == "no valence/arousal (an expression model)"


def test_page_marks_a_face_the_server_abstains_on(model_path, face_photo):
    with serving(model_path, min_confidence=1.0) as url, answered_page(url, face_photo) as page:  # every face below it
        assert page.text_content("#faces h3").startswith("Face 1: unsure, perhaps ")


def test_page_answers_for_a_photo_the_browser_cannot_show(model_path):
    """Chromium shows no HEIC (iPhones' photos), which the server reads: the faces are listed, the photo not drawn."""
    from playwright.sync_api import expect

    with serving(model_path, detect=False) as url, browser_page() as page:
        page.goto(url)
        page.set_input_files("#file", str(Path(__file__).parent / "data" / "face.heic"))
        expect(page.locator("#status")).to_contain_text("done", timeout=30_000)
        assert page.text_content("#status") == ("done: 1 face(s); this browser cannot display the photo, so it "
                                                "is not drawn")
        assert page.locator("#faces .bar-row").count() == 8 and page.locator("#circumplex .dot").count() == 1


def test_page_shows_where_the_model_looks(server_url, face_photo):
    """With "show where it looks" ticked, the photo goes to /v1/explain and each face is listed with its map; choosing
    another method maps the photo shown again."""
    from playwright.sync_api import expect

    with browser_page() as page:
        routes = []
        page.on("request", lambda r: routes.append(r.url.removeprefix(server_url)) if r.method == "POST" else None)
        page.goto(server_url)
        page.check("#explain")
        page.set_input_files("#file", str(face_photo))
        expect(page.locator("#status")).to_contain_text("done", timeout=30_000)
        assert routes == ["/v1/explain?method=gradcam"]
        assert page.locator("#faces .bar-row").count() == 8  # the answer as /v1/predict gives it, and the map
        caption = page.locator("#faces .explanation figcaption")
        expect(caption).to_have_text(re.compile(r"evidence for \w+ \(Grad-CAM\)"))
        # The map is a data: URL the page's Content-Security-Policy lets it show.
        loaded = page.evaluate("() => document.querySelector('#faces .explanation img').naturalWidth")
        assert loaded == 64  # the model's input size
        page.select_option("#explain-method", "occlusion")  # the photo shown is asked again, mapped otherwise
        expect(caption).to_have_text(re.compile(r"evidence for \w+ \(occlusion\)"), timeout=30_000)
        assert routes[-1] == "/v1/explain?method=occlusion"
