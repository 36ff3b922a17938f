"""Every data layout affectkit reads, built small from rendered demo faces, each with bad records of its own."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from affectkit.config import NO_EXPRESSION
from affectkit.data.cache import build_cache, decode_record, landmarks_in_cache, open_cache
from affectkit.data.layouts import LAYOUT_NAMES, LAYOUTS
from affectkit.data.reader import SUBJECT_NAMINGS, read_dataset
from affectkit.data.splits import make_splits, split_description
from affectkit.data.synthetic import render_face, sample_rng
from affectkit.errors import AffectkitError

SEVEN = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")  # affectkit ids 0..6, no contempt
FER_ORDER = ("Anger", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")  # FER2013's 0..6
RAF_ORDER = ("Surprise", "Fear", "Disgust", "Happy", "Sad", "Anger", "Neutral")  # RAF-DB's 1..7
AFFECTKIT = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")


def face(label: int, i: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An RGB demo face of an affectkit class and its landmarks."""
    image, landmarks, _, _ = render_face(label, sample_rng(7, label * 1000 + i), size)
    return image, landmarks


def save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def kinds(index) -> dict[str, str]:
    return {r.id: r.kind for r in index.rejected}


# -- class folders ----------------------------------------------------------------------------------------------

# Folder spellings as data sets write them: case and synonyms vary.
FOLDERS = {"Neutral": 0, "happiness": 1, "SAD": 2, "surprised": 3, "fearful": 4, "Disgust": 5, "angry": 6}


def class_folder_set(root: Path, per_split: dict[str, int]) -> Path:
    for split, n in per_split.items():
        for folder, label in FOLDERS.items():
            for i in range(n):
                save(root / split / folder / f"{split}_{i}.jpg", face(label, i + (100 if split == "test" else 0))[0])
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = class_folder_set(tmp_path_factory.mktemp("folders") / "data", {"train": 5, "test": 2})
    (root / "train" / "happiness" / "broken.jpg").write_text("not an image")
    (root / "train" / "SAD" / "notes.txt").write_text("not a sample: no image suffix")
    (root / "train" / "SAD" / "IMG_0001.JXL").write_bytes(b"a JPEG XL photo: a format affectkit does not read")
    return root


def test_heic_and_avif_photos_in_class_folders_train_as_their_pixels(tmp_path):
    from PIL import Image

    rendered = render_face(1, sample_rng(0, 3), 128, intensity=0.8)[0]  # the face tests/data/face.heic holds
    shutil.copy(Path(__file__).parent / "data" / "face.heic", tmp_path / "IMG_0001.HEIC")
    for label, name in ((1, "Happy"), (2, "Sad")):
        for i in range(3):
            save(tmp_path / "faces" / name / f"{i}.png", face(label, i)[0])
    shutil.copy(tmp_path / "IMG_0001.HEIC", tmp_path / "faces" / "Happy" / "IMG_0001.HEIC")
    Image.fromarray(rendered).save(tmp_path / "faces" / "Happy" / "IMG_0002.avif", quality=90)
    (tmp_path / "faces" / "Sad" / "cut.heic").write_bytes((tmp_path / "IMG_0001.HEIC").read_bytes()[:3000])
    index = read_dataset(tmp_path / "faces", progress=False)
    assert kinds(index) == {"Sad/cut.heic": "image_unreadable"} and len(index.records) == 8
    assert index.rejected[0].reason.startswith("image cut.heic cannot be decoded (") and "\n" not in \
        index.rejected[0].reason  # libheif's message, on one line
    photos = [r for r in index.records if r.image_path.suffix.lower() in (".heic", ".avif")]
    assert [r.expression for r in photos] == [1, 1]
    cache = open_cache(build_cache(photos, 32, tmp_path / "cache", progress=False))
    expected = cv2.resize(rendered, (32, 32), interpolation=cv2.INTER_AREA).astype(float)
    for k in range(2):
        assert np.abs(cache.images[k] - expected).mean() < 3


def test_without_pi_heif_heic_photos_are_quarantined_saying_so(tmp_path, monkeypatch):
    """An environment set up by other means than the set-up (a GPU host's preinstalled packages) may lack pi-heif:
    HEIC photos are then quarantined by name, and every other image read as before."""
    import sys

    from affectkit.data.records import Reject, inspect_image
    from affectkit.imaging import register_photo_decoders

    shutil.copy(Path(__file__).parent / "data" / "face.heic", tmp_path / "IMG_0001.HEIC")
    save(tmp_path / "face.png", face(1, 0)[0])
    monkeypatch.setitem(sys.modules, "pi_heif", None)  # import pi_heif raises ImportError
    register_photo_decoders.cache_clear()
    try:
        with pytest.raises(Reject, match="IMG_0001.HEIC: HEIC photos need pi-heif, which is not installed") as refused:
            inspect_image(tmp_path / "IMG_0001.HEIC")
        assert refused.value.kind == "format_unsupported"
        assert inspect_image(tmp_path / "face.png").width == 64
    finally:
        monkeypatch.undo()
        register_photo_decoders.cache_clear()


def test_class_folders_split_as_fer2013_image_copies_name_them(tmp_path):
    root = class_folder_set(tmp_path / "fer_images", {"Training": 3, "PublicTest": 1, "PrivateTest": 1})
    index = read_dataset(root, progress=False)
    assert {r.split for r in index.records} == {"train", "val", "test"}
    assert {r.id.split("/")[0]: r.split for r in index.records} == {"Training": "train", "PublicTest": "val",
                                                                     "PrivateTest": "test"}
    assert index.describe().startswith("class folders (Training/ PublicTest/ PrivateTest/ folders;")


def test_class_folders_with_splits_and_synonyms(folders):
    index = read_dataset(folders, progress=False)
    assert index.layout == "class_folders"
    assert len(index.records) == 7 * 7 and kinds(index) == {"train/happiness/broken.jpg": "not_an_image",
                                                            "train/SAD/IMG_0001.JXL": "format_unsupported"}
    (jxl,) = [r for r in index.rejected if r.kind == "format_unsupported"]
    assert jxl.reason == "IMG_0001.JXL: JXL photos are not read; convert it to JPEG or PNG"
    labels = {r.id.split("/")[1]: r.expression for r in index.records}
    assert labels == FOLDERS
    assert {r.split for r in index.records if r.id.startswith("test/")} == {"test"}
    assert index.absent_classes() == ["Contempt"]
    line = index.describe()
    assert line.startswith("class folders (train/ test/ folders; 7 classes, no Contempt; train/test as given, val "
                           "carved from train;")
    table = make_splits(index.records, 0.15, 0.15, seed=0)
    given = {r.id: r.split for r in index.records}
    assert set(table["split"]) == {"train", "val", "test"}
    assert all(given[i] == "test" for i in table.loc[table.split == "test", "id"])  # test used as given
    assert all(given[i] == "train" for i in table.loc[table.split == "val", "id"])  # val carved from train only
    assert table.loc[table.split == "val", "expression"].nunique() == 7  # stratified
    assert "val carved from train" in split_description(table, index)


def test_unknown_class_folder_stops_unless_mapped(folders, tmp_path):
    import shutil

    root = Path(shutil.copytree(folders, tmp_path / "data"))
    for i in range(2):
        save(root / "train" / "scream" / f"s{i}.jpg", face(4, 50 + i)[0])
    with pytest.raises(AffectkitError) as err:
        read_dataset(root, progress=False)
    message = str(err.value)
    assert "scream" in message and "happiness" in message and "class_map" in message and "afraid" in message
    mapped = read_dataset(root, progress=False, class_map={"scream": "fear"})
    assert {r.expression for r in mapped.records if "/scream/" in r.id} == {4}
    ignored = read_dataset(root, progress=False, class_map={"scream": "ignore"})
    assert not any("/scream/" in r.id for r in ignored.records) and "ignored scream/" in ignored.describe()
    with pytest.raises(AffectkitError, match="neither a class name"):
        read_dataset(root, progress=False, class_map={"scream": "screaming"})
    # Numbered folders (RAF-DB's Kaggle copy): the error says what each set's numbers mean.
    numbered = tmp_path / "numbered"
    for number in ("1", "4"):
        save(numbered / number / "a.jpg", face(1, int(number))[0])
    with pytest.raises(AffectkitError, match="RAF-DB's 1-7 are Surprise, Fear") as err:
        read_dataset(numbered, progress=False)
    assert "class numbers mean what their set says" in str(err.value) and "class numbers" not in message
    by_number = read_dataset(numbered, progress=False, class_map={"1": "surprise", "4": "happy"})
    assert sorted(AFFECTKIT[r.expression] for r in by_number.records) == ["Happy", "Surprise"]


def test_numbered_class_folders_of_rafdbs_file_names_are_rafdbs_classes(tmp_path):
    """RAF-DB's Kaggle copy: DATASET/train/<1-7>/train_00001_aligned.jpg. The file names are RAF-DB's own, so the
    numbers are RAF-DB's (1 Surprise ... 7 Neutral); the same numbers on other files still ask for a class_map."""
    for number in range(1, 8):
        for k in range(2):
            i = number * 2 + k
            save(tmp_path / "DATASET" / "train" / str(number) / f"train_{i:05d}_aligned.jpg", face(number, i)[0])
        test_face = face(number, 50 + number)[0]
        save(tmp_path / "DATASET" / "test" / str(number) / f"test_{number:04d}_aligned.jpg", test_face)
    index = read_dataset(tmp_path / "DATASET", progress=False)
    by_folder = {r.id.split("/")[1]: AFFECTKIT[r.expression] for r in index.records}
    assert by_folder == {"1": "Surprise", "2": "Fear", "3": "Disgust", "4": "Happy", "5": "Sad", "6": "Anger",
                         "7": "Neutral"}
    assert "numbered as RAF-DB numbers its classes" in index.describe() and len(index.records) == 21
    # A class_map given still decides; other files in numbered folders are not taken for RAF-DB's.
    mapped = read_dataset(tmp_path / "DATASET", progress=False, class_map={str(n): "happy" for n in range(1, 8)})
    assert {r.expression for r in mapped.records} == {1} and "RAF-DB" not in mapped.describe()
    for number in range(1, 8):
        save(tmp_path / "other" / str(number) / "a.jpg", face(number, 70 + number)[0])
    with pytest.raises(AffectkitError, match="class numbers mean what their set says"):
        read_dataset(tmp_path / "other", progress=False)


def test_class_folders_without_split_folders(tmp_path):
    for label, folder in enumerate(("neutral", "joy")):
        for i in range(3):
            save(tmp_path / folder / f"{i}.png", face(label, i)[0])
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "class_folders" and {r.split for r in index.records} == {None}
    assert sorted({r.expression for r in index.records}) == [0, 1] and "no split folders" in index.describe()


def test_images_outside_every_class_folder_are_quarantined_not_passed_over(tmp_path):
    for i, person in enumerate(("P1", "P2")):
        for label, folder in enumerate(("neutral", "happy")):
            save(tmp_path / "train" / person / folder / "a.png", face(label, i * 2 + label)[0])
    save(tmp_path / "cover.png", face(0, 20)[0])  # the data's own folder
    save(tmp_path / "train" / "b.png", face(0, 21)[0])  # a split's
    save(tmp_path / "train" / "P2" / "c.png", face(0, 22)[0])  # a person's
    index = read_dataset(tmp_path, progress=False)
    assert len(index.records) == 4 and {r.group for r in index.records} == {"P1", "P2"}
    assert {(r.id, r.kind) for r in index.rejected} == {
        ("cover.png", "label_missing"), ("train/b.png", "label_missing"), ("train/P2/c.png", "label_missing")}
    assert "train/P2/c.png is not inside a class folder" in index.rejected[-1].reason


def test_class_folder_names_shared_copies_use(tmp_path):
    # "Natural Human Face Images" names Neutral "neutrality"; some copies spell Surprise "suprise".
    for i, folder in enumerate(("Neutrality", "Suprise", "scared")):
        save(tmp_path / folder / "a.png", face(i, 30 + i)[0])
    index = read_dataset(tmp_path, progress=False)
    assert {r.id.split("/")[0]: AFFECTKIT[r.expression] for r in index.records} == {
        "Neutrality": "Neutral", "Suprise": "Surprise", "scared": "Fear"}


