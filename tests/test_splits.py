import numpy as np
import pytest

from affectkit.data.reader import Record
from affectkit.data.splits import load_or_make_splits, make_splits, stratified_subsample
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
