"""Does ``affectkit explain`` catch a shortcut? A model trained where every Happy photo carries a mark in its corner
(a watermark, a studio's logo: something that comes with one class's photos and is not the face) can learn the mark
instead of the smile. Grad-CAM, and occlusion, should then put Happy's evidence on the corner.

Renders demo faces, copies them with a green square in the top-left corner of every Happy photo (train, val and
test alike, as a watermark would be), trains the same custom CNN on each copy (same seed and split), and explains
each model's test faces for their own class (``explain_data``, target ``label``) by each method. Prints, per method,
model and class, the share of faces whose map peaks in a top corner (the mark's corner, or its mirror image's, as the
flip augmentation moves it) and the Happy recall on the test faces with and without the mark.

    python bench/explain_shortcut.py --out /tmp/shortcut
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import cv2
import pandas as pd
import torch

import affectkit
from affectkit.config import CLASS_NAMES
from affectkit.data.reader import read_dataset
from affectkit.data.synthetic import make_demo_dataset
from affectkit.pipeline.explain import explain_data

MARK = 0.15  # the mark's side, as a share of the photo's
CORNER = 0.25  # a map peaking within this share of the side from a top corner peaks "in a corner"


def mark_happy_photos(root: Path) -> int:
    """Draw a green square in the top-left corner of every Happy photo of the data set at ``root``; returns how many."""
    marked = 0
    for record in read_dataset(root, progress=False).records:
        if record.expression != CLASS_NAMES.index("Happy"):
            continue
        image = cv2.imread(str(record.image_path))
        side = round(MARK * min(image.shape[:2]))
        image[:side, :side] = (0, 200, 0)
        cv2.imwrite(str(record.image_path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        marked += 1
    return marked


def in_corner(faces: pd.DataFrame) -> pd.Series:
    return (faces["peak_y"] < CORNER) & ((faces["peak_x"] < CORNER) | (faces["peak_x"] > 1 - CORNER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=800, help="demo faces")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["gradcam", "occlusion"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    clean = make_demo_dataset(args.out / "clean", n=args.n, seed=args.seed, progress=False)
    marked = Path(shutil.copytree(clean, args.out / "marked", dirs_exist_ok=True))
    count = mark_happy_photos(marked)
    print(f"{args.n} demo faces (seed {args.seed}); {count} Happy photos marked in {marked}")
    settings = {"epochs": args.epochs, "seed": args.seed, "tta_flip": True}
    models = {name: affectkit.train("custom_cnn", root, args.out / f"run_{name}", **settings)
              for name, root in (("clean", clean), ("marked", marked))}
    print(f"trained in {time.perf_counter() - start:.0f} s")
    rows = []
    for method in args.methods:
        mapped = time.perf_counter()
        for name, model in models.items():
            for faces_of, root in (("clean", clean), ("marked", marked)):
                result = explain_data(model, root, "test", model.parent / "splits.csv",
                                      args.out / f"explain_{method}_{name}_on_{faces_of}", method=method, quiet=True)
                faces = pd.read_csv(result.paths["faces"])
                for label, group in faces.groupby("label", sort=False):
                    rows.append({"method": method, "trained on": name, "test faces": faces_of, "class": label,
                                 "faces": len(group), "recall": (group["predicted"] == label).mean(),
                                 "maps peaking in a top corner": in_corner(group).mean(),
                                 "upper half": group["upper_half_share"].mean()})
        print(f"{method}: 4 x {len(faces)} test faces mapped in {time.perf_counter() - mapped:.0f} s")
    table = pd.DataFrame(rows)
    keys = ["method", "trained on", "test faces"]
    happy = table[table["class"] == "Happy"]
    others = table[table["class"] != "Happy"].groupby(keys, as_index=False, sort=False).agg(
        {"faces": "sum", "recall": "mean", "maps peaking in a top corner": "mean", "upper half": "mean"})
    print("\n| method | trained on | test faces | class | faces | recall | maps peaking in a top corner | upper half |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for frame, label in ((happy, "Happy"), (others, "the other 7 (mean)")):
        for row in frame.to_dict("records"):
            print(f"| {row['method']} | {row['trained on']} photos | {row['test faces']} | {label} | {row['faces']} | "
                  f"{row['recall']:.3f} | {row['maps peaking in a top corner']:.0%} | {row['upper half']:.0%} |")
    print(f"\nwall time {time.perf_counter() - start:.0f} s; class maps: {args.out}/explain_*/class_maps.png")


if __name__ == "__main__":
    main()
