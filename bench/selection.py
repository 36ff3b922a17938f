"""Which epoch to keep: the recipe's selection rules compared on a CK+-shaped set and on the noisy in-the-wild proxy.

Trains one recipe network once, with early stopping off, and scores the test split after every epoch: a study of
the selection rule itself, never a way to pick a model. Each rule is then replayed over the run's validation history
(the epoch it keeps, the epoch where its early stopping would end the run) and reported with that epoch's test score.

    python bench/selection.py --data ckplus --seed 1 --threads 2                   # MobileNetV2, CK+-shaped faces
    python bench/selection.py --data ckplus --seed 1 --model mini_xception --threads 2
    python bench/selection.py --data noisy --seed 0 --threads 2                    # 1,200 faces, 30% wrong labels
    python bench/selection.py --data hard --seed 0 --threads 2                     # the same, subtle expressions
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch

from affectkit.config import Config, load_config
from affectkit.data.datamodule import PreparedData, prepare_data
from affectkit.data.synthetic import INTENSITY_RANGE
from affectkit.evaluation.evaluator import predict_split, score
from affectkit.training.trainer import phase2_patience, train_model

from ablations import RECIPE_MODELS, Settings, demo_data, quiet_lightning, recipe_config
from ckplus_proxy import render_ckplus_like
from threads import add_threads_option, use_threads

NOISY_FACES, NOISE = 1200, 0.3
# The hard in-the-wild proxy: the noisy one with subtle expressions, so that the recipe lands where real in-the-wild
# sets put it (around half the faces right) instead of near the ceiling (bench/results/hard_proxy.md).
HARD_INTENSITY = (0.15, 0.45)
PROXIES = ("ckplus", "noisy", "hard")
RECIPE_FILE = Path(__file__).parents[1] / "configs" / "recommended.yaml"


class TestScoreEveryEpoch(L.Callback):
    """The kept-so-far model is not what this records: every epoch's own weights, scored on the test split."""

    def __init__(self, data: PreparedData, tta_flip: bool):
        self.data, self.tta_flip, self.scores = data, tta_flip, []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        test = self.data.positions("test")
        with torch.no_grad():
            pred = predict_split(pl_module.evaluated_model, self.data, test, progress=False, tta_flip=self.tta_flip)
        expression = score(pred, self.data, test)["expression"]
        self.scores.append((expression["accuracy"], expression["macro_f1"]))


def replay(history: pd.DataFrame, metric: str | None, patience: int | None) -> tuple[int, int]:
    """(kept epoch, last epoch run) under early stopping on ``metric`` with ``patience`` in phase 2 and the best
    epoch of either phase kept, as the trainer's callbacks do; ``metric`` None keeps the schedule's last epoch."""
    last = int(history["epoch"].iloc[-1])
    if metric is None:
        return last, last
    sign = -1.0 if metric == "val_loss" else 1.0
    phase2 = history[history["phase"] == history["phase"].max()]
    best, wait, stop = -np.inf, 0, last
    for epoch, value in zip(phase2["epoch"], sign * phase2[metric]):
        best, wait = (value, 0) if value > best else (best, wait + 1)
        if wait >= patience:
            stop = int(epoch)
            break
    seen = history[history["epoch"] <= stop]
    return int(seen["epoch"].iloc[int(np.argmax(sign * seen[metric].to_numpy()))]), stop


def proxy_set(name: str, seed: int, root: Path) -> tuple[Config, PreparedData]:
    """The recipe as the studies train it (early stopping off: the whole schedule; cache under ``root``), and the
    CK+-shaped set (``ckplus``), the noisy in-the-wild proxy (``noisy``) or its subtle-expression version (``hard``)
    for ``seed``, rendered under ``root`` and split once."""
    settings = Settings(NOISY_FACES, 112, 0, seed, NOISE, HARD_INTENSITY if name == "hard" else INTENSITY_RANGE)
    recipe = recipe_config(settings, root / "cache", quick=False)
    if name == "ckplus":
        return recipe, prepare_data(render_ckplus_like(root / "ckplus", seed), recipe, splits_path=root / "splits.csv",
                                    progress=False)
    return recipe, demo_data(root, settings, imbalance=False, config=recipe)


def proxy_parser(description: str, default: str) -> argparse.ArgumentParser:
    """The command line of a study on a proxy set: which set (``--data``), its render seed (``--seed``), threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", choices=PROXIES, default=default)
    parser.add_argument("--seed", type=int, default=0)
    add_threads_option(parser)
    return parser


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows])


def rules(config: Config, phase2_epochs: int) -> dict[str, tuple[str | None, int | None]]:
    fixed, stretched = config.early_stopping_patience, phase2_patience(config, phase2_epochs)
    return {
        f"macro-F1, patience {fixed} (the recipe before)": ("val_macro_f1", fixed),
        f"macro-F1, patience {stretched} (stretched)": ("val_macro_f1", stretched),
        f"val loss, patience {fixed}": ("val_loss", fixed),
        f"val loss, patience {stretched} (stretched: the recipe now)": ("val_loss", stretched),
        "last epoch of the schedule": (None, None),
    }


def main() -> None:
    parser = proxy_parser(__doc__.split("\n\n")[0], "ckplus")
    parser.add_argument("--model", default="resnet50", choices=RECIPE_MODELS,
                        help="recipe network (resnet50: its light stand-in MobileNetV2)")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectkit-selection-") as tmp:
        root = Path(tmp)
        recipe, data = proxy_set(args.data, args.seed, root)  # early stopping off: the whole schedule
        recorder = TestScoreEveryEpoch(data, recipe.tta_flip)
        result = train_model(args.model, data, root / "run", recipe, quiet=True, extra_callbacks=[recorder])
    history = result.history.reset_index(drop=True)
    phase2_epochs = int((history["phase"] == history["phase"].max()).sum())
    rows = []
    shipped = load_config(RECIPE_FILE)  # the patience the recipe ships with (the run itself had early stopping off)
    for rule, (metric, patience) in rules(shipped, phase2_epochs).items():
        kept, stopped = replay(history, metric, patience)
        accuracy, macro_f1 = recorder.scores[kept - 1]
        rows.append({"data": args.data, "seed": args.seed, "network": result.name, "rule": rule, "kept epoch": kept,
                     "stopped after": stopped, "test accuracy": round(accuracy, 4),
                     "test macro-F1": round(macro_f1, 4)})
    print(markdown_table(rows))
    print(f"{len(history)} epochs, {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