def test_gif_and_netpbm_faces_are_read_as_training_and_prediction_read_them(tmp_path):
    """Older face sets come as GIF (Yale) or PGM (ORL): samples like any other, decoded alike for training
    (OpenCV, into the cache) and for prediction (Pillow)."""
    from PIL import Image

    from affectkit.inference.images import read_image

    for i, suffix in enumerate((".gif", ".pgm", ".ppm")):
        image = Image.fromarray(face(1, i)[0])
        (tmp_path / "happy").mkdir(exist_ok=True)
        (image.convert("L") if suffix == ".pgm" else image).save(tmp_path / "happy" / f"{i}{suffix}")
        save(tmp_path / "sad" / f"{i}.png", face(2, i)[0])
    index = read_dataset(tmp_path, progress=False)
    assert sorted(r.id for r in index.records if r.expression == 1) == ["happy/0.gif", "happy/1.pgm", "happy/2.ppm"]
    for record in index.records:
        assert np.array_equal(decode_record(record, 64), cv2.resize(read_image(record.image_path), (64, 64),
                                                                    interpolation=cv2.INTER_AREA)), record.id


def test_16_bit_grey_faces_are_read_alike_for_training_and_prediction(tmp_path):
    """Lab cameras save 16-bit grey PNG, TIFF or PGM; Pillow alone would clip them to white at prediction."""
    from affectkit.inference.images import read_image

    for i, suffix in enumerate((".png", ".tif", ".pgm")):
        grey = cv2.cvtColor(face(1, i)[0], cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
        (tmp_path / "happy").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "happy" / f"{i}{suffix}"), grey)
        save(tmp_path / "sad" / f"{i}.png", face(2, i)[0])
    index = read_dataset(tmp_path, progress=False)
    assert sorted(r.id for r in index.records if r.expression == 1) == ["happy/0.png", "happy/1.tif", "happy/2.pgm"]
    for record in index.records:
        predicted = read_image(record.image_path)
        assert predicted.mean() < 250, record.id
        assert np.array_equal(decode_record(record, 64), cv2.resize(predicted, (64, 64),
                                                                    interpolation=cv2.INTER_AREA)), record.id


# -- FER2013 ----------------------------------------------------------------------------------------------------


def gray48(label: int, i: int) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(face(label, i)[0], (48, 48), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def fer(tmp_path_factory) -> tuple[Path, dict[int, np.ndarray]]:
    rows, images = [], {}
    for i in range(35):
        fer_label = i % 7
        usage = ("Training", "Training", "Training", "PublicTest", "PrivateTest")[i % 5]
        images[i + 1] = gray48(AFFECTKIT.index(FER_ORDER[fer_label]), i)
        rows.append(f"{fer_label},{' '.join(map(str, images[i + 1].reshape(-1)))},{usage}")
    good = " ".join(["7"] * 2304)
    rows += ["3," + " ".join(["7"] * 2000) + ",Training",  # row 36: wrong length
             "3," + good.replace("7", "x7", 1) + ",Training",  # row 37: not a number
             "9," + good + ",Training",  # row 38: label outside FER2013's 0..6
             "2," + good + ",Validation"]  # row 39: unknown Usage
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return path.parent, images


def test_fer2013_csv(fer, tmp_path):
    folder, images = fer
    index = read_dataset(folder, progress=False)
    assert index.layout == "fer2013" and len(index.records) == 35
    assert kinds(index) == {"fer2013:36": "pixels_length", "fer2013:37": "pixels_invalid",
                            "fer2013:38": "expression_out_of_range", "fer2013:39": "split_invalid"}
    reasons = {r.id: r.reason for r in index.rejected}
    assert "row 36" in reasons["fer2013:36"] and "2000" in reasons["fer2013:36"] and "row 37" in reasons["fer2013:37"]
    by_row = {int(r.id.split(":")[1]): r for r in index.records}
    for row, name in ((1, "Anger"), (4, "Happy"), (7, "Neutral"), (6, "Surprise")):
        assert AFFECTKIT[by_row[row].expression] == name
    assert [by_row[k].split for k in (1, 4, 5)] == ["train", "val", "test"]
    assert index.describe().startswith("FER2013 CSV (fer2013.csv; 7 classes, no Contempt; train/val/test as given")
    # Decoded straight from the CSV into the cache, as three equal channels.
    cache = open_cache(build_cache(index.records, 48, tmp_path, workers=1, progress=False))
    k = [r.id for r in index.records].index("fer2013:12")
    assert np.array_equal(cache.images[k], np.repeat(images[12][:, :, None], 3, axis=2))
    assert read_dataset(folder / "fer2013.csv", progress=False).layout == "fer2013"  # the CSV given directly
    # The cache is keyed by content: another pixel string in the same row is another digest.
    lines = (folder / "fer2013.csv").read_text().splitlines()
    emotion, pixels, usage = lines[1].split(",")
    first, rest = pixels.split(" ", 1)
    lines[1] = f"{emotion},{(int(first) + 1) % 256} {rest},{usage}"
    (tmp_path / "fer2013.csv").write_text("\n".join(lines) + "\n")
    again = read_dataset(tmp_path / "fer2013.csv", progress=False).records
    assert again[0].digest != index.records[0].digest and again[1].digest == index.records[1].digest


def test_ferplus_votes_replace_fer2013s_labels_by_majority(fer, tmp_path):
    from affectkit.data.layouts.fer2013 import FERPLUS_COLUMNS, NO_MAJORITY, ferplus_label

    # FER+'s columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
    assert ferplus_label([0, 0, 0, 0, 0, 0, 0, 6, 4, 0]) == 7  # Contempt, a class FER2013 lacks
    assert ferplus_label([5, 1, 1, 1, 1, 1, 0, 0, 0, 0]) == 0  # single votes are outliers: 5 of 5 left
    assert ferplus_label([4, 4, 2, 0, 0, 0, 0, 0, 0, 0]) == NO_MAJORITY  # no class above half
    assert ferplus_label([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) == NO_MAJORITY  # not a face
    assert ferplus_label([3, 0, 0, 0, 0, 0, 0, 0, 7, 0]) == NO_MAJORITY  # unknown

    folder, _ = fer
    shutil.copy(folder / "fer2013.csv", tmp_path / "fer2013.csv")
    votes = {1: [0, 0, 0, 0, 0, 0, 0, 9, 1, 0], 2: [0, 0, 0, 0, 0, 0, 0, 0, 0, 10], 3: [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]}
    rows = [",".join(["Training", f"fer{r - 1:07d}.png", *map(str, votes.get(r, [10] + [0] * 9))])
            for r in range(1, 39)]  # one row short of fer2013.csv's 39
    rows[4] = "Training,fer0000004.png,x,0,0,0,0,0,0,0,0,0"
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name," + ",".join(FERPLUS_COLUMNS).replace("nf", "NF")
                                             + "\n" + "\n".join(rows) + "\n")
    index = read_dataset(tmp_path, progress=False)
    by_row = {int(r.id.split(":")[1]): r for r in index.records}
    assert [AFFECTKIT[by_row[k].expression] for k in (1, 3, 4, 6)] == ["Contempt", "Happy", "Neutral", "Neutral"]
    rejected = kinds(index)
    assert rejected["fer2013:2"] == "ferplus_no_majority" and rejected["fer2013:5"] == "ferplus_invalid"
    assert rejected["fer2013:39"] == "ferplus_missing" and len(index.records) == 35 - 2 + 1
    assert AFFECTKIT[by_row[38].expression] == "Neutral"  # FER2013's out-of-range label no longer read
    assert "fer2013.csv with FER+'s labels from fer2013new.csv, by majority" in index.describe()
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name,neutral\n")
    with pytest.raises(AffectkitError, match="lacks FER\\+'s vote column"):
        read_dataset(tmp_path, progress=False)


# -- AffectNet's official CSVs ------------------------------------------------------------------------------------

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


def official_row(rel: str, box: tuple[int, int, int, int], landmarks: np.ndarray, expression: int, va=(0.5, -0.25)):
    lm = ";".join(f"{v:.2f}" for v in landmarks.reshape(-1))
    return f"{rel},{box[0]},{box[1]},{box[2]},{box[3]},{lm},{expression},{va[0]},{va[1]}"


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> tuple[Path, dict[str, tuple[np.ndarray, tuple, np.ndarray]]]:
    root = tmp_path_factory.mktemp("affectnet") / "data"
    truth, tables = {}, {"training.csv": [], "validation.csv": []}
    for i in range(40):
        label = i % 8
        canvas = np.full((120, 160, 3), 90, np.uint8)
        image, landmarks = face(label, i)
        x, y = 10 + (i % 5) * 15, 5 + (i % 3) * 20
        canvas[y:y + 64, x:x + 64] = image
        rel = f"{i % 3}/img{i}.png"
        save(root / "Manually_Annotated_Images" / rel, canvas)
        truth[rel] = (canvas, (x, y, 64, 64), landmarks + [x, y])
        tables["training.csv" if i < 30 else "validation.csv"].append(
            official_row(rel, (x, y, 64, 64), landmarks + [x, y], label))
    lm = np.zeros((68, 2))
    tables["training.csv"] += [
        official_row("0/outside.png", (400, 300, 50, 50), lm, 1),  # box beyond the 160x120 image
        official_row("1/missing.png", (0, 0, 50, 50), lm, 1),  # no such file
        official_row("2/uncertain.png", (0, 0, 50, 50), lm, 9),  # AffectNet's 'uncertain'
        official_row("0/nova.png", (0, 0, 50, 50), lm, 2, va=(-2, -2)),  # valence/arousal 'not annotated'
    ]
    save(root / "Manually_Annotated_Images" / "0" / "outside.png", np.zeros((120, 160, 3), np.uint8))
    for name, rows in tables.items():
        (root / name).write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return root, truth


def test_affectnet_official_csvs(official):
    root, truth = official
    index = read_dataset(root, progress=False)
    assert index.layout == "affectnet_official" and len(index.records) == 40
    assert kinds(index) == {"0/outside.png": "box_outside_image", "1/missing.png": "image_missing",
                            "2/uncertain.png": "expression_uncertain", "0/nova.png": "valence_not_annotated"}
    # Kept without a class where asked: its valence/arousal are read, then its image is looked for.
    unclassed = read_dataset(root, progress=False, affectnet_unclassed_faces=True)
    assert kinds(unclassed)["2/uncertain.png"] == "image_missing" and len(unclassed.records) == 40
    assert {r.split for r in index.records if r.id in {f"{i % 3}/img{i}.png" for i in range(30, 40)}} == {"test"}
    assert {r.split for r in index.records if r.id == "0/img0.png"} == {"train"}
    assert "val carved from train" in index.describe()
    for r in index.records[:5]:
        canvas, (x, y, w, h), landmarks = truth[r.id]
        x0, y0, x1, y1 = r.crop
        assert (x0, y0) == (max(0, x - 6), max(0, y - 6)) and (x1, y1) == (min(160, x + w + 6), min(120, y + h + 6))
        assert (r.width, r.height) == (x1 - x0, y1 - y0)
        assert np.allclose(r.landmarks + [x0, y0], landmarks, atol=0.01)  # moved into the crop
        expected = cv2.resize(canvas[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA)
        assert np.array_equal(decode_record(r, 32), expected)
        assert np.allclose(landmarks_in_cache(r, 32), r.landmarks * [32 / r.width, 32 / r.height])
        assert r.valence == 0.5 and r.arousal == -0.25


# -- RAF-DB ----------------------------------------------------------------------------------------------------------


def test_rafdb_basic(tmp_path):
    lines = []
    for i in range(21):
        raf = i % 7 + 1
        name = f"{'train' if i < 14 else 'test'}_{i:05d}.jpg"
        save(tmp_path / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"),
             face(AFFECTKIT.index(RAF_ORDER[raf - 1]), i)[0])
        lines.append(f"{name} {raf}")
    lines += ["train_00090.jpg 9", "test_00091.jpg 4", "train_00092.jpg"]  # bad label, no image, no label
    save(tmp_path / "Image" / "aligned" / "train_00090_aligned.jpg", face(0, 90)[0])
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "rafdb" and len(index.records) == 21
    assert kinds(index) == {"train_00090.jpg": "expression_out_of_range", "test_00091.jpg": "image_missing",
                            "train_00092.jpg": "line_invalid"}
    by_id = {r.id: r for r in index.records}
    assert AFFECTKIT[by_id["train_00000.jpg"].expression] == "Surprise"  # RAF-DB 1
    assert AFFECTKIT[by_id["train_00003.jpg"].expression] == "Happy"  # RAF-DB 4
    assert AFFECTKIT[by_id["train_00006.jpg"].expression] == "Neutral"  # RAF-DB 7
    assert by_id["test_00020.jpg"].split == "test" and by_id["train_00013.jpg"].split == "train"
    assert by_id["train_00000.jpg"].image_path.name == "train_00000_aligned.jpg"


ROBOFLOW_NAMES = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]  # their numbers


def _yolo_photo(path: Path, faces: list[tuple[int, int, int]], size=(120, 200)) -> list[str]:
    """A photo with a face of each (label, x, y), 64 px; the YOLO lines (Roboflow's numbers) boxing them."""
    photo = np.full((*size, 3), 40, np.uint8)
    lines = []
    for k, (label, x, y) in enumerate(faces):
        photo[y:y + 64, x:x + 64] = face(label, hash(path.name) % 1000 + k)[0]
        number = ROBOFLOW_NAMES.index(AFFECTKIT[label].lower())
        height, width = size
        lines.append(f"{number} {(x + 32) / width:.6f} {(y + 32) / height:.6f} {64 / width:.6f} {64 / height:.6f}")
    save(path, photo)
    return lines


def test_yolo_face_boxes_as_roboflow_exports_them(tmp_path):
    """train/valid/test, each with images/ and labels/; class numbers named by data.yaml; a photo's faces each a
    record, its bad line alone quarantined; a background image (no label) quarantined, not passed over."""
    from affectkit.data.cache import decode_record

    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n"
                                        f"nc: 8\nnames: {ROBOFLOW_NAMES}\n")
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        for i in range(n):
            faces = [(1 + i % 3, 10, 20)] + ([(6, 120, 40)] if i % 2 else [])
            lines = _yolo_photo(tmp_path / split / "images" / f"p{i}.jpg", faces)
            (tmp_path / split / "labels").mkdir(parents=True, exist_ok=True)
            (tmp_path / split / "labels" / f"p{i}.txt").write_text("\n".join(lines) + "\n")
    with (tmp_path / "train" / "labels" / "p0.txt").open("a") as f:  # a class data.yaml does not name, a polygon
        f.write("9 0.5 0.5 0.2 0.2\n0 0.6 0.333333 0.92 0.333333 0.92 0.866667 0.6 0.866667\n")
    save(tmp_path / "train" / "images" / "background.jpg", np.full((120, 200, 3), 40, np.uint8))
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "yolo" and index.describe().startswith(
        "YOLO face boxes (faces boxed in labels/, named by data.yaml; ")
    assert kinds(index) == {"train/images/p0.jpg#2": "expression_out_of_range", "train/images/background.jpg":
                            "label_missing"}
    assert len(index.records) == 10 + 5 + 1  # a face per photo, a second in every other one, the polygon's
    by_id = {r.id: r for r in index.records}
    first = by_id["train/images/p1.jpg#1"]
    assert AFFECTKIT[first.expression] == "Sad" and first.split == "train"
    assert by_id["valid/images/p1.jpg#2"].split == "val"
    assert first.crop == (4, 14, 80, 90)  # the box plus 10% a side
    assert AFFECTKIT[by_id["train/images/p1.jpg#2"].expression] == "Anger"
    polygon = by_id["train/images/p0.jpg#3"]
    assert AFFECTKIT[polygon.expression] == "Anger" and polygon.crop == (114, 34, 190, 110)
    assert decode_record(first, 32).shape == (32, 32, 3)
    # class_map maps or leaves out a name.
    ignored = read_dataset(tmp_path, progress=False, class_map={"anger": "ignore"})
    assert {AFFECTKIT[r.expression] for r in ignored.records} == {"Happy", "Sad", "Surprise"}


