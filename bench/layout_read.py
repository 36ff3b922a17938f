"""Reading a frame-level set: how fast ``read_dataset`` checks an Aff-Wild2-shaped tree (every annotated frame's
112-px aligned face is opened and decoded, its label and valence/arousal parsed), and what ``affwild2_frame_step``
saves. Aff-Wild2's expression sets hold about 1.2 million annotated frames, so frames/s says how long a first read
of the real set takes on this machine.

    python bench/layout_read.py                       # 20 videos x 1,000 frames; about a minute on 2 cores
    python bench/layout_read.py --videos 50 --frames 2000 --steps 1,10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from affectkit.data.reader import read_dataset
from affectkit.data.synthetic import render_face, sample_rng

HEADER_EXPR = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


def build_tree(root: Path, videos: int, frames: int) -> int:
    """Aff-Wild2's layout: one rendered face per video, written once a frame (JPEG, 112 px); returns the frames."""
    annotations = root / "annotations"
    for v in range(videos):
        video = f"video{v:03d}"
        split = "Validation_Set" if v % 5 == 0 else "Train_Set"
        face, _, _, _ = render_face(v % 7, sample_rng(3, v), 112)
        jpeg = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
        folder = root / "cropped_aligned" / video
        folder.mkdir(parents=True)
        for frame in range(1, frames + 1):
            # Each frame's own bytes (a changed comment), so no two frames are the same file.
            (folder / f"{frame:05d}.jpg").write_bytes(jpeg[:2] + b"\xff\xfe\x00\x06" + frame.to_bytes(4, "big")
                                                       + jpeg[2:])
        labels = "\n".join(str(v % 7) for _ in range(frames))
        va = "\n".join(f"{np.sin(f / 50):.3f},{np.cos(f / 70):.3f}" for f in range(frames))
        for task, header, body in (("EXPR_Classification_Challenge", HEADER_EXPR, labels),
                                   ("VA_Estimation_Challenge", "valence,arousal", va)):
            (annotations / task / split).mkdir(parents=True, exist_ok=True)
            (annotations / task / split / f"{video}.txt").write_text(f"{header}\n{body}\n")
    return videos * frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--steps", default="1,10", help="affwild2_frame_step values to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Aff-Wild2"
        total = build_tree(root, args.videos, args.frames)
        print(f"Aff-Wild2-shaped tree: {args.videos} videos x {args.frames} frames = {total:,} annotated frames")
        for step in (int(s) for s in args.steps.split(",")):
            start = time.perf_counter()
            index = read_dataset(root, progress=False, affwild2_frame_step=step)
            seconds = time.perf_counter() - start
            print(f"affwild2_frame_step={step}: {len(index.records):,} records, {len(index.rejected)} quarantined, "
                  f"{seconds:.1f} s ({len(index.records) / seconds:,.0f} records/s; "
                  f"{total / seconds:,.0f} annotated frames/s)")


if __name__ == "__main__":
    main()
