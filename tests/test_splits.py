import numpy as np
import pandas as pd
import pytest

from affectkit.config import Config
from affectkit.data.reader import Record
from affectkit.data.splits import load_or_make_splits, make_splits, random_subsample, stratified_subsample
from affectkit.errors import AffectkitError


def _records(counts, split=None):
    out = []
    for label, n in enumerate(counts):
        out += [Record(f"{label}-{i}", None, label, split=split) for i in range(n)]
    return out


def test_stratified_70_15_15_and_seeded():
    records = _records([100] * 8)
    a = make_splits(records, 0.15, 0.15, seed=1)
    assert a.split.value_counts().to_dict() == {"train": 560, "val": 120, "test": 120}
    per_class = a.groupby(["expression", "split"]).size().unstack()
    assert (per_class["test"] == 15).all() and (per_class["val"] == 15).all()
    assert a.equals(make_splits(records, 0.15, 0.15, seed=1))
    assert not a.equals(make_splits(records, 0.15, 0.15, seed=2))


def test_small_classes_reach_every_split():
    table = make_splits(_records([50, 3, 4]), 0.15, 0.15, seed=0)
    for label in (1, 2):
        assert set(table[table.expression == label].split) == {"train", "val", "test"}


def test_max_samples_is_stratified():
    labels = np.repeat(np.arange(8), [400, 200, 100, 100, 50, 50, 50, 50])
    idx = stratified_subsample(labels, 100, seed=0)
    assert len(idx) == 100
    counts = np.bincount(labels[idx], minlength=8)
    assert counts[0] == 40 and counts[1] == 20 and counts.min() >= 5


def test_a_random_subsample_is_seeded_in_order_and_whole_where_the_limit_allows():
    drawn = random_subsample(100, 10, seed=0)
    assert len(set(drawn)) == 10 and (np.diff(drawn) > 0).all() and drawn.max() < 100
    assert (drawn == random_subsample(100, 10, seed=0)).all() and (drawn != random_subsample(100, 10, seed=1)).any()
    for limit in (None, 100, 500):
        assert (random_subsample(100, limit, seed=0) == np.arange(100)).all()


def test_data_with_its_own_split_keeps_it():
    records = _records([10] * 8, split="test")
    assert set(make_splits(records, 0.15, 0.15, seed=0).split) == {"test"}


def test_saved_split_is_reused_and_checked(tmp_path):
    records = _records([20] * 8)
    path = tmp_path / "splits.csv"
    first = load_or_make_splits(path, records, 0.15, 0.15, seed=0)
    again = load_or_make_splits(path, records, 0.15, 0.15, seed=99)  # seed ignored: the file wins
    assert first["split"].tolist() == again["split"].tolist()
    with pytest.raises(AffectkitError, match="not valid in this data set"):
        load_or_make_splits(path, records[:-1], 0.15, 0.15, seed=0)
    # A sample of the split that this reading quarantined (a file since broken) is named with the reason.
    from affectkit.data.records import Rejection

    broken = Rejection(records[-1].id, "images/x.jpg", "image_truncated", "image x.jpg cannot be decoded (truncated)")
    with pytest.raises(AffectkitError, match=rf"quarantined \(first: '{records[-1].id}': image x.jpg cannot be "
                                             r"decoded \(truncated\)\); they were valid when the split was made"):
        load_or_make_splits(path, records[:-1], 0.15, 0.15, seed=0, rejected=[broken])


def test_copies_of_one_image_fall_on_one_side_of_a_split_made_here():
    """Scraped sets hold the same file more than once: every copy goes where the first goes, in a plain split and
    in the val carved from a given train split; the proportions move by the copies alone."""
    import dataclasses

    records = [dataclasses.replace(r, digest=f"img{i // 4}") for i, r in enumerate(_records([40, 40]))]  # 4 copies each
    table = make_splits(records, 0.15, 0.15, seed=0)
    table["digest"] = [r.digest for r in records]
    assert (table.groupby("digest")["split"].nunique() == 1).all()
    assert set(table["split"]) == {"train", "val", "test"}
    given = [dataclasses.replace(r, split="test" if i % 10 == 0 else "train") for i, r in enumerate(records)]
    carved = make_splits(given, 0.2, 0.15, seed=0)
    carved["digest"] = [r.digest for r in given]
    pool = carved[[r.split == "train" for r in given]]
    assert (pool.groupby("digest")["split"].nunique() == 1).all() and set(pool["split"]) == {"train", "val"}
    assert (carved[[r.split == "test" for r in given]]["split"] == "test").all()  # the data's own test stays


