"""What each opt-in "future improvement" does for the custom CNN, one option at a time against a baseline; with
``--recipe``, what each choice of the recommended recipe (configs/recommended.yaml) is worth, one at a time undone.

Every run trains the custom CNN from the same seed on the same split for the same number of epochs (early stopping
is off so no option gets a shorter budget), then scores its best-validation-loss model on the test split. The
class-balancing options (focal loss, class-weighted CE, weighted sampler) and a baseline run again on an imbalanced
demo set (AffectNet-like skew), where macro-F1 is the number to read.

One seed and a small test split: differences of a few points are noise, not evidence.

    python bench/ablations.py                       # 16 runs; 27 min for 15 measured on a shared, loaded 2-core box
    python bench/ablations.py --quick               # smoke run, under a minute
    python bench/ablations.py --option "SE attention" --option "self-attention (last stage)"   # those and baseline
    python bench/ablations.py --n 1600 --img-size 64 --epochs 30 --out results/
    python bench/ablations.py --recipe --n 1600    # the recipe's levers; writes recipe_ablations.md
    python bench/ablations.py --recipe --n 1200 --label-noise 0.3 --intensity 0.15 0.45 --lever "no mixup"
                                                   # on the hard in-the-wild proxy (bench/results/hard_proxy.md)

The recipe setting stands in for a small real set: a few hundred faces per class with the renderer's nuisances
(pose, lighting, occluders, background clutter), MobileNetV2 from its shipped ImageNet weights.

Writes ablations.md (rewritten after every run, so a killed bench keeps its finished rows).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectkit.config import Config, parse_set_options
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.synthetic import INTENSITY_RANGE, make_demo_dataset
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.models import load_model
from affectkit.training.trainer import train_model

from threads import add_threads_option, use_threads

BALANCING = ("focal loss (gamma 2)", "class-weighted CE", "weighted sampler")
OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "mixup (alpha 0.2)": {"augmentation.mixup_alpha": 0.2},
    "cutmix (alpha 1.0)": {"augmentation.cutmix_alpha": 1.0},
    "RandAugment (rand-m9-mstd0.5)": {"augmentation.rand_augment": "rand-m9-mstd0.5"},
    "TrivialAugment": {"augmentation.trivial_augment": True},
    "focal loss (gamma 2)": {"loss.focal_gamma": 2.0},
    "class-weighted CE": {"loss.class_weighting": True},
    "weighted sampler": {"weighted_sampler": True},
    "CCC regression loss": {"loss.regression": "ccc"},
    "SE attention": {"attention": "se"},
    "CBAM attention": {"attention": "cbam"},
    "self-attention (last stage)": {"attention": "self"},
}
# Each lever of the recommended recipe, undone one at a time (the first row is the recipe itself).
RECIPE_LEVERS: dict[str, dict[str, Any]] = {
    "recommended recipe": {},
    "random start instead of ImageNet": {"pretrained": False},
    "spec fine-tuning (Adam 1e-4 flat, no warm-up, BatchNorm trained)": {
        "optimizer": "adam", "weight_decay": 0.0, "fine_tune_lr": 1e-4, "backbone_lr_scale": 1.0,
        "fine_tune_warmup_epochs": 0, "fine_tune_batchnorm": "train", "lr_schedule": "plateau"},
    "no warm-up, BatchNorm trained in phase 2": {"fine_tune_warmup_epochs": 0, "fine_tune_batchnorm": "train"},
    "64 px instead of the recipe's size": {"img_size": 64},
    "112 px instead of the recipe's size": {"img_size": 112},
    "no label smoothing": {"loss.label_smoothing": 0.0},
    "Adam without weight decay": {"optimizer": "adam", "weight_decay": 0.0},
    "no flip test-time augmentation": {"tta_flip": False},
    "select on validation macro-F1 instead of loss": {"selection_metric": "val_macro_f1"},
    "random erasing added (p 0.25)": {"augmentation.random_erasing": 0.25},
    "degradation added (p 0.3)": {"augmentation.degrade": 0.3},
    "face masks added (p 0.3)": {"augmentation.face_mask": 0.3},
    "no phase-2 step minimum": {"fine_tune_min_steps": 0},
    "no mixup": {"augmentation.mixup_alpha": 0.0},
    "label smoothing 0.2 instead of 0.1": {"loss.label_smoothing": 0.2},
    "weight averaging (EMA) added": {"ema_decay": 0.999},
    "no TrivialAugment": {"augmentation.trivial_augment": False},
    "CutMix added (alpha 1, half the mixed batches)": {"augmentation.cutmix_alpha": 1.0},
    "early stopping (patience 8)": {"early_stopping_patience": 8},
    "backbone learning rate x1 instead of x0.3": {"backbone_lr_scale": 1.0},
    "FER2013's 7 scores added to MiniXception's features": {"mini_xception_scores": True},
}
RECIPE_BALANCING = ("recommended recipe", "class-weighted CE")
# The recipe's two networks (``--model``), by key and as the report names them.
RECIPE_MODELS = {"resnet50": "MobileNetV2 (the light ResNet50)", "mini_xception": "MiniXception (FER2013 weights)"}

COLUMNS = ("option", "data", "accuracy", "macro-F1", "valence CCC", "arousal CCC", "training time (s)")
# The renderer's fine strokes (wrinkles, lids) need some pixels; the image cache then resizes to --img-size.
MIN_RENDER_SIZE = 64



@dataclass(frozen=True)
class Settings:
    n: int
    img_size: int
    epochs: int
    seed: int
    label_noise: float = 0.0
    intensity: tuple[float, float] = INTENSITY_RANGE  # the rendered expressions' strength: lower is subtler


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|litlogger).*")


def base_config(settings: Settings, cache_dir: Path) -> Config:
    return Config(img_size=settings.img_size, batch_size=32, epochs=settings.epochs, fine_tune_epochs=0,
                  early_stopping_patience=max(settings.epochs, 1), num_workers=0, seed=settings.seed,
                  cache_dir=str(cache_dir))


def demo_data(root: Path, settings: Settings, imbalance: bool, config: Config) -> PreparedData:
    """Render the demo set and split it once; every run on it shares ``splits.csv``."""
    folder = root / ("imbalanced" if imbalance else "balanced")
    make_demo_dataset(folder / "data", n=settings.n, seed=settings.seed,
                      img_size=max(settings.img_size, MIN_RENDER_SIZE), imbalance=imbalance, progress=False,
                      intensity_range=settings.intensity)
    return with_label_noise(prepare_data(folder / "data", config, splits_path=folder / "splits.csv", progress=False),
                            settings.label_noise, settings.seed)


def with_label_noise(data: PreparedData, rate: float, seed: int) -> PreparedData:
    """Replace the expression of a ``rate`` share of the train and val faces by another class drawn uniformly; the
    test faces keep theirs. In-the-wild sets carry such noise (AffectNet's annotators agree on about 60% of faces),
    which the rendered faces do not: their labels are exact."""
    if rate <= 0:
        return data
    rng = np.random.default_rng(seed)
    learnt = np.concatenate([data.positions("train"), data.positions("val")])
    flipped = learnt[rng.random(len(learnt)) < rate]
    present = np.unique(data.expression)
    for position in flipped:
        others = present[present != data.expression[position]]
        data.expression[position] = rng.choice(others)
    return data


def run_option(option: str, data: PreparedData, run_dir: Path, config: Config, model_name: str = "custom_cnn",
               changes: dict[str, Any] | None = None) -> dict[str, Any]:
    run_config = config.override(**(OPTIONS[option] if changes is None else changes))
    result = train_model(model_name, data, run_dir, run_config, quiet=True)
    model, _ = load_model(result.best_path)
    test = data.positions("test")
    pred = predict_split(model, data, test, progress=False, tta_flip=run_config.tta_flip)
    metrics = score(pred, data, test)
    return {"accuracy": metrics["expression"]["accuracy"], "macro-F1": metrics["expression"]["macro_f1"],
            "valence CCC": metrics["valence"]["ccc"], "arousal CCC": metrics["arousal"]["ccc"],
            "training time (s)": result.train_time_s}


def markdown(rows: list[dict[str, Any]], settings: Settings, sizes: dict[str, dict[str, int]], elapsed: float,
             recipe: Config | None = None, model: str = "MobileNetV2 (the light ResNet50)") -> str:
    split = "; ".join(f"{kind}: {', '.join(f'{k} {v}' for k, v in counts.items())}" for kind, counts in sizes.items())
    if recipe is None:
        title = "# Ablations: custom CNN, one option at a time"
        setting = (f"{settings.n} demo faces per data set at {settings.img_size}x{settings.img_size}, {settings.epochs} "
                   f"epochs, seed {settings.seed}, batch 32, early stopping off")
    else:
        title = "# Ablations: the recommended recipe, one choice undone at a time"
        setting = (f"{settings.n} demo faces per data set, {model} trained with "
                   f"configs/recommended.yaml ({recipe.img_size} px, phase 1 {recipe.epochs} + phase 2 "
                   f"{recipe.fine_tune_epochs} epochs, stretched to at least {recipe.fine_tune_min_steps} steps), each row changing only what its name says, seed "
                   f"{settings.seed}, early stopping off")
    if settings.intensity != INTENSITY_RANGE:
        setting += f", expressions at {settings.intensity[0]}-{settings.intensity[1]} of their full strength"
    if settings.label_noise:
        setting += (f", {settings.label_noise:.0%} of the train and val faces given another class at random (test "
                    f"labels exact)")
    lines = [
        title,
        "",
        f"{setting}, {torch.get_num_threads()} PyTorch thread(s); split sizes {split}. Test-split scores of the model "
        f"each run selected on validation. One seed and a small test split: a few points either way is noise. Bench "
        f"wall time {elapsed / 60:.1f} min.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|",
    ]
    for row in rows:
        cells = [row["option"], row["data"], *(f"{row[c]:.3f}" for c in COLUMNS[2:-1]), f"{row[COLUMNS[-1]]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plan(quick: bool, only: list[str] | None = None) -> list[tuple[str, bool]]:
    """(option, imbalanced) pairs: every option on balanced data, the balancing ones again on the skewed set; with
    ``only``, the baseline and those options on balanced data."""
    if quick:
        return [("baseline", False), ("mixup (alpha 0.2)", False), ("baseline", True), ("weighted sampler", True)]
    if only:
        unknown = [option for option in only if option not in OPTIONS]
        if unknown:
            raise SystemExit(f"Unknown --option {unknown}; choose from {list(OPTIONS)}.")
        return [(option, False) for option in ("baseline", *(o for o in only if o != "baseline"))]
    return [(option, False) for option in OPTIONS] + [(option, True) for option in ("baseline", *BALANCING)]


def recipe_plan(quick: bool, only: list[str] | None = None, reference: bool = True) -> list[tuple[str, bool]]:
    """Every lever on balanced data and the balancing pair on the skewed set; with ``only``, the recipe and those
    levers on balanced data (without the recipe's own row when not ``reference``)."""
    if only:
        unknown = [lever for lever in only if lever not in RECIPE_LEVERS]
        if unknown:
            raise SystemExit(f"Unknown lever {unknown[0]!r}; the levers are: {'; '.join(RECIPE_LEVERS)}")
        return [(lever, False) for lever in dict.fromkeys(["recommended recipe", *only] if reference else only)]
    levers = list(RECIPE_LEVERS)[:2] if quick else list(RECIPE_LEVERS)
    return [(lever, False) for lever in levers] + [(lever, True) for lever in RECIPE_BALANCING[: 1 if quick else 2]]


def recipe_changes(lever: str, recipe: Config) -> dict[str, Any]:
    if lever == "class-weighted CE":
        return {"loss.class_weighting": True}
    return RECIPE_LEVERS[lever]


def recipe_config(settings: Settings, cache_dir: Path, quick: bool) -> Config:
    from affectkit.config import load_config

    recipe = load_config(Path(__file__).parents[1] / "configs" / "recommended.yaml")
    changes: dict[str, Any] = {"seed": settings.seed, "cache_dir": str(cache_dir), "num_workers": 0,
                               "early_stopping_patience": 1000}
    if quick:
        changes.update(img_size=32, epochs=1, fine_tune_epochs=1)
    return recipe.override(**changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="demo faces per data set")
    parser.add_argument("--img-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-noise", type=float, default=0.0,
                        help="share of train and val faces given a wrong expression (test labels stay exact)")
    parser.add_argument("--intensity", type=float, nargs=2, default=INTENSITY_RANGE, metavar=("LOW", "HIGH"),
                        help="strength of the rendered expressions, 0-1 (default: the demo's); lower is subtler")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: 160 faces, 32 px, 2 epochs, 4 runs")
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for ablations.md")
    parser.add_argument("--recipe", action="store_true", help="ablate the recommended recipe's choices instead")
    parser.add_argument("--set", action="append", default=[], help="with --recipe: KEY=VALUE changes to the recipe")
    parser.add_argument("--model", default="resnet50", choices=RECIPE_MODELS,
                        help="with --recipe: the recipe network to train (resnet50 is the light MobileNetV2)")
    parser.add_argument("--lever", action="append", default=[],
                        help="with --recipe: run only the recipe and this lever (repeatable), balanced data only")
    parser.add_argument("--option", action="append", default=[],
                        help="run only the baseline and this option (repeatable), balanced data only")
    parser.add_argument("--no-reference", action="store_true",
                        help="with --lever: skip the recipe's own row (runs are deterministic: one already measured "
                             "at this seed and setting stands)")
    args = parser.parse_args()
    use_threads(args)
    sizes_and_epochs = (160, 32, 2) if args.quick else (args.n, args.img_size, args.epochs)
    if args.recipe and not args.quick:  # faces rendered at 112 px, the largest size the recipe's levers try
        sizes_and_epochs = (args.n, 112, args.epochs)
    settings = Settings(*sizes_and_epochs, args.seed, args.label_noise, tuple(args.intensity))
    quiet_lightning()
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / ("recipe_ablations.md" if args.recipe else "ablations.md")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-ablations-") as tmp:
        root = Path(tmp)
        recipe = recipe_config(settings, root / "cache", args.quick).override(**parse_set_options(args.set)) \
            if args.recipe else None
        config = recipe or base_config(settings, root / "cache")
        runs = recipe_plan(args.quick, args.lever, not args.no_reference) if recipe else plan(args.quick, args.option)
        datasets = {kind: demo_data(root, settings, kind == "imbalanced", config)
                    for kind in ("balanced", "imbalanced") if any((kind == "imbalanced") == skew for _, skew in runs)}
        sizes = {kind: d.splits["split"].value_counts().to_dict() for kind, d in datasets.items()}
        rows: list[dict[str, Any]] = []
        for i, (option, imbalanced) in enumerate(runs):
            kind = "imbalanced" if imbalanced else "balanced"
            run_dir = root / "runs" / f"{i:02d}"
            if recipe is None:
                result = run_option(option, datasets[kind], run_dir, config)
            else:
                changes = recipe_changes(option, recipe)
                data = datasets[kind]
                if changes.get("img_size", recipe.img_size) != recipe.img_size:  # same faces and split, resized
                    folder = root / kind
                    resized = prepare_data(folder / "data", config.override(img_size=changes["img_size"]),
                                           splits_path=folder / "splits.csv", progress=False)
                    data = with_label_noise(resized, settings.label_noise, settings.seed)
                    if not np.array_equal(data.expression, datasets[kind].expression):
                        raise RuntimeError(f"{option!r}: the resized faces' labels differ from the recipe's")
                result = run_option(option, data, run_dir, config, model_name=args.model, changes=changes)
            row = {"option": option, "data": kind, **result}
            rows.append(row)
            print(f"{option:32s} {kind:10s} acc {row['accuracy']:.3f}  macro-F1 {row['macro-F1']:.3f}  "
                  f"CCC v {row['valence CCC']:.3f} a {row['arousal CCC']:.3f}  {row['training time (s)']:.0f}s",
                  flush=True)
            report.write_text(markdown(rows, settings, sizes, time.perf_counter() - start, recipe,
                                       RECIPE_MODELS[args.model]))
    print(f"Wrote {report} ({(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
