"""How well the grey-thumbnail correlation of affectkit.data.likeness tells one picture under another encoding from a
distinct face, and what the search costs.

Faces: real ones (scikit-image's sample of Labeled Faces in the Wild, 100 faces of 25 px grey, enlarged) and the
rendered demo faces (a data folder, e.g. the demo's cache). For each set: the correlation of every pair of distinct
faces (its upper quantiles and maximum), and for each kind of copy the lowest correlation of a face with its copy.
The threshold (LOOKALIKE_CORRELATION) must sit between the two. Then the time to compare held-out faces with training
faces at the sizes of real sets.

    python bench/lookalikes.py --demo ~/.cache/affectkit/demo-data-n1000-seed0-*

Writes lookalikes.md (--out).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from affectkit.data.likeness import LOOKALIKE_CORRELATION, most_alike, thumbnails

SIZE = 64  # faces compared as a 64 px cache holds them


def copies(face: np.ndarray) -> dict[str, np.ndarray]:
    """One face under other encodings (and, last, cut by two pixels: a re-crop, not a copy, for scale)."""
    jpeg = cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], cv2.IMREAD_COLOR)
    return {
        "JPEG quality 50": jpeg,
        "contrast x1.3": np.clip(face.astype(float) * 1.3 - 20, 0, 255).astype(np.uint8),
        "brighter by 25": np.clip(face.astype(int) + 25, 0, 255).astype(np.uint8),
        "grey": cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
        "resized to 24 px and back": cv2.resize(cv2.resize(face, (24, 24), interpolation=cv2.INTER_AREA), (SIZE, SIZE)),
        "cut by 1 px": cv2.resize(face[1:, 1:], (SIZE, SIZE), interpolation=cv2.INTER_AREA),
        "cut by 2 px (a re-crop)": cv2.resize(face[2:, 2:], (SIZE, SIZE), interpolation=cv2.INTER_AREA),
    }


def real_faces() -> np.ndarray:
    faces = (skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE)), cv2.COLOR_GRAY2RGB) for f in faces])


def demo_faces(folder: Path, limit: int) -> np.ndarray:
    files = sorted(folder.rglob("*.jpg"))[:limit]
    return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (SIZE, SIZE),
                                interpolation=cv2.INTER_AREA) for f in files])


def measure(faces: np.ndarray) -> tuple[list[str], dict[str, float]]:
    thumbs = thumbnails(faces, np.arange(len(faces)))
    pairs = (thumbs @ thumbs.T)[np.triu_indices(len(faces), 1)]
    lowest: dict[str, float] = {}
    for i, face in enumerate(faces):
        for kind, copy in copies(face).items():
            value = float(thumbs[i] @ thumbnails(copy[None], [0])[0])
            lowest[kind] = min(lowest.get(kind, 1.0), value)
    q = np.quantile(pairs, [0.5, 0.99, 0.999])
    row = [f"{len(faces)}", f"{len(pairs)}", f"{q[0]:.3f}", f"{q[1]:.3f}", f"{q[2]:.3f}", f"{pairs.max():.3f}",
           f"{int((pairs >= LOOKALIKE_CORRELATION).sum())}"]
    return row, lowest


def search_seconds(held: int, trained: int) -> float:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((held, 256)).astype(np.float32)
    references = rng.standard_normal((trained, 256)).astype(np.float32)
    start = time.perf_counter()
    most_alike(queries, references)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a folder of rendered demo faces (JPEG)")
    parser.add_argument("--demo-faces", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lookalikes.md")
    args = parser.parse_args()

    sets = {"real (LFW sample)": real_faces(), "rendered (demo)": demo_faces(args.demo, args.demo_faces)}
    measured = {name: measure(faces) for name, faces in sets.items()}
    kinds = list(next(iter(measured.values()))[1])
    start = time.perf_counter()
    thumbnails(np.repeat(sets["real (LFW sample)"], 10, axis=0), np.arange(1000))
    thumbnail_ms = (time.perf_counter() - start) * 1000
    lines = [
        "# Copies under another encoding: grey-thumbnail correlation",
        "",
        f"`python bench/lookalikes.py --demo DEMO_FACES`. Threshold LOOKALIKE_CORRELATION = {LOOKALIKE_CORRELATION}: "
        "two faces at or above it are one picture.",
        "",
        "## Distinct faces: correlation of every pair",
        "",
        "| faces | n | pairs | median | 99% | 99.9% | max | pairs at or above the threshold |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {name} | " + " | ".join(row) + " |" for name, (row, _) in measured.items()],
        "",
        "## A face and its copy: the lowest correlation over the set",
        "",
        "| copy | " + " | ".join(measured) + " |",
        "|---|" + "---|" * len(measured),
        *[f"| {kind} | " + " | ".join(f"{lowest[kind]:.3f}" for _, lowest in measured.values()) + " |"
          for kind in kinds],
        "",
        "## Cost",
        "",
        f"Thumbnails: {thumbnail_ms:.0f} ms per 1,000 faces of {SIZE} px. "
        "Held-out faces compared with training faces (one process):",
        "",
        "| held out x trained | seconds |",
        "|---|---|",
        *[f"| {held:,} x {trained:,} | {search_seconds(held, trained):.1f} |"
          for held, trained in ((3_000, 28_000), (7_000, 28_000), (5_000, 100_000))],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
