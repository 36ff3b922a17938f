"""Which map to trust: the deletion test (Petsiuk et al., 2018) of ``affectkit explain``'s three methods. A map is
faithful where the pixels it ranks highest are the ones the answer needs: grey them out first and the confidence
in the answer should fall fastest.

For each saved model of a run, on its test faces: each face's map of the class it is answered (Grad-CAM, layer
auto; occlusion, and the same with each place covered by the face blurred, alone or beside grey: ``occlusion_blur``,
``occlusion_both``; integrated gradients, and the same from one of its two starts alone: ``ig_grey``, ``ig_blur``;
and a random map as the floor), then the face answered again with the top 0-30% of its pixels by that map deleted, as
served (flip test-time augmentation where the model has it): set to the grey occlusion covers the face with and one
of integrated gradients' paths starts from (``--fill grey``: 0 after normalisation), to a heavily blurred copy of the
face (``--fill blur``: where its other path starts), or to noise (``--fill noise``: a standard normal draw after
normalisation, which no method was computed with, so none is favoured). Prints, per model and method, the mean
probability of the answered class at each share deleted, the area under that curve (lower: more faithful) and the
seconds a face took to map.

    affectkit demo --out /tmp/demo -q          # a run to explain (any run folder and its data will do)
    python bench/explain_faithfulness.py --run /tmp/demo --data ~/.cache/affectkit/demo-data-n1000-seed0-*
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from affectkit.inference.explain import blurred, face_maps, integrated_gradients, occlusion
from affectkit.inference.predictor import input_normalization, preprocess, served_outputs, softmax
from affectkit.inference.torch_backend import TorchBackend
from affectkit.models.io import load_model
from affectkit.models.metadata import config_from_metadata
from affectkit.pipeline.run import evaluation_data

DELETED = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # shares of the crop's pixels greyed out, most important first
BATCH = 16


def answered(backend: TorchBackend, batch: np.ndarray, tta_flip: bool, temperature: float) -> np.ndarray:
    """Class probabilities (N, C) as the model is served."""
    return softmax(served_outputs(backend, batch, tta_flip)[0], temperature)


def filler(batch: np.ndarray, fill: str, rng: np.random.Generator) -> np.ndarray:
    """What a deleted pixel becomes: grey (0 after normalisation), the face blurred (a sigma of a tenth of it), or
    noise drawn from ``rng``."""
    if fill == "grey":
        return np.zeros_like(batch)
    if fill == "noise":
        return rng.standard_normal(batch.shape).astype(batch.dtype)
    return blurred(batch)


def deletion_curve(backend: TorchBackend, batch: np.ndarray, maps: np.ndarray, classes: np.ndarray, tta_flip: bool,
                   temperature: float, fill: str, rng: np.random.Generator) -> np.ndarray:
    """(N, len(DELETED)): each face's probability of ``classes`` with the top shares of its pixels by ``maps``
    deleted (``filler``; ties, as in a map's empty cells, broken at random)."""
    faces, side = len(batch), batch.shape[-1]
    order = np.lexsort((rng.random(maps.reshape(faces, -1).shape), -maps.reshape(faces, -1)), axis=1)
    fillers = filler(batch, fill, rng).reshape(faces, batch.shape[1], -1)
    curve = np.empty((faces, len(DELETED)))
    for j, share in enumerate(DELETED):
        deleted = batch.copy().reshape(faces, batch.shape[1], -1)
        for i in range(faces):
            top = order[i, :round(share * side * side)]
            deleted[i, :, top] = fillers[i, :, top]
        probabilities = answered(backend, deleted.reshape(batch.shape), tta_flip, temperature)
        curve[:, j] = probabilities[np.arange(faces), classes]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder: its best_*.safetensors are explained")
    parser.add_argument("--data", type=Path, required=True, help="the data set the run was trained on")
    parser.add_argument("--models", nargs="*", default=None, help="display names (default: every model of the run)")
    parser.add_argument("--faces", type=int, default=96, help="test faces per model (the first of the split)")
    parser.add_argument("--fill", choices=["grey", "blur", "noise"], default="grey",
                        help="what a deleted pixel becomes")
    parser.add_argument("--methods", nargs="+",
                        choices=["gradcam", "occlusion", "occlusion_blur", "occlusion_both", "ig", "ig_grey",
                                 "ig_blur", "random"],
                        default=["gradcam", "occlusion", "ig", "random"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for weights in sorted(args.run.glob("best_*.safetensors")):
        name = weights.stem.removeprefix("best_")
        if args.models is not None and name not in args.models:
            continue
        model, meta = load_model(weights)
        if "class_names" not in meta:
            continue
        backend = TorchBackend(model)
        prepared = evaluation_data(weights, args.data, "test", None)
        positions = prepared.positions("test")[:args.faces]
        size, (mean, std) = int(meta["input_size"]), input_normalization(meta)
        tta_flip, temperature = config_from_metadata(meta).tta_flip, float(meta.get("temperature") or 1.0)
        for method in args.methods:
            rng = np.random.default_rng(0)
            curves, seconds = [], 0.0
            for start in range(0, len(positions), BATCH):
                batch = preprocess(np.asarray(prepared.images[positions[start:start + BATCH]]), size, mean, std)
                classes = answered(backend, batch, tta_flip, temperature).argmax(1)
                began = time.perf_counter()
                if method == "random":
                    maps = rng.random((len(batch), size, size))
                elif method in ("ig_grey", "ig_blur"):  # integrated gradients from one of its two starts alone
                    maps = integrated_gradients(model, batch, classes.tolist(), tta_flip,
                                                starts=[method.removeprefix("ig_")])
                elif method in ("occlusion_blur", "occlusion_both"):  # a blurred patch, alone or beside the grey
                    maps = occlusion(backend, batch, classes.tolist(), tta_flip, temperature,
                                     fills=("blur",) if method == "occlusion_blur" else ("grey", "blur"))
                else:
                    maps = face_maps(method, batch, classes.tolist(), model, backend, tta_flip, temperature)
                seconds += time.perf_counter() - began
                curves.append(deletion_curve(backend, batch, maps, classes, tta_flip, temperature, args.fill, rng))
            curve = np.concatenate(curves).mean(0)
            rows.append({"model": name, "size": size, "fill": args.fill, "method": method,
                         **{f"{share:.0%}": p for share, p in zip(DELETED, curve)},
                         "deletion_auc": float(np.trapezoid(curve, DELETED) / DELETED[-1]),
                         "s_per_face": seconds / len(positions)})
            print(f"{name} {method}: deletion AUC {rows[-1]['deletion_auc']:.3f}, "
                  f"{rows[-1]['s_per_face']:.3f} s/face", flush=True)
    table = pd.DataFrame(rows)
    columns = ["model", "size", "fill", "method", *[f"{s:.0%}" for s in DELETED], "deletion_auc", "s_per_face"]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in table[columns].itertuples(index=False):
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