def test_yolo_as_ultralytics_lays_it_out_and_its_names_checked(tmp_path):
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                        "names:\n  0: Happy\n  1: Sad\n")
    for split in ("train", "val"):
        for i in range(3):
            lines = _yolo_photo(tmp_path / "images" / split / f"{i}.png", [(1 + i % 2, 30, 30)])
            lines = [f"{i % 2}{line[1:]}" for line in lines]  # this set's own numbers
            (tmp_path / "labels" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "labels" / split / f"{i}.txt").write_text("\n".join(lines))
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "yolo" and {r.split for r in index.records} == {"train", "val"}
    assert [AFFECTKIT[r.expression] for r in index.records[:3]] == ["Happy", "Sad", "Happy"]
    (tmp_path / "data.yaml").write_text("names: [happy, smirk]\n")
    with pytest.raises(AffectkitError, match="data.yaml: the class name\\(s\\) smirk are not expression names.*"
                                             "class_map.smirk=fear"):
        read_dataset(tmp_path, progress=False)
    (tmp_path / "data.yaml").write_text("nc: 2\n")
    with pytest.raises(AffectkitError, match="data.yaml has no 'names'"):
        read_dataset(tmp_path, progress=False)

def test_yolo_as_label_studio_and_cvat_export_it(tmp_path):
    """Label Studio: classes.txt beside images/ and labels/. CVAT (YOLO 1.1): obj.names, each image's label file
    beside it in obj_train_data/."""
    studio, cvat = tmp_path / "studio", tmp_path / "cvat"
    for i in range(3):
        lines = _yolo_photo(studio / "images" / f"{i}.jpg", [(1 + i % 2, 30, 30)])
        (studio / "labels").mkdir(parents=True, exist_ok=True)
        (studio / "labels" / f"{i}.txt").write_text("\n".join(lines))
        lines = _yolo_photo(cvat / "obj_train_data" / f"{i}.jpg", [(1 + i % 2, 30, 30)])
        (cvat / "obj_train_data" / f"{i}.txt").write_text("\n".join(lines))
    (studio / "classes.txt").write_text("\n".join(ROBOFLOW_NAMES) + "\n")
    (studio / "notes.json").write_text("{}")
    (cvat / "obj.names").write_text("\n".join(ROBOFLOW_NAMES))
    (cvat / "obj.data").write_text("classes = 8\ntrain = data/train.txt\nnames = data/obj.names\n")
    for folder, where in ((studio, "labels/"), (cvat, "label files beside the images")):
        index = read_dataset(folder, progress=False)
        assert index.layout == "yolo" and f"faces boxed in {where}, named by" in index.describe()
        assert [AFFECTKIT[r.expression] for r in index.records] == ["Happy", "Sad", "Happy"]
    assert {r.split for r in read_dataset(cvat, progress=False).records} == {"train"}
    # A list of class names beside images/ is not YOLO's without labels/ (a manifest's set may keep one).
    shutil.rmtree(studio / "labels")
    pd.DataFrame({"path": [f"images/{i}.jpg" for i in range(3)], "expression": ["happy", "sad", "happy"]}).to_csv(
        studio / "manifest.csv", index=False)
    assert read_dataset(studio, progress=False).layout == "manifest"


def _coco_export(folder: Path, photos: dict[str, list[tuple[int, int, int]]], first_id: int = 0) -> dict:
    """Roboflow's COCO JSON of photos of faces (label, x, y): its project-wide category 0 no face is given, then
    the classes; each face's box [x, y, w, h] in pixels."""
    categories = [{"id": 0, "name": "emotions", "supercategory": "none"}] + [
        {"id": n + 1, "name": name, "supercategory": "emotions"} for n, name in enumerate(ROBOFLOW_NAMES)]
    images, annotations = [], []
    for number, (name, faces) in enumerate(photos.items()):
        _yolo_photo(folder / name, faces)
        images.append({"id": number, "file_name": name, "width": 200, "height": 120})
        annotations += [{"id": first_id + len(annotations) + k, "image_id": number, "bbox": [x, y, 64, 64],
                         "category_id": ROBOFLOW_NAMES.index(AFFECTKIT[label].lower()) + 1, "iscrowd": 0}
                        for k, (label, x, y) in enumerate(faces)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}


def test_coco_face_boxes_as_roboflow_exports_them(tmp_path):
    """train/ and valid/, each with _annotations.coco.json beside its photos; a face's class its category's name,
    a photo's faces each a record, a bad box alone quarantined, a photo without a face quarantined."""
    for split, n in (("train", 4), ("valid", 2)):
        photos = {f"p{i}.jpg": [(1 + i % 3, 10, 20)] + ([(6, 120, 40)] if i % 2 else []) for i in range(n)}
        export = _coco_export(tmp_path / split, photos, first_id=100 * (split == "valid"))
        if split == "train":
            export["annotations"].append({"id": 50, "image_id": 0, "bbox": [10, 20, 0, 64], "category_id": 2})
            save(tmp_path / split / "background.jpg", np.full((120, 200, 3), 40, np.uint8))
            export["images"].append({"id": 9, "file_name": "background.jpg", "width": 200, "height": 120})
        (tmp_path / split / "_annotations.coco.json").write_text(json.dumps(export))
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "coco" and index.describe().startswith(
        "COCO face boxes (faces boxed in train/_annotations.coco.json, valid/_annotations.coco.json; ")
    assert kinds(index) == {"train/p0.jpg#50": "box_invalid", "train/background.jpg": "label_missing"}
    by_id = {r.id: r for r in index.records}
    assert len(index.records) == 4 + 2 + 3  # a face per photo, a second in every other one
    first = by_id["train/p1.jpg#1"]
    assert AFFECTKIT[first.expression] == "Sad" and first.split == "train" and first.crop == (4, 14, 80, 90)
    assert AFFECTKIT[by_id["train/p1.jpg#2"].expression] == "Anger"
    assert {r.split for r in index.records if r.id.startswith("valid/")} == {"val"}
    ignored = read_dataset(tmp_path, progress=False, class_map={"anger": "ignore"})
    assert {AFFECTKIT[r.expression] for r in ignored.records} == {"Happy", "Sad", "Surprise"}
    # A damaged export is named, not passed over with its split.
    whole = (tmp_path / "valid" / "_annotations.coco.json").read_text()
    (tmp_path / "valid" / "_annotations.coco.json").write_text(whole[: len(whole) // 2])
    with pytest.raises(AffectkitError, match="valid/_annotations.coco.json is not readable JSON.*export or download"):
        read_dataset(tmp_path, progress=False)


def test_coco_as_cvat_exports_it_and_its_categories_checked(tmp_path):
    """annotations/instances_<split>.json with the photos in images/; one JSON may be given directly."""
    for split in ("train", "val"):
        export = _coco_export(tmp_path / "images", {f"{split}{i}.png": [(1 + i % 2, 30, 30)] for i in range(3)})
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(export))
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "coco" and sorted((r.split, AFFECTKIT[r.expression]) for r in index.records) == sorted(
        [(s, c) for s in ("train", "val") for c in ("Happy", "Sad", "Happy")])
    alone = read_dataset(tmp_path / "annotations" / "instances_val.json", progress=False)
    assert len(alone.records) == 3 and {r.split for r in alone.records} == {"val"}
    export = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())
    export["categories"][2]["name"] = "smirk"  # Roboflow's "contempt" (category 2) becomes smirk, and is used
    export["annotations"][0]["category_id"] = 2
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(export))
    with pytest.raises(AffectkitError, match="instances_val.json: the categories smirk are not expression names.*"
                                             "class_map.smirk=fear"):
        read_dataset(tmp_path, progress=False)


def _voc_xml(image: Path, faces: list[tuple[str, int, int]], at: Path) -> None:
    """labelImg's XML of faces (name, x, y), 64 px, with the annotator's own absolute path, saved as ``at``."""
    objects = "".join(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0"
                      f"</difficult><bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + 64}</xmax><ymax>{y + 64}</ymax>"
                      "</bndbox></object>" for name, x, y in faces)
    at.parent.mkdir(parents=True, exist_ok=True)
    at.write_text(f"<annotation><folder>faces</folder><filename>{image.name}</filename><path>C:\\Users\\me\\faces\\"
                  f"{image.name}</path><size><width>200</width><height>120</height><depth>3</depth></size>{objects}"
                  "</annotation>")


