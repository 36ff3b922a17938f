"""Hugging Face data sets as Parquet and Arrow tables, written as the ``datasets`` library writes them."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from affectkit.config import CLASS_NAMES
from affectkit.data import tables
from affectkit.data.reader import read_dataset
from affectkit.data.records import split_named
from affectkit.errors import AffectkitError

FER_ORDER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _png(seed, size=40):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _features(names=FER_ORDER, **others):
    return {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}, **others}


def _table(labels, seed=0, names=None, features=None, **columns):
    """An Image column (bytes, and the file name where ``names`` gives them) and a label column."""
    images = [{"bytes": _png(seed + i), "path": None if names is None else names[i]} for i in range(len(labels))]
    table = pa.table({"image": pa.array(images, type=IMAGE), "label": pa.array(labels, type=pa.int64()),
                      **{k: pa.array(v) for k, v in columns.items()}})
    if features is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    return table


def _hub_download(root):
    """``hf download`` of a data set: data/<split>-00000-of-00001.parquet, its README, and the download's own
    hidden bookkeeping."""
    for number, split in enumerate(("train", "validation", "test")):
        labels = [i % 7 for i in range(14)]
        (root / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(labels, seed=100 * number, features=_features()),
                       root / "data" / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    (root / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "download" / "stale.parquet").write_bytes(b"an unfinished download")
    return root


def test_a_hub_download_of_parquet_tables_is_read_by_its_class_names_and_splits(tmp_path, monkeypatch):
    data = _hub_download(tmp_path / "fer-hub")
    calls = []
    write_out = tables._write_out
    monkeypatch.setattr(tables, "_write_out", lambda *a: calls.append(a) or write_out(*a))
    index = read_dataset(data, progress=False, cache_dir=str(tmp_path / "cache"))
    assert "3 Hugging Face Parquet tables" in index.describe()
    assert index.given_as == data.resolve()
    assert len(index.records) == 42 and not index.rejected
    assert {r.split for r in index.records} == {"train", "val", "test"}
    # Label 0 is the tables' "angry" (affectkit's Anger), not affectkit's class 0 (Neutral).
    by_label = {}
    for r in index.records:
        by_label.setdefault(int(r.id.split("/")[-1].split(".")[0]) % 7, set()).add(CLASS_NAMES[r.expression])
    assert by_label == {0: {"Anger"}, 1: {"Disgust"}, 2: {"Fear"}, 3: {"Happy"}, 4: {"Sad"}, 5: {"Surprise"},
                        6: {"Neutral"}}
    again = read_dataset(data, progress=False, cache_dir=str(tmp_path / "cache"))
    assert len(calls) == 1 and [r.digest for r in again.records] == [r.digest for r in index.records]


def test_a_saved_dataset_of_arrow_tables_reads_its_features_from_dataset_info(tmp_path):
    """``DatasetDict.save_to_disk``: a folder per split of Arrow stream files, the features in dataset_info.json."""
    data = tmp_path / "saved"
    for split in ("train", "test"):
        _arrow_stream(_table([0, 3, 6, 3], seed=len(split)), data / split / "data-00000-of-00001.arrow")
        (data / split / "dataset_info.json").write_text(json.dumps({"features": _features()}))
    (data / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    index = read_dataset(data, progress=False, cache_dir=str(tmp_path / "cache"))
    assert "2 Hugging Face Arrow tables" in index.describe()
    assert sorted((r.split, CLASS_NAMES[r.expression]) for r in index.records) == sorted(
        [(s, c) for s in ("train", "test") for c in ("Anger", "Happy", "Neutral", "Happy")])


def _arrow_stream(table, file):
    file.parent.mkdir(parents=True, exist_ok=True)
    with pa.ipc.new_stream(file, table.schema) as writer:
        writer.write_table(table)


def test_the_datasets_cache_of_a_data_set_is_read_without_its_derived_tables(tmp_path):
    """load_dataset's cache: <user>___<name>/default/0.0.0/<hash>/<name>-<split>.arrow, and Dataset.map's
    cache-<fingerprint>.arrow beside them, which holds rows already read."""
    data = tmp_path / "someone___fer"
    tables_folder = data / "default" / "0.0.0" / "9f2c1d"
    for split in ("train", "test"):
        _arrow_stream(_table([0, 3, 6], seed=len(split), features=_features()), tables_folder / f"fer-{split}.arrow")
    _arrow_stream(_table([3, 3, 3], seed=7, features=_features()), tables_folder / "cache-5e1a2b3c4d.arrow")
    index = read_dataset(data, progress=False, cache_dir=str(tmp_path / "cache"))
    assert sorted((r.split, CLASS_NAMES[r.expression]) for r in index.records) == sorted(
        [(s, c) for s in ("train", "test") for c in ("Anger", "Happy", "Neutral")])


def test_file_names_valence_and_arousal_of_a_table_are_read(tmp_path):
    """The hub's Parquet conversion (default/train/0000.parquet) of CK+-named faces: their names group them by
    subject; valence and arousal columns are read; a row whose image file is gone is quarantined by name."""
    names = [f"S{s:03d}_00{k}_0000001{k}.png" for s in range(3) for k in range(2)]
    features = _features(["anger", "happy"], valence={"dtype": "float32", "_type": "Value"})
    table = _table([0, 1] * 3, names=names, features=features, valence=[0.5] * 6, arousal=[-0.25] * 6)
    gone = pa.table({"image": pa.array([{"bytes": None, "path": "faces/gone.png"}], type=IMAGE),
                     "label": pa.array([0], type=pa.int64()), "valence": [0.0], "arousal": [0.0]})
    (tmp_path / "ck" / "default" / "train").mkdir(parents=True)
    pq.write_table(pa.concat_tables([table, gone.cast(table.schema)]), tmp_path / "ck/default/train/0000.parquet")
    index = read_dataset(tmp_path / "ck", progress=False, cache_dir=str(tmp_path / "cache"))
    assert sorted(r.image_path.name for r in index.records) == sorted(names)
    assert {r.group for r in index.records} == {"S000", "S001", "S002"}
    assert {(r.valence, r.arousal) for r in index.records} == {(0.5, -0.25)}
    assert [(r.kind, r.path.endswith("gone.png")) for r in index.rejected] == [("image_missing", True)]


def test_class_numbers_without_names_need_a_class_map(tmp_path):
    """A plain column of numbers (image bytes in ``img_bytes``, 0-6 in ``labels``) says nothing of its order."""
    table = pa.table({"img_bytes": pa.array([_png(i) for i in range(6)], type=pa.binary()),
                      "labels": pa.array([0, 1, 2, 0, 1, 2], type=pa.int64())})
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    with pytest.raises(AffectkitError, match=r"train-00000-of-00001.parquet \(1 Hugging Face Parquet table.*"
                                             r"column labels holds class numbers \(0, 1, 2\).*class_map"):
        read_dataset(tmp_path / "train-00000-of-00001.parquet", progress=False, cache_dir=str(tmp_path / "cache"))
    index = read_dataset(tmp_path / "train-00000-of-00001.parquet", progress=False, cache_dir=str(tmp_path / "cache"),
                         class_map={"0": "angry", "1": "disgust", "2": "fear"})
    assert sorted(CLASS_NAMES[r.expression] for r in index.records) == ["Anger"] * 2 + ["Disgust"] * 2 + ["Fear"] * 2
    assert {r.split for r in index.records} == {"train"}


@pytest.mark.parametrize("split, as_numbers", [(("Usage", ["Training"] * 4 + ["PublicTest", "PrivateTest"]), False),
                                               (("split", ["train"] * 4 + ["validation", "test"]), True)])
def test_a_table_of_fer2013_pixel_strings_is_read_as_fer2013(tmp_path, split, as_numbers):
    """Pixel strings as FER2013's CSV has them, or as lists of numbers; its Usage column, or a split column."""
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, 48 * 48).tolist() for _ in range(6)]
    pixels[2] = [1, 2, 3]
    if not as_numbers:
        pixels = [" ".join(map(str, p)) for p in pixels]
    pq.write_table(pa.table({"emotion": [0, 3, 6, 3, 0, 6], "pixels": pixels, split[0]: split[1]}),
                   tmp_path / "fer.parquet")
    index = read_dataset(tmp_path / "fer.parquet", progress=False, cache_dir=str(tmp_path / "cache"))
    assert index.layout == "fer2013"
    assert [(CLASS_NAMES[r.expression], r.split) for r in index.records] == [
        ("Anger", "train"), ("Happy", "train"), ("Happy", "train"), ("Anger", "val"), ("Neutral", "test")]
    assert [r.kind for r in index.rejected] == ["pixels_length"]


