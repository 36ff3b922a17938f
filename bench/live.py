"""How fast `affectkit predict --camera` answers, and how far behind a camera it stays.

    python bench/live.py [--model best_X.safetensors] [--seconds 6] [--out bench/results/live.md]

A 640x480 clip of a face moving across the frame (the astronaut photo), answered frame by frame through
``Predictor.stream``: frames answered a second by each backend (PyTorch; the ONNX export) and face detector
(MTCNN, OpenCV's Haar cascade, none: the whole frame as the face). Then the same frames given by a simulated camera
at 30 frames a second: how many the model answered, how many it skipped to keep up, and how old the frame it
answered was when its answer came (capture to answer). Last, what recording the answered frames costs
(``predict --camera --annotate``: each frame annotated and written to an .mp4). Without ``--model``: an untrained
MobileNetV2 at 96 px, the recipe's network (speed does not depend on what the weights learnt).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import torch

CAMERA_FPS = 30.0


def _clip(folder: Path, frames: int) -> Path:
    from skimage import data as skdata

    image = skdata.astronaut()  # 512x512: a face in its upper middle
    path = folder / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), CAMERA_FPS, (640, 480))
    for i in range(frames):
        canvas = np.full((480, 640, 3), 80, np.uint8)
        shift = int(100 * i / max(frames - 1, 1))
        canvas[:, shift:shift + 512] = image[:480]
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _model(folder: Path) -> Path:
    from affectkit.config import Config
    from affectkit.models import build_model, save_model

    torch.manual_seed(0)
    config = Config(img_size=96, pretrained=False)
    return save_model(build_model("timm:mobilenetv2_100", config), folder / "best_MobileNetV2", config)


class SimulatedCamera:
    """The clip's frames, each given when a 30-fps camera would have it (and never before); records when."""

    def __init__(self, path: Path):
        self.capture = cv2.VideoCapture(str(path))
        self.start: float | None = None
        self.given = 0
        self.times: list[float] = []

    def read(self):
        ok, frame = self.capture.read()
        if not ok:
            return False, None
        self.start = self.start or time.monotonic()
        due = self.start + self.given / CAMERA_FPS
        time.sleep(max(0.0, due - time.monotonic()))
        self.times.append(time.monotonic())
        self.given += 1
        return True, frame

    def get(self, prop: int) -> float:
        return CAMERA_FPS

    def release(self) -> None:
        self.capture.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="A saved model (default: an untrained MobileNetV2 at 96 px).")
    parser.add_argument("--seconds", type=float, default=6.0, help="Length of the clip, at 30 frames a second.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from affectkit.inference.export import export_onnx
    from affectkit.inference.live import LiveRecording, live_faces
    from affectkit.inference.predictor import Predictor

    lines = [f"# Live prediction speed\n\n{time.strftime('%Y-%m-%d')}, {args.threads} threads, torch "
             f"{torch.__version__}, OpenCV {cv2.__version__}. `python bench/live.py` (a {args.seconds:g} s clip at "
             f"{CAMERA_FPS:g} frames a second, 640x480, one face moving across it).\n"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or _model(folder)
        onnx = export_onnx(model, out=folder / "model.onnx")
        clip = _clip(folder, int(args.seconds * CAMERA_FPS))
        lines += [f"Model: {model.name if args.model else 'an untrained MobileNetV2 at 96 px'}.\n",
                  "## The clip played through (every frame, in order)\n",
                  "| backend | detector | frames answered a second | ms a frame |", "|---|---|---:|---:|"]
        cases = [("torch", model, "mtcnn"), ("onnx", onnx, "mtcnn"), ("onnx", onnx, "haar"), ("onnx", onnx, None)]
        for backend, path, detector in cases:
            predictor = Predictor(path, backend=backend, detect=detector is not None,
                                  detector_method=detector or "auto", threads=args.threads)
            list(predictor.stream(clip, max_frames=3))  # warm: first calls allocate
            started = time.perf_counter()
            answered = sum(1 for _ in predictor.stream(clip))
            seconds = time.perf_counter() - started
            lines.append(f"| {backend} | {detector or 'none (whole frame)'} | {answered / seconds:.1f} | "
                         f"{1000 * seconds / answered:.1f} |")
        lines += ["", f"## A camera at {CAMERA_FPS:g} frames a second (simulated from the clip)\n",
                  "| backend | detector | frames answered | skipped to keep up | age of the answered frame, median "
                  "(ms) | 95th percentile (ms) |", "|---|---|---:|---:|---:|---:|"]
        for backend, path, detector in cases:
            predictor = Predictor(path, backend=backend, detect=detector is not None,
                                  detector_method=detector or "auto", threads=args.threads)
            camera = SimulatedCamera(clip)
            ages, lock = [], threading.Lock()
            for frame in live_faces(predictor, camera):
                with lock:
                    ages.append(1000 * (time.monotonic() - camera.times[frame.index]))
            skipped = camera.given - len(ages)
            lines.append(f"| {backend} | {detector or 'none (whole frame)'} | {len(ages)} of {camera.given} | "
                         f"{skipped} | {statistics.median(ages):.0f} | {np.percentile(ages, 95):.0f} |")
        lines += ["", "## Recording the answered frames (`--annotate`), the clip played through\n",
                  "| backend | detector | frames answered a second, not recorded | recorded | ms a frame to record |",
                  "|---|---|---:|---:|---:|"]
        for backend, path, detector in cases[1:]:
            predictor = Predictor(path, backend=backend, detect=detector is not None,
                                  detector_method=detector or "auto", threads=args.threads)
            list(predictor.stream(clip, max_frames=3))  # warm: first calls allocate
            rates = []
            for record in (False, True):
                recording = LiveRecording(folder / "recording.mp4", CAMERA_FPS) if record else None
                started, answered, spent = time.perf_counter(), 0, 0.0
                for frame in predictor.stream(clip):
                    answered += 1
                    if recording is not None:
                        before = time.perf_counter()
                        recording.add(frame)
                        spent += time.perf_counter() - before
                if recording is not None:
                    recording.close()
                rates.append(answered / (time.perf_counter() - started))
            lines.append(f"| {backend} | {detector or 'none (whole frame)'} | {rates[0]:.1f} | {rates[1]:.1f} | "
                         f"{1000 * spent / answered:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
