"""The decoded-image cache: every image decoded and resized once into one uint8 array on disk, memory-mapped.

Training epochs then read raw pixels (no JPEG decode), which keeps the data path far ahead of the model. The cache is
keyed by the images' content hashes, their order and the image size, so it is rebuilt exactly when the data changes.
Building is chunked and resumable (a ``done`` mask saved after each chunk), parallel over worker processes, and each
worker maps only the chunk it writes, so memory stays flat however many images there are.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from affectkit.atomic import atomic_path, atomic_write_text
from affectkit.data.layouts.fer2013 import row_pixels
from affectkit.data.reader import Record
from affectkit.errors import AffectkitError, one_line
from affectkit.imaging import HEIF_MISSING, HEIF_SUFFIXES, register_photo_decoders
from affectkit.progress import reporter, silenced

CACHE_VERSION = 2  # 2: enlarging resizes are bilinear
CHUNK = 256
SERIAL_CHUNKS = 8  # below this many chunks, starting worker processes costs more than it saves


def default_cache_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("AFFECTKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "affectkit"


def cache_key(records: list[Record], size: int) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(f"v{CACHE_VERSION}|{size}|".encode())
    for r in records:
        h.update(f"{r.id}:{r.digest};".encode())
    return h.hexdigest()


# A record's pixels, in a form cheap to send to a worker process: (path, crop box or None, CSV row offset or None).
PixelSource = tuple[str, tuple[int, int, int, int] | None, int | None]


def pixel_source(record: Record) -> PixelSource:
    return str(record.image_path), record.crop, record.row_offset


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    # INTER_AREA for the downscaling this nearly always is; it degrades to blocky nearest-neighbour when enlarging
    # (48-px FER2013 faces, small crops), where bilinear is the right filter.
    shrinking = rgb.shape[0] >= size and rgb.shape[1] >= size
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def decode_rgb(path: str | Path, orientation: bool = True) -> np.ndarray:
    """RGB uint8 of an image file, turned upright by its EXIF orientation unless ``orientation`` is False; grayscale
    files become three equal channels. OpenCV decodes; HEIC, which it cannot, goes through Pillow."""
    if Path(path).suffix.lower() in HEIF_SUFFIXES:
        if not register_photo_decoders():
            raise AffectkitError(f"{path}: {HEIF_MISSING}.")
        try:
            with Image.open(path) as image:  # libheif applies the file's own rotation as it decodes
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise AffectkitError(f"{path}: image could not be decoded while building the cache ({one_line(exc)}).") \
                from None
    flags = cv2.IMREAD_COLOR | (0 if orientation else cv2.IMREAD_IGNORE_ORIENTATION)
    bgr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), flags)
    if bgr is None:
        raise AffectkitError(f"{path}: image could not be decoded while building the cache.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_resized(path: str | Path, size: int) -> np.ndarray:
    """RGB uint8 ``size x size`` from an image file; grayscale files become three equal channels."""
    return _resize(decode_rgb(path), size)


def decode_source(source: PixelSource, size: int) -> np.ndarray:
    """RGB uint8 ``size x size`` of one record: an image file, a face crop of one, or a FER2013 row."""
    path, crop, row_offset = source
    if row_offset is not None:
        return _resize(cv2.cvtColor(row_pixels(path, row_offset), cv2.COLOR_GRAY2RGB), size)
    if crop is None:
        return decode_resized(path, size)
    # Crop boxes are in the stored pixel grid (PIL's size, which ignores EXIF rotation), so cv2 must ignore it too.
    x0, y0, x1, y1 = crop
    return _resize(decode_rgb(path, orientation=False)[y0:y1, x0:x1], size)


def decode_record(record: Record, size: int) -> np.ndarray:
    return decode_source(pixel_source(record), size)


def _write_chunk(file: str, size: int, start: int, sources: list[PixelSource]) -> int:
    cv2.setNumThreads(1)
    frame = size * size * 3
    out = np.memmap(file, dtype=np.uint8, mode="r+", offset=start * frame, shape=(len(sources), size, size, 3))
    for i, source in enumerate(sources):
        out[i] = decode_source(source, size)
    out.flush()
    del out
    return start


@dataclass
class ImageCache:
    directory: Path
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped or in RAM
    ids: list[str]


def _save_done(path: Path, done: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, done)


def _complete(meta_file: Path) -> bool:
    return meta_file.is_file() and json.loads(meta_file.read_text()).get("complete", False)


def build_cache(records: list[Record], size: int, cache_dir: Path, workers: int = 2, progress: bool = True) -> Path:
    """Create (or finish an interrupted build of) the cache for these records; returns its folder. Commands run
    side by side on the same data (two trainings started at once) build it once: the second waits for the first."""
    from filelock import FileLock, Timeout

    directory = cache_dir / cache_key(records, size)
    directory.mkdir(parents=True, exist_ok=True)
    meta_file = directory / "meta.json"
    if _complete(meta_file):
        return directory
    lock = FileLock(directory / "build.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        reporter().note(f"Another affectkit command is building the image cache {directory}: waiting for it.")
        lock.acquire()
    try:
        if not _complete(meta_file):  # built by another process while this one waited
            _build(records, size, directory, workers, progress)
    finally:
        lock.release()
    return directory


def _build(records: list[Record], size: int, directory: Path, workers: int, progress: bool) -> None:
    images_file = directory / "images.u8"
    meta_file = directory / "meta.json"
    done_file = directory / "done.npy"
    n = len(records)
    n_chunks = (n + CHUNK - 1) // CHUNK
    if not images_file.is_file() or images_file.stat().st_size != n * size * size * 3 or not done_file.is_file():
        with open(images_file, "wb") as f:
            f.truncate(n * size * size * 3)  # sparse file: no memory or disk written up front
        done = np.zeros(n_chunks, dtype=bool)
        _save_done(done_file, done)
    done = np.load(done_file)
    todo = [c for c in range(n_chunks) if not done[c]]
    jobs = [(str(images_file), size, c * CHUNK, [pixel_source(r) for r in records[c * CHUNK : (c + 1) * CHUNK]])
            for c in todo]
    with silenced(not progress), reporter().bar() as bar:
        task = bar.add_task(f"Caching images at {size}px", total=n, completed=n - sum(len(j[3]) for j in jobs), info="")
        if workers <= 1 or len(jobs) <= SERIAL_CHUNKS:
            finished = (_write_chunk(*job) for job in jobs)
            _mark_done(finished, done, done_file, bar, task, records)
        else:
            # "spawn": forking a process that already runs torch/OpenMP and reader threads can deadlock the children.
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_write_chunk, *job) for job in jobs]
                _mark_done((f.result() for f in as_completed(futures)), done, done_file, bar, task, records)
    meta = {"version": CACHE_VERSION, "size": size, "n": n, "ids": [r.id for r in records], "complete": True}
    atomic_write_text(meta_file, json.dumps(meta))
    done_file.unlink(missing_ok=True)


def _mark_done(starts, done: np.ndarray, done_file: Path, bar, task, records: list[Record]) -> None:
    for start in starts:
        done[start // CHUNK] = True
        _save_done(done_file, done)
        bar.advance(task, len(records[start : start + CHUNK]))


def open_cache(directory: Path, in_memory: bool = False) -> ImageCache:
    meta = json.loads((directory / "meta.json").read_text())
    shape = (meta["n"], meta["size"], meta["size"], 3)
    images = np.memmap(directory / "images.u8", dtype=np.uint8, mode="r", shape=shape)
    if in_memory:
        images = np.array(images)
    return ImageCache(directory, images, meta["ids"])


def landmarks_in_cache(record: Record, size: int) -> np.ndarray:
    """The record's landmarks in cache pixel coordinates, or NaN when it has none (a crop's landmarks and size are
    the crop's, so one scaling serves whole images and crops alike)."""
    if record.landmarks is None or not record.width:
        return np.full((68, 2), np.nan, dtype=np.float32)
    scale = np.array([size / record.width, size / record.height], dtype=np.float32)
    return record.landmarks * scale