def test_voc_face_boxes_as_labelimg_saves_them_beside_the_images(tmp_path):
    """Roboflow's Pascal VOC export: train/ and valid/, an XML beside each photo; each object a face; a bad box
    alone quarantined, an XML boxing no face quarantined; object names checked."""
    for split, n in (("train", 4), ("valid", 2)):
        for i in range(n):
            faces = [(1 + i % 3, 10, 20)] + ([(6, 120, 40)] if i % 2 else [])
            _yolo_photo(tmp_path / split / f"p{i}.jpg", faces)
            named = [(AFFECTKIT[label].lower(), x, y) for label, x, y in faces]
            if split == "train" and i == 0:
                named.append(("happy", 150, 100))  # lies mostly outside the photo
            _voc_xml(tmp_path / split / f"p{i}.jpg", named, tmp_path / split / f"p{i}.xml")
    save(tmp_path / "train" / "empty.jpg", np.full((120, 200, 3), 40, np.uint8))
    _voc_xml(tmp_path / "train" / "empty.jpg", [], tmp_path / "train" / "empty.xml")
    (tmp_path / "train" / "a_cut_short.xml").write_text("<annotation><filename>a.jpg</filename><object>")
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "voc" and index.describe().startswith("Pascal VOC face boxes (faces boxed in 8 XML files; ")
    assert kinds(index) == {"train/p0.jpg#2": "box_outside_image", "train/empty.jpg": "label_missing",
                            "train/a_cut_short.xml": "annotation_unreadable"}
    by_id = {r.id: r for r in index.records}
    assert len(index.records) == 4 + 2 + 3
    first = by_id["train/p1.jpg#1"]
    assert AFFECTKIT[first.expression] == "Sad" and first.split == "train" and first.crop == (4, 14, 80, 90)
    assert AFFECTKIT[by_id["valid/p1.jpg#2"].expression] == "Anger" and by_id["valid/p1.jpg#2"].split == "val"
    _voc_xml(tmp_path / "train" / "p0.jpg", [("smirk", 10, 20)], tmp_path / "train" / "p0.xml")
    with pytest.raises(AffectkitError, match="the object names smirk are not expression names.*class_map.smirk="):
        read_dataset(tmp_path, progress=False)
    assert {AFFECTKIT[r.expression] for r in read_dataset(tmp_path, progress=False,
                                                          class_map={"smirk": "ignore"}).records} == {
        "Happy", "Sad", "Surprise", "Anger"}


def test_voc_as_pascal_lays_it_out_with_its_split_lists(tmp_path):
    """Annotations/ and JPEGImages/, the splits listed in ImageSets/Main; an image in no list is quarantined."""
    for i in range(5):
        _yolo_photo(tmp_path / "JPEGImages" / f"{i:04d}.jpg", [(1 + i % 2, 30, 30)])
        _voc_xml(tmp_path / "JPEGImages" / f"{i:04d}.jpg", [(("happy", "sad")[i % 2], 30, 30)],
                 tmp_path / "Annotations" / f"{i:04d}.xml")
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("0000\n0001\n0002\n")
    (tmp_path / "ImageSets" / "Main" / "Test.txt").write_text("0003\n")  # CVAT names a list by its subset
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "voc"
    assert sorted((r.id, r.split, AFFECTKIT[r.expression]) for r in index.records) == [
        ("JPEGImages/0000.jpg#1", "train", "Happy"), ("JPEGImages/0001.jpg#1", "train", "Sad"),
        ("JPEGImages/0002.jpg#1", "train", "Happy"), ("JPEGImages/0003.jpg#1", "test", "Sad")]
    assert kinds(index) == {"JPEGImages/0004.jpg": "split_missing"}


def test_ferplus_folders_as_its_repository_generates_them(tmp_path):
    """FER2013Train/ and FER2013Test/ of PNG faces with their header-less label.csv of ten votes (FER+'s column
    order: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, not a face)."""
    lines = {"FER2013Train": ['fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0',  # neutral 4 of 9 kept: none
                              'fer0000001.png,"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,0,0',  # happiness
                              'fer0000002.png,"(0, 0, 48, 48)",0,0,3,0,0,0,0,6,1,0',  # contempt
                              'fer0000003.png,"(0, 0, 48, 48)",1,0,0,0,0,0,9,0,0,0',  # fear
                              'fer0000004.png,"(0, 0, 48, 48)",0,10'],
             "FER2013Test": ['fer0000010.png,"(0, 0, 48, 48)",0,0,0,8,2,0,0,0,0,0',  # sadness
                             'fer0000011.png,"(0, 0, 48, 48)",0,0,9,0,0,0,0,0,1,0']}  # surprise, image missing
    for folder, rows in lines.items():
        (tmp_path / "data" / folder).mkdir(parents=True)
        for i, row in enumerate(rows[:4] if folder == "FER2013Train" else rows[:1]):
            assert cv2.imwrite(str(tmp_path / "data" / folder / row.split(",")[0]), face(1, i)[0][:48, :48, 0])
        (tmp_path / "data" / folder / "label.csv").write_text("\n".join(rows) + "\n")
    index = read_dataset(tmp_path, progress=False)  # the repository's root: the folders are in data/
    assert index.layout == "ferplus" and index.describe().startswith(
        "FER+ folders (FER2013Train/, FER2013Test/ with FER+'s votes, by majority")
    assert kinds(index) == {"FER2013Train/fer0000000.png": "ferplus_no_majority",
                            "FER2013Train/fer0000004.png": "line_invalid",
                            "FER2013Test/fer0000011.png": "image_missing"}
    by_id = {r.id: r for r in index.records}
    assert {i: AFFECTKIT[r.expression] for i, r in by_id.items()} == {
        "FER2013Train/fer0000001.png": "Happy", "FER2013Train/fer0000002.png": "Contempt",
        "FER2013Train/fer0000003.png": "Fear", "FER2013Test/fer0000010.png": "Sad"}
    assert [r.split for r in index.records] == ["train", "train", "train", "test"]
    contempt = by_id["FER2013Train/fer0000002.png"].expression_distribution
    assert contempt[7] == pytest.approx(2 / 3) and contempt[3] == pytest.approx(1 / 3)  # a single vote left out

def test_expw_faces_cropped_from_their_photos(tmp_path):
    expw_order = ("Anger", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")  # ExpW's 0..6
    lines = []
    for i in range(14):
        photo = np.full((120, 200, 3), 30 * (i % 5), np.uint8)
        label = AFFECTKIT.index(expw_order[i % 7])
        photo[10:74, 20:84] = face(label, i)[0]
        if i % 2:  # a second person in the photo
            photo[40:104, 120:184] = face(AFFECTKIT.index(expw_order[(i + 3) % 7]), 100 + i)[0]
            lines.append(f"photo_{i}.jpg 1 40 120 184 104 75.5 {(i + 3) % 7}")
        save(tmp_path / "image" / "origin" / f"photo_{i}.jpg", photo)
        lines.append(f"photo_{i}.jpg 0 10 20 84 74 99.1 {i % 7}")
    lines += ["photo_0.jpg 2 50 50 50 60 80.0 3",  # a box without area
              "photo_1.jpg 3 10 20 84 74 80.0 9",  # a label outside 0..6
              "missing.jpg 0 10 20 84 74 80.0 1", "photo_2.jpg 0 10"]
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "label.lst").write_text("\n".join(lines) + "\n")
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "expw" and len(index.records) == 14 + 7
    assert kinds(index) == {"photo_0.jpg#2": "box_invalid", "photo_1.jpg#3": "expression_out_of_range",
                            "missing.jpg#0": "image_missing", "photo_2.jpg#0": "line_invalid"}
    by_id = {r.id: r for r in index.records}
    first, second = by_id["photo_3.jpg#0"], by_id["photo_3.jpg#1"]
    assert AFFECTKIT[first.expression] == expw_order[3] and AFFECTKIT[second.expression] == expw_order[6]
    assert first.crop == (14, 4, 90, 80) and first.digest != second.digest  # the box plus 10% a side
    assert second.crop == (114, 34, 190, 110) and decode_record(second, 32).shape == (32, 32, 3)
    assert index.describe().startswith("ExpW (faces cropped from image/origin/; 7 classes, no Contempt")
    # A label list saved in another encoding: the line that is not UTF-8 is named.
    with (tmp_path / "label" / "label.lst").open("ab") as f:
        f.write("photo_3.jpg 0 10 20 84 74 99.1 3 caf\u00e9\n".encode("latin-1"))
    with pytest.raises(AffectkitError, match=r"label\.lst line 26: byte 0xe9 is not UTF-8 text"):
        read_dataset(tmp_path, progress=False)


AFFWILD2_ORDER = ("Neutral", "Anger", "Disgust", "Fear", "Happy", "Sad", "Surprise")  # Aff-Wild2's 0..6


def _affwild2(root):
    """Four videos annotated in both challenges (frame 1 without a class, frame 2 Other, frame 3 without VA, and
    Other in video42's; one frame without its image), and one in the VA challenge alone, in its Validation_Set
    (frame 4's line damaged)."""
    annotations = root / "6th_ABAW_Annotations"
    videos = {"10-60-1280x720_left": "Train_Set", "10-60-1280x720_right": "Train_Set", "118-30-640x480": "Train_Set",
              "video42": "Validation_Set", "va_only": None}
    for v, (video, split) in enumerate(videos.items()):
        labels, va = ["Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"], ["valence,arousal"]
        for frame in range(1, 11):
            label = (v + frame) % 7
            other = frame == 2 or (video, frame) == ("video42", 3)
            labels.append("-1" if frame == 1 else "7" if other else str(label))
            va.append("-5,-5" if frame == 3 else "oops" if (video, frame) == ("va_only", 4)
                      else f"{0.1 * (frame - 5):.1f},0.2")
            if (video, frame) != ("video42", 10):  # no face found in that frame
                save(root / "cropped_aligned" / video / f"{frame:05d}.jpg",
                     face(AFFECTKIT.index(AFFWILD2_ORDER[label]), v * 100 + frame)[0])
        for task, lines, task_split in (("EXPR_Classification_Challenge", labels, split),
                                        ("VA_Estimation_Challenge", va, split or "Validation_Set")):
            if task_split is None:
                continue
            (annotations / task / task_split).mkdir(parents=True, exist_ok=True)
            (annotations / task / task_split / f"{video}.txt").write_text("\n".join(lines) + "\n")


def test_affwild2_as_abaw_distributes_it(tmp_path):
    affwild2_order = AFFWILD2_ORDER
    _affwild2(tmp_path)
    index = read_dataset(tmp_path, progress=False)
    # Frames 2 to 10 of four videos, but for video42's frame 3 (Other, no valence/arousal) and frame 10 (no image).
    assert index.layout == "affwild2" and len(index.records) == 4 * 9 - 2
    assert kinds(index) == {"video42/00003.jpg": "expression_other", "video42/00010.jpg": "image_missing"}
    by_id = {r.id: r for r in index.records}
    other = by_id["video42/00002.jpg"]  # Other, with valence/arousal: a face without a class
    assert other.expression == NO_EXPRESSION and other.valence == pytest.approx(-0.3)
    frame = by_id["118-30-640x480/00006.jpg"]
    assert AFFECTKIT[frame.expression] == affwild2_order[(2 + 6) % 7] and frame.group == "118-30-640x480"
    assert frame.valence == pytest.approx(0.1) and frame.arousal == pytest.approx(0.2) and frame.split == "train"
    assert math.isnan(by_id["118-30-640x480/00003.jpg"].valence) and by_id["video42/00004.jpg"].split == "test"
    assert "Aff-Wild2 (Validation_Set as test" in index.describe() and "grouped by Aff-Wild2's videos" in index.describe()
    table = make_splits(index.records, 0.25, 0.15, seed=0)
    assert (table.groupby("group")["split"].nunique() == 1).all() and set(table["split"]) == {"train", "val", "test"}
    sparse = read_dataset(tmp_path, progress=False, affwild2_frame_step=4)
    # Frames 2 to 10 are annotated: every 4th is 2 (Other, with valence/arousal), 6, and 10 (no face found).
    assert [r.id for r in sparse.records if r.group == "video42"] == ["video42/00002.jpg", "video42/00006.jpg"]
    assert [r.id for r in sparse.rejected if r.id.startswith("video42")] == ["video42/00010.jpg"]
    assert "every 4th annotated frame" in sparse.describe()


