"""Faces that are one picture saved again: the same image converted without loss (FER2013's CSV pixels and FER+'s
PNGs of them, a grey copy), or re-compressed as JPEG, which a content digest of the file does not match. Each face is
kept as a 32x32 grey thumbnail. Two faces are copies where (1) their 16x16 thumbnails correlate at or above
``CANDIDATE_CORRELATION`` and (2) one 32x32 thumbnail, fit to the other by brightness and contrast, leaves a residual
of at most ``COPY_RESIDUAL`` grey levels (root mean square). The first is fast and lets every copy through, but faces
on one background mask (a set that blacks out all but an oval) pass it too; the second tells them apart: lossless and
JPEG quality 90 copies leave 2 levels or less, distinct faces on one mask 6 or more. A resized or re-cropped copy is
another picture (bench/results/lookalikes.md)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from affectkit.progress import reporter

THUMBNAIL_SIZE = 32
CANDIDATE_CORRELATION = 0.97
COPY_RESIDUAL = 3.0  # grey levels
FLAT = 1.0  # grey levels: a thumbnail whose spread is below this (a blank face) is a copy of nothing
_QUERY_CHUNK, _REFERENCE_CHUNK, _PAIR_CHUNK = 512, 32768, 8192  # bound the blocks in memory to about 64 MB


def grey_thumbnails(images: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(len(positions), THUMBNAIL_SIZE ** 2) uint8: the (S, S, 3) uint8 faces at ``positions`` of ``images`` (read
    one at a time, as from a cache on disk) as grey thumbnails, as they are stored beside a split."""
    out = np.zeros((len(positions), THUMBNAIL_SIZE * THUMBNAIL_SIZE), dtype=np.uint8)
    for i, position in enumerate(positions):
        grey = cv2.cvtColor(np.ascontiguousarray(images[position]), cv2.COLOR_RGB2GRAY)
        out[i] = cv2.resize(grey, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA).ravel()
    return out


def _standardised(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of zero mean and unit norm (so that the dot product of two is their correlation; a flat row is zero),
    and each row's spread (standard deviation)."""
    rows = rows.astype(np.float32)
    rows -= rows.mean(axis=1, keepdims=True)
    spread = np.sqrt((rows ** 2).mean(axis=1))
    scale = np.where(spread >= FLAT, 1.0 / (np.maximum(spread, FLAT) * np.sqrt(rows.shape[1])), 0.0)
    return rows * scale[:, None].astype(np.float32), spread


def coarse(grey: np.ndarray) -> np.ndarray:
    """The 16x16 thumbnails (2x2 means of the stored 32x32 ones), standardised: the candidates' correlation."""
    half = THUMBNAIL_SIZE // 2
    pooled = grey.reshape(len(grey), half, 2, half, 2).astype(np.float32).mean(axis=(2, 4))
    return _standardised(pooled.reshape(len(grey), half * half))[0]


def _left_after_fit(a: np.ndarray, spread_a: np.ndarray, b: np.ndarray, spread_b: np.ndarray) -> np.ndarray:
    r = np.einsum("ij,ij->i", a, b)
    left = np.maximum(spread_a, spread_b) * np.sqrt(np.clip(1.0 - r ** 2, 0.0, None))
    return np.where((r > 0) & (spread_a >= FLAT) & (spread_b >= FLAT), left, np.inf)


def residual(grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
    """For each pair of rows, the root mean square, in grey levels, of what is left of one 32x32 thumbnail after the
    best brightness and contrast fit of the other (the larger of the two ways round; inf where they anti-correlate
    or one is flat)."""
    return _left_after_fit(*_standardised(grey_a), *_standardised(grey_b))


def _copy_pairs(queries: np.ndarray, references: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (query position, reference position) pairs of copies; with no ``references``, the pairs (i, j),
    i < j, of copies among the ``queries`` themselves."""
    within = references is None
    references = queries if within else references
    query_coarse = coarse(queries)
    reference_coarse = query_coarse if within else coarse(references)
    starts = range(0, len(queries), _QUERY_CHUNK)
    for q in reporter().track(starts, total=len(starts), description="Comparing faces for copies"):
        query_fine, query_spread = _standardised(queries[q:q + _QUERY_CHUNK])
        for r in range(q if within else 0, len(references), _REFERENCE_CHUNK):
            similarity = query_coarse[q:q + _QUERY_CHUNK] @ reference_coarse[r:r + _REFERENCE_CHUNK].T
            pairs_q, pairs_r = np.nonzero(similarity >= CANDIDATE_CORRELATION)
            if within:
                later = pairs_r + r > pairs_q + q
                pairs_q, pairs_r = pairs_q[later], pairs_r[later]
            for p in range(0, len(pairs_q), _PAIR_CHUNK):
                qs, rs = pairs_q[p:p + _PAIR_CHUNK], pairs_r[p:p + _PAIR_CHUNK] + r
                rows, at = np.unique(rs, return_inverse=True)
                reference_fine, reference_spread = _standardised(references[rows])
                left = _left_after_fit(query_fine[qs], query_spread[qs], reference_fine[at], reference_spread[at])
                copy = left <= COPY_RESIDUAL
                yield q + qs[copy], rs[copy]


def copies_of(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """For each query's grey thumbnail, the position of a reference it is a copy of, or -1."""
    found = np.full(len(queries), -1, dtype=np.int64)
    for qs, rs in _copy_pairs(queries, references):
        found[qs] = rs  # a query with two copies keeps the last found: any will do
    return found


def copy_pairs(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of faces among these grey thumbnails that are copies of each other."""
    blocks = list(_copy_pairs(grey))
    if not blocks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
