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

import cv2
import numpy as np

from affectkit.config import CLASS_NAMES
from affectkit.data.synthetic import INTENSITY_RANGE, SYNTHETIC_MARKER, VA_CENTRES, demo_labels, render_face
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


def make_rated_clip_demo(out: str | Path, clips: int = 12, frames: int = 24, actors: int = 6, img_size: int = 64,
                         seed: int = 0, progress: bool = True) -> Path:
    """``clips`` clips of ``frames`` frames in AFEW-VA's layout (``out/<clip>/<frame>.png`` and
    ``out/<clip>/<clip>.json`` with each frame's valence, arousal (-10..10) and 68 landmarks), ``actors`` people:
    in each clip one person's expression swells and ebbs, its valence and arousal following the expression's
    strength frame by frame, while the pose jitters from frame to frame (as a face model's per-frame outputs do on
    films). Same seed, same files."""
    out = Path(out)
    rng = np.random.default_rng([seed, 23])
    labels = rng.choice([label for label in range(len(CLASS_NAMES)) if label], size=clips)
    with silenced(not progress):
        for c in reporter().track(range(clips), total=clips, description="Rendering rated clips"):
            clip, label, annotations = out / f"{c + 1:03d}", int(labels[c]), {}
            clip.mkdir(parents=True, exist_ok=True)
            cycles, phase = 1 + c % 2, rng.uniform(0, 2 * np.pi)
            for f in range(frames):
                strength = 0.2 + 0.7 * (0.5 - 0.5 * np.cos(2 * np.pi * f / frames * cycles + phase))
                rgb, points, _, _ = render_face(label, np.random.default_rng([seed, c, f]), img_size,
                                                intensity=float(strength),
                                                person=np.random.default_rng([seed, 29, c % actors]))
                margin = img_size // 8
                canvas = np.full((img_size + 2 * margin, img_size + 4 * margin, 3), 40, np.uint8)
                canvas[margin:margin + img_size, 2 * margin:2 * margin + img_size] = rgb
                cv2.imwrite(str(clip / f"{f:05d}.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                valence, arousal = (10 * strength * np.array(VA_CENTRES[label])).tolist()
                annotations[f"{f:05d}"] = {"valence": valence, "arousal": arousal,
                                           "landmarks": (points + [2 * margin, margin]).tolist()}
            content = {"actor": f"Actor {c % actors}", "video_id": clip.name, "frames": annotations}
            (clip / f"{clip.name}.json").write_text(json.dumps(content))
    marker = {"synthetic": True, "generator": "affectkit.temporal.demo.make_rated_clip_demo", "clips": clips,
              "frames": frames, "seed": seed, "note": "Rendered cartoon faces, not recordings of people."}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2))
    return out
