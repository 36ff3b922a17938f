"""`affectkit fuse` on the synthetic multimodal demo, as a user would run it: a face model trained on other faces
(other people, so no test face was ever seen by it), then face, speech and physiological signals fused, with and
without the person-relative audio and physio features.

    python bench/multimodal_demo.py              # 480 samples of 24 people; about 6 minutes on 2 idle cores
    python bench/multimodal_demo.py --n 960 --people 48 --seeds 0 2 3
    python bench/multimodal_demo.py --n 960 --people 48 --seeds 0 2 3 --video   # faces as session videos

Writes bench/results/multimodal.md (multimodal_video.md with --video).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from affectkit.evaluation.comparison import markdown_table
from affectkit.multimodal import run_fusion
from affectkit.multimodal.features import FeatureTable
from affectkit.multimodal.fusion import fuse

from threads import add_threads_option, use_threads

SCORES = ["accuracy", "macro_f1", "valence_ccc", "arousal_ccc"]


def affectkit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "affectkit.cli", *args, "--quiet"], check=True)


def summary(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean test scores per method over the seeds, and how often each was kept."""
    both = pd.concat(tables)
    means = both.groupby("method", sort=False)[SCORES].mean().reset_index()
    means["kept_for (runs)"] = [
        ", ".join(f"{t} {n}" for t in ("expression", "valence", "arousal")
                  if (n := sum(t in str(k).split(", ") for k in both.loc[both["method"] == m, "kept_for"])))
        for m in means["method"]]
    return means


MOVEMENT = ("_std", "_slope")  # with face_peak_p_*: what the face features say about change over the window


def without_movement(features: FeatureTable) -> FeatureTable:
    """The face's features as a still image would give them: the means alone."""
    kept = [c for c in features.columns["face"] if not (c.endswith(MOVEMENT) or c.startswith("face_peak_"))]
    dropped = set(features.columns["face"]) - set(kept)
    return FeatureTable(features.frame.drop(columns=sorted(dropped)), {**features.columns, "face": kept},
                        features.rejected, features.missing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=480, help="multimodal samples")
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--face-n", type=int, default=1600, help="faces the face model learns from (seed 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="multimodal sets to render and fuse, by seed (also the split's seed); not 1")
    parser.add_argument("--video", action="store_true",
                        help="faces as session videos (make-demo-data --video), read at 4 frames a second; the "
                        "ablation is then the face's movement features instead of the person-relative ones")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: bench/results/multimodal.md (multimodal_video.md with --video)")
    args = parser.parse_args()
    use_threads(args)
    out = args.out or Path(__file__).parent / "results" / ("multimodal_video.md" if args.video else "multimodal.md")
    start = time.perf_counter()
    default = "the default (person-relative audio and physio features" + (", the face's movement)" if args.video
                                                                           else ")")
    ablation = "without the face's movement (means of the frames only)" if args.video else \
        "without person-relative features (`--no-person-relative`)"
    runs: dict[str, list] = {default: [], ablation: []}
    with tempfile.TemporaryDirectory(prefix="affectkit-multimodal-") as tmp:
        tmp = Path(tmp)
        affectkit("make-demo-data", str(tmp / "faces"), "--n", str(args.face_n), "--seed", "1")
        affectkit("train", "--model", "custom_cnn", "--data", str(tmp / "faces"), "--out", str(tmp / "face_run"),
                  "--profile", "demo", "--no-evaluate")
        face_model = tmp / "face_run" / "best_CustomCNN.safetensors"
        trained = time.perf_counter() - start
        fps = 4.0 if args.video else 2.0
        for seed in args.seeds:
            data = tmp / f"mm-{seed}"
            affectkit("make-demo-data", str(data), "--multimodal", "--n", str(args.n), "--people", str(args.people),
                      "--seed", str(seed), *(["--video"] if args.video else []))
            began = time.perf_counter()
            run = run_fusion(data / "manifest.csv", tmp / f"fused-{seed}", face_model=face_model, seed=seed,
                             detect=False, fps=fps)
            runs[default].append((seed, run.result, run.notes, time.perf_counter() - began))
            began = time.perf_counter()
            if args.video:
                result = fuse(without_movement(run.features), seed)
            else:
                result = run_fusion(data / "manifest.csv", tmp / f"fused-{seed}-absolute", face_model=face_model,
                                    seed=seed, detect=False, person_relative=False).result
            runs[ablation].append((seed, result, run.notes, time.perf_counter() - began))
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Multimodal fusion on the synthetic multimodal demo" + (", faces as video" if args.video else ""),
        "",
        f"`python bench/multimodal_demo.py --n {args.n} --people {args.people} --face-n {args.face_n} --seeds "
        f"{seeds}{' --video' if args.video else ''} --threads {args.threads}`; {time.perf_counter() - start:.0f} s "
        f"in all, of which {trained:.0f} s rendering {args.face_n} other faces (seed 1) and training the face model "
        "on them (custom CNN, `--profile demo`).",
        "",
        "What each modality carries (`affectkit/multimodal/demo.py`): the face, the expression and, through it, "
        "valence and arousal; the speech, arousal (pitch, loudness, brightness, rate) and a little valence (pitch "
        "contour); the physiological signals, arousal (heart rate, skin conductance) and valence (the two facial EMG "
        "envelopes). Each person has a voice and physiological levels of their own, and the split keeps people "
        "apart." + (" Each sample's face is a stretch of its session's video in which the expression rises from "
                    "neutral to its apex at a moment of its own." if args.video else ""),
        "",
    ]
    for title, done in runs.items():
        tables = [result.table for _, result, _, _ in done]
        lines += [f"## {title}", "", f"Mean test scores over {len(done)} set(s):", "",
                  markdown_table(summary(tables)), ""]
        print(title)
        print(summary(tables).to_string(index=False))
        for seed, result, notes, seconds in done:
            lines += [f"### seed {seed}", "", *[f"- {note}" for note in notes], f"- fusion: {seconds:.0f} s", "",
                      markdown_table(result.table[["method", *SCORES, "kept_for"]]), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
