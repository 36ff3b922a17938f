"""`affectkit fuse` on the synthetic multimodal demo, as a user would run it: a face model trained on other faces
(other people, so no test face was ever seen by it), then face, speech and physiological signals fused, with and
without the person-relative audio and physio features.

    python bench/multimodal_demo.py              # 480 samples of 24 people; about 6 minutes on 2 idle cores
    python bench/multimodal_demo.py --n 960 --people 48 --seeds 0 2 3

Writes bench/results/multimodal.md.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=480, help="multimodal samples")
    parser.add_argument("--people", type=int, default=24)
    parser.add_argument("--face-n", type=int, default=1600, help="faces the face model learns from (seed 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="multimodal sets to render and fuse, by seed (also the split's seed); not 1")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "multimodal.md")
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    runs: dict[bool, list] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="affectkit-multimodal-") as tmp:
        tmp = Path(tmp)
        affectkit("make-demo-data", str(tmp / "faces"), "--n", str(args.face_n), "--seed", "1")
        affectkit("train", "--model", "custom_cnn", "--data", str(tmp / "faces"), "--out", str(tmp / "face_run"),
                  "--profile", "demo", "--no-evaluate")
        face_model = tmp / "face_run" / "best_CustomCNN.safetensors"
        trained = time.perf_counter() - start
        for seed in args.seeds:
            data = tmp / f"mm-{seed}"
            affectkit("make-demo-data", str(data), "--multimodal", "--n", str(args.n), "--people", str(args.people),
                      "--seed", str(seed))
            for relative in (True, False):
                began = time.perf_counter()
                run = run_fusion(data / "manifest.csv", tmp / f"fused-{seed}-{relative}", face_model=face_model,
                                 seed=seed, detect=False, person_relative=relative)
                runs[relative].append((seed, run, time.perf_counter() - began))
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Multimodal fusion on the synthetic multimodal demo",
        "",
        f"`python bench/multimodal_demo.py --n {args.n} --people {args.people} --face-n {args.face_n} --seeds "
        f"{seeds} --threads {args.threads}`; {time.perf_counter() - start:.0f} s in all, of which {trained:.0f} s "
        f"rendering {args.face_n} other faces (seed 1) and training the face model on them (custom CNN, "
        "`--profile demo`).",
        "",
        "What each modality carries (`affectkit/multimodal/demo.py`): the face, the expression and, through it, "
        "valence and arousal; the speech, arousal (pitch, loudness, brightness, rate) and a little valence (pitch "
        "contour); the physiological signals, arousal (heart rate, skin conductance) and valence (the two facial EMG "
        "envelopes). Each person has a voice and physiological levels of their own, and the split keeps people "
        "apart.",
        "",
    ]
    for relative, done in runs.items():
        title = "with person-relative audio and physio features (the default)" if relative else \
            "without person-relative features (`--no-person-relative`)"
        lines += [f"## {title}", "", f"Mean test scores over {len(done)} set(s):", "",
                  markdown_table(summary([run.result.table for _, run, _ in done])), ""]
        print(title)
        print(summary([run.result.table for _, run, _ in done]).to_string(index=False))
        for seed, run, seconds in done:
            lines += [f"### seed {seed}", "", *[f"- {note}" for note in run.notes], f"- fusion: {seconds:.0f} s", "",
                      markdown_table(run.result.table[["method", *SCORES, "kept_for"]]), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