def test_copies_across_the_datas_own_split_are_counted_and_said():
    import dataclasses

    from affectkit.data.reader import DatasetIndex
    from affectkit.data.splits import split_description, training_copies

    records = [dataclasses.replace(r, digest=f"img{i}", split="train") for i, r in enumerate(_records([6, 6]))]
    records += [dataclasses.replace(records[0], id="t0", split="test"), dataclasses.replace(records[7], id="t1",
                split="test"), Record("t2", None, 1, digest="other", split="test"),
                dataclasses.replace(records[3], id="v0", split="val")]
    table = make_splits(records, 0.15, 0.15, seed=0)
    assert list(table["split"][-4:]) == ["test", "test", "test", "val"]  # as given: counted, not moved
    assert training_copies(table, records) == {"val": 1, "test": 2}
    index = DatasetIndex(None, "class_folders", records, [])
    assert split_description(table, index).endswith(
        "; 1 val and 2 test face(s) identical to a training face (the data's own split); no Happy face in val (8 in "
        "all)")
    index.records[-1] = dataclasses.replace(records[-1], expression=1)  # the val copy of a Neutral face, as Happy
    assert index.copies() == (3, 1)
    assert index.describe().endswith("; 16 valid, 0 quarantined; 3 of them copies of another (identical pixels), 1 of "
                                     "those labelled otherwise)")
    assert training_copies(make_splits(records[:12], 0.15, 0.15, seed=0), records[:12]) == {}


def test_a_class_too_small_for_val_and_test_is_named_in_the_split_line():
    from affectkit.data.splits import classes_unscored

    table = make_splits(_records([50, 2, 4]), 0.15, 0.15, seed=0)
    assert set(table[table.expression == 1].split) == {"train"}
    assert classes_unscored(table) == ["no Happy face in val or test (2 in all)"]
    given = _records([6, 6], split="train") + _records([3], split="test")
    assert classes_unscored(make_splits(given, 0.15, 0.15, seed=0)) == ["no Happy face in test (6 in all)"]


def test_cross_validation_folds_test_every_face_once_subject_disjoint_with_val_carved_from_the_rest():
    import dataclasses

    from affectkit.data.splits import cross_validation_splits

    records = [dataclasses.replace(r, group=f"S{i % 9}") for i, r in enumerate(_records([20, 20, 20]))]
    tables = cross_validation_splits(records, 4, 0.15, seed=0)
    tested = [set(t.loc[t.split == "test", "id"]) for t in tables]
    assert sum(map(len, tested)) == len(records) and set().union(*tested) == {r.id for r in records}
    for table in tables:
        assert (table.groupby("group")["split"].nunique() == 1).all()  # a subject on one side of every fold
        assert set(table["split"]) == {"train", "val", "test"}
    # Ungrouped, copies of one image share a fold; more folds than subjects is refused.
    copies = [dataclasses.replace(r, digest=f"img{i // 3}") for i, r in enumerate(_records([30, 30]))]
    for table in cross_validation_splits(copies, 5, 0.15, seed=0):
        table["digest"] = [r.digest for r in copies]
        assert (table.groupby("digest")["split"].nunique() == 1).all()
    with pytest.raises(AffectkitError, match="--folds 10: the data has 9 subjects"):
        cross_validation_splits(records, 10, 0.15, seed=0)
    # max_samples: the folds of a stratified subsample.
    subsample = cross_validation_splits(records, 3, 0.15, seed=0, max_samples=30)
    assert all(len(t) == 30 for t in subsample) and (subsample[0].expression.value_counts() == 10).all()


def test_a_grouped_set_whose_classes_are_all_smaller_than_the_folds_still_splits_by_person():
    """Twelve faces of six people, three classes of four: too few to stratify the carving, still person-disjoint."""
    records = [Record(f"{i}", None, i % 3, group=f"P{i // 2}") for i in range(12)]
    table = make_splits(records, 0.15, 0.15, seed=0)
    assert set(table["split"]) == {"train", "val", "test"}
    assert table.groupby("group")["split"].nunique().max() == 1


def _real_faces(n: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8: real faces, scikit-image's sample of Labeled Faces in the Wild (25 px grey), enlarged."""
    import cv2
    import skimage.data

    faces = (skimage.data.lfw_subset()[:n] * 255).astype(np.uint8)
    return np.stack([cv2.cvtColor(cv2.resize(f, (64, 64)), cv2.COLOR_GRAY2RGB) for f in faces])


def _copies(face: np.ndarray) -> list[np.ndarray]:
    """One face saved again: as JPEG at quality 90 and at 75, and brighter by 10 grey levels."""
    import cv2

    def jpeg(quality):
        return cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)

    return [jpeg(90), jpeg(75), np.clip(face.astype(int) + 10, 0, 255).astype(np.uint8)]


