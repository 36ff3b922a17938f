import math
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from affectkit.data.reader import read_dataset
from affectkit.errors import AffectkitError


def _png(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_reads_demo_layout(demo_dir):
    index = read_dataset(demo_dir, progress=False)
    assert index.layout == "affectnet"
    assert len(index.records) == 96 and not index.rejected
    r = index.records[0]
    assert 0 <= r.expression < 8 and -1 <= r.valence <= 1 and -1 <= r.arousal <= 1
    assert r.landmarks.shape == (68, 2) and r.width == 224 and r.height == 224
    assert index.has_valence_arousal


def test_bad_records_are_quarantined_with_reasons(demo_copy):
    ann, img = demo_copy / "annotations", demo_copy / "images"
    data = (img / "0.jpg").read_bytes()
    (img / "0.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (img / "1.jpg").write_text("this is not an image")  # text file named .jpg
    os.remove(ann / "2_val.npy")  # missing valence
    np.save(ann / "3_exp.npy", np.array("9"))  # AffectNet 'uncertain'
    np.save(ann / "4_val.npy", np.array("nan"))  # NaN valence
    np.save(ann / "5_val.npy", np.array("-2"))  # AffectNet 'not annotated'
    Image.new("RGB", (224, 224)).save(img / "orphan.jpg")  # image without annotations
    np.save(ann / "6_lnd.npy", np.zeros(10))  # landmarks of the wrong shape
    index = read_dataset(demo_copy, progress=False)
    kinds = {r.id: r.kind for r in index.rejected}
    assert kinds == {
        "0": "image_truncated",
        "1": "not_an_image",
        "2": "annotation_missing",
        "3": "expression_uncertain",
        "4": "valence_nan",
        "5": "valence_not_annotated",
        "orphan": "orphan_image",
        "6": "annotation_shape",
    }
    assert len(index.records) == 96 - 7
    reasons = {r.id: r.reason for r in index.rejected}
    assert "2_val.npy" in reasons["2"] and "truncated" in reasons["0"] and "-2" in reasons["5"]
    out = index.write_quarantine(demo_copy / "q.csv")
    table = pd.read_csv(out, dtype=str)
    assert set(table["id"]) == set(kinds) and table["reason"].str.len().min() > 10


def test_an_image_beyond_pillows_bomb_limit_is_quarantined_and_big_ones_below_it_read_quietly(demo_copy, monkeypatch):
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # the demo's 224-px faces lie between half and all of it
    Image.new("RGB", (300, 300)).save(demo_copy / "images" / "7.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = read_dataset(demo_copy, progress=False)
    assert [(r.id, r.kind) for r in index.rejected] == [("7", "image_too_large")]
    assert "7.jpg" in index.rejected[0].reason and len(index.records) == 95
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_affectnet_none_and_uncertain_faces_with_valence_arousal_are_kept_without_a_class_when_asked(demo_copy):
    from affectkit.config import NO_EXPRESSION

    ann = demo_copy / "annotations"
    np.save(ann / "3_exp.npy", np.array(8))  # 'none', with the demo face's valence/arousal
    np.save(ann / "4_exp.npy", np.array("9"))  # 'uncertain'
    np.save(ann / "5_exp.npy", np.array(8))
    np.save(ann / "5_val.npy", np.array(-2.0))  # 'none' and 'not annotated': nothing to learn from
    np.save(ann / "6_exp.npy", np.array(10))  # 'non-face': never a face
    as_released = {r.id: r.kind for r in read_dataset(demo_copy, progress=False).rejected}
    assert as_released == {"3": "expression_none", "4": "expression_uncertain", "5": "expression_none",
                           "6": "expression_no_face"}
    index = read_dataset(demo_copy, progress=False, affectnet_unclassed_faces=True)
    assert {r.id: r.kind for r in index.rejected} == {"5": "valence_not_annotated", "6": "expression_no_face"}
    kept = {r.id: r for r in index.records if r.id in ("3", "4")}
    assert all(r.expression == NO_EXPRESSION and r.has_valence_arousal for r in kept.values())
    assert "2 with valence/arousal only" in index.describe()


def test_empty_image_and_out_of_range_values(demo_copy):
    (demo_copy / "images" / "7.jpg").write_bytes(b"")
    np.save(demo_copy / "annotations" / "8_aro.npy", np.array(1.5))
    np.save(demo_copy / "annotations" / "9_exp.npy", np.array([1, 2]))
    kinds = {r.id: r.kind for r in read_dataset(demo_copy, progress=False).rejected}
    assert kinds == {"7": "image_empty", "8": "arousal_out_of_range", "9": "annotation_shape"}


def test_not_a_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(AffectkitError, match="expected a folder with annotations"):
        read_dataset("/etc", progress=False)
    with pytest.raises(AffectkitError, match="does not exist"):
        read_dataset(tmp_path / "nope", progress=False)


def test_manifest_with_relative_paths_categorical_rows_and_split(tmp_path):
    (tmp_path / "faces").mkdir()
    rows = []
    for i in range(12):
        Image.fromarray(np.full((40, 40, 3), i * 20, np.uint8)).save(tmp_path / "faces" / f"{i}.png")
        va = ("0.5", "-0.5") if i < 6 else ("", "")
        path = f"faces\\{i}.png" if i == 11 else f"faces/{i}.png"  # a row written on Windows
        rows.append({"path": path, "expression": "happy" if i % 2 else "3", "valence": va[0],
                     "arousal": va[1], "split": ["train", "validation", "test"][i % 3]})
    rows.append({"path": "faces/missing.png", "expression": "1", "valence": "", "arousal": "", "split": "train"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    index = read_dataset(tmp_path / "m.csv", progress=False)
    assert len(index.records) == 12
    assert [r.kind for r in index.rejected] == ["image_missing"]
    by_id = {r.id: r for r in index.records}
    assert by_id["faces/1.png"].expression == 1 and by_id["faces/0.png"].expression == 3
    assert by_id["faces/1.png"].split == "val"
    assert by_id["faces/0.png"].has_valence_arousal and math.isnan(by_id["faces/7.png"].valence)
    assert by_id["faces\\11.png"].image_path == tmp_path / "faces" / "11.png"


@pytest.mark.parametrize("machine", ["C:\\Users\\ana\\faces", "/home/ana/faces"])
def test_a_manifest_of_absolute_paths_written_on_another_machine_reads_its_files_beside_it(tmp_path, machine):
    separator = "\\" if "\\" in machine else "/"
    rows = []
    for i in range(6):
        Image.fromarray(np.full((40, 40, 3), i * 30, np.uint8)).save(_png(tmp_path / "happy", f"{i}.png"))
        rows.append({"path": separator.join([machine, "happy", f"{i}.png"]), "expression": "happy"})
    rows.append({"path": separator.join([machine, "happy", "gone.png"]), "expression": "happy"})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    index = read_dataset(tmp_path / "m.csv", progress=False)
    assert sorted(r.image_path for r in index.records) == [tmp_path / "happy" / f"{i}.png" for i in range(6)]
    assert [(r.kind, r.path) for r in index.rejected] == [("image_missing", str(tmp_path / "happy" / "gone.png"))]
    assert f"paths under {machine.replace(chr(92), '/')} (not on this machine) read from under {tmp_path}" in \
        index.describe()


def test_manifest_without_required_columns(tmp_path):
    pd.DataFrame({"file": ["a.jpg"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(AffectkitError, match="lacks the column"):
        read_dataset(tmp_path / "m.csv", progress=False)


def test_manifest_saved_by_a_spreadsheet_with_semicolons_or_tabs(tmp_path):
    """Spreadsheets in locales whose decimal mark is a comma save CSVs with semicolons (valence 0,5); tabs are
    common too."""
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), i * 50, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "semicolons.csv").write_text("path;expression;valence;arousal\n0.png;sad;0,5;0,25\n"
                                             "1.png;happy;0,25;0,25\n2.png;sad;0;0,25\n3.png;happy;-0,25;0,25\n")
    index = read_dataset(tmp_path / "semicolons.csv", progress=False)
    assert len(index.records) == 4 and not index.rejected
    assert [r.valence for r in index.records] == pytest.approx([0.5, 0.25, 0.0, -0.25])
    assert {r.arousal for r in index.records} == {0.25}
    (tmp_path / "tabs.csv").write_text("path\texpression\n" + "".join(f"{i}.png\tsad\n" for i in range(4)))
    assert len(read_dataset(tmp_path / "tabs.csv", progress=False).records) == 4


def test_layout_found_tells_a_data_set_from_a_folder_of_crops(tmp_path):
    """What `export --int8 --data` reads as a labelled set, and what as crops without labels."""
    from affectkit.data.reader import layout_found

    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "a.png")
    assert not layout_found(tmp_path)  # images alone
    assert layout_found(tmp_path, label_pattern=r"^(?P<expression>a)")  # their names read by a pattern
    (tmp_path / "scream").mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "scream" / "b.png")
    assert not layout_found(tmp_path)  # a folder that names no class
    assert layout_found(tmp_path, class_map={"scream": "fear"})  # ... unless the model's class_map maps it


def test_an_unreadable_folder_is_one_clear_error_not_a_traceback(tmp_path, monkeypatch):
    from pathlib import Path

    locked = tmp_path / "locked"
    locked.mkdir()
    listing = Path.iterdir

    def refused(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", refused)  # as a folder without read permission answers (root reads all)
    with pytest.raises(AffectkitError, match=r"locked cannot be read \(Permission denied\): affectkit lists"):
        read_dataset(locked, progress=False, cache_dir=str(tmp_path / "cache"))