def test_tables_without_images_and_damaged_tables_are_named(tmp_path):
    pq.write_table(pa.table({"subject": ["a", "b"], "score": [0.1, 0.2]}), tmp_path / "stats.parquet")
    with pytest.raises(AffectkitError, match=r"stats.parquet holds no column of images"):
        read_dataset(tmp_path / "stats.parquet", progress=False, cache_dir=str(tmp_path / "cache"))
    _hub_download(tmp_path / "hub")
    whole = (tmp_path / "hub/data/test-00000-of-00001.parquet").read_bytes()
    (tmp_path / "hub/data/test-00000-of-00001.parquet").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AffectkitError, match=r"test-00000-of-00001.parquet is not a readable Parquet table.*download"):
        read_dataset(tmp_path / "hub", progress=False, cache_dir=str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").glob("tables/*/manifest.csv"))


def test_the_split_a_table_file_names(tmp_path):
    cases = {"data/train-00000-of-00002.parquet": "train", "data/validation-00001-of-00002.parquet": "val",
             "default/test/0000.parquet": "test", "valid/data-00000-of-00001.arrow": "val",
             "default/partial-train/0000.parquet": "train", "fer2013-test.arrow": "test", "faces.parquet": None}
    assert {name: split_named(tmp_path / name, tmp_path) for name in cases} == cases


def test_analyze_reads_a_parquet_file(tmp_path):
    from affectkit.cli import app

    pq.write_table(_table([0, 3, 6, 3, 0, 6], features=_features()), tmp_path / "train.parquet")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "train.parquet"), "--out", str(tmp_path / "an"),
                                      "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 0, result.output
    assert "1 Hugging Face Parquet table, written out as manifest.csv" in " ".join(result.output.split())
