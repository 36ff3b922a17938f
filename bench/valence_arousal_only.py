"""Training with faces annotated for valence/arousal only (Aff-Wild2's VA frames, a manifest's rows without an
expression) against leaving them out, as affectkit had to before it read them.

Aff-Wild2's VA challenge annotates far more frames than its expression challenge; a set like it gives every face
valence and arousal but only some faces a class. The demo faces are rendered and split once; of the train and val
faces, only a ``--classed`` share keep their class. Each row trains the recommended recipe's network (MobileNetV2
from ImageNet, configs/recommended.yaml) either on the classed faces alone or on every face, those without a class
training the valence/arousal heads only, and scores the model it selected on validation on the test faces, which
all keep their class and valence/arousal.

    python bench/valence_arousal_only.py --n 1200 --seeds 0 1 --out bench/results
    python bench/valence_arousal_only.py --quick     # smoke run, about a minute

Writes valence_arousal_only.md (rewritten after every run, so a killed bench keeps its finished rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ablations import RECIPE_MODELS, Settings, demo_data, quiet_lightning, recipe_config, run_option
from affectkit.config import NO_EXPRESSION
from affectkit.data.datamodule import PreparedData
from threads import add_threads_option, use_threads

COLUMNS = ("faces trained on", "seed", "accuracy", "macro-F1", "valence CCC", "arousal CCC", "training time (s)")
LEFT_OUT = "left out"  # a split name no run reads


def partly_classed(data: PreparedData, share: float, seed: int, keep_unclassed: bool) -> PreparedData:
    """``data`` with only a ``share`` of its train and val faces keeping their class (drawn per split); the others
    lose it (``keep_unclassed``) or leave the run. The test faces keep theirs. Changes ``data`` in place."""
    rng = np.random.default_rng(seed)
    split_column = data.splits.columns.get_loc("split")
    for split in ("train", "val"):
        positions = data.positions(split)
        unclassed = rng.permutation(positions)[int(round(share * len(positions))):]
        if keep_unclassed:
            data.expression[unclassed] = NO_EXPRESSION
        else:
            data.splits.iloc[unclassed, split_column] = LEFT_OUT
    return data


def markdown(rows: list[dict[str, Any]], settings: Settings, share: float, sizes: dict[str, int],
             elapsed: float) -> str:
    lines = [
        "# Faces with valence/arousal only: trained on, or left out",
        "",
        f"{settings.n} demo faces, {RECIPE_MODELS['resnet50']} trained with configs/recommended.yaml, early stopping "
        f"off; {share:.0%} of the train and val faces keep their class, the others have valence/arousal only and are "
        f"either trained on (valence/arousal heads only) or left out. Split sizes with every face: "
        f"{', '.join(f'{k} {v}' for k, v in sizes.items())}. Test faces keep their class and valence/arousal. "
        f"Test-split scores of the model each run selected on validation. Bench wall time {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for row in rows:
        lines.append(f"| {row['faces trained on']} | {row['seed']} | {row['accuracy']:.3f} | {row['macro-F1']:.3f} | "
                     f"{row['valence CCC']:.3f} | {row['arousal CCC']:.3f} | {row['training time (s)']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1200, help="demo faces")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--classed", type=float, default=0.3, help="share of train/val faces that keep their class")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 160 faces, 32 px, 1 + 1 epochs")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for valence_arousal_only.md")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "valence_arousal_only.md"
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="affectkit-va-only-") as tmp:
        root = Path(tmp)
        for seed in args.seeds:
            settings = Settings(160 if args.quick else args.n, 32 if args.quick else 112, 0, seed)
            config = recipe_config(settings, root / "cache", args.quick)
            for keep in (False, True):
                # Rendered and split afresh (from the same seed: the same faces and split) for each row, which
                # changes the data in place.
                data = demo_data(root / f"seed{seed}-{keep}", settings, False, config)
                sizes = data.splits["split"].value_counts().to_dict()
                data = partly_classed(data, args.classed, seed, keep)
                result = run_option("", data, root / "runs" / f"{seed}-{keep}", config, model_name="resnet50",
                                    changes={})
                label = "every face (unclassed: valence/arousal only)" if keep else "classed faces only"
                row = {"faces trained on": label, "seed": seed, **result}
                rows.append(row)
                print(f"{label:45s} seed {seed}  acc {row['accuracy']:.3f}  macro-F1 {row['macro-F1']:.3f}  "
                      f"CCC v {row['valence CCC']:.3f} a {row['arousal CCC']:.3f}  {row['training time (s)']:.0f}s",
                      flush=True)
                report.write_text(markdown(rows, settings, args.classed, sizes, time.perf_counter() - start))
    print(f"Wrote {report} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