def test_affwild2_valence_arousal_task_reads_the_va_challenges_frames_with_or_without_a_class(tmp_path):
    _affwild2(tmp_path)
    index = read_dataset(tmp_path, progress=False, affwild2_task="valence_arousal")
    by_id = {r.id: r for r in index.records}
    # Every frame with valence/arousal (not frame 3's -5) of all five videos, the video in the VA challenge alone too.
    assert len(index.records) == 5 * 9 - 2 and "va_only/00001.jpg" in by_id
    assert kinds(index) == {"video42/00010.jpg": "image_missing", "va_only/00004.jpg": "annotation_invalid"}
    assert all(r.has_valence_arousal for r in index.records)
    # The EXPR files' class where they give one; none where they say -1 or Other, or do not annotate the video.
    assert by_id["118-30-640x480/00006.jpg"].expression == AFFECTKIT.index(AFFWILD2_ORDER[(2 + 6) % 7])
    unclassed = sorted(r.id for r in index.records if not r.has_expression)
    assert unclassed == sorted([f"{v}/{f:05d}.jpg" for v in ("10-60-1280x720_left", "10-60-1280x720_right",
                                                            "118-30-640x480", "video42") for f in (1, 2)]
                               + [f"va_only/{f:05d}.jpg" for f in (1, 2, 5, 6, 7, 8, 9, 10)])
    assert by_id["va_only/00005.jpg"].split == "test" and by_id["va_only/00005.jpg"].valence == pytest.approx(0.0)
    assert NO_EXPRESSION not in index.classes_present() and len(index.classes_present()) == 7
    assert "VA_Estimation_Challenge, Validation_Set as test" in index.describe()
    assert f"{len(unclassed)} with valence/arousal only" in index.describe()
    with pytest.raises(AffectkitError, match="affwild2_task"):
        read_dataset(tmp_path, progress=False, affwild2_task="arousal")


def test_affwild2_multi_task_files_give_each_frame_what_it_is_annotated_for(tmp_path):
    aus = ",0" * 12
    train = {1: "0.3,0.2,4", 2: "-5,-5,2", 3: "0.1,0.4,-1", 4: "0.1,0.4,7", 5: "-5,-5,7", 6: "-5,-5,-1",
             7: "abc,0.1,3", 8: "0.5,0.5,3"}
    header = "image,valence,arousal,expression," + ",".join(f"AU{n}" for n in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26))
    folder = tmp_path / "annotations" / "MTL"
    folder.mkdir(parents=True)
    (folder / "training_set_annotations_22.txt").write_text(
        "\n".join([header, *(f"vid1/{f:05d}.jpg,{cells}{aus}" for f, cells in train.items())]) + "\n")
    (folder / "validation_set_annotations_22.txt").write_text(f"{header}\nvid2/00001.jpg,0.2,-0.2,0{aus}\n")
    for video, frames in (("vid1", range(1, 8)), ("vid2", [1])):  # vid1's frame 8 has no image
        for frame in frames:
            save(tmp_path / "cropped_aligned" / video / f"{frame:05d}.jpg", face(frame % 8, frame)[0])

    index = read_dataset(tmp_path, progress=False)  # auto: no EXPR challenge folder, so the multi-task files
    by_id = {r.id: r for r in index.records}
    assert sorted(by_id) == ["vid1/00001.jpg", "vid1/00002.jpg", "vid1/00003.jpg", "vid1/00004.jpg",
                             "vid2/00001.jpg"]  # frame 6 is annotated for action units only: no sample
    assert by_id["vid1/00001.jpg"].expression == AFFECTKIT.index("Happy") and by_id["vid1/00001.jpg"].valence == 0.3
    assert by_id["vid1/00002.jpg"].expression == AFFECTKIT.index("Disgust")
    assert not by_id["vid1/00002.jpg"].has_valence_arousal
    for unclassed in ("vid1/00003.jpg", "vid1/00004.jpg"):  # -1 and Other, with valence/arousal
        assert by_id[unclassed].expression == NO_EXPRESSION and by_id[unclassed].has_valence_arousal
    assert by_id["vid2/00001.jpg"].split == "test" and by_id["vid1/00001.jpg"].split == "train"
    assert by_id["vid1/00001.jpg"].group == "vid1"
    assert kinds(index) == {"vid1/00005.jpg": "expression_other", "vid1/00007.jpg": "annotation_invalid",
                            "vid1/00008.jpg": "image_missing"}
    assert "training_set_annotations_22.txt line 8" in {r.id: r.reason for r in index.rejected}["vid1/00007.jpg"]
    assert index.describe().startswith("Aff-Wild2 (multi-task files training_set_annotations_22.txt, "
                                       "validation_set_annotations_22.txt; validation set as test")
    sparse = read_dataset(tmp_path, progress=False, affwild2_frame_step=2)  # vid1's samples: 1 2 3 4 5 7 8
    assert sorted(r.id for r in sparse.records if r.group == "vid1") == ["vid1/00001.jpg", "vid1/00003.jpg"]
    with pytest.raises(AffectkitError, match="affwild2_task expression"):
        read_dataset(tmp_path, progress=False, affwild2_task="expression")
    (folder / "validation_set_annotations_22.txt").write_text(f"vid2/00001.jpg,0.2,-0.2,0{aus}\n")  # no header
    assert "vid2/00001.jpg" in {r.id for r in read_dataset(tmp_path, progress=False).records}
    (folder / "training_set_annotations_23.txt").write_text(header + "\n")
    with pytest.raises(AffectkitError, match="2 training_set_annotations\\*.txt files"):
        read_dataset(tmp_path, progress=False)


OULU = {"Anger": 6, "Disgust": 5, "Fear": 4, "Happiness": 1, "Sadness": 2, "Surprise": 3}


def _oulu_sequences(root: Path, subjects: int, frames: int = 6) -> None:
    """Oulu-CASIA's P001/Anger/000.jpeg ...: a neutral face first, then the expression."""
    for s in range(subjects):
        for name, label in OULU.items():
            for k in range(frames):
                save(root / f"P{s + 1:03d}" / name / f"{k:03d}.jpeg", face(0 if k == 0 else label, 100 * s + k)[0])


def test_oulu_casia_as_released(tmp_path):
    """VL/Strong and NI/Strong read under OriginalImg/: the last three frames of each sequence, its first as Neutral
    where asked, every face on its subject's side; a sequence too short to have an apex quarantined."""
    for condition in ("VL/Strong", "NI/Strong"):
        _oulu_sequences(tmp_path / "OriginalImg" / condition, subjects=3)
    shutil.rmtree(tmp_path / "OriginalImg/NI/Strong/P003/Fear")
    for k in range(2):
        save(tmp_path / "OriginalImg/NI/Strong/P003/Fear" / f"{k:03d}.jpeg", face(4, k)[0])
    index = read_dataset(tmp_path / "OriginalImg", progress=False)
    assert index.layout == "oulu_casia" and index.describe().startswith(
        "Oulu-CASIA sequences (last 3 frames of 36 sequences; conditions NI/Strong, VL/Strong; 6 classes")
    assert len(index.records) == 35 * 3 and kinds(index) == {"NI/Strong/P003/Fear": "sequence_short"}
    assert {r.image_path.name for r in index.records} == {"003.jpeg", "004.jpeg", "005.jpeg"}
    assert {r.group for r in index.records} == {"P001", "P002", "P003"}
    one = read_dataset(tmp_path / "OriginalImg" / "VL" / "Strong", progress=False, ckplus_neutral_onset=True)
    assert len(one.records) == 18 * 4 and sum(r.expression == 0 for r in one.records) == 18
    assert {AFFECTKIT[r.expression] for r in one.records if r.image_path.name == "005.jpeg"} == {
        "Anger", "Disgust", "Fear", "Happy", "Sad", "Surprise"}
    # Class folders of a person's photos (not numbered frames) stay class folders.
    for s in range(2):
        for k in range(5):
            save(tmp_path / "own" / f"P{s + 1:03d}" / "Happiness" / f"photo_{k}.jpg", face(1, 10 * s + k)[0])
            save(tmp_path / "own" / f"P{s + 1:03d}" / "Sadness" / f"photo_{k}.jpg", face(2, 10 * s + k)[0])
    assert read_dataset(tmp_path / "own", progress=False).layout == "class_folders"


def test_ckplus_as_released(tmp_path):
    ckplus_label = {6: 1, 7: 2, 5: 3, 4: 4, 1: 5, 2: 6, 3: 7}  # affectkit id -> CK+'s number (no neutral sequence)
    root = tmp_path / "CK+"
    images, emotions = root / "extended-cohn-kanade-images" / "cohn-kanade-images", root / "Emotion"
    expected, offsets = {}, {}
    for s in range(8):
        subject = f"S{s + 10:03d}"
        for q, label in enumerate(((s % 7) + 1, ((s + 3) % 7) + 1)):  # affectkit ids 1..7
            sequence = f"{q + 1:03d}"
            offsets[subject, sequence] = offset = np.array([20 + 5 * s, 10 + 3 * q], dtype=np.float32)
            for frame in range(1, 6):
                rgb, points = face(label, s * 100 + q * 10 + frame)
                canvas = np.full((120, 160, 3), 90, np.uint8)
                canvas[int(offset[1]):int(offset[1]) + 64, int(offset[0]):int(offset[0]) + 64] = rgb
                name = f"{subject}_{sequence}_{frame:08d}"
                save(images / subject / sequence / f"{name}.png", canvas)
                if (subject, sequence) != ("S017", "002"):  # one sequence without landmarks
                    marks = root / "Landmarks" / subject / sequence / f"{name}_landmarks.txt"
                    marks.parent.mkdir(parents=True, exist_ok=True)
                    np.savetxt(marks, points + offset, fmt="%15.7e")
            if (subject, sequence) == ("S016", "002"):
                continue  # an unlabelled sequence, as 266 of CK+'s are: not read
            label_file = emotions / subject / sequence / f"{subject}_{sequence}_00000005_emotion.txt"
            label_file.parent.mkdir(parents=True)
            label_file.write_text(f"   {ckplus_label[label]:.7e}\n")
            expected[subject, sequence] = label
    (emotions / "S099" / "001").mkdir(parents=True)  # a label without its frames
    (emotions / "S099" / "001" / "S099_001_00000001_emotion.txt").write_text("   3.0000000e+00\n")
    (emotions / "S015" / "002" / "S015_002_00000005_emotion.txt").write_text("   9.0000000e+00\n")
    del expected["S015", "002"]

    index = read_dataset(root, progress=False)
    assert index.layout == "ckplus" and len(index.records) == 3 * len(expected) == 42
    assert kinds(index) == {"S099/001": "image_missing", "S015/002": "expression_out_of_range"}
    assert {(r.group, r.id.split("/")[1]): r.expression for r in index.records} == expected
    assert sorted({r.image_path.stem[-1] for r in index.records}) == ["3", "4", "5"]  # the apex frames
    assert "CK+ sequences (last 3 frames; faces cropped by their landmarks" in index.describe()
    assert "grouped by CK+'s subject folders" in index.describe()
    by_id = {r.id: r for r in index.records}
    cropped = by_id["S010/001/S010_001_00000005.png"]
    _, points = face(expected["S010", "001"], 5)
    assert np.allclose(cropped.landmarks + np.array(cropped.crop[:2]), points + offsets["S010", "001"], atol=1e-3)
    assert cropped.width == cropped.crop[2] - cropped.crop[0] and cropped.width < 100  # the face, not the frame
    assert decode_record(cropped, 32).shape == (32, 32, 3)
    whole = by_id["S017/002/S017_002_00000005.png"]
    assert whole.crop is None and whole.landmarks is None and (whole.width, whole.height) == (160, 120)
    table = make_splits(index.records, 0.2, 0.2, seed=0)
    assert (table.groupby("group")["split"].nunique() == 1).all()

    with_onset = read_dataset(root, progress=False, ckplus_neutral_onset=True)
    onsets = [r for r in with_onset.records if r.expression == 0]
    assert len(onsets) == len(expected) and {r.image_path.stem[-1] for r in onsets} == {"1"}
    assert "last 3 frames + onset as Neutral" in with_onset.describe()