def test_a_face_saved_again_is_found_and_distinct_real_faces_are_no_copies_even_on_one_mask():
    """Real faces: none is a copy of another, also where all but one oval is blacked out (which makes distinct faces
    correlate above the candidates' threshold); each face saved again is found as a copy of its own."""
    import cv2

    from affectkit.data.likeness import CANDIDATE_CORRELATION, coarse, copies_of, grey_thumbnails

    faces = _real_faces(100)
    oval = np.zeros((64, 64), dtype=np.uint8)
    cv2.ellipse(oval, (32, 33), (20, 27), 0, 0, 360, 1, -1)
    for set_ in (faces, faces * oval[..., None]):
        references = grey_thumbnails(set_, np.arange(100))
        copies = np.stack([copy for face in set_[:25] for copy in _copies(face)])
        found = copies_of(grey_thumbnails(copies, np.arange(len(copies))), references)
        assert (found == np.repeat(np.arange(25), 3)).all()
        for i in range(100):  # each face against the 99 others: a copy of none
            assert copies_of(references[i:i + 1], np.delete(references, i, axis=0))[0] == -1
    masked = coarse(grey_thumbnails(faces * oval[..., None], np.arange(100)))
    assert ((masked @ masked.T)[np.triu_indices(100, 1)] >= CANDIDATE_CORRELATION).sum() > 100  # the mask's pull
    flat = np.full((1, 64, 64, 3), 128, dtype=np.uint8)  # a blank face is a copy of nothing, not even a blank one
    assert copies_of(grey_thumbnails(flat, [0]), grey_thumbnails(flat, [0]))[0] == -1
    assert copies_of(references[:2], references[:0]).tolist() == [-1, -1]


def _write_faces(folder, faces, names) -> None:
    import cv2

    for face, name in zip(faces, names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), face[..., ::-1])


def test_copies_saved_again_across_the_datas_own_split_are_named_and_said(tmp_path):
    """A test face that is a training face saved again as JPEG is not the same file, so its digest differs: its
    decoded pixels find it, its training twin is named in splits.csv's looks_like, and the split line and a warning
    say how many; the data's own sides stay."""
    import io

    from rich.console import Console

    from affectkit.data.analysis import dataset_summary
    from affectkit.data.datamodule import prepare_data
    from affectkit.data.splits import split_description
    from affectkit.progress import Reporter, reporting

    faces = _real_faces(60)
    classes = ["happy", "sad"]
    _write_faces(tmp_path / "data" / "train", faces[:40], [f"{classes[i % 2]}/tr{i}.png" for i in range(40)])
    _write_faces(tmp_path / "data" / "test", faces[40:], [f"{classes[i % 2]}/te{i}.png" for i in range(20)])
    _write_faces(tmp_path / "data" / "test", [_copies(faces[i])[0] for i in (0, 1, 2)],
                 [f"{classes[i % 2]}/copy{i}.jpg" for i in (0, 1, 2)])
    _write_faces(tmp_path / "data" / "train", [_copies(faces[5])[1]], ["happy/again5.jpg"])  # tr5 is sad
    notes = io.StringIO()
    with reporting(Reporter(Console(file=notes, width=1000), progress=False)):
        prepared = prepare_data(tmp_path / "data", Config(img_size=32, seed=0), splits_path=tmp_path / "splits.csv")
    table = prepared.splits.set_index("id")
    copies = [i for i in table.index if "copy" in i]
    assert len(copies) == 3 and (table.loc[copies, "split"] == "test").all()
    twins = {copy: f"train/{classes[int(copy[-5]) % 2]}/tr{copy[-5]}.png" for copy in copies}
    named = {copy: twin for copy, twin in twins.items() if table.loc[twin, "split"] == "train"}  # not carved to val
    assert len(named) >= 2 and table.loc[copies, "looks_like"].to_dict() == {c: named.get(c, "") for c in copies}
    assert (table.drop(copies)["looks_like"] == "").all()
    # Within the set: each copy saved again names the face it copies, and the one labelled otherwise is counted.
    saved = table[table["copy_of"] != ""]
    assert len(saved) == 4 and {frozenset((i, twin)) for i, twin in saved["copy_of"].items()} == {
        frozenset(pair) for pair in zip(sorted(copies + [i for i in table.index if "again5" in i]),
                                        sorted(i for i in table.index if i.split("/")[-1] in
                                               ("tr0.png", "tr1.png", "tr2.png", "tr5.png")))}
    summary = dataset_summary(prepared.index, prepared.splits)
    assert (summary["saved_again_copies"], summary["saved_again_copies_labelled_otherwise"]) == (4, 1)
    assert "4 face(s) another face saved again in another format or compression, 1 of them labelled otherwise" \
           in notes.getvalue()
    assert f"{len(named)} test face(s) a training face saved again in another format or compression" in \
           split_description(prepared.splits, prepared.index)
    assert f"Warning: {len(named)} test face(s) a training face saved again in another format or compression: " \
           "their scores measure memory" in notes.getvalue()
    saved = pd.read_csv(tmp_path / "splits.csv", dtype=str, keep_default_na=False)
    assert saved["looks_like"].tolist() == prepared.splits["looks_like"].tolist()


def test_copies_saved_again_go_to_train_in_a_split_made_here_and_a_saved_split_keeps_its_sides(tmp_path):
    from affectkit.data.datamodule import prepare_data
    from affectkit.data.splits import make_splits

    faces = _real_faces(80)
    classes = ["happy", "sad"]
    _write_faces(tmp_path / "data", faces, [f"{classes[i % 2]}/f{i}.png" for i in range(80)])
    _write_faces(tmp_path / "data", [_copies(faces[i])[0] for i in range(30)],
                 [f"{classes[i % 2]}/copy{i}.jpg" for i in range(30)])
    config = Config(img_size=32, seed=0)
    before = make_splits(prepare_data(tmp_path / "data", config, pixels=False).index.records, 0.15, 0.15, seed=0)

    def apart(table):  # twins of which one trains and the other is held out
        side = dict(zip(table["id"], table["split"]))
        twins = [(side[f"{classes[i % 2]}/f{i}.png"], side[f"{classes[i % 2]}/copy{i}.jpg"]) for i in range(30)]
        return sum((a == "train") != (b == "train") for a, b in twins)

    assert apart(before) > 0  # the split alone puts some twins apart
    made = prepare_data(tmp_path / "data", config, splits_path=tmp_path / "made" / "splits.csv").splits
    assert apart(made) == 0 and (made["looks_like"] == "").all() and (made["copy_of"] != "").sum() == 30
    with np.load(tmp_path / "made" / "splits_thumbnails.npz") as kept:  # the faces' thumbnails, by id, beside it
        assert kept["id"].tolist() == made["id"].tolist() and kept["grey"].shape == (110, 1024)
    moved = (made["split"] != before["split"]).to_numpy()
    assert moved.sum() == apart(before) and (made["split"][moved] == "train").all()
    assert prepare_data(tmp_path / "data", config, splits_path=tmp_path / "made" / "splits.csv").splits.equals(made)
    # A split saved before faces were compared (no looks_like column) may have trained models: its sides stay,
    # the twins held out are named, and its file is left as it was.
    (tmp_path / "old").mkdir()
    before.to_csv(tmp_path / "old" / "splits.csv", index=False)
    text = (tmp_path / "old" / "splits.csv").read_text()
    kept = prepare_data(tmp_path / "data", config, splits_path=tmp_path / "old" / "splits.csv").splits
    assert kept["split"].tolist() == before["split"].tolist()
    assert (kept["looks_like"] != "").sum() == apart(before)
    assert (tmp_path / "old" / "splits.csv").read_text() == text and not list((tmp_path / "old").glob("*.npz"))


def test_thumbnails_that_cannot_be_read_are_named_with_the_way_out(tmp_path):
    from affectkit.data.splits import read_thumbnails, save_splits, thumbnails_beside

    table = make_splits(_records([5, 5]), 0.2, 0.2, seed=0)
    grey = np.arange(10 * 1024).reshape(10, 1024).astype(np.uint8)
    save_splits(table, tmp_path / "splits.csv", grey)
    ids, kept = read_thumbnails(thumbnails_beside(tmp_path / "splits.csv"))
    assert ids.tolist() == table["id"].tolist() and (kept == grey).all()
    broken = tmp_path / "splits_thumbnails.npz"
    broken.write_bytes(broken.read_bytes()[:100])  # cut short, as by a full disk
    with pytest.raises(AffectkitError, match=r"splits_thumbnails\.npz cannot be read as the faces' thumbnails .*delete "
                                             "it to know the faces by their files alone"):
        read_thumbnails(broken)
    np.savez(broken, id=np.array(["a", "b"]), grey=np.zeros((2, 256), dtype=np.uint8))
    with pytest.raises(AffectkitError, match=r"holds uint8 thumbnails of shape \(2, 256\), not one row of 32x32"):
        read_thumbnails(broken)
