"""The iBUG 300-W 68-point landmark convention."""

from __future__ import annotations

import numpy as np


def _mirror_pairs() -> list[tuple[int, int]]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip
    return pairs


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(68))  # the midline points (nose bridge, tip, lip centres, chin) map to themselves
    for a, b in _mirror_pairs():
        perm[a], perm[b] = b, a
    return tuple(perm)


# Landmark k of a mirrored face is landmark IBUG_FLIP_PERMUTATION[k] of the original, moved to x' = W - x.
IBUG_FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation()


def hflip_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Mirror (68, 2) points horizontally: coordinates and the left/right identity of each point."""
    flipped = points[list(IBUG_FLIP_PERMUTATION)].copy()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped
