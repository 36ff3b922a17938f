"""Load-test ``affectkit serve`` on 127.0.0.1: N requests from C concurrent clients; prints req/s, p50, p99, errors.

    python bench/serve_load.py [--model best_X.safetensors] [--requests 200] [--concurrency 8] [--no-detect]
                               [--video-seconds 10 --video-requests 5] [--state-dir]

With --video-seconds, also the latency of ``POST /v1/predict-video`` on a 25 fps video of that length, read at 4
frames a second, one request at a time. With --state-dir, the server keeps its monitoring state in a SQLite file
(``serve --state-dir``), so the cost of writing every face served shows.

Without --model a fresh, untrained 64 px custom CNN is used (speed does not depend on the weights' values). The
server runs in its own process so that client threads do not compete with it for the interpreter lock.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"
SERVER = """
import sys, torch
from affectkit.serving import serve
torch.set_num_threads(int(sys.argv[4]))
serve(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), detect=sys.argv[3] == "1", state_dir=sys.argv[5] or None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def fresh_model(directory: Path) -> Path:
    from affectkit.config import Config
    from affectkit.models import build_model, save_model

    cfg = Config(img_size=64)
    return save_model(build_model("custom_cnn", cfg), directory / "best_CustomCNN", cfg)


def test_image() -> bytes:
    import cv2
    from skimage import data

    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return jpeg.tobytes()


def test_video(seconds: float, directory: Path) -> bytes:
    """The astronaut's photo drifting across the frame for ``seconds`` at 25 frames a second (MPEG-4 in MP4)."""
    import cv2
    from skimage import data

    path = directory / "drift.mp4"
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, image.shape[1::-1])
    for i in range(int(seconds * 25)):
        writer.write(np.roll(image, 2 * i, axis=1))
    writer.release()
    return path.read_bytes()


def video_latencies(url: str, video: bytes, requests: int) -> tuple[list[float], int]:
    """Latencies (s) of the requests, and the frames the server read of the video."""
    latencies, frames_read = [], 0
    with httpx.Client(timeout=600) as client:
        for _ in range(requests):
            start = time.perf_counter()
            response = client.post(f"{url}/v1/predict-video", params={"fps": 4},
                                   files={"file": ("drift.mp4", video, "video/mp4")})
            if response.status_code != 200:
                raise SystemExit(f"video request failed: {response.status_code} {response.text}")
            latencies.append(time.perf_counter() - start)
            frames_read = response.json()["frames_read"]
    return latencies, frames_read


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("server did not come up in time")


def run_load(url: str, image: bytes, requests: int, concurrency: int) -> tuple[list[float], int, float]:
    """Latencies (s) of successful requests, error count, wall time."""
    local = threading.local()

    def one(_: int) -> float | None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        start = time.perf_counter()
        try:
            response = local.client.post(f"{url}/v1/predict", files={"files": ("a.jpg", image, "image/jpeg")})
        except httpx.HTTPError:
            return None
        return time.perf_counter() - start if response.status_code == 200 else None

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies = [r for r in results if r is not None]
    return latencies, len(results) - len(latencies), wall


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="saved model (default: a fresh 64 px custom CNN)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--server-threads", type=int, default=2, help="torch threads in the server")
    parser.add_argument("--no-detect", action="store_true", help="skip face detection in the server")
    parser.add_argument("--video-seconds", type=float, default=0, help="also time /v1/predict-video on such a video")
    parser.add_argument("--video-requests", type=int, default=5)
    parser.add_argument("--state-dir", action="store_true", help="keep the monitoring state in a SQLite file")
    args = parser.parse_args()
    video_ms: list[float] = []
    frames = 0

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or fresh_model(Path(tmp))
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(model), str(port), "0" if args.no_detect else "1",
             str(args.server_threads), str(Path(tmp) / "state") if args.state_dir else ""],
            env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(url, server)
            image = test_image()
            run_load(url, image, requests=min(8, args.requests), concurrency=1)  # warm-up, not counted
            latencies, errors, wall = run_load(url, image, args.requests, args.concurrency)
            if args.video_seconds:
                video = test_video(args.video_seconds, Path(tmp))
                video_latencies(url, video, 1)  # warm-up
                seconds, frames = video_latencies(url, video, args.video_requests)
                video_ms = [v * 1000 for v in seconds]
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    ms = [v * 1000 for v in latencies]
    print(f"{args.requests} requests, {args.concurrency} clients, detection {'off' if args.no_detect else 'on'}"
          + (", state kept in SQLite" if args.state_dir else ""))
    print(f"throughput: {args.requests / wall:.1f} req/s")
    if ms:
        print(f"latency: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
    print(f"errors: {errors}")
    if video_ms:
        print(f"video: {args.video_seconds:g} s at 25 fps, {frames} frames read (about 4 a second): p50 "
              f"{percentile(video_ms, 50):.0f} ms ({frames / percentile(video_ms, 50) * 1000:.0f} frames/s), max "
              f"{max(video_ms):.0f} ms over {len(video_ms)} requests")


if __name__ == "__main__":
    main()
