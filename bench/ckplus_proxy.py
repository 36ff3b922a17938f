"""`affectkit benchmark` on a CK+-shaped demo set, made the way the held-back CK+ run is made.

CK+ as the maintainers measure it: 48x48 grayscale crops, 7 classes (no neutral face; contempt rare), the last three
frames of each of 327 posed sequences from 118 people, and a subject-disjoint train/val/test split (564/207/210)
given as a manifest's `split` column. This bench renders demo faces with that shape: one identity and colouring per
person, three frames per sequence that differ only in the expression's strength, CK+'s class counts, and the same
split sizes, then runs the benchmark on the manifest.

    python bench/ckplus_proxy.py --seed 0 --threads 2
    python bench/ckplus_proxy.py --folds 10 --out bench/results/ckplus_proxy_cv.md   # subject-independent 10-fold CV

Rendered faces are easier than real ones, so the scores say little about real CK+; what the run checks is the flow
(a manifest with its own split, gray 48-px images, a missing class, near-duplicate frames) and where the time goes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from affectkit.config import CLASS_NAMES, parse_set_options
from affectkit.data.synthetic import render_face
from affectkit.pipeline.benchmark import benchmark_config, run_benchmark
from affectkit.pipeline.cross_validation import run_cross_validation

from threads import add_threads_option, use_threads

# CK+'s 327 labelled sequences by class, and how the held-back run splits its 981 frames by subject.
SEQUENCES = {"Anger": 45, "Contempt": 18, "Disgust": 59, "Fear": 25, "Happy": 69, "Sad": 28, "Surprise": 83}
SUBJECTS = 118
FRAME_STRENGTHS = (0.9, 0.95, 1.0)  # the last three frames, as fractions of the sequence's peak
PEAK_RANGE = (0.75, 1.0)
SPLIT_IMAGES = {"test": 210, "val": 207}  # the rest trains (564 in the held-back split)
RENDER_PX, CROP_PX = 112, 48


def sequence_table(seed: int) -> pd.DataFrame:
    """One row per sequence: its class, its person and its peak strength."""
    rng = np.random.default_rng([seed, 1])
    labels = np.concatenate([[CLASS_NAMES.index(name)] * count for name, count in SEQUENCES.items()])
    rng.shuffle(labels)
    # Every person has at least one sequence; the rest fall on people at random, as CK+'s 1 to 11 a person do.
    subjects = np.concatenate([np.arange(SUBJECTS), rng.integers(0, SUBJECTS, len(labels) - SUBJECTS)])
    return pd.DataFrame({"label": labels, "subject": subjects, "peak": rng.uniform(*PEAK_RANGE, len(labels))})


def subject_split(images_per_subject: pd.Series, seed: int) -> dict[int, str]:
    """Whole people to test, then to val, until each holds its share of images; the rest train."""
    order = np.random.default_rng([seed, 2]).permutation(images_per_subject.index.to_numpy())
    split, filled = {}, dict.fromkeys(SPLIT_IMAGES, 0)
    for subject in order:
        side = next((s for s, target in SPLIT_IMAGES.items() if filled[s] < target), "train")
        split[subject] = side
        if side != "train":
            filled[side] += int(images_per_subject[subject])
    return split


def render_ckplus_like(root: Path, seed: int) -> Path:
    """The images as ``root/<class>/S<person>_<sequence>_<frame>.png`` and ``root/manifest.csv``."""
    sequences = sequence_table(seed)
    split = subject_split(sequences.groupby("subject").size() * len(FRAME_STRENGTHS), seed)
    rows = []
    for number, seq in enumerate(sequences.itertuples()):
        folder = root / CLASS_NAMES[seq.label].lower()
        folder.mkdir(parents=True, exist_ok=True)
        for frame, strength in enumerate(FRAME_STRENGTHS):
            # Fresh generators each frame: same pose, background and light within a sequence, same face per person.
            image, *_ = render_face(int(seq.label), np.random.default_rng([seed, 3, number]), RENDER_PX,
                                    intensity=seq.peak * strength,
                                    person=np.random.default_rng([seed, 4, int(seq.subject)]))
            gray = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA)
            path = folder / f"S{seq.subject:03d}_{number:03d}_{frame}.png"
            cv2.imwrite(str(path), gray)
            rows.append({"path": str(path.relative_to(root)), "expression": CLASS_NAMES[seq.label],
                         "subject": f"S{seq.subject:03d}", "split": split[int(seq.subject)]})
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="render seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key on top of the recipe, as `affectkit benchmark --set` takes it (repeatable)")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ckplus_proxy.md")
    parser.add_argument("--folds", type=int, help="cross-validate on this many subject-disjoint folds instead of "
                                                  "benchmarking the manifest's own split")
    parser.add_argument("--run-dir", type=Path, help="keep the benchmark's run folder here (histories, models)")
    parser.add_argument("--data-dir", type=Path, help="keep the rendered images and manifest here")
    args = parser.parse_args()
    use_threads(args)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-ckplus-") as tmp:
        manifest = render_ckplus_like(args.data_dir or Path(tmp) / "ckplus", args.seed)
        splits = pd.read_csv(manifest)["split"].value_counts().to_dict()
        rendered = time.perf_counter() - start
        config = benchmark_config(data=manifest, sets=parse_set_options(args.set))
        run_dir = args.run_dir or Path(tmp) / "run"
        result = (run_benchmark(manifest, run_dir, config, quiet=True) if args.folds is None
                  else run_cross_validation(manifest, run_dir, args.folds, config, quiet=True))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(result.paths["markdown"], args.out)
    print(result.table.set_index("model")[["accuracy", "macro_f1", "train_time_s"]].to_string())
    protocol = f"{args.folds} subject-disjoint folds" if args.folds else f"split {splits}"
    print(f"{protocol}; rendered in {rendered:.0f}s; wrote {args.out} in {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