def test_afew_va_as_released(tmp_path):
    root = tmp_path / "AFEW-VA"
    actors = ("Ann Actor", "Ben Actor", "Cat Actor", "Dan Actor")
    expected = {}
    for c in range(8):
        clip = root / f"{c // 4 + 1:02d}" / f"{c + 1:03d}"  # the archives' parts, one level down
        frames = {}
        for f in range(4):
            valence, arousal = (c * 3 + f) % 21 - 10, (c * 5 + 2 * f) % 21 - 10
            rgb, points = face(c % 8, c * 10 + f)
            canvas = np.full((90, 120, 3), 60, np.uint8)
            canvas[10:74, 30:94] = rgb
            name = f"{f:05d}"
            save(clip / f"{name}.png", canvas)
            frames[name] = {"valence": valence, "arousal": arousal, "landmarks": (points + [30, 10]).tolist()}
            expected[f"{clip.parent.name}/{clip.name}/{name}.png"] = (valence / 10, arousal / 10)
        content = {"video_id": clip.name, "frames": frames}
        if c != 7:
            content["actor"] = actors[c % 4]
        (clip / f"{clip.name}.json").write_text(json.dumps(content))
    broken = root / "02" / "006" / "006.json"
    content = json.loads(broken.read_text())
    content["frames"]["00001"]["valence"] = 12  # out of range
    content["frames"]["00002"]["landmarks"] = [[1, 2]] * 5
    content["frames"]["00009"] = {"valence": 0, "arousal": 0, "landmarks": content["frames"]["00000"]["landmarks"]}
    broken.write_text(json.dumps(content))
    (root / "02" / "009").mkdir()
    (root / "02" / "009" / "009.json").write_text("{not json")
    for key in ("02/006/00001.png", "02/006/00002.png"):
        del expected[key]

    index = read_dataset(root, progress=False)
    assert index.layout == "afew_va" and len(index.records) == len(expected) == 30
    assert kinds(index) == {"006/00001": "valence_out_of_range", "006/00002": "landmarks_invalid",
                            "006/00009": "image_missing", "009": "annotation_invalid"}
    assert all(r.expression == NO_EXPRESSION for r in index.records)
    assert {r.id: (r.valence, r.arousal) for r in index.records} == pytest.approx(expected)
    assert {r.group for r in index.records} == {*(f"actor:{a}" for a in actors), "clip:008"}
    assert "AFEW-VA (faces cropped by their landmarks" in index.describe()
    assert "no expression classes; 30 with valence/arousal only" in index.describe()
    record = next(r for r in index.records if r.id == "01/001/00000.png")
    _, points = face(0, 0)
    assert np.allclose(record.landmarks + np.array(record.crop[:2]), points + [30, 10], atol=1e-3)
    assert record.width < 100 and decode_record(record, 32).shape == (32, 32, 3)
    table = make_splits(index.records, 0.2, 0.2, seed=0)
    assert (table.groupby("group")["split"].nunique() == 1).all()  # no actor on two sides

    one = read_dataset(root / "01" / "002", progress=False)  # one clip's folder alone
    assert one.layout == "afew_va" and [r.id for r in one.records] == [f"{f:05d}.png" for f in range(4)]
    assert [(r.valence, r.arousal) for r in one.records] == pytest.approx(
        [expected[f"01/002/{f:05d}.png"] for f in range(4)])
    assert {r.group for r in one.records} == {f"actor:{actors[1]}"}


def test_labels_read_from_file_names(tmp_path):
    jaffe = r"^(?P<subject>[A-Z]{2})\.(?P<expression>[A-Z]{2})\d"
    codes = {"NE": "Neutral", "HA": "Happy", "SA": "Sad", "SU": "Surprise", "FE": "Fear", "DI": "Disgust",
             "AN": "Anger"}
    for s_i, subject in enumerate(("KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM")):
        for c_i, code in enumerate(codes):
            rgb = face(AFFECTKIT.index(codes[code]), s_i * 10 + c_i)[0]
            folder = tmp_path / "jaffe" / ("part1" if s_i < 4 else "part2")  # any depth
            folder.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(folder / f"{subject}.{code}{c_i + 1}.{30 + c_i}.tiff"), rgb[:, :, 0])  # gray TIFF
    (tmp_path / "jaffe" / "README.txt").write_text("not an image")
    save(tmp_path / "jaffe" / "part1" / "cover.png", face(0, 999)[0])
    index = read_dataset(tmp_path / "jaffe", progress=False, label_pattern=jaffe)
    assert index.layout == "file_names" and len(index.records) == 56
    assert kinds(index) == {"part1/cover.png": "label_unmatched"}
    assert {AFFECTKIT[r.expression] for r in index.records} == set(codes.values())
    happy = next(r for r in index.records if r.id == "part2/MK.HA2.31.tiff")
    assert AFFECTKIT[happy.expression] == "Happy" and happy.group == "MK"
    assert "labels in file names (label_pattern" in index.describe()
    assert "grouped by label_pattern's subject group" in index.describe()
    assert decode_record(happy, 32).shape == (32, 32, 3)

    # KDEF's codes (AF for afraid), an expression word the pattern reads unmapped, then mapped or ignored.
    kdef = r"^[AB](?P<subject>[FM]\d\d)(?P<expression>[A-Z]{2})S"
    for i, code in enumerate(("AF", "AN", "HA", "XX")):
        save(tmp_path / "kdef" / f"AF{i + 1:02d}{code}S.JPG", face(4, i)[0])
    with pytest.raises(AffectkitError, match="expression\\(s\\) XX from file names.*class_map.XX=fear"):
        read_dataset(tmp_path / "kdef", progress=False, label_pattern=kdef)
    mapped = read_dataset(tmp_path / "kdef", progress=False, label_pattern=kdef, class_map={"XX": "contempt"})
    assert sorted(AFFECTKIT[r.expression] for r in mapped.records) == ["Anger", "Contempt", "Fear", "Happy"]
    ignored = read_dataset(tmp_path / "kdef", progress=False, label_pattern=kdef, class_map={"xx": "ignore"})
    assert len(ignored.records) == 3 and not ignored.rejected
    with pytest.raises(AffectkitError, match="no group to read the expression"):
        read_dataset(tmp_path / "kdef", progress=False, label_pattern=r"^AF\d+")



def _known_set(root: Path, naming: str) -> Path:
    """A few faces of each of two subjects, named as JAFFE, KDEF or RaFD name theirs (KDEF in its person folders)."""
    classes = {"JAFFE": {"NE": 0, "HA": 1, "FE": 4}, "KDEF": {"NE": 0, "AF": 4, "AN": 6},
               "RaFD": {"neutral": 0, "fearful": 4, "contemptuous": 7}}[naming]
    for s_i, subject in enumerate(("01", "02")):
        for c_i, (code, label) in enumerate(classes.items()):
            for v_i, view in enumerate(("S", "HL") if naming != "JAFFE" else ("1", "2")):
                name = {"JAFFE": f"K{'AB'[s_i]}.{code}{view}.{s_i * 10 + c_i}.tiff",
                        "KDEF": f"AF{subject}/{'AB'[v_i]}F{subject}{code}{view}.JPG",
                        "RaFD": f"Rafd090_{subject}_Caucasian_female_{code}_{('frontal', 'left')[v_i]}.jpg"}[naming]
                save(root / name, face(label, s_i * 100 + c_i * 10 + v_i)[0])
    return root


@pytest.mark.parametrize("naming", ["JAFFE", "KDEF", "RaFD"])
def test_a_public_set_named_as_released_is_read_without_a_pattern(naming, tmp_path):
    """The folder as the set ships: its names give the class (RaFD's 'contemptuous' is Contempt) and the subject,
    every view and gaze is read, a stray file is quarantined, not a reason to refuse the set."""
    root = _known_set(tmp_path / naming, naming)
    save(root / "cover.png", face(0, 999)[0])  # 1 of 13 named otherwise
    index = read_dataset(root, progress=False)
    assert index.layout == "file_names" and f"{naming}'s file names (label_pattern" in index.describe()
    assert len(index.records) == 12 and kinds(index) == {"cover.png": "label_unmatched"}
    assert sorted({r.group for r in index.records}) == {"JAFFE": ["KA", "KB"], "KDEF": ["F01", "F02"],
                                                         "RaFD": ["01", "02"]}[naming]
    classes = {"JAFFE": {0, 1, 4}, "KDEF": {0, 4, 6}, "RaFD": {0, 4, 7}}[naming]
    assert {r.expression for r in index.records} == classes
    # A pattern given wins: here it reads one view (KDEF's straight faces, RaFD's frontal gaze) or one repetition.
    own = {"JAFFE": r"^K(?P<subject>.)\.(?P<expression>[A-Z]{2})1\.",
           "KDEF": r"^[AB]F(\d\d)(?P<expression>[A-Z]{2})S\.", "RaFD": r"_(?P<expression>[a-z]+)_frontal"}[naming]
    assert len(read_dataset(root, progress=False, label_pattern=own).records) == 6


def test_a_folder_mostly_named_otherwise_is_no_known_set(tmp_path):
    root = _known_set(tmp_path / "kdef", "KDEF")
    for i in range(3):
        save(root / f"other_{i}.png", face(0, 900 + i)[0])  # 12 of 15 named as KDEF names its faces
    with pytest.raises(AffectkitError,
                       match="is not an affectkit data set.*or named as JAFFE, KDEF or RaFD name theirs"):
        read_dataset(root, progress=False)
    with pytest.raises(AffectkitError, match="is not in the labels in file names layout"):
        read_dataset(root, progress=False, layout="file_names")


def test_the_command_line_prints_names_and_patterns_as_written(tmp_path, monkeypatch, capsys):
    """Square brackets in a path or a regex are text, not Rich markup: '[a-z]' is not swallowed, and '[/x]' (a closing
    tag matching nothing) does not turn a one-line error into a traceback."""
    from affectkit.cli.common import main

    root = _known_set(tmp_path / "RaFD [/x] copy", "RaFD")
    monkeypatch.setattr(sys, "argv", ["affectkit", "analyze", str(root), "--out", str(tmp_path / "out [/y]")])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "(?P<expression>[a-z]+)" in said and f"Wrote {tmp_path}/out [/y]/dataset_analysis.png" in said
    empty = tmp_path / "empty [/z]"  # a folder "z]" in a folder "empty ["
    empty.mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", ["affectkit", "analyze", str(empty), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exited:
        main()
    said = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and said.startswith(f"error: {empty} is not an affectkit data set")


# -- subject-disjoint splits ------------------------------------------------------------------------------------


def test_ck_style_names_split_subject_disjoint(tmp_path):
    # 14 subjects, each with sequences of two expressions, three near-identical frames per sequence.
    for s in range(14):
        for q, label in enumerate((s % 7, (s + 3) % 7)):
            image = face(label, s * 10 + q)[0]
            for frame in range(3):
                save(tmp_path / SEVEN[label] / f"S{s + 10:03d}_{q + 1:03d}_{frame + 1:08d}.png", image)
    save(tmp_path / "happy" / "extra.png", face(1, 999)[0])
    index = read_dataset(tmp_path, progress=False, group_pattern=r"^(S\d+)_")
    assert kinds(index) == {"happy/extra.png": "group_unmatched"}
    assert {r.group for r in index.records} == {f"S{s + 10:03d}" for s in range(14)}
    assert "grouped by group_pattern ^(S\\d+)_" in index.describe()
    table = make_splits(index.records, 0.15, 0.15, seed=0)
    assert list(table.columns) == ["id", "split", "expression", "digest", "group"]
    assert table["digest"].tolist() == [r.digest for r in index.records] and table["digest"].str.len().eq(20).all()
    assert (table.groupby("group")["split"].nunique() == 1).all()  # no subject on two sides
    assert set(table["split"]) == {"train", "val", "test"}
    line = split_description(table, index)
    assert "grouped by group_pattern ^(S\\d+)_: 14 subjects, none on two sides" in line
    assert make_splits(index.records, 0.15, 0.15, seed=0).equals(table)  # seeded


def test_val_carved_from_a_given_train_split_keeps_subjects_together():
    from affectkit.data.reader import Record

    records = [Record(f"{split}-{s}-{k}", None, (s + k) % 4, split=split, group=f"{split}{s}")
               for split, subjects in (("train", 20), ("test", 5)) for s in range(subjects) for k in range(4)]
    table = make_splits(records, 0.15, 0.15, seed=0)
    assert (table.groupby("group")["split"].nunique() == 1).all()
    assert set(table.loc[table.split == "val", "group"]) and all(g.startswith("train")
                                                                 for g in table.loc[table.split == "val", "group"])
    assert (table.loc[table.id.str.startswith("test"), "split"] == "test").all()


def test_a_sample_listed_twice_is_quarantined_once(tmp_path):
    save(tmp_path / "a.png", face(1, 0)[0])
    save(tmp_path / "b.png", face(2, 0)[0])
    pd.DataFrame({"path": ["a.png", "b.png", "a.png"], "expression": ["happy", "sad", "happy"]}).to_csv(
        tmp_path / "m.csv", index=False)
    index = read_dataset(tmp_path / "m.csv", progress=False)
    assert [r.id for r in index.records] == ["a.png", "b.png"] and kinds(index) == {"a.png": "duplicate"}


