"""Test-time augmentation beyond the mirror image: does averaging a face's outputs over small shifts and zooms help?

Trains the recipe's two networks once on a proxy set as the recipe ships them (as ``fusion_rules.py`` does), then
predicts the val and test faces with several sets of views (each view's logits averaged, as the flip TTA does) and
scores each network, and their fusion with weights fitted on val by the recipe's rule, on the test split. A study of
the views, never a way to pick a model: every view set is reported.

    python bench/tta_views.py --data hard --seed 0 --threads 2 --out /tmp/tta
    python bench/tta_views.py --replay /tmp/tta/views-hard-0.npz
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

from affectkit.config import load_config
from affectkit.data.datamodule import PreparedData, normalise_batch
from affectkit.models.io import load_model
from affectkit.training.trainer import train_model

from fusion_rules import _logp, _nll, _temperature, fused_logp, stored_logit_study, the_recipe
from selection import RECIPE_FILE, proxy_set

NETWORKS = ("resnet50", "mini_xception")  # the recipe's MobileNetV2 (light) and MiniXception
SHIFT = 0.05  # of the side: half the largest training shift
ZOOM = 0.9  # crop side kept by the zoom-in view; its reciprocal for the zoom-out view

View = Callable[[torch.Tensor], torch.Tensor]


def shift(dx: int, dy: int) -> View:
    """Move the face by (dx, dy) pixels, edges repeated as the training augmentation fills them."""
    def view(x: torch.Tensor) -> torch.Tensor:
        pad = max(abs(dx), abs(dy))
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        h, w = x.shape[-2:]
        return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return view


def zoom(scale: float) -> View:
    """Zoom in (scale < 1: the centre crop of that side, resized back) or out (scale > 1: shrunk, edges repeated)."""
    def view(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if scale < 1:
            ch, cw = round(h * scale), round(w * scale)
            top, left = (h - ch) // 2, (w - cw) // 2
            return F.interpolate(x[..., top : top + ch, left : left + cw], size=(h, w), mode="bilinear",
                                 align_corners=False)
        sh, sw = round(h / scale), round(w / scale)
        small = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (h - sh) // 2, (w - sw) // 2
        return F.pad(small, (left, w - sw - left, top, h - sh - top), mode="replicate")
    return view


def with_mirrors(views: list[View]) -> list[View]:
    return [v for view in views for v in (view, lambda x, view=view: view(x).flip(3))]


def view_sets(size: int) -> dict[str, list[View]]:
    s = max(1, round(SHIFT * size))
    identity: View = lambda x: x  # noqa: E731
    shifts = [shift(s, 0), shift(-s, 0), shift(0, s), shift(0, -s)]
    zooms = [zoom(ZOOM), zoom(1 / ZOOM)]
    return {
        "none": [identity],
        "flip (the recipe)": with_mirrors([identity]),
        "flip + 4 shifts": with_mirrors([identity, *shifts]),
        "flip + zoom in/out": with_mirrors([identity, *zooms]),
        "flip + 4 shifts + zoom in/out": with_mirrors([identity, *shifts, *zooms]),
    }


@torch.inference_mode()
def view_logits(model: torch.nn.Module, data: PreparedData, positions: np.ndarray,
                sets: dict[str, list[View]], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per view set, the logits averaged over its views, for ``positions`` in order."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {name: [] for name in sets}
    for start in range(0, len(positions), batch_size):
        idx = positions[start : start + batch_size]
        x = normalise_batch(torch.from_numpy(np.asarray(data.images[np.sort(idx)])).permute(0, 3, 1, 2))
        x = x[torch.from_numpy(np.argsort(np.argsort(idx)))]
        for name, views in sets.items():
            logits = torch.stack([model(view(x))[0].float() for view in views]).mean(0)
            out[name].append(logits.numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def train_and_predict(data_name: str, seed: int) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="affectkit-tta-") as tmp:
        root = Path(tmp)
        studied, data = proxy_set(data_name, seed, root)
        recipe = studied.override(early_stopping_patience=load_config(RECIPE_FILE).early_stopping_patience)
        val, test = data.positions("val"), data.positions("test")
        arrays = {"val_labels": data.expression[val], "test_labels": data.expression[test]}
        sets = view_sets(recipe.img_size)
        for number, key in enumerate(NETWORKS):
            result = train_model(key, data, root / f"run{number}", recipe.override(seed=seed), quiet=True)
            model, _ = load_model(result.best_path)
            for split, positions in (("val", val), ("test", test)):
                for name, logits in view_logits(model, data, positions, sets).items():
                    arrays[f"{split}_{number}_{name}"] = logits
    return arrays


def score(arrays: dict[str, np.ndarray]) -> list[dict]:
    y_val, y_test = arrays["val_labels"], arrays["test_labels"]
    names = [key.removeprefix("val_0_") for key in arrays if key.startswith("val_0_")]
    rows = []
    for name in names:
        val = [arrays[f"val_{n}_{name}"] for n in range(len(NETWORKS))]
        test = [arrays[f"test_{n}_{name}"] for n in range(len(NETWORKS))]
        row: dict = {"views": name}
        for n, label in enumerate(("MobileNetV2", "MiniXception")):
            row[f"{label} test acc"] = round(accuracy_score(y_test, test[n].argmax(1)), 4)
        weights, temperatures = the_recipe(val, y_val)
        fused_val = fused_logp(val, weights, temperatures)
        final = _temperature(fused_val, y_val)
        fused_test = _logp(fused_logp(test, weights, temperatures), final)
        row["fusion weights"] = "/".join(f"{w:.2f}" for w in weights)
        row["fusion val NLL"] = round(_nll(_logp(fused_val, final), y_val), 4)
        row["fusion test acc"] = round(accuracy_score(y_test, fused_test.argmax(1)), 4)
        row["fusion test NLL"] = round(_nll(fused_test, y_test), 4)
        rows.append(row)
    return rows


def main() -> None:
    stored_logit_study(__doc__.split("\n\n")[0], "hard", "views", train_and_predict, score)


if __name__ == "__main__":
    main()
