"""A synthetic multimodal set to try the fusion on without data: the demo's rendered faces, and for each a stretch of
synthetic speech and of physiological signals recorded in one session per simulated person.

What the signals carry follows the affective-computing literature, each modality partly and with its own noise:
arousal raises the voice's pitch, loudness, brightness and speaking rate, the heart rate and the skin-conductance
responses; valence bends the pitch contour and moves the two facial-muscle EMG envelopes (zygomaticus for
pleasure, corrugator for displeasure). Each person has a voice, a heart rate and a skin-conductance level of their
own, so the split must keep people apart. Some samples lack their audio or physio recording, as real sets do.
With ``video``, the faces come as one video per session, in which each sample's expression rises from neutral to its
apex at a moment of its own inside its window, as posed-expression sequences (CK+) and spontaneous clips do.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from affectkit.data.synthetic import (
    INTENSITY_RANGE,
    SYNTHETIC_MARKER,
    demo_labels,
    make_demo_dataset,
    render_face,
)
from affectkit.progress import reporter, silenced

VIDEO_FPS = 4.0
AUDIO_RATE = 8_000  # telephone band: enough for pitch, loudness and MFCCs, and small files
PHYSIO_RATE = 32.0
SLOT_SECONDS = 4.0  # each sample's place in its person's session
WINDOW_SECONDS = 3.0  # the part of the slot the manifest points at
MISSING_FRACTION = 0.1  # of the samples without audio, and apart from those, without physio
NOISE = 0.2  # how far each modality's view of arousal and valence strays from the labels (labels span [-1, 1])


def _utterance(rng: np.random.Generator, person: dict, arousal: float, valence: float) -> np.ndarray:
    """One slot of sound: syllables for the window, then a quiet pause."""
    n = int(SLOT_SECONDS * AUDIO_RATE)
    out = np.zeros(n)
    t_end, t = WINDOW_SECONDS, rng.uniform(0.0, 0.15)
    rate = 3.0 + 1.5 * arousal  # syllables a second
    tilt = 1.6 - 0.5 * arousal  # harmonic roll-off: a steeper one sounds duller
    while t < t_end - 0.1:
        length = rng.uniform(0.12, 0.25)
        samples = np.arange(int(length * AUDIO_RATE))
        rel = samples / len(samples)
        semitones = 3.0 * arousal + 1.5 * valence * (rel - 0.5) + rng.normal(0, 0.3)
        f0 = person["f0"] * 2 ** (semitones / 12) * (1 + 0.01 * rng.standard_normal(len(samples)))
        phase = 2 * np.pi * np.cumsum(f0) / AUDIO_RATE
        voice = sum(k ** -tilt * np.sin(k * phase) for k in range(1, 16) if k * f0.mean() < AUDIO_RATE / 2)
        amplitude = person["gain"] * 0.08 * 10 ** (0.4 * arousal)
        start = int(t * AUDIO_RATE)
        stop = min(n, start + len(samples))
        out[start:stop] += (amplitude * np.hanning(len(samples)) * voice)[: stop - start]
        t += length + rng.exponential(1.0 / rate)
    return out + rng.normal(0, 0.003 * 10 ** rng.uniform(0, 1), n)


def _bateman(seconds: np.ndarray) -> np.ndarray:
    """A skin-conductance response's shape (rise, slow recovery), peak 1."""
    shape = np.where(seconds > 0, np.exp(-seconds / 2.0) - np.exp(-seconds / 0.75), 0.0)
    return shape / 0.4


def _physio_slot(rng: np.random.Generator, person: dict, arousal: float, valence: float) -> dict[str, np.ndarray]:
    n = int(SLOT_SECONDS * PHYSIO_RATE)
    seconds = np.arange(n) / PHYSIO_RATE
    eda = np.full(n, person["eda"] + 0.6 * arousal * person["reactivity"])
    for onset in rng.uniform(-1.0, SLOT_SECONDS, rng.poisson(1.0 + 1.5 * (arousal + 1))):
        eda += rng.uniform(0.2, 0.6) * person["reactivity"] * _bateman(seconds - onset)
    heart = person["heart_rate"] + 10 * arousal + rng.normal(0, 2) + np.cumsum(rng.normal(0, 0.2, n))
    zygomaticus = 2 + 6 * max(valence, 0) * person["emg"] + rng.lognormal(0, 0.5, n)
    corrugator = 2 + 6 * max(-valence, 0) * person["emg"] + rng.lognormal(0, 0.5, n)
    return {"eda": eda + rng.normal(0, 0.02, n), "heart_rate": heart, "emg_zygomaticus": zygomaticus,
            "emg_corrugator": corrugator}


def _person(rng: np.random.Generator) -> dict:
    return {"f0": rng.uniform(95, 230), "gain": rng.uniform(0.5, 1.5), "eda": rng.uniform(2, 10),
            "reactivity": rng.uniform(0.5, 1.5), "heart_rate": rng.uniform(58, 82), "emg": rng.uniform(0.6, 1.4)}