def test_ferplus_vote_distributions_follow_ferplus_crossentropy_rule(fer, tmp_path):
    from affectkit.data.layouts.fer2013 import FERPLUS_COLUMNS, ferplus_distribution

    # FER+'s columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
    assert ferplus_distribution([7, 3, 0, 0, 0, 0, 0, 0, 0, 0]) == (0.7, 0.3, 0, 0, 0, 0, 0, 0)
    # surprise is affectkit's 3: the most voted until three quarters of the votes are covered; the single vote goes
    assert ferplus_distribution([4, 3, 3, 0, 0, 0, 0, 1, 0, 0]) == (0.4, 0.3, 0, 0.3, 0, 0, 0, 0)
    assert ferplus_distribution([6, 0, 0, 0, 0, 0, 0, 0, 4, 0]) == (1, 0, 0, 0, 0, 0, 0, 0)  # unknown after neutral
    assert ferplus_distribution([3, 0, 0, 0, 0, 0, 0, 0, 7, 0]) is None  # unknown first
    assert ferplus_distribution([6, 2, 2, 2, 0, 0, 0, 0, 0, 0]) is None  # four classes in all
    assert ferplus_distribution([0] * 10) is None

    folder, _ = fer
    shutil.copy(folder / "fer2013.csv", tmp_path / "fer2013.csv")
    votes = {1: [7, 3, 0, 0, 0, 0, 0, 0, 0, 0], 2: [0, 0, 0, 3, 7, 0, 0, 0, 0, 0],
             3: [7, 2, 2, 2, 0, 0, 0, 0, 0, 0]}  # 3: a majority, but FER+'s distribution rule discards it
    rows = [",".join(["Training", f"fer{r - 1:07d}.png", *map(str, votes.get(r, [10] + [0] * 9))])
            for r in range(1, 40)]
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name," + ",".join(FERPLUS_COLUMNS) + "\n"
                                             + "\n".join(rows) + "\n")
    by_row = {int(r.id.split(":")[1]): r for r in read_dataset(tmp_path, progress=False).records}
    assert by_row[1].expression == 0 and by_row[1].expression_distribution == (0.7, 0.3, 0, 0, 0, 0, 0, 0)
    assert by_row[2].expression == 6 and by_row[2].expression_distribution == (0, 0, 0.3, 0, 0, 0, 0.7, 0)
    assert by_row[3].expression == 0 and by_row[3].expression_distribution == (1, 0, 0, 0, 0, 0, 0, 0)
    for record in by_row.values():
        assert math.isclose(sum(record.expression_distribution), 1)
        assert int(np.argmax(record.expression_distribution)) == record.expression


def test_manifest_votes_give_each_face_its_distribution(tmp_path):
    rows = [("a.png", "", "6", "4", ""), ("b.png", "sad", "1", "3", ""), ("c.png", "happy", "", "", ""),
            ("d.png", "happy", "1", "3", ""), ("e.png", "", "2", "2", ""), ("f.png", "", "", "", ""),
            ("g.png", "", "x", "1", ""), ("h.png", "", "-1", "3", ""), ("i.png", "", "", "", "5")]
    for i, (name, *_) in enumerate(rows):
        save(tmp_path / name, face(i % 4, i)[0])
    pd.DataFrame(rows, columns=["path", "expression", "Happy", "sad", "contempt"]).to_csv(tmp_path / "m.csv",
                                                                                      index=False)
    index = read_dataset(tmp_path / "m.csv", progress=False)
    records = {r.id: r for r in index.records}
    assert records["a.png"].expression == 1 and records["a.png"].expression_distribution == (0, 0.6, 0.4, 0, 0, 0, 0, 0)
    assert records["b.png"].expression == 2 and records["b.png"].expression_distribution == (0, 0.25, 0.75, 0, 0, 0, 0, 0)
    assert records["c.png"].expression == 1 and records["c.png"].expression_distribution is None  # no votes
    assert records["i.png"].expression == 7 and records["i.png"].expression_distribution == (0,) * 7 + (1,)
    assert kinds(index) == {"d.png": "votes_disagree", "e.png": "votes_tied", "f.png": "expression_missing",
                            "g.png": "votes_invalid", "h.png": "votes_invalid"}
    reasons = {r.id: r.reason for r in index.rejected}
    assert "m.csv line 5" in reasons["d.png"] and "not the most voted class (sad)" in reasons["d.png"]
    assert "happy and sad have the most votes" in reasons["e.png"]
    assert "votes in happy, sad, contempt" in index.describe()
    from affectkit.data.analysis import dataset_summary

    votes = dataset_summary(index)["annotator_votes"]  # a.png 0.6, b.png 0.75, i.png 1 (c.png has no votes)
    assert votes["faces"] == 3 and votes["mean_top_share"] == pytest.approx((0.6 + 0.75 + 1) / 3, abs=1e-4)
    assert votes["unanimous_fraction"] == pytest.approx(1 / 3, abs=1e-4)
    assert votes["mean_top_share_by_class"] == {"Happy": 0.6, "Sad": 0.75, "Contempt": 1.0}
    pd.DataFrame({"path": ["a.png"], "expression": ["happy"]}).to_csv(tmp_path / "plain.csv", index=False)
    assert dataset_summary(read_dataset(tmp_path / "plain.csv", progress=False))["annotator_votes"] is None
    # Votes alone are enough; without them, the expression column is needed.
    pd.DataFrame({"path": ["a.png"], "happy": [3]}).to_csv(tmp_path / "votes.csv", index=False)
    assert read_dataset(tmp_path / "votes.csv", progress=False).records[0].expression == 1
    pd.DataFrame({"path": ["a.png"], "valence": [0.1]}).to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(AffectkitError, match="lacks the column\\(s\\) expression \\(found: path, valence\\); a "
                                             "manifest needs path, expression \\(or votes.*other names read: path: "
                                             "image, "):
        read_dataset(tmp_path / "none.csv", progress=False)


def test_a_tie_the_given_class_shares_is_broken_towards_it_in_training_targets(tmp_path):
    from affectkit.data.datamodule import TIE_BREAK, label_distributions

    rows = [("a.png", "sad", "3", "3"), ("b.png", "", "1", "3"), ("c.png", "happy", "", "")]
    for i, (name, *_) in enumerate(rows):
        save(tmp_path / name, face(i % 4, i)[0])
    pd.DataFrame(rows, columns=["path", "expression", "happy", "sad"]).to_csv(tmp_path / "m.csv", index=False)
    records = read_dataset(tmp_path / "m.csv", progress=False).records
    assert [r.expression for r in records] == [2, 2, 1]
    targets = label_distributions(records)
    assert targets.argmax(1).tolist() == [2, 2, 1]  # the given class, not the first of the tied
    assert 0 < targets[0, 2] - targets[0, 1] < 2 * TIE_BREAK and np.allclose(targets.sum(1), 1)
    assert targets[1].tolist() == [0, 0.25, 0.75, 0, 0, 0, 0, 0]  # no tie: the votes as they are


def test_manifest_rows_with_valence_arousal_alone_are_faces_without_a_class(tmp_path):
    rows = [("a.png", "happy", "0.5", "0.1"), ("b.png", "", "-0.3", "0.4"), ("c.png", "", "", ""),
            ("d.png", "sad", "", "")]
    for i, (name, *_) in enumerate(rows):
        save(tmp_path / name, face(i % 4, i)[0])
    pd.DataFrame(rows, columns=["path", "expression", "valence", "arousal"]).to_csv(tmp_path / "m.csv", index=False)
    index = read_dataset(tmp_path / "m.csv", progress=False)
    records = {r.id: r for r in index.records}
    assert records["b.png"].expression == NO_EXPRESSION and not records["b.png"].has_expression
    assert records["b.png"].valence == pytest.approx(-0.3) and records["a.png"].has_expression
    assert kinds(index) == {"c.png": "expression_missing"}
    assert "no expression, no votes and no valence/arousal" in index.rejected[0].reason
    assert index.classes_present() == [1, 2] and "1 with valence/arousal only" in index.describe()
    from affectkit.data.analysis import dataset_summary

    summary = dataset_summary(index)
    assert summary["valence_arousal_only"] == 1 and sum(summary["class_counts"].values()) == 2
    # Valence and arousal columns stand in for the expression column.
    pd.DataFrame({"path": ["b.png"], "valence": [0.2], "arousal": [0.0]}).to_csv(tmp_path / "va.csv", index=False)
    assert read_dataset(tmp_path / "va.csv", progress=False).records[0].expression == NO_EXPRESSION



