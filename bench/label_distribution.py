"""Training on annotators' vote distributions (``label_distribution``) against training on their majority class,
where faces are labelled the way FER+ was: ten annotators each, who disagree on hard faces and confuse the same
pairs of expressions.

The demo faces are rendered and split once. Each train and val face gets ten simulated votes: each annotator gives
the face's true class with the face's own agreement rate (drawn uniformly between ``--agreement LOW HIGH``), else a
wrong class, most often the true class's look-alike (Fear for Surprise, Anger for Disgust, ...). The votes then go
through FER+'s own rules (:mod:`affectkit.data.layouts.fer2013`): faces with no majority leave the train and val
splits, the majority becomes the face's class and FER+'s "crossentropy" rule its distribution. Test faces keep their
true class, so the test scores say how well each model learnt the expressions, not the annotators' majority.

Each row trains the recommended recipe's network (MobileNetV2 from ImageNet, configs/recommended.yaml) with the
distribution or the majority and scores the model it selected on validation on the test faces.

    python bench/label_distribution.py --n 1200 --seeds 0 1 --out bench/results
    python bench/label_distribution.py --quick     # smoke run, about a minute

Writes label_distribution.md (rewritten after every run, so a killed bench keeps its finished rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ablations import RECIPE_MODELS, Settings, demo_data, quiet_lightning, recipe_config, run_option
from affectkit.config import CLASS_NAMES
from affectkit.data.datamodule import PreparedData
from affectkit.data.layouts.fer2013 import FERPLUS_TO_AFFECTKIT, NO_MAJORITY, ferplus_votes
from threads import add_threads_option, use_threads

ANNOTATORS = 10
# The expression each is most often mistaken for (affectkit ids: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear,
# 5 Disgust, 6 Anger, 7 Contempt), as in FER+'s and AffectNet's confusion matrices.
LOOK_ALIKE = {0: 2, 1: 7, 2: 0, 3: 4, 4: 3, 5: 6, 6: 5, 7: 0}
LOOK_ALIKE_SHARE = 0.6  # of the wrong votes; the rest spread over the other classes
COLUMNS = ("targets", "seed", "accuracy", "macro-F1", "training time (s)")


def simulated_votes(true_class: int, agreement: float, rng: np.random.Generator) -> list[float]:
    """Ten annotators' votes in FER+'s column order (its eight expressions, then unknown and not-a-face, left 0)."""
    votes = [0.0] * (len(FERPLUS_TO_AFFECTKIT) + 2)
    for _ in range(ANNOTATORS):
        if rng.random() < agreement:
            label = true_class
        elif rng.random() < LOOK_ALIKE_SHARE:
            label = LOOK_ALIKE[true_class]
        else:
            label = int(rng.choice([c for c in range(len(CLASS_NAMES)) if c != true_class]))
        votes[FERPLUS_TO_AFFECTKIT.index(label)] += 1
    return votes


def with_votes(data: PreparedData, agreement: tuple[float, float], seed: int) -> tuple[PreparedData, dict[str, float]]:
    """The train and val faces relabelled by simulated annotators through FER+'s rules (in place); the test faces
    keep their true class. Returns the data and what the votes did to the labels."""
    rng = np.random.default_rng(seed)
    distributions = np.eye(len(CLASS_NAMES), dtype=np.float32)[data.expression]
    learnt = np.concatenate([data.positions("train"), data.positions("val")])
    wrong = dropped = 0
    for position in learnt:
        truth = int(data.expression[position])
        votes = simulated_votes(truth, rng.uniform(*agreement), rng)
        majority, distribution = ferplus_votes(votes)  # FER+'s reading of a row, as the fer2013 layout does it
        if majority == NO_MAJORITY:
            data.splits.iloc[position, data.splits.columns.get_loc("split")] = "no majority"
            dropped += 1
            continue
        wrong += majority != truth
        data.expression[position] = majority
        distributions[position] = distribution
    data.expression_distribution = distributions
    kept = len(learnt) - dropped
    return data, {"no majority (left out)": dropped / len(learnt), "majority wrong": wrong / max(kept, 1)}


def markdown(rows: list[dict[str, Any]], settings: Settings, agreement: tuple[float, float],
             label_stats: dict[int, dict[str, float]], sizes: dict[str, int], elapsed: float) -> str:
    stats = "; ".join(f"seed {seed}: " + ", ".join(f"{k} {v:.1%}" for k, v in s.items())
                      for seed, s in label_stats.items())
    lines = [
        "# Training on vote distributions vs their majority (simulated FER+-style annotators)",
        "",
        f"{settings.n} demo faces, {RECIPE_MODELS['resnet50']} trained with configs/recommended.yaml, early stopping "
        f"off; each train/val face voted on by {ANNOTATORS} simulated annotators agreeing with its true class at a "
        f"rate drawn from {agreement[0]}-{agreement[1]} per face, {LOOK_ALIKE_SHARE:.0%} of wrong votes for the true "
        f"class's look-alike; FER+'s majority and distribution rules. {stats}. Split sizes: "
        f"{', '.join(f'{k} {v}' for k, v in sizes.items())}. Test faces keep their true class. Test-split scores of "
        f"the model each run selected on validation. Bench wall time {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['targets']} | {row['seed']} | {row['accuracy']:.3f} | {row['macro-F1']:.3f} | "
                     f"{row['training time (s)']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1200, help="demo faces")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--agreement", type=float, nargs=2, default=(0.2, 0.8), metavar=("LOW", "HIGH"),
                        help="range of each face's annotator agreement with its true class")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 160 faces, 32 px, 1 + 1 epochs")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for label_distribution.md")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "label_distribution.md"
    agreement = tuple(args.agreement)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    label_stats: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="affectkit-label-distribution-") as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            settings = Settings(160 if args.quick else args.n, 32 if args.quick else 112, 0, seed)
            config = recipe_config(settings, root / "cache", args.quick)
            data, label_stats[seed] = with_votes(demo_data(root / f"seed{seed}", settings, False, config),
                                                 agreement, seed)
            sizes = data.splits["split"].value_counts().to_dict()
            for distribution in (False, True):
                result = run_option("", data, root / "runs" / f"{seed}-{distribution}", config, model_name="resnet50",
                                    changes={"label_distribution": distribution})
                row = {"targets": "vote distribution" if distribution else "majority class", "seed": seed, **result}
                rows.append(row)
                print(f"{row['targets']:18s} seed {seed}  acc {row['accuracy']:.3f}  macro-F1 {row['macro-F1']:.3f}  "
                      f"{row['training time (s)']:.0f}s", flush=True)
                report.write_text(markdown(rows, settings, agreement, label_stats, sizes, time.perf_counter() - start))
    print(f"Wrote {report} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
