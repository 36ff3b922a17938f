import json

import numpy as np

from affectkit.data.cache import build_cache, cache_key, decode_resized, open_cache
from affectkit.data.reader import read_dataset


def test_cache_holds_decoded_resized_pixels(demo_dir, tmp_path):
    records = read_dataset(demo_dir, progress=False).records
    directory = build_cache(records, 40, tmp_path, workers=2, progress=False)
    cache = open_cache(directory)
    assert isinstance(cache.images, np.memmap) and cache.images.shape == (96, 40, 40, 3)
    assert cache.ids == [r.id for r in records]
    for k in (0, 50, 95):
        assert np.array_equal(cache.images[k], decode_resized(records[k].image_path, 40))
    assert isinstance(open_cache(directory, in_memory=True).images, np.ndarray)


def test_cache_key_follows_content_and_size(demo_copy, tmp_path):
    records = read_dataset(demo_copy, progress=False).records
    key = cache_key(records, 32)
    assert key == cache_key(read_dataset(demo_copy, progress=False).records, 32)
    assert key != cache_key(records, 48)
    img = demo_copy / "images" / f"{records[3].id}.jpg"
    img.write_bytes((demo_copy / "images" / f"{records[4].id}.jpg").read_bytes())  # same name, other content
    assert cache_key(read_dataset(demo_copy, progress=False).records, 32) != key


def test_interrupted_build_resumes(demo_dir, tmp_path, monkeypatch):
    from affectkit.data import cache as cache_module

    records = read_dataset(demo_dir, progress=False).records
    monkeypatch.setattr(cache_module, "CHUNK", 32)
    calls = []
    real = cache_module._write_chunk

    def crash_on_second(*args):
        calls.append(args[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cache_module, "_write_chunk", crash_on_second)
    try:
        build_cache(records, 24, tmp_path, workers=1, progress=False)
    except KeyboardInterrupt:
        pass
    directory = tmp_path / cache_key(records, 24)
    assert not (directory / "meta.json").exists()
    assert np.load(directory / "done.npy").tolist() == [True, False, False]
    monkeypatch.setattr(cache_module, "_write_chunk", lambda *a: (calls.append(a[2]), real(*a))[1])
    build_cache(records, 24, tmp_path, workers=1, progress=False)
    assert calls[2:] == [32, 64]  # only the unfinished chunks were decoded again
    assert json.loads((directory / "meta.json").read_text())["complete"]
    assert np.array_equal(open_cache(directory).images[90], decode_resized(records[90].image_path, 24))


def test_a_build_waits_for_the_one_running_beside_it_and_reuses_it(demo_dir, tmp_path, monkeypatch):
    """Two trainings started at once on the same data: the second waits for the first's cache, then decodes
    nothing (they used to write the same files at the same time, one truncating what the other had written)."""
    import threading
    import time

    from filelock import FileLock

    from affectkit.data import cache as cache_module

    records = read_dataset(demo_dir, progress=False).records
    directory = tmp_path / cache_key(records, 24)
    directory.mkdir()
    other = FileLock(directory / "build.lock")  # the other command, building
    other.acquire()
    built = {}
    waiting = threading.Thread(target=lambda: built.update(path=build_cache(records, 24, tmp_path, workers=1,
                                                                            progress=False)))
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive() and not (directory / "meta.json").exists()
    cache_module._build(records, 24, directory, workers=1, progress=False)  # the other command's build ends
    decoded = []
    monkeypatch.setattr(cache_module, "_write_chunk", lambda *a: decoded.append(a[2]))
    other.release()
    waiting.join(timeout=30)
    assert built["path"] == directory and decoded == []
    assert np.array_equal(open_cache(directory).images[5], decode_resized(records[5].image_path, 24))
