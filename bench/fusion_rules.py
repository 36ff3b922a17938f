"""How the recipe fuses its networks: fusion rules compared on a CK+-shaped set and on the in-the-wild proxies.

Trains the recipe's networks once as the recipe ships them (early stopping and the epoch kept chosen on val), stores
their validation and test logits in ``--out`` (``predictions-<data>-<seed>.npz``), then fits each rule's fusion on
the validation logits alone and scores it on the test split: a study of the rule, never a way to pick a model.
``--replay FILE`` scores the rules on stored logits without training.

    python bench/fusion_rules.py --data ckplus --seed 0 --threads 2 --out /tmp/fusion
    python bench/fusion_rules.py --data hard --seed 0 --threads 2 --out /tmp/fusion      # the hard in-the-wild proxy
    python bench/fusion_rules.py --replay /tmp/fusion/predictions-ckplus-0.npz
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, f1_score

from affectkit.config import load_config
from affectkit.evaluation.calibration import fit_temperature
from affectkit.evaluation.evaluator import Predictions, predict_split
from affectkit.models.io import load_model
from affectkit.training.fusion import choose_fusion
from affectkit.training.trainer import train_model

from ablations import quiet_lightning
from selection import RECIPE_FILE, markdown_table, proxy_parser, proxy_set
from threads import use_threads

# The recipe's two networks, then a second MiniXception (another seed) to see what a third branch adds.
NETWORKS = (("resnet50", 0), ("mini_xception", 0), ("mini_xception", 1))


def train_networks(data_name: str, seed: int) -> dict[str, np.ndarray]:
    """Validation and test logits (flip-averaged, as the recipe predicts) of each network, and the labels."""
    with tempfile.TemporaryDirectory(prefix="affectkit-fusion-") as tmp:
        root = Path(tmp)
        studied, data = proxy_set(data_name, seed, root)
        recipe = studied.override(early_stopping_patience=load_config(RECIPE_FILE).early_stopping_patience)
        val, test = data.positions("val"), data.positions("test")
        arrays = {"val_labels": data.expression[val], "test_labels": data.expression[test]}
        for number, (key, offset) in enumerate(NETWORKS):
            result = train_model(key, data, root / f"run{number}", recipe.override(seed=seed + 1000 * offset),
                                 quiet=True)
            model, _ = load_model(result.best_path)
            for split, positions in (("val", val), ("test", test)):
                arrays[f"{split}_{number}"] = predict_split(model, data, positions, progress=False,
                                                            tta_flip=recipe.tta_flip).logits
    return arrays


def _logp(logits: np.ndarray, temperature: float) -> np.ndarray:
    return log_softmax(logits / temperature, axis=1)


def _temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    return fit_temperature(torch.from_numpy(logits), torch.from_numpy(labels))


def _losses(logp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -logp[np.arange(len(labels)), labels]


def _nll(logp: np.ndarray, labels: np.ndarray) -> float:
    return float(_losses(logp, labels).mean())


def beats_chance(logp: np.ndarray, labels: np.ndarray) -> bool:
    """Whether calibrated log-probabilities have a val log-loss below that of the val class frequencies by more than
    one standard error of the per-face differences."""
    prior = np.bincount(labels, minlength=logp.shape[1]) / len(labels)
    gain = -np.log(np.clip(prior[labels], 1e-12, None)) - _losses(logp, labels)
    return bool(gain.mean() > gain.std(ddof=1) / np.sqrt(len(labels)))


def nearest_equal(val: list[np.ndarray], labels: np.ndarray, tolerance: float | None,
                  guard: bool = False) -> tuple[list[float], list[float]]:
    """Weights and temperatures chained as ``choose_fusion`` chains them (each branch joins the fusion before it by
    one weight on a 0.05 grid), but the weight kept is the one nearest an equal share among those whose val log-loss
    is within ``tolerance`` nats of the best; None: within one standard error of the per-face differences from the
    best (and at least 0.001 nats). ``guard``: lean to the equal share only where the fusion so far and the joining
    branch each beat chance (``beats_chance``); otherwise keep the val log-loss minimum."""
    temperatures = [_temperature(val[0], labels)]
    fused, weights = _logp(val[0], temperatures[0]), [1.0]
    grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    for share, branch in zip(1 / np.arange(2, len(val) + 1), val[1:]):
        temperature = _temperature(_logp(branch, 1.0), labels)
        second = _logp(branch, temperature)
        losses = np.stack([_losses(log_softmax((1 - w) * fused + w * second, axis=1), labels) for w in grid])
        scores = losses.mean(1)
        if guard and not (beats_chance(fused, labels) and beats_chance(second, labels)):
            near = np.array([np.argmin(scores)])
        elif tolerance is None:
            spread = (losses - losses[np.argmin(scores)]).std(1, ddof=1) / np.sqrt(len(labels))
            near = np.flatnonzero(scores <= scores.min() + np.maximum(spread, 1e-3))
        else:
            near = np.flatnonzero(scores <= scores.min() + tolerance)
        w = float(grid[near[np.argmin(np.abs(grid[near] - share))]])
        fused = log_softmax((1 - w) * fused + w * second, axis=1)
        weights = [x * (1 - w) for x in weights] + [w]
        temperatures.append(temperature)
    return weights, temperatures


def equal(val: list[np.ndarray], labels: np.ndarray) -> tuple[list[float], list[float]]:
    return [1 / len(val)] * len(val), [_temperature(z, labels) for z in val]


def the_recipe(val: list[np.ndarray], labels: np.ndarray) -> tuple[list[float], list[float]]:
    fit = choose_fusion([Predictions(z, np.zeros((len(z), 2), dtype=np.float32)) for z in val], labels)
    return list(fit.weights), list(fit.temperatures)


def fused_logp(logits: list[np.ndarray], weights: list[float], temperatures: list[float]) -> np.ndarray:
    return log_softmax(sum(w * _logp(z, t) for w, z, t in zip(weights, logits, temperatures)), axis=1)


Rule = Callable[[list[np.ndarray], np.ndarray], tuple[list[float], list[float]]]


def rules() -> dict[str, Rule]:
    return {
        "by val log-loss (the recipe: choose_fusion)": the_recipe,
        "nearest equal within 0.01 nats": lambda v, y: nearest_equal(v, y, 0.01),
        "nearest equal within one SE": lambda v, y: nearest_equal(v, y, None),
        "nearest equal within one SE, both beating chance": lambda v, y: nearest_equal(v, y, None, guard=True),
        "equal weights": equal,
    }


def replay(arrays: dict[str, np.ndarray]) -> list[dict]:
    """Each rule's test scores, on the recipe's two networks and with the third branch."""
    y_val, y_test = arrays["val_labels"], arrays["test_labels"]
    rows = []
    for number, (key, offset) in enumerate(NETWORKS):
        temperature = _temperature(arrays[f"val_{number}"], y_val)
        name = f"{key}{', another seed' if offset else ''} alone"
        rows.append(_row(name, _logp(arrays[f"test_{number}"], temperature), y_test, [1.0], [temperature],
                         _nll(_logp(arrays[f"val_{number}"], temperature), y_val)))
    for branches in (2, 3):
        val = [arrays[f"val_{i}"] for i in range(branches)]
        test = [arrays[f"test_{i}"] for i in range(branches)]
        for name, rule in rules().items():
            weights, temperatures = rule(val, y_val)
            # The fused model's own temperature on val, as the benchmark fits one for every model it stores.
            fused_val = fused_logp(val, weights, temperatures)
            final = _temperature(fused_val, y_val)
            rows.append(_row(f"{branches} networks: {name}", _logp(fused_logp(test, weights, temperatures), final),
                             y_test, weights, [*temperatures, final], _nll(_logp(fused_val, final), y_val)))
    return rows


def _row(name: str, logp: np.ndarray, labels: np.ndarray, weights: list[float], temperatures: list[float],
         val_nll: float) -> dict:
    predicted = logp.argmax(1)
    return {"fusion": name, "weights": "/".join(f"{w:.2f}" for w in weights),
            "temperatures (branches/fused)": "/".join(f"{t:.3f}" for t in temperatures), "val NLL": round(val_nll, 4),
            "test accuracy": round(accuracy_score(labels, predicted), 4),
            "test macro-F1": round(f1_score(labels, predicted, average="macro"), 4),
            "test NLL": round(_nll(logp, labels), 4)}


Arrays = dict[str, np.ndarray]


def stored_logit_study(description: str, default_data: str, stem: str, train: Callable[[str, int], Arrays],
                       score: Callable[[Arrays], list[dict]]) -> None:
    """The command of a study on stored logits: ``train`` on ``--data`` / ``--seed`` and store what it returns in
    ``--out`` as ``<stem>-<data>-<seed>.npz``, or ``--replay`` a stored file; then print ``score``'s table."""
    parser = proxy_parser(description, default_data)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for the stored logits")
    parser.add_argument("--replay", type=Path, help="score stored logits instead of training")
    args = parser.parse_args()
    use_threads(args)
    quiet_lightning()
    start = time.perf_counter()
    if args.replay:
        arrays = dict(np.load(args.replay))
    else:
        arrays = train(args.data, args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(args.out / f"{stem}-{args.data}-{args.seed}.npz", **arrays)
    print(markdown_table(score(arrays)))
    print(f"{time.perf_counter() - start:.0f}s")


def main() -> None:
    stored_logit_study(__doc__.split("\n\n")[0], "ckplus", "predictions", train_networks, replay)


if __name__ == "__main__":
    main()
