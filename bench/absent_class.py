"""What keeping a class the training data lacks out of the loss and the output is worth.

Real sets often have seven of affectkit's eight expressions (CK+ has no neutral face, most in-the-wild sets no
contempt). This bench removes one class from the demo faces and trains the recipe's MobileNetV2 twice on the same
split: as affectkit trains it now (the loss and its label smoothing over the classes present, the absent class given
probability 0), and as it trained before (all eight classes in the loss and the output). It reports the test scores
and how many test faces each run called the absent class.

    python bench/absent_class.py --n 1200 --label-noise 0.3 --seed 0 --threads 2 --out results/

Writes absent_class.md (rewritten after each run).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

from affectkit.config import CLASS_NAMES
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.synthetic import make_demo_dataset
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.models import load_model
from affectkit.models.factory import AffectModel
from affectkit.training.trainer import train_model
from ablations import MIN_RENDER_SIZE, Settings, quiet_lightning, recipe_config, with_label_noise
from threads import add_threads_option, use_threads

VARIANTS = ("absent class masked (affectkit)", "all eight classes (before)")


def without_class(root: Path, label: int) -> int:
    """Delete every demo face of ``label`` (AffectNet layout: an image and its annotation files); how many went."""
    removed = 0
    for path in (root / "annotations").glob("*_exp.npy"):
        if int(np.load(path)) == label:
            stem = path.name.removesuffix("_exp.npy")
            for part in (root / "annotations").glob(f"{stem}_*.npy"):
                part.unlink()
            (root / "images" / f"{stem}.jpg").unlink()
            removed += 1
    return removed


def run(variant: str, data: PreparedData, run_dir: Path, config, absent: int) -> dict[str, Any]:
    # Before, a model's output classes stayed all eight: the loss and the output covered the absent class too.
    keep_all = mock.patch.object(AffectModel, "set_output_classes", lambda self, present: None)
    with keep_all if variant == VARIANTS[1] else contextlib.nullcontext():
        result = train_model("resnet50", data, run_dir, config, quiet=True)
    model, _ = load_model(result.best_path)
    test = data.positions("test")
    pred = predict_split(model, data, test, progress=False, tta_flip=config.tta_flip)
    metrics = score(pred, data, test)["expression"]
    return {"accuracy": metrics["accuracy"], "macro-F1": metrics["macro_f1"],
            "test faces called the absent class": int((pred.logits.argmax(1) == absent).sum()),
            "training time (s)": result.train_time_s}


def markdown(rows: list[dict[str, Any]], settings: Settings, absent: int, sizes: dict[str, int], elapsed: float,
             img_size: int) -> str:
    noise = (f", {settings.label_noise:.0%} of the train and val faces given another class at random (test labels "
             f"exact)" if settings.label_noise else "")
    columns = ["variant", "accuracy", "macro-F1", "test faces called the absent class", "training time (s)"]
    lines = [
        "# A class the training data lacks: masked, or learnt as an eighth class",
        "",
        f"{settings.n} demo faces rendered, every {CLASS_NAMES[absent]} face removed; the recipe's MobileNetV2 "
        f"(configs/recommended.yaml, {img_size} px, early stopping off){noise}; seed {settings.seed}, "
        f"{torch.get_num_threads()} PyTorch thread(s); split {', '.join(f'{k} {v}' for k, v in sizes.items())}. Test "
        f"scores of the model each run selected on validation. Bench wall time {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(columns) + " |",
        "|---|" + "---:|" * (len(columns) - 1),
    ]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['accuracy']:.3f} | {row['macro-F1']:.3f} | "
                     f"{row['test faces called the absent class']} | {row['training time (s)']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1200, help="demo faces rendered, before the class is removed")
    parser.add_argument("--absent", type=int, default=0, help="the class id removed (0: Neutral, as in CK+)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-noise", type=float, default=0.0,
                        help="share of train and val faces given a wrong expression (test labels stay exact)")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for absent_class.md")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    settings = Settings(args.n, MIN_RENDER_SIZE, 0, args.seed, args.label_noise)
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "absent_class.md"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-absent-") as tmp:
        root = Path(tmp)
        config = recipe_config(settings, root / "cache", quick=False)
        faces = make_demo_dataset(root / "data", n=args.n, seed=args.seed, img_size=112, progress=False)
        without_class(faces, args.absent)
        data = with_label_noise(prepare_data(faces, config, splits_path=root / "splits.csv", progress=False),
                                args.label_noise, args.seed)
        sizes = data.splits["split"].value_counts().to_dict()
        rows = []
        for i, variant in enumerate(VARIANTS):
            row = {"variant": variant, **run(variant, data, root / "runs" / str(i), config, args.absent)}
            rows.append(row)
            print(f"{variant:34s} acc {row['accuracy']:.3f}  macro-F1 {row['macro-F1']:.3f}  "
                  f"absent {row['test faces called the absent class']}", flush=True)
            report.write_text(markdown(rows, settings, args.absent, sizes, time.perf_counter() - start,
                                       config.img_size))
    print(f"Wrote {report} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
