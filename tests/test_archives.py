import io
import json
import os
import re
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from affectkit.data import archives
from affectkit.data.reader import read_dataset
from affectkit.errors import AffectkitError


def _class_folders(root, per_class=4):
    rng = np.random.default_rng(0)
    for name in ("happy", "sad", "anger"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _pack(source, archive):
    """``source``'s folder (its name kept: the archive wraps the data in one folder, as downloads often do), plus
    the ``__MACOSX`` resource forks a Mac's zip adds."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for file in sorted(source.rglob("*")):
                zf.write(file, file.relative_to(source.parent).as_posix())
            zf.writestr(f"__MACOSX/{source.name}/happy/._0.png", b"\x00\x05\x16\x07 not an image")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(source, arcname=source.name)
    return archive


@pytest.mark.parametrize("name", ["CK+48.zip", "CK+48.tar.gz"])
def test_an_archive_is_read_as_the_folder_it_holds_and_unpacked_once(tmp_path, monkeypatch, name):
    folder = _class_folders(tmp_path / "CK+48")
    archive = _pack(folder, tmp_path / name)
    cache = tmp_path / "cache"
    index = read_dataset(archive, progress=False, cache_dir=str(cache))
    direct = read_dataset(folder, progress=False)
    assert index.layout == "class_folders" and not index.rejected
    # Read as the folder it unpacks to would be: the wrapping folder's name is part of each face's id.
    assert sorted(r.id for r in index.records) == sorted(f"CK+48/{r.id}" for r in direct.records)
    assert len(index.records) == 12 and not any(r.group for r in index.records)  # CK+48/ is nobody's folder
    assert all(cache in r.image_path.parents for r in index.records)

    def unpack_again(*_):
        raise AssertionError("unpacked again")

    monkeypatch.setattr(archives, "_unpack", unpack_again)
    assert len(read_dataset(archive, progress=False, cache_dir=str(cache)).records) == 12
    monkeypatch.undo()
    # Downloaded again (a new modification time): unpacked again, and the copy of the old one deleted.
    first = {p for p in (cache / "archives").iterdir() if p.is_dir()}
    os.utime(archive, (1e9, 1e9))
    assert len(read_dataset(archive, progress=False, cache_dir=str(cache)).records) == 12
    second = {p for p in (cache / "archives").iterdir() if p.is_dir()}
    assert len(first) == len(second) == 1 and first != second


def test_the_folder_an_archive_wraps_its_data_in_is_stepped_into(tmp_path):
    # Kaggle's FER2013 download: fer2013.tar.gz holding fer2013/fer2013.csv beside its README.
    folder = tmp_path / "fer2013"
    folder.mkdir()
    rng = np.random.default_rng(1)
    rows = [f"{i % 7},{' '.join(map(str, rng.integers(0, 255, 48 * 48)))},Training" for i in range(14)]
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    (folder / "README").write_text("FER2013, as released")
    archive = _pack(folder, tmp_path / "fer2013.tar.gz")
    index = read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache"))
    assert index.layout == "fer2013" and len(index.records) == 14


def test_rafdbs_kaggle_archive_is_read_from_its_dataset_folder(tmp_path):
    # The archive holds DATASET/{train,test}/<1-7>/ beside train_labels.csv and test_labels.csv.
    rng = np.random.default_rng(2)
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for split, digits in (("train", 5), ("test", 4)):
            names = [f"{split}_{n:0{digits}d}_aligned.jpg" for n in range(1, 8)]
            for number, name in enumerate(names, start=1):
                image = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(image, format="JPEG")
                zf.writestr(f"DATASET/{split}/{number}/{name}", image.getvalue())
            zf.writestr(f"{split}_labels.csv", "image,label\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names, 1)))
    index = read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache"))
    assert index.layout == "class_folders" and "RAF-DB" in index.describe() and len(index.records) == 14
    assert {r.split for r in index.records} == {"train", "test"}


def test_a_zip_written_with_windows_separators_keeps_its_folders(tmp_path):
    folder = _class_folders(tmp_path / "faces")
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*.png")):
            zf.write(file, str(file.relative_to(folder)).replace("/", "\\"))  # happy\0.png
    index = read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache"))
    assert index.layout == "class_folders" and len(index.records) == 12 and index.records[0].id == "anger/0.png"


def test_a_member_written_outside_the_archives_folder_is_refused(tmp_path):
    archive = tmp_path / "faces.tar"
    with tarfile.open(archive, "w") as tf:
        data = b"not really an image"
        member = tarfile.TarInfo("../escaped.png")
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    with pytest.raises(AffectkitError, match=r"faces\.tar: member '\.\./escaped\.png' would be written outside"):
        read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache" / "inner"))
    assert not (tmp_path / "cache" / "escaped.png").exists()
    assert not list((tmp_path / "cache" / "inner" / "archives").glob("faces-*/"))


def test_a_damaged_archive_is_one_clear_error_and_leaves_nothing_half_unpacked(tmp_path):
    archive = _pack(_class_folders(tmp_path / "faces"), tmp_path / "faces.zip")
    archive.write_bytes(archive.read_bytes()[:-200])  # a download cut short: the zip's directory is gone
    cache = tmp_path / "cache"
    with pytest.raises(AffectkitError, match=r"faces\.zip is not a readable \.zip archive"):
        read_dataset(archive, progress=False, cache_dir=str(cache))
    assert not [p for p in (cache / "archives").iterdir() if p.is_dir()]


def test_a_rar_or_7z_archive_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "Manually_Annotated.part01.rar").write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(AffectkitError, match=r"part01\.rar: \.rar archives are not read .* unpack it"):
        read_dataset(tmp_path / "Manually_Annotated.part01.rar", progress=False, cache_dir=str(tmp_path / "cache"))


def test_an_archive_of_no_data_set_says_what_it_held(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no faces here")
    archive = tmp_path / "notes.zip"
    shutil.make_archive(str(tmp_path / "notes"), "zip", tmp_path / "notes")
    with pytest.raises(AffectkitError, match=r"The archive .*notes\.zip, unpacked: .* is not an affectkit data set"):
        read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache"))


def test_analyze_reads_a_zip_and_says_where_it_unpacked(tmp_path, monkeypatch):
    from affectkit.cli import app

    archive = _pack(_class_folders(tmp_path / "faces"), tmp_path / "faces.zip")
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    done = CliRunner().invoke(app, ["analyze", str(archive), "--out", str(tmp_path / "a")])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "faces.zip: unpacked into" in said and "12 valid samples, 0 quarantined" in said


def test_a_folder_holding_only_the_downloaded_archive_points_to_it(tmp_path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    _pack(_class_folders(tmp_path / "faces"), downloads / "faces.zip")
    with pytest.raises(AffectkitError, match="Downloads is not a data set affectkit reads, but holds faces.zip: give "
                                             "the archive itself"):
        read_dataset(downloads, progress=False, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("raised, said", [
    (RuntimeError("File 'happy/0.png' is encrypted, password required for extraction"), "it is password-protected"),
    (NotImplementedError("That compression method is not supported"), "Deflate64, which Python does not read"),
    (OSError(28, "No space left on device"), "the disk ran out of space (No space left on device)"),
])
def test_an_archive_that_cannot_be_unpacked_says_why_and_leaves_nothing(tmp_path, monkeypatch, raised, said):
    archive = _pack(_class_folders(tmp_path / "faces"), tmp_path / "faces.zip")

    def fail(*_, **__):
        raise raised

    monkeypatch.setattr(zipfile.ZipFile, "extract", fail)
    with pytest.raises(AffectkitError, match=rf"faces\.zip could not be unpacked: .*{re.escape(said)}"):
        read_dataset(archive, progress=False, cache_dir=str(tmp_path / "cache"))
    assert not [p for p in (tmp_path / "cache" / "archives").iterdir() if p.is_dir()]


def test_a_model_trained_on_an_archive_is_evaluated_on_its_own_split_of_it(tmp_path, monkeypatch):
    """The archive is the data set's name (the model's recorded source), not the folder it unpacked to: evaluating
    the model on the same archive scores the test split it was trained beside."""
    import pandas as pd

    from affectkit.cli import app
    from affectkit.models.metadata import read_metadata

    archive = _pack(_class_folders(tmp_path / "faces", per_class=8), tmp_path / "faces.zip")  # no split folders
    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    tiny = ["--set", "img_size=32", "--epochs", "1", "--fine-tune-epochs", "0", "--set", "num_workers=0", "--quiet"]
    trained = CliRunner().invoke(app, ["train", "--model", "custom_cnn", "--data", str(archive), "--out", str(run),
                                       *tiny])
    assert trained.exit_code == 0, trained.output
    model = run / "best_CustomCNN.safetensors"
    assert read_metadata(model)["training_data"]["source"] == str(archive.resolve())
    done = CliRunner().invoke(app, ["evaluate", str(model), str(archive), "--out", str(tmp_path / "ev"), "--quiet"])
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "ev" / "CustomCNN_metrics.json").read_text())
    assert metrics["n"] == (pd.read_csv(run / "splits.csv")["split"] == "test").sum()
    # --quiet silences progress, not the result: the table of scores and what was written.
    said = " ".join(done.output.split())
    assert f"CustomCNN on {metrics['n']} images" in said and "expression balanced_accuracy" in said
    assert "Wrote " in said and "CustomCNN_metrics.json" in said


def test_an_unpacked_archives_settings_are_read_from_its_copy_not_the_archive(tmp_path, monkeypatch):
    """Finding that a compressed tar holds no affectkit.yaml means reading all of it; once a command has unpacked it,
    the next ones look in the unpacked copy instead (as the archive is now: a changed one is read again)."""
    from affectkit.config import DATA_CONFIG_NAME

    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    with_settings = _class_folders(tmp_path / "set" / "faces")
    (with_settings / DATA_CONFIG_NAME).write_text("epochs: 7\n")
    without = _class_folders(tmp_path / "bare" / "faces")
    packed = {name: _pack(folder, tmp_path / f"{name}.tar.gz")
              for name, folder in (("set", with_settings), ("bare", without))}
    opened = []
    tar_open = tarfile.open

    def counted(name, *args, **kwargs):
        opened.append(str(name))
        return tar_open(name, *args, **kwargs)

    monkeypatch.setattr(tarfile, "open", counted)
    assert "epochs: 7" in archives.data_config(packed["set"]).text and archives.data_config(packed["bare"]) is None
    assert opened  # never unpacked: read in the archive
    for archive in packed.values():
        archives.unpacked(archive, tmp_path / "cache")
    opened.clear()
    card = archives.data_config(packed["set"])
    assert card.where == f"{packed['set']}: faces/{DATA_CONFIG_NAME}" and card.text == "epochs: 7\n"
    assert archives.data_config(packed["bare"]) is None
    assert not opened
    _pack(without, packed["bare"])  # downloaded again: its copy is no longer the archive's
    os.utime(packed["bare"], (1e9, 1e9))
    assert archives.data_config(packed["bare"]) is None and set(opened) == {str(packed["bare"])}


@pytest.mark.parametrize("name, wrapped", [("faces.zip", True), ("faces.tar.gz", True), ("faces.zip", False)])
def test_a_zipped_data_sets_own_settings_are_read_from_the_archive(tmp_path, monkeypatch, name, wrapped):
    """A data set shared as an archive with its affectkit.yaml (clip-frames writes one naming who is who) keeps its
    settings: without its group_pattern every split would put one person's faces on both sides."""
    from affectkit.cli import app
    from affectkit.config import DATA_CONFIG_NAME, load_config

    folder = tmp_path / "faces"
    rng = np.random.default_rng(3)
    for label in ("happy", "sad"):
        (folder / label).mkdir(parents=True)
        for person in range(3):
            for i in range(2):
                image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(image).save(folder / label / f"S{person:03d}_{i}.png")
    (folder / DATA_CONFIG_NAME).write_text("group_pattern: '^(S\\d+)_'\nepochs: 7\n")
    if wrapped:
        archive = _pack(folder, tmp_path / name)
    else:
        archive = tmp_path / name
        shutil.make_archive(str(tmp_path / "faces"), "zip", folder)
    config = load_config(data=archives.data_config(archive))
    assert (config.group_pattern, config.epochs) == ("^(S\\d+)_", 7)

    monkeypatch.setenv("AFFECTKIT_CACHE", str(tmp_path / "cache"))
    done = CliRunner().invoke(app, ["analyze", str(archive), "--out", str(tmp_path / "a")])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    member = "faces/affectkit.yaml" if wrapped else "affectkit.yaml"
    assert f"Settings from {archive}: {member}" in said
    assert "grouped by group_pattern ^(S\\d+)_" in said
    assert json.loads((tmp_path / "a" / "dataset_summary.json").read_text())["groups"] == 3
