"""The data analyzer's figure shows what a data set has: classes by split, valence/arousal where annotated, face sizes
where they vary, faces per subject where grouped, quarantine reasons where any."""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd
from PIL import Image

from affectkit.config import CLASS_NAMES
from affectkit.data.analysis import analysis_panels, analyze, record_splits
from affectkit.data.reader import read_dataset
from affectkit.data.splits import make_splits
from affectkit.data.synthetic import render_face, sample_rng


def _write_manifest(root: Path, sizes: tuple[int, ...], with_split: bool, broken: bool) -> Path:
    """Seven classes (no Contempt) of rendered faces at the given sizes, one subject per 4 faces, no valence or
    arousal; ``with_split`` gives a train/test column; ``broken`` adds a file that is not an image."""
    rows = []
    for i in range(42):
        label = i % 7
        size = sizes[i % len(sizes)]
        image = render_face(label, sample_rng(3, i), size)[0]
        path = root / f"face{i:02d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        row = {"path": path.name, "expression": CLASS_NAMES[label], "subject": f"S{i // 4:02d}"}
        if with_split:
            row["split"] = "test" if i // 4 >= 8 else "train"
        rows.append(row)
    if broken:
        (root / "broken.png").write_bytes(b"not an image")
        rows.append({"path": "broken.png", "expression": "Happy", "subject": "S99",
                     **({"split": "train"} if with_split else {})})
    path = root / "faces.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_an_expression_set_gets_its_split_and_data_panels_not_empty_valence_arousal_ones(tmp_path):
    index = read_dataset(_write_manifest(tmp_path, (48, 96), with_split=True, broken=True), progress=False)
    given = record_splits(index)
    assert given is not None and set(given) == {"train", "test"}
    assert analysis_panels(index, given) == ["classes", "class_shares", "sizes", "groups", "rejected"]
    figure, summary = analyze(index, tmp_path / "out")
    with Image.open(figure) as image:
        assert image.width >= 1000 and image.height >= 500


def test_the_runs_split_colours_the_classes_and_uniform_faces_need_no_size_panel(demo_dir, tmp_path):
    index = read_dataset(demo_dir, progress=False)
    assert record_splits(index) is None  # the demo carries no split of its own
    assert analysis_panels(index) == ["classes", "valence", "arousal", "circumplex"]
    splits = make_splits(index.records[:80], 0.2, 0.2, seed=0)  # a sample cap left the last 16 out
    of_run = record_splits(index, splits)
    assert of_run[-16:] == ["not used"] * 16 and set(of_run[:80]) == {"train", "val", "test"}
    assert analysis_panels(index, of_run) == ["classes", "class_shares", "valence", "arousal", "circumplex"]
    analyze(index, tmp_path, splits=splits)
    assert (tmp_path / "dataset_analysis.png").is_file()


def test_one_split_made_later_and_one_face_size_leave_the_classes_and_subjects(tmp_path):
    index = read_dataset(_write_manifest(tmp_path, (64,), with_split=False, broken=False), progress=False)
    assert record_splits(index) is None
    assert analysis_panels(index, None) == ["classes", "groups"]
