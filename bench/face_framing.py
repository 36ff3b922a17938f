"""Serving a model at the framing its training faces had: does cropping detected faces by the measured margin help?

A model learns faces framed as its data set frames them (a FER2013 face fills its 48 px frame, an AffectNet crop adds
a tenth of its box on each side, a CK+ frame shows the whole head), while ``predict`` and ``serve`` crop the faces a
detector finds in photos. Training now measures that framing (the median margin around the detector's box over a
sample of training faces) and stores it with the model; the predictor crops at it instead of a fixed 20%.

The proxy: the demo faces (whole images, as a data set of face crops gives them) train a custom CNN with the demo
profile; new demo faces are then pasted, at random sizes and places, into larger "photos" with a plain or noisy
background, and predicted through the detector at the fixed margin and at the measured one. Only the crop differs
between the two rows (same model, same detections).

    python bench/face_framing.py --n 1600 --photos 300 --out bench/results/face_framing.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import affectkit
from affectkit.data.synthetic import make_demo_dataset, render_face
from affectkit.inference.faces import DEFAULT_MARGIN
from affectkit.models.io import read_metadata


def photos(count: int, seed: int) -> list[tuple[np.ndarray, int, tuple[int, int, int, int]]]:
    """(photo, expression, where the face was pasted) for ``count`` new demo faces of 96-180 px in 360x280 photos."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        label = int(rng.integers(0, 7))
        side = int(rng.integers(96, 181))
        face, *_ = render_face(label, rng, side)
        photo = np.full((280, 360, 3), rng.integers(60, 200), np.uint8)
        if rng.random() < 0.5:
            photo = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
        x, y = int(rng.integers(0, 360 - side)), int(rng.integers(0, 280 - side))
        photo[y:y + side, x:x + side] = face
        out.append((photo, label, (x, y, x + side, y + side)))
    return out


def accuracy(predictor, shots) -> tuple[float, int]:
    """Accuracy over the photos where the detector found the pasted face (the found face nearest its centre)."""
    right = found = 0
    for photo, label, (x1, y1, x2, y2) in shots:
        faces = predictor.predict(photo)
        inside = [f for f in faces if x1 <= (f.box[0] + f.box[2]) / 2 <= x2 and y1 <= (f.box[1] + f.box[3]) / 2 <= y2]
        if inside:
            found += 1
            right += inside[0].expression == predictor.class_names[label]
    return right / max(found, 1), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1600, help="demo faces to train on")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the table here too (markdown)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_demo_dataset(Path(tmp) / "faces", n=args.n, seed=args.seed)
        start = time.perf_counter()
        model = affectkit.train("custom_cnn", data, Path(tmp) / "run", quiet=True)
        trained_s = time.perf_counter() - start
        meta = read_metadata(model)
        shots = photos(args.photos, args.seed + 1)
        predictor = affectkit.load(model)
        measured = predictor.face_margin
        rows = []
        for name, margin in (("fixed margin", DEFAULT_MARGIN), ("measured margin (stored with the model)", measured)):
            predictor.face_margin = margin
            acc, found = accuracy(predictor, shots)
            rows.append(f"| {name} | {margin:.3f} | {found} / {len(shots)} | {acc:.4f} |")
    table = "\n".join([
        f"Custom CNN trained on {args.n} demo faces (demo profile, {trained_s:.0f} s; framing measured on "
        f"{meta.get('face_margin_faces')} training faces); {args.photos} new demo faces pasted into photos.",
        "",
        "| crop of each detected face | margin (of the box, each side) | faces found | accuracy |",
        "|---|---|---|---|",
        *rows,
    ])
    print(table)
    if args.out is not None:
        args.out.write_text("# Serving a model at its training faces' framing (`python bench/face_framing.py`)\n\n"
                            + table + "\n")


if __name__ == "__main__":
    main()
