"""How hard the synthetic demo data set is: a linear model on raw pixels must fail, a small CNN must succeed.

Generates the demo faces (or reads a folder given with --data), reads them back from disk in the AffectNet layout,
splits them 70/15/15 stratified by class, then fits

* logistic regression on standardized 32x32 grayscale pixels (target: below 50% test accuracy), and
* affectkit's custom CNN (the spec's architecture; loss CE + 0.5 MSE(valence) + 0.5 MSE(arousal)) with a plain
  PyTorch loop on CPU, cosine LR, mild flips/rotations/shifts (target: at least 80% test accuracy, valence and
  arousal MAE at most 0.15). `affectkit train --config configs/demo.yaml` is the same check through the product.

    python bench/demo_difficulty.py                    # about 4 minutes on 2 cores
    python bench/demo_difficulty.py --data DIR --epochs 10

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from affectkit.config import Config
from affectkit.data.datamodule import normalise
from affectkit.data.synthetic import make_demo_dataset
from affectkit.models import build_model


def read_affectnet(root: Path, img_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, S, S, 3) uint8 RGB, labels (N,), valence/arousal (N, 2), parsed straight from the files."""
    ids = sorted((p.stem for p in (root / "images").glob("*.jpg")), key=int)
    images, labels, va = [], [], []
    for sample_id in ids:
        bgr = cv2.imread(str(root / "images" / f"{sample_id}.jpg"), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(cv2.resize(bgr, (img_size, img_size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        ann = root / "annotations"
        labels.append(int(np.load(ann / f"{sample_id}_exp.npy").item()))
        va.append([float(np.load(ann / f"{sample_id}_{kind}.npy").item()) for kind in ("val", "aro")])
    return np.stack(images), np.array(labels), np.array(va, dtype=np.float32)


def stratified_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.arange(len(labels))
    train, rest = train_test_split(idx, test_size=0.3, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return train, val, test


def logreg_accuracy(images: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    gray = np.stack([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
                     for im in images]).reshape(len(images), -1).astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(gray[train], labels[train])
    return float(model.score(gray[test], labels[test]))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a small random affine warp (rotation, scale, shift) per image."""
    n = x.shape[0]
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    angle = (torch.rand(n, generator=gen) - 0.5) * math.radians(20)
    scale = 1.0 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.16
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(normalise(images)))


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, va: torch.Tensor) -> tuple[float, float, float]:
    model.eval()
    logits, valence, arousal = zip(*(model(x[i : i + 256]) for i in range(0, len(x), 256)))
    pred = torch.cat(logits).argmax(1)
    mae = (torch.stack([torch.cat(valence), torch.cat(arousal)], 1) - va).abs().mean(0)
    return (pred == y).float().mean().item(), mae[0].item(), mae[1].item()


def train_cnn(images: np.ndarray, labels: np.ndarray, va: np.ndarray, split: tuple[np.ndarray, ...], epochs: int,
              batch_size: int, seed: int) -> tuple[float, float, float]:
    """Train on the train split, keep the weights of the best validation epoch, return test (acc, val MAE, aro MAE)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y, t = to_tensor(images), torch.from_numpy(labels), torch.from_numpy(va)
    train, val, test = (torch.from_numpy(s) for s in split)
    model = build_model("custom_cnn", Config(img_size=x.shape[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * math.ceil(len(train) / batch_size))
    best, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        for batch in train[torch.randperm(len(train), generator=gen)].split(batch_size):
            logits, valence, arousal = model(augment(x[batch], gen))
            loss = F.cross_entropy(logits, y[batch]) + 0.5 * F.mse_loss(valence, t[batch, 0]) \
                + 0.5 * F.mse_loss(arousal, t[batch, 1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        acc, v_mae, a_mae = evaluate(model, x[val], y[val], t[val])
        print(f"epoch {epoch + 1:2d}/{epochs}  loss {loss.item():.3f}  val acc {acc:.3f}  "
              f"val MAE v {v_mae:.3f} a {a_mae:.3f}  {time.perf_counter() - start:.1f}s", flush=True)
        if acc >= best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return evaluate(model, x[test], y[test], t[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--img-size", type=int, default=64, help="side the CNN sees (the files are 224x224)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, help="an existing AffectNet-layout folder to use instead of generating")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="affectkit-demo-") as tmp:
        root = args.data or make_demo_dataset(Path(tmp) / "demo", n=args.n, seed=args.seed)
        images, labels, va = read_affectnet(root, args.img_size)
    print(f"{len(labels)} images ready in {time.perf_counter() - start:.0f}s; class counts {np.bincount(labels).tolist()}")
    split = stratified_split(labels, args.seed)

    logreg_acc = logreg_accuracy(images, labels, split[0], split[2])
    print(f"logistic regression on 32x32 gray pixels: test accuracy {logreg_acc:.3f} (target < 0.50)")
    cnn_acc, v_mae, a_mae = train_cnn(images, labels, va, split, args.epochs, args.batch_size, args.seed)
    print(f"custom CNN at {args.img_size}x{args.img_size}, {args.epochs} epochs: test accuracy {cnn_acc:.3f} "
          f"(target >= 0.80), valence MAE {v_mae:.3f}, arousal MAE {a_mae:.3f} (targets <= 0.15)")
    print(f"elapsed {time.perf_counter() - start:.0f}s")
    print(f"logreg_acc={logreg_acc:.4f} cnn_acc={cnn_acc:.4f} valence_mae={v_mae:.4f} arousal_mae={a_mae:.4f}")


if __name__ == "__main__":
    main()
