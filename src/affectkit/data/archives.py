"""Data sets as they are downloaded: a ``.zip`` or ``.tar`` (``.gz``, ``.bz2``, ``.xz``) is read as the folder it
unpacks to.

Kaggle and most dataset pages hand out one archive. It is unpacked once under the cache folder (keyed by the
archive's path, size and modification time, so a changed archive is unpacked again), atomically (a ``.partial``
folder renamed when whole) and under a lock (two commands on one archive unpack it once). What an archive may
write is checked first: no member outside its folder, no link or device (the tar ``data`` filter), and room on
the disk for what it says it holds. macOS's ``__MACOSX/`` resource forks are left out; :func:`wrapped_folder`
lets a reader step into the one folder that holds the data (``fer2013/fer2013.csv``, ``DATASET/train/1/...``).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from affectkit.config import DATA_CONFIG_NAME, DataConfig
from affectkit.errors import AffectkitError
from affectkit.progress import reporter

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
UNREAD_ARCHIVE_SUFFIXES = (".rar", ".7z")  # AffectNet's parts come as RAR
DONE_FILE = ".affectkit-unpacked.json"
LARGER_DISK = "set AFFECTKIT_CACHE (or cache_dir) to a larger disk"
UNPACK_YOURSELF = ", or unpack it yourself and give the folder"
SKIPPED_FOLDERS = ("__MACOSX",)
# Python's own check of what a tar member may write, where this Python has it (3.11.4 and later), beside ours.
TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def archive_suffix(path: Path) -> str | None:
    """The archive suffix ``path``'s name ends with (``.tar.gz``), or None."""
    name = path.name.lower()
    return next((s for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def is_archive(path: Path) -> bool:
    return path.is_file() and archive_suffix(path) is not None


def unpacked(path: Path, cache_dir: Path) -> Path:
    """``path`` itself, or, for an archive, the folder it unpacked to under ``cache_dir/archives``."""
    if path.is_file() and path.suffix.lower() in UNREAD_ARCHIVE_SUFFIXES:
        raise AffectkitError(f"{path}: {path.suffix} archives are not read (Python reads .zip and .tar alone); unpack "
                             "it (7z x, unrar x) and give the folder it unpacks to.")
    if not is_archive(path):
        return path
    return built_once(path, cache_dir / "archives", _stem(path), [path], _unpack, "unpacked")


def unpacked_copy(archive: Path, cache_dir: Path) -> Path | None:
    """The folder :func:`unpacked` has already unpacked ``archive`` (as it is now) to under ``cache_dir``, or None."""
    target = _built_folder(archive, cache_dir / "archives", _stem(archive), [archive])
    return target if (target / DONE_FILE).is_file() else None


def _stem(archive: Path) -> str:
    return archive.name[: -len(archive_suffix(archive))] or "data"


def _built_folder(source: Path, parent: Path, stem: str, inputs: list[Path]) -> Path:
    """Where :func:`built_once` builds ``source``'s folder: keyed by the path, sizes and modification times of
    ``inputs``."""
    stamps = "|".join(f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in inputs)
    key = hashlib.sha256(f"{source.resolve()}|{stamps}".encode()).hexdigest()[:12]
    return parent / f"{stem}-{key}"


def built_once(source: Path, parent: Path, stem: str, inputs: list[Path], build: Callable[[Path, Path], int],
               verb: str) -> Path:
    """The folder under ``parent`` that ``build(source, folder)`` filled from ``source``, built on first use: keyed
    by the path, sizes and modification times of ``inputs`` (a changed source is built again, and the copy of its
    earlier version deleted), under a lock, and atomically (a ``.partial`` folder renamed when whole)."""
    from filelock import FileLock

    target = _built_folder(source, parent, stem, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if not (target / DONE_FILE).is_file():
            _build(source, target, build)
            reporter().note(f"{source}: {verb} into {target} (deleting that folder frees the space; it is {verb} "
                            "again when needed)")
            for earlier in _earlier_versions(source, target, stem):
                shutil.rmtree(earlier, ignore_errors=True)
                reporter().note(f"{source} changed since it was {verb} into {earlier}: that copy was deleted")
    return target


def _earlier_versions(source: Path, target: Path, stem: str) -> list[Path]:
    """Other built copies of the source at this path (before it was downloaded again, or edited)."""
    copies = target.parent.glob(f"{glob.escape(stem)}-*/{DONE_FILE}")
    return [done.parent for done in copies if done.parent != target and _built_from(done) == str(source.resolve())]


def _built_from(done: Path) -> str | None:
    """The source a built folder's record names (``archive``: as the first version of the unpacking wrote it)."""
    record = json.loads(done.read_text())
    return record.get("source", record.get("archive"))


def _build(source: Path, target: Path, build: Callable[[Path, Path], int]) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        files = build(source, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / DONE_FILE).write_text(json.dumps({"source": str(source.resolve()), "files": files}))
    os.replace(partial, target)


def _unpack(archive: Path, folder: Path) -> int:
    """Unpack ``archive`` into ``folder``; the number of files written."""
    try:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, folder)
        if tarfile.is_tarfile(archive):
            return _unpack_tar(archive, folder)
    except (OSError, EOFError, RuntimeError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as exc:
        problem = _unpack_problem(exc)
        if problem is None:
            raise
        raise AffectkitError(f"{archive} could not be unpacked: {problem}") from None
    raise AffectkitError(f"{archive} is not a readable {archive_suffix(archive)} archive (damaged, or another format "
                         "under that name).")


def _unpack_problem(exc: BaseException) -> str | None:
    """Why unpacking failed and what to do, for the errors an archive's reading raises (None: not the archive's)."""
    if isinstance(exc, NotImplementedError):  # zipfile: "That compression method is not supported"
        return (f"{exc} (Windows writes zips past 2 GB with Deflate64, which Python does not read); unpack it with "
                "another tool (7z x) and give the folder.")
    if isinstance(exc, RuntimeError):  # zipfile: "File ... is encrypted, password required for extraction"
        return "it is password-protected; unpack it with its password and give the folder." \
            if "encrypted" in str(exc) else None
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return disk_full(exc)
    if isinstance(exc, OSError) and exc.errno is not None:  # the file system's (permissions...), not the archive's
        return f"{exc}."
    return f"{exc}; the archive is damaged or incomplete: download it again."


def _skipped(name: str) -> bool:
    return PurePosixPath(name).parts[:1] in {(folder,) for folder in SKIPPED_FOLDERS}


def _check_member(archive: Path, name: str) -> None:
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or (member.parts and member.parts[0].endswith(":")):
        raise AffectkitError(f"{archive}: member {name!r} would be written outside the folder it unpacks to; "
                             "refused (the archive is not a plain data set).")


def disk_full(exc: OSError) -> str:
    """What to say where the cache's disk filled up while a folder was being built there."""
    return f"the disk ran out of space ({exc.strerror}); free some, or {LARGER_DISK}."


def check_room(source: Path, folder: Path, size: int, holding: str, otherwise: str = "") -> None:
    """Refuse to build ``size`` bytes from ``source`` into ``folder`` before starting where its disk has less free
    (``holding``: what ``source`` does with them, "unpacks to"; ``otherwise``: another way out, said last)."""
    free = shutil.disk_usage(folder).free
    if size > free:
        raise AffectkitError(f"{source} {holding} {size / 1e9:.1f} GB and {folder} has {free / 1e9:.1f} GB free: "
                             f"free some space, {LARGER_DISK}{otherwise}.")


def _unpack_zip(archive: Path, folder: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            # Some Windows tools write train\happy\1.jpg: elsewhere that would be one file of that name.
            member.filename = member.filename.replace("\\", "/")
        members = [m for m in zf.infolist() if not _skipped(m.filename)]
        for member in members:
            _check_member(archive, member.filename)
        check_room(archive, folder, sum(m.file_size for m in members), "unpacks to", UNPACK_YOURSELF)
        for member in reporter().track(members, total=len(members), description=f"Unpacking {archive.name}"):
            zf.extract(member, folder)
    return sum(not m.is_dir() for m in members)


def _unpack_tar(archive: Path, folder: Path) -> int:
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if not _skipped(m.name)]
        for member in members:
            _check_member(archive, member.name)
            if not (member.isfile() or member.isdir()):
                raise AffectkitError(f"{archive}: member {member.name!r} is a link or a device, not a file; refused "
                                     "(a data set's archive holds files and folders).")
        check_room(archive, folder, sum(m.size for m in members), "unpacks to", UNPACK_YOURSELF)
        for member in reporter().track(members, total=len(members), description=f"Unpacking {archive.name}"):
            tf.extract(member, folder, set_attrs=False, **TAR_FILTER)
    return sum(m.isfile() for m in members)


def data_config(data: str | Path | None) -> DataConfig | None:
    """The settings file a data set may carry (``DATA/affectkit.yaml``, written by ``make-demo-data`` and
    ``clip-frames``), if any; in an archive, at its root or in the one folder it wraps its data in: read from the
    folder an earlier command unpacked it to under the default cache, else from the archive without unpacking it
    (a compressed tar is read through to its end where it has none, each time)."""
    if data is None:
        return None
    path = Path(data)
    if path.is_dir():
        card = path / DATA_CONFIG_NAME
        return DataConfig(str(card), card.read_text()) if card.is_file() else None
    if not is_archive(path):
        return None
    from affectkit.data.cache import default_cache_dir  # imported here: the cache module imports this one

    copy = unpacked_copy(path, default_cache_dir())
    try:
        found = _member_text(path, _is_data_config) if copy is None else _unpacked_data_config(copy)
    except (OSError, EOFError, RuntimeError, zlib.error, zipfile.BadZipFile, tarfile.TarError,
            UnicodeDecodeError) as exc:
        raise AffectkitError(f"{path}: cannot look for its {DATA_CONFIG_NAME} in the archive ({exc}); unpack it "
                             "yourself and give the folder") from None
    return None if found is None else DataConfig(f"{path}: {found[0]}", found[1])


def _is_data_config(name: str) -> bool:
    """``affectkit.yaml`` at an archive's root or one folder down (a wrapped data set), never in macOS's forks."""
    name = name.replace("\\", "/")
    parts = PurePosixPath(name).parts
    return parts[-1:] == (DATA_CONFIG_NAME,) and len(parts) <= 2 and not _skipped(name)


def _depth(name: str) -> int:
    return len(PurePosixPath(name.replace("\\", "/")).parts)


def _member_text(archive: Path, wanted: Callable[[str], bool]) -> tuple[str, str] | None:
    """The shallowest member of ``archive`` that ``wanted`` says yes to, and its text; a tar is read only until a
    member at its root is found."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = sorted(filter(wanted, zf.namelist()), key=_depth)
            return (names[0], zf.read(names[0]).decode("utf-8")) if names else None
    found = None
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile() and wanted(member.name) and (found is None or _depth(member.name) == 1):
                    found = (member.name, tf.extractfile(member).read().decode("utf-8"))
                    if _depth(member.name) == 1:
                        break
    return found


def _unpacked_data_config(folder: Path) -> tuple[str, str] | None:
    """The data set's settings file an archive holds (as :func:`_member_text` finds it there), read in the
    ``folder`` it was unpacked to: at its root, or else one folder down."""
    # Unpacking left macOS's forks out, so every such file here is one the archive's reading would take.
    found = [path for path in (folder / DATA_CONFIG_NAME, *sorted(folder.glob(f"*/{DATA_CONFIG_NAME}")))
             if path.is_file()]
    return (found[0].relative_to(folder).as_posix(), found[0].read_text(encoding="utf-8")) if found else None


def wrapped_folder(folder: Path) -> Path | None:
    """The one folder that ``folder`` holds (files beside it, a README or the labels' CSVs, aside), or None."""
    folders = [e for e in folder.iterdir() if e.is_dir() and not e.name.startswith(".")]
    return folders[0] if len(folders) == 1 else None
