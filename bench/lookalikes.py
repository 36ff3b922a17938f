"""How well affectkit.data.likeness tells one picture saved again from a distinct face, and what the search costs.

Faces: real ones (scikit-image's sample of Labeled Faces in the Wild, 100 faces of 25 px grey, enlarged) and the
rendered demo faces (a data folder, e.g. the demo's cache), each as they are and with all but one oval blacked out
(as some in-the-wild sets are given: one mask makes distinct faces alike). For each: how many pairs of distinct faces
pass the candidates' correlation and how many of those the residual check calls copies (it must be none), and for
each way of saving a face again, how many of the copies are found and the largest residual left. Then the time to
compare held-out faces with training faces at the sizes of real sets.

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

from affectkit.data.likeness import (
    CANDIDATE_CORRELATION,
    COPY_RESIDUAL,
    coarse,
    copies_of,
    copy_pairs,
    grey_thumbnails,
    residual,
)

SIZE = 64  # faces compared as a 64 px cache holds them
COPIES_OF = 100  # faces of each set saved again


def saved_again(face: np.ndarray) -> dict[str, np.ndarray]:
    """One face saved again; the last three change the picture itself, for scale."""
    def jpeg(quality):
        return cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)

    return {
        "PNG (lossless)": cv2.imdecode(cv2.imencode(".png", face)[1], cv2.IMREAD_COLOR),
        "grey": cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
        "JPEG quality 90": jpeg(90),
        "JPEG quality 75": jpeg(75),
        "JPEG quality 50": jpeg(50),
        "brighter by 10": np.clip(face.astype(int) + 10, 0, 255).astype(np.uint8),
        "contrast x1.3": np.clip(face.astype(float) * 1.3 - 20, 0, 255).astype(np.uint8),
        "resized to 24 px and back": cv2.resize(cv2.resize(face, (24, 24), interpolation=cv2.INTER_AREA), (SIZE, SIZE)),
        "cut by 1 px": cv2.resize(face[1:, 1:], (SIZE, SIZE), interpolation=cv2.INTER_AREA),
    }


def real_faces() -> np.ndarray:
    faces = (skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.resize(f, (SIZE, SIZE)), cv2.COLOR_GRAY2RGB) for f in faces])


def demo_faces(folder: Path, limit: int) -> np.ndarray:
    files = sorted(folder.rglob("*.jpg"))[:limit]
    return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (SIZE, SIZE),
                                interpolation=cv2.INTER_AREA) for f in files])


def on_one_mask(faces: np.ndarray) -> np.ndarray:
    oval = np.zeros((SIZE, SIZE), dtype=np.uint8)
    cv2.ellipse(oval, (SIZE // 2, SIZE // 2 + 1), (SIZE * 5 // 16, SIZE * 7 // 16), 0, 0, 360, 1, -1)
    return faces * oval[..., None]


def measure(faces: np.ndarray) -> tuple[list[str], dict[str, tuple[int, float]]]:
    grey = grey_thumbnails(faces, np.arange(len(faces)))
    thumbs = coarse(grey)
    first, second = np.nonzero(np.triu(thumbs @ thumbs.T >= CANDIDATE_CORRELATION, k=1))
    left = residual(grey[first], grey[second])
    pairs = len(faces) * (len(faces) - 1) // 2
    row = [f"{len(faces)}", f"{pairs:,}", f"{len(first):,}", f"{int((left <= COPY_RESIDUAL).sum())}",
           f"{left.min():.1f}" if len(left) else "-"]
    found: dict[str, tuple[int, float]] = {}
    for kind in saved_again(faces[0]):
        copies = np.stack([saved_again(face)[kind] for face in faces[:COPIES_OF]])
        copy_grey = grey_thumbnails(copies, np.arange(len(copies)))
        hits = int((copies_of(copy_grey, grey) == np.arange(len(copies))).sum())
        found[kind] = (hits, float(residual(copy_grey, grey[:len(copies)]).max()))
    return row, found


def search_seconds(held: int, trained: int, faces: np.ndarray | None = None) -> float:
    """Seconds to compare ``held`` faces with ``trained`` ones: random thumbnails (few candidates), or ``faces``
    repeated (a masked set: many)."""
    rng = np.random.default_rng(0)
    if faces is None:
        queries = rng.integers(0, 256, (held, 1024), dtype=np.uint8)
        references = rng.integers(0, 256, (trained, 1024), dtype=np.uint8)
    else:
        grey = grey_thumbnails(faces, np.arange(len(faces)))
        queries, references = grey[rng.integers(0, len(grey), held)], grey[rng.integers(0, len(grey), trained)]
    start = time.perf_counter()
    copies_of(queries, references)
    return time.perf_counter() - start


def within_seconds(n: int) -> float:
    """Seconds to find every pair of copies among ``n`` faces (random thumbnails), as a split made here does."""
    grey = np.random.default_rng(0).integers(0, 256, (n, 1024), dtype=np.uint8)
    start = time.perf_counter()
    copy_pairs(grey)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a folder of rendered demo faces (JPEG)")
    parser.add_argument("--demo-faces", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lookalikes.md")
    args = parser.parse_args()

    real, rendered = real_faces(), demo_faces(args.demo, args.demo_faces)
    sets = {"real (LFW sample)": real, "real, one oval mask": on_one_mask(real),
            "rendered (demo)": rendered, "rendered, one oval mask": on_one_mask(rendered)}
    measured = {name: measure(faces) for name, faces in sets.items()}
    start = time.perf_counter()
    grey_thumbnails(np.repeat(real, 10, axis=0), np.arange(1000))
    thumbnail_ms = (time.perf_counter() - start) * 1000
    lines = [
        "# Faces saved again: found by their thumbnails",
        "",
        f"`python bench/lookalikes.py --demo DEMO_FACES`. Two faces are copies where their 16x16 grey thumbnails "
        f"correlate at {CANDIDATE_CORRELATION} or more and one 32x32 thumbnail, fit to the other by brightness and "
        f"contrast, leaves at most {COPY_RESIDUAL} grey levels (root mean square).",
        "",
        "## Distinct faces: every pair",
        "",
        "| faces | n | pairs | candidates (correlation) | called copies | smallest residual of a candidate |",
        "|---|---|---|---|---|---|",
        *[f"| {name} | " + " | ".join(row) + " |" for name, (row, _) in measured.items()],
        "",
        f"## A face saved again: copies found of {COPIES_OF}, and the largest residual",
        "",
        "| saved again as | " + " | ".join(measured) + " |",
        "|---|" + "---|" * len(measured),
        *[f"| {kind} | " + " | ".join(f"{found[kind][0]} ({found[kind][1]:.1f})" for _, found in measured.values())
          + " |" for kind in next(iter(measured.values()))[1]],
        "",
        "## Cost",
        "",
        f"Thumbnails: {thumbnail_ms:.0f} ms per 1,000 faces of {SIZE} px. Held-out faces compared with training "
        "faces (one process): random thumbnails (few candidates, as unmasked faces), and the rendered faces on one "
        "oval mask drawn again and again (many candidates, and every face a copy of some other):",
        "",
        "| held out x trained | seconds, random | seconds, one mask |",
        "|---|---|---|",
        *[f"| {held:,} x {trained:,} | {search_seconds(held, trained):.1f} | "
          f"{search_seconds(held, trained, sets['rendered, one oval mask']):.1f} |"
          for held, trained in ((1_000, 3_000), (3_000, 28_000), (7_000, 28_000))],
        "",
        "Every pair among a whole set (each face an earlier one saved again: `copy_of`; random thumbnails):",
        "",
        "| faces | seconds |",
        "|---|---|",
        *[f"| {n:,} | {within_seconds(n):.1f} |" for n in (3_500, 35_000)],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
