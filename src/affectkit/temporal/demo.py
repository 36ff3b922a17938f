"""Synthetic labelled clips to try the temporal model on without data, in AFEW's layout: ``OUT/<split>/<Class>/*.avi``,
the split folders keeping each simulated person on one side.

Each clip shows one person: neutral at first, then from an onset of its own the expression rises to its apex, holds
for a while and, in about half of the clips, fades again before the clip ends, as expressions do in spontaneous
clips (DFEW, AFEW). So the frames that carry the expression are a different few in every clip, and a mean over all
frames dilutes them by a different amount.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from affectkit.config import CLASS_NAMES
from affectkit.data.synthetic import INTENSITY_RANGE, SYNTHETIC_MARKER, demo_labels, render_face
from affectkit.multimodal.demo import write_video
from affectkit.progress import reporter, silenced

CLIP_FPS = 8.0
CLIP_SECONDS = 2.0
RISE_SECONDS = 0.25


def strength_over_time(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """The expression's strength at each time: 0 before a random onset, a rise to the apex, a hold, and in half of
    the clips a fall back to 0 before the end."""
    apex = rng.uniform(*INTENSITY_RANGE)
    onset = rng.uniform(0.0, 0.6 * CLIP_SECONDS)
    hold = rng.uniform(0.25, 0.75)
    rise = np.clip((times - onset) / RISE_SECONDS, 0.0, 1.0)
    if rng.uniform() < 0.5:
        fall = np.clip(1.0 - (times - onset - RISE_SECONDS - hold) / RISE_SECONDS, 0.0, 1.0)
        rise = np.minimum(rise, fall)
    return apex * rise


def _splits(people: int, rng: np.random.Generator) -> dict[int, str]:
    """Each person's split: about 70/15/15 of the people, at least one in each."""
    order = rng.permutation(people)
    val = max(1, round(0.15 * people))
    train = min(round(0.7 * people), people - val - 1)
    bounds = {"train": (0, train), "val": (train, train + val), "test": (train + val, people)}
    return {int(p): name for name, (a, b) in bounds.items() for p in order[a:b]}


def make_clip_demo(out: str | Path, n: int = 480, people: int = 24, seed: int = 0, img_size: int = 96,
                   progress: bool = True) -> Path:
    """Write ``n`` clips of ``people`` simulated persons into ``out/<split>/<Class>/person<P>_<i>.avi``; same seed,
    same files."""
    if not 3 <= people <= n:
        raise ValueError("make_clip_demo needs at least 3 people (one for each split) and a clip for each")
    out = Path(out)
    labels = demo_labels(n, seed)
    rng = np.random.default_rng([seed, 17])
    person_of = rng.permutation(np.arange(n) % people)
    split_of = _splits(people, rng)
    times = np.arange(int(CLIP_SECONDS * CLIP_FPS)) / CLIP_FPS
    with silenced(not progress):
        for i in reporter().track(range(n), total=n, description="Rendering clips"):
            label, person = int(labels[i]), int(person_of[i])
            strength = strength_over_time(np.random.default_rng([seed, 19, i]), times)
            # The same streams for every frame: pose, light and identity stay, only the expression moves.
            frames = [render_face(label, np.random.default_rng([seed, 13, i]), img_size, intensity=float(s),
                                  person=np.random.default_rng([seed, 11, person]))[0] for s in strength]
            folder = out / split_of[person] / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            write_video(folder / f"person{person:02d}_{i}.avi", frames, CLIP_FPS)
    marker = {"synthetic": True, "generator": "affectkit make-demo-data --clips", "n": n, "people": people,
              "seed": seed, "note": "Rendered cartoon faces, not recordings of people."}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2))
    return out