def test_manifest_columns_named_as_other_tools_name_them(tmp_path):
    """A CSV as a Kaggle copy or a lab's script writes it: image / emotion / Usage / person columns; the layout line
    says which column was read as which."""
    rows = []
    for i in range(24):
        save(tmp_path / "img" / f"{i}.png", face(i % 3, i)[0])
        rows.append({"Image": f"img/{i}.png", "Emotion": SEVEN[i % 3], "Usage": ("Training", "PublicTest",
                     "PrivateTest")[i % 3 // 2 + (i >= 12)], "person": f"p{i // 6}"})
    pd.DataFrame(rows).to_csv(tmp_path / "faces.csv", index=False)
    index = read_dataset(tmp_path / "faces.csv", progress=False)
    assert index.layout == "manifest" and index.group_source == "manifest column person"
    assert ("; column image read as path; column emotion read as expression; column usage read as split; column "
            "person read as subject") in index.describe()
    assert [r.expression for r in index.records[:3]] == [0, 1, 2] and {r.split for r in index.records} == {
        "train", "val", "test"}
    # Two candidates for one column, neither named as the manifest names it: refused, not guessed.
    pd.DataFrame({"image": ["img/0.png"], "file": ["img/1.png"], "expression": ["sad"]}).to_csv(tmp_path / "two.csv",
                                                                                            index=False)
    with pytest.raises(AffectkitError, match="the columns image and file could each be its path column"):
        read_dataset(tmp_path / "two.csv", progress=False)


def test_a_manifest_in_each_split_folder_as_roboflow_exports_classes(tmp_path):
    """train/_classes.csv, valid/..., test/...: one-hot votes in class columns, the images beside each CSV; the same
    file name in two folders is two faces. A split folder's other CSV that is no manifest does not count."""
    header = "filename, Anger, Contempt, Disgust, Fear, Happy, Neutral, Sad, Surprise\n"
    one_hot = {"Happy": "0,0,0,0,1,0,0,0", "Sad": "0,0,0,0,0,0,1,0", "Contempt": "0,1,0,0,0,0,0,0"}
    for split, names in (("train", ["Happy", "Sad", "Contempt", "Happy"]), ("valid", ["Sad"]), ("test", ["Happy"])):
        rows = []
        for i, name in enumerate(names):
            save(tmp_path / split / f"{i}.jpg", face(AFFECTKIT.index(name), len(split) * 10 + i)[0])
            rows.append(f"{i}.jpg,{one_hot[name]}\n")
        (tmp_path / split / "_classes.csv").write_text(header + "".join(rows))
    (tmp_path / "train" / "stats.csv").write_text("mean,std\n0.5,0.2\n")
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "manifest" and index.describe().startswith(
        "CSV manifest (train/_classes.csv; votes in neutral, happy, sad, surprise, fear, disgust, anger, contempt; "
        "column filename read as path, valid/_classes.csv")
    by_id = {r.id: r for r in index.records}
    assert sorted(by_id) == ["test/0.jpg", "train/0.jpg", "train/1.jpg", "train/2.jpg", "train/3.jpg", "valid/0.jpg"]
    assert [AFFECTKIT[by_id[f"train/{i}.jpg"].expression] for i in range(4)] == ["Happy", "Sad", "Contempt", "Happy"]
    assert (by_id["valid/0.jpg"].split, by_id["test/0.jpg"].split) == ("val", "test")
    # Class folders whose split folders hold a CSV of something else stay class folders.
    for split in ("train", "test"):
        save(tmp_path / "folders" / split / "happy" / "a.png", face(1, 50 if split == "train" else 51)[0])
        (tmp_path / "folders" / split / "sizes.csv").write_text("width,height\n64,64\n")
    assert read_dataset(tmp_path / "folders", progress=False).layout == "class_folders"

def test_hugging_face_imagefolder_metadata_as_json_lines_or_csv(tmp_path):
    """ImageFolder's metadata.jsonl in each split folder (file_name, label, valence and arousal a class folder
    cannot hold), or metadata.csv at the top; a bad row is quarantined by its line."""
    rows = {"train": [("0.jpg", "happy", 0.5, 0.25), ("1.jpg", "sad", -0.5, None), ("2.jpg", "happy", 1.0, -1.0)],
            "test": [("0.jpg", "sad", -0.75, 0.0)]}
    for split, entries in rows.items():
        lines = []
        for i, (name, label, valence, arousal) in enumerate(entries):
            save(tmp_path / "hf" / split / name, face(AFFECTKIT.index(label.capitalize()), 10 * len(split) + i)[0])
            lines.append(json.dumps({"file_name": name, "label": label, "valence": valence, "arousal": arousal}))
        (tmp_path / "hf" / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    index = read_dataset(tmp_path / "hf", progress=False)
    assert index.layout == "manifest" and index.describe().startswith("CSV manifest (train/metadata.jsonl; column "
                                                                      "file_name read as path")
    assert sorted((r.id, r.split, AFFECTKIT[r.expression], r.valence, r.arousal) for r in index.records) == [
        ("test/0.jpg", "test", "Sad", -0.75, 0.0), ("train/0.jpg", "train", "Happy", 0.5, 0.25),
        ("train/2.jpg", "train", "Happy", 1.0, -1.0)]
    assert [(r.kind, r.reason.startswith("train/metadata.jsonl line 2:")) for r in index.rejected] == [
        ("annotation_missing", True)]
    # One metadata.csv at the top, its paths into the split folders.
    pd.DataFrame({"file_name": ["train/0.jpg", "test/0.jpg"], "label": ["happy", "sad"]}).to_csv(
        tmp_path / "hf" / "metadata.csv", index=False)
    assert sorted(r.id for r in read_dataset(tmp_path / "hf", progress=False).records) == ["test/0.jpg", "train/0.jpg"]


def test_class_numbers_in_a_column_named_otherwise_are_read_through_class_map(tmp_path):
    """A label column of numbers in FER2013's order (0 Angry, 3 Happy, 6 Neutral) is not read as affectkit's ids."""
    for i in range(6):
        save(tmp_path / f"{i}.png", face(i % 3, i)[0])
    table = pd.DataFrame({"file": [f"{i}.png" for i in range(6)], "label": [6, 3, 0, 6, 3, 5]})
    table.to_csv(tmp_path / "fer.csv", index=False)
    with pytest.raises(AffectkitError, match="column label holds class numbers \\(0, 3, 5, 6\\), whose order depends "
                                             "on the set.*class_map.0=anger.*FER2013's 0-6 are Angry"):
        read_dataset(tmp_path / "fer.csv", progress=False)
    fer = {"0": "anger", "3": "happy", "6": "neutral", "5": "ignore"}
    index = read_dataset(tmp_path / "fer.csv", progress=False, class_map=fer)
    assert [AFFECTKIT[r.expression] for r in index.records] == ["Neutral", "Happy", "Anger", "Neutral", "Happy"]
    assert not index.rejected  # the ignored row is left out, not quarantined
    # The manifest's own expression column holds affectkit's ids; class_map maps its names too.
    table.rename(columns={"file": "path", "label": "expression"}).to_csv(tmp_path / "own.csv", index=False)
    assert [r.expression for r in read_dataset(tmp_path / "own.csv", progress=False).records] == [6, 3, 0, 6, 3, 5]
    pd.DataFrame({"path": ["0.png", "1.png"], "expression": ["scared", "happy"]}).to_csv(tmp_path / "n.csv",
                                                                                         index=False)
    named = read_dataset(tmp_path / "n.csv", progress=False, class_map={"scared": "fear"})
    assert [AFFECTKIT[r.expression] for r in named.records] == ["Fear", "Happy"]

def test_peoples_folders_holding_class_folders_group_the_split(tmp_path):
    """A lab set as a folder per person (P01/happy/...): each person is a subject, kept on one side of the split; a
    split given by folders above them is used as given."""
    for person in range(6):
        for i, name in enumerate(("happy", "Sad", "surprise")):
            for k in range(2):
                save(tmp_path / "lab" / f"P{person:02d}" / name / f"{k}.png", face(1 + i, person * 10 + i * 2 + k)[0])
    index = read_dataset(tmp_path / "lab", progress=False)
    assert index.layout == "class_folders" and index.group_source == "people's folders"
    assert "no split folders, 6 people's folders" in index.describe() and len(index.records) == 36
    assert {r.group for r in index.records} == {f"P{p:02d}" for p in range(6)}
    table = make_splits(index.records, 0.2, 0.2, seed=0)
    assert (table.groupby("group")["split"].nunique() == 1).all() and set(table["split"]) == {"train", "val", "test"}
    # One such folder alone wraps the data (a download unpacked: CK+48/happy/...): nobody's, so the set can split.
    for i, name in enumerate(("happy", "sad", "surprise")):
        for k in range(4):
            save(tmp_path / "download" / "CK+48" / name / f"{k}.png", face(1 + i, 200 + i * 4 + k)[0])
    wrapped = read_dataset(tmp_path / "download", progress=False)
    assert wrapped.group_source is None and not any(r.group for r in wrapped.records) and len(wrapped.records) == 12
    assert "people's folders" not in wrapped.describe() and wrapped.records[0].id == "CK+48/happy/0.png"
    assert set(make_splits(wrapped.records, 0.25, 0.25, seed=0)["split"]) == {"train", "val", "test"}
    # Split folders above the people's folders.
    for person, split in ((0, "train"), (1, "train"), (2, "test")):
        for i, name in enumerate(("happy", "sad")):
            save(tmp_path / "split" / split / f"S{person}" / name / "a.png", face(1 + i, 90 + person * 2 + i)[0])
    given = read_dataset(tmp_path / "split", progress=False)
    assert {(r.group, r.split) for r in given.records} == {("S0", "train"), ("S1", "train"), ("S2", "test")}
    assert "train/ test/ folders, 3 people's folders" in given.describe()
    # A class folder beside the people's folders: not a set of people, and the people's folders are no classes.
    save(tmp_path / "lab" / "happy" / "x.png", face(1, 99)[0])
    with pytest.raises(AffectkitError, match="the class folders P00, P01, .* are not expression names"):
        read_dataset(tmp_path / "lab", progress=False)

def test_manifest_subject_column_groups_the_split(tmp_path):
    rows = []
    for i in range(48):
        save(tmp_path / f"{i}.png", face(i % 4, i)[0])
        rows.append({"path": f"{i}.png", "expression": SEVEN[i % 4], "subject": f"p{i // 4}"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    index = read_dataset(tmp_path, progress=False)
    assert index.layout == "manifest" and index.group_source == "manifest column subject"
    table = make_splits(index.records, 0.15, 0.15, seed=3)
    assert (table.groupby("group")["split"].nunique() == 1).all() and set(table["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("names", [
    ("S010_004_00000017.png", "S010_005_00000018.png", "S011_002_00000020.png", "S011_003_00000011.png",
     "S014_001_00000009.png", "S014_002_00000013.png"),  # CK+
    ("AF01AFS.JPG", "AF01HAS.JPG", "BM02SAS.JPG", "BM02HAHL.JPG", "AF03ANS.JPG", "AF03HAS.JPG"),  # KDEF
    ("KA.AN1.39.tiff", "KA.HA2.30.tiff", "KL.SA1.45.tiff", "KL.HA1.46.tiff", "NA.SU1.79.tiff",
     "NA.HA1.80.tiff"),  # JAFFE
    ("Rafd090_01_Caucasian_female_angry_frontal.jpg", "Rafd090_01_Caucasian_female_happy_frontal.jpg",
     "Rafd090_02_Caucasian_male_sad_frontal.jpg", "Rafd090_02_Caucasian_male_happy_frontal.jpg",
     "Rafd090_07_Moroccan_male_angry_frontal.jpg", "Rafd090_07_Moroccan_male_happy_frontal.jpg"),  # RaFD
])
def test_public_sets_named_by_subject_are_split_by_subject_without_a_pattern(names, tmp_path):
    """Such a set as class folders (Kaggle's CK+48, say): the file names say who is who, so the split keeps each
    person on one side, as the layouts that know their subjects do; a group_pattern given wins."""
    for i, name in enumerate(names):
        save(tmp_path / ("happy", "sad")[i % 2] / name, face(1 + i % 2, i)[0])
    index = read_dataset(tmp_path, progress=False)
    naming = index.group_source.split("'s file names")[0]
    assert index.group_source == f"{naming}'s file names (group_pattern {SUBJECT_NAMINGS[naming]})"
    assert len({r.group for r in index.records}) == 3 and not index.rejected
    assert read_dataset(tmp_path, progress=False, group_pattern=r"^(.)").group_source == "group_pattern ^(.)"
    save(tmp_path / "happy" / "other.png", face(1, 99)[0])  # one file named otherwise: no guess
    assert read_dataset(tmp_path, progress=False).group_source is None


# -- detection ------------------------------------------------------------------------------------------------------


def test_the_layout_option_names_every_layout():
    from affectkit.cli.common import LayoutOpt

    help_text = " ".join(LayoutOpt.__metadata__[0].help.split())
    assert help_text == f"Force a layout: {', '.join(LAYOUT_NAMES[:-1])} or {LAYOUT_NAMES[-1]}."

def test_forcing_a_layout(folders, fer, tmp_path):
    with pytest.raises(AffectkitError, match="is not in the FER2013 CSV layout: it needs a CSV with columns emotion"):
        read_dataset(folders, progress=False, layout="fer2013")
    with pytest.raises(AffectkitError, match="Unknown layout 'imagenet'; the layouts are file_names, affectnet, "):
        read_dataset(folders, progress=False, layout="imagenet")
    # A folder that holds both: detection takes the earlier layout in the order, --layout the other.
    import shutil

    both = Path(shutil.copytree(folders, tmp_path / "both"))
    shutil.copy(fer[0] / "fer2013.csv", both / "fer2013.csv")
    assert read_dataset(both, progress=False).layout == "fer2013"
    assert read_dataset(both, progress=False, layout="class_folders").layout == "class_folders"


def test_a_folder_of_no_layout_says_what_each_needs(tmp_path):
    (tmp_path / "photos").mkdir()
    save(tmp_path / "photos" / "a.jpg", face(0, 0)[0])
    with pytest.raises(AffectkitError) as err:
        read_dataset(tmp_path, progress=False)
    message = str(err.value)
    assert message.startswith(f"{tmp_path} is not an affectkit data set: expected a folder with annotations/")
    for module in LAYOUTS:
        assert module.NEEDS in message and f"--layout {module.NAME}" in message
    assert "Traceback" not in message and message.count(". ") == 0  # one sentence
    with pytest.raises(AffectkitError, match="/etc is not an affectkit data set"):
        read_dataset("/etc", progress=False)


def test_bad_group_pattern_and_fer_without_names(fer, folders):
    with pytest.raises(AffectkitError, match="not a valid regular expression"):
        read_dataset(folders, progress=False, group_pattern="(S")
    with pytest.raises(AffectkitError, match="FER2013's rows have none"):
        read_dataset(fer[0], progress=False, group_pattern=r"^(S\d+)")


# -- the command line -----------------------------------------------------------------------------------------------


def test_run_on_class_folders_with_train_and_test(tmp_path):
    data = class_folder_set(tmp_path / "data", {"train": 6, "test": 2})
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "affectkit.cli", "run", str(data), "--models", "custom_cnn", "--out", str(out),
         "--img-size", "32", "--epochs", "1", "--fine-tune-epochs", "0", "--batch-size", "16", "--workers", "0",
         "--quiet"],
        capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.split())
    assert "class folders (train/ test/ folders; 7 classes, no Contempt" in said
    assert f"The model to use, chosen on the validation faces: CustomCNN ({out / 'best_CustomCNN.safetensors'})" in said
    splits = pd.read_csv(out / "splits.csv")
    test_ids = set(splits.loc[splits.split == "test", "id"])
    assert test_ids == {f"test/{f}/test_{i}.jpg" for f in FOLDERS for i in range(2)}
    assert splits.loc[splits.split == "val", "id"].str.startswith("train/").all()
    summary = json.loads((out / "dataset_summary.json").read_text())
    assert summary["layout"] == "class_folders" and summary["absent_classes"] == ["Contempt"]
    assert summary["classes"] == list(AFFECTKIT) and "val carved from train" in summary["split"]
    metrics = json.loads((out / "CustomCNN_metrics.json").read_text())
    assert metrics["n"] == 14 and math.isfinite(metrics["expression"]["accuracy"])