def write_video(path: Path, frames: list[np.ndarray], fps: float = VIDEO_FPS) -> None:
    """RGB frames as an MJPG AVI (a codec every OpenCV build writes and reads)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def _labels(faces: Path, n: int) -> pd.DataFrame:
    """The rendered faces' labels, read back from their AffectNet-layout annotations."""
    def read(kind: str) -> list[float]:
        return [float(np.load(faces / "annotations" / f"{i}_{kind}.npy")) for i in range(n)]

    return pd.DataFrame({"expression": np.array(read("exp"), dtype=int), "valence": read("val"),
                         "arousal": read("aro")})


def _clip(label: int, seed: int, index: int, person: int, img_size: int,
          rng: np.random.Generator) -> tuple[list[np.ndarray], float, float]:
    """One slot of a session video: neutral, then from a random onset the expression rises to its apex within
    half a second and holds to the window's end; neutral again in the pause. Returns the frames and the apex's
    valence and arousal (the sample's labels)."""
    apex, onset = rng.uniform(*INTENSITY_RANGE), rng.uniform(0.0, 1.5)

    def frame(intensity: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        # The same streams for every frame: pose, light and identity stay, only the expression moves.
        return render_face(label, np.random.default_rng([seed, 13, index]), img_size, intensity=intensity,
                           person=np.random.default_rng([seed, 11, person]))

    times = np.arange(int(SLOT_SECONDS * VIDEO_FPS)) / VIDEO_FPS
    strength = np.where(times < WINDOW_SECONDS, apex * np.clip((times - onset) / 0.5, 0.0, 1.0), 0.0)
    _, _, valence, arousal = frame(apex)
    return [frame(float(v))[0] for v in strength], valence, arousal


def make_multimodal_demo(out: str | Path, n: int = 480, people: int = 24, seed: int = 0, img_size: int = 112,
                         video: bool = False, progress: bool = True) -> Path:
    """Write ``out/manifest.csv`` with ``n`` samples of ``people`` simulated persons: a face image each
    (``faces/``), or with ``video`` one face video per person's session in which each sample's expression rises to
    its apex at its own moment; one WAV (``audio/``) and one physio CSV (``physio/``) per session; same seed, same
    files."""
    import soundfile

    out = Path(out)
    with silenced(not progress):
        if video:
            labels = pd.DataFrame({"expression": demo_labels(n, seed), "valence": 0.0, "arousal": 0.0})
            (out / "faces").mkdir(parents=True, exist_ok=True)
        else:
            faces = make_demo_dataset(out / "faces", n=n, seed=seed, img_size=img_size, progress=progress)
            labels = _labels(faces, n)
        (out / "audio").mkdir(exist_ok=True)
        (out / "physio").mkdir(exist_ok=True)
        rng = np.random.default_rng([seed, 7])
        person_of = rng.permutation(np.arange(n) % people)
        missing = rng.permutation(n)[: int(2 * MISSING_FRACTION * n)]
        no_audio, no_physio = set(missing[::2]), set(missing[1::2])
        rows = []
        for person in reporter().track(range(people), total=people, description="Recording sessions"):
            traits = _person(rng)
            members = np.flatnonzero(person_of == person)
            sound, physio, frames = [], [], []
            for slot, i in enumerate(members):
                if video:
                    clip, valence, arousal = _clip(int(labels.loc[i, "expression"]), seed, i, person, img_size, rng)
                    frames += clip
                    labels.loc[i, ["valence", "arousal"]] = valence, arousal
                heard = np.clip(labels.loc[i, ["arousal", "valence"]].to_numpy() + rng.normal(0, NOISE, 2), -1, 1)
                felt = np.clip(labels.loc[i, ["arousal", "valence"]].to_numpy() + rng.normal(0, NOISE, 2), -1, 1)
                sound.append(_utterance(rng, traits, *heard))
                physio.append(_physio_slot(rng, traits, *felt))
                start = slot * SLOT_SECONDS
                rows.append({"face": f"faces/person{person:02d}.avi" if video else f"faces/images/{i}.jpg",
                             "audio": "" if i in no_audio else f"audio/person{person:02d}.wav",
                             "physio": "" if i in no_physio else f"physio/person{person:02d}.csv",
                             "start": f"{start:g}", "end": f"{start + WINDOW_SECONDS:g}",
                             **labels.loc[i].to_dict(), "subject": f"person{person:02d}", "index": i})
            if video:
                write_video(out / "faces" / f"person{person:02d}.avi", frames)
            soundfile.write(out / "audio" / f"person{person:02d}.wav",
                            np.clip(np.concatenate(sound), -1, 1).astype(np.float32), AUDIO_RATE, subtype="PCM_16")
            channels = {k: np.concatenate([slot[k] for slot in physio]) for k in physio[0]}
            table = pd.DataFrame({"time": np.arange(len(channels["eda"])) / PHYSIO_RATE, **channels})
            table.to_csv(out / "physio" / f"person{person:02d}.csv", index=False, float_format="%.4f")
        manifest = pd.DataFrame(rows).sort_values("index").drop(columns="index")
        manifest["expression"] = manifest["expression"].astype(int)
        manifest.to_csv(out / "manifest.csv", index=False, float_format="%.6f", quoting=csv.QUOTE_MINIMAL)
        marker = {"synthetic": True, "generator": "affectkit make-demo-data --multimodal", "n": n, "seed": seed,
                  "video": video, "note": "Rendered cartoon faces and simulated signals, not recordings of people."}
        (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2))
    return out / "manifest.csv"
