"""Faces that are one picture under another encoding: the same image re-compressed, resized, re-lit or converted
(FER2013's CSV pixels and FER+'s PNGs of them, a JPEG saved again), which a content digest of the file does not
match. Two faces are alike where their small grey thumbnails correlate at or above ``LOOKALIKE_CORRELATION``:
copies of a face stay above it through JPEG quality 50, a brighter or grey copy and a resize to 24 px (real faces also
through a 30% contrast change or a one-pixel cut), while distinct faces stay well below it, real ones (Labeled Faces
in the Wild) and rendered ones alike; a re-crop is another picture (bench/results/lookalikes.md)."""

from __future__ import annotations

import cv2
import numpy as np

THUMBNAIL_SIZE = 16
LOOKALIKE_CORRELATION = 0.97
FLAT = 1.0  # grey levels: a thumbnail whose spread is below this (a blank face) is alike to nothing
_QUERY_CHUNK, _REFERENCE_CHUNK = 512, 32768  # bounds the similarity block in memory to 64 MB


def thumbnails(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(len(positions), THUMBNAIL_SIZE ** 2) float32: the (S, S, 3) uint8 faces at ``positions`` of ``images`` (read
    one at a time, as from a cache on disk) as grey thumbnails of zero mean and unit norm, so that the dot product of
    two is their correlation; a flat face's is zero."""
    out = np.zeros((len(positions), THUMBNAIL_SIZE * THUMBNAIL_SIZE), dtype=np.float32)
    for i, position in enumerate(positions):
        grey = cv2.cvtColor(np.ascontiguousarray(images[position]), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        small = small.ravel() - small.mean()
        spread = float(np.sqrt((small ** 2).mean()))
        if spread >= FLAT:
            out[i] = small / (spread * np.sqrt(small.size))
    return out


def most_alike(queries: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query thumbnail, the position of the reference it correlates with most, and that correlation
    (-1 and 0.0 where there is no reference)."""
    best = np.full(len(queries), -1, dtype=np.int64)
    score = np.zeros(len(queries), dtype=np.float32)
    for q in range(0, len(queries), _QUERY_CHUNK):
        block = queries[q:q + _QUERY_CHUNK]
        for r in range(0, len(references), _REFERENCE_CHUNK):
            similarity = block @ references[r:r + _REFERENCE_CHUNK].T
            top = similarity.argmax(axis=1)
            value = similarity[np.arange(len(block)), top]
            better = (value > score[q:q + _QUERY_CHUNK]) | (best[q:q + _QUERY_CHUNK] < 0)
            best[q:q + _QUERY_CHUNK][better] = r + top[better]
            score[q:q + _QUERY_CHUNK][better] = value[better]
    return best, score


def lookalikes(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """For each query thumbnail, the position of a reference it is a copy of (at or above
    ``LOOKALIKE_CORRELATION``), or -1."""
    best, score = most_alike(queries, references)
    return np.where(score >= LOOKALIKE_CORRELATION, best, -1)
