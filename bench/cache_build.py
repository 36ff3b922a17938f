"""Decoded-image cache build: images/s and peak memory as the data set grows (5,000 -> 20,000 images).

Renders a pool of demo faces once, then lays out AffectNet-layout folders of 5k, 10k and 20k samples whose images
are hard links into the pool (decoding work is real: every sample is decoded and resized). Each size is read and
cached in a fresh process; peak resident memory is reported for that process and for its worker processes.
Memory must stay flat: workers map only the chunk they write, the parent never maps the array.

    python bench/cache_build.py                       # about 5 minutes on 2 cores
    python bench/cache_build.py --sizes 5000,20000 --img-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def layout(pool: Path, out: Path, n: int) -> Path:
    pool_ids = sorted(p.stem for p in (pool / "images").glob("*.jpg"))
    (out / "images").mkdir(parents=True)
    (out / "annotations").mkdir()
    for i in range(n):
        src = pool_ids[i % len(pool_ids)]
        os.link(pool / "images" / f"{src}.jpg", out / "images" / f"{i}.jpg")
        for kind in ("exp", "val", "aro", "lnd"):
            os.link(pool / "annotations" / f"{src}_{kind}.npy", out / "annotations" / f"{i}_{kind}.npy")
    return out


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


class RssSampler(threading.Thread):
    """Polls the resident memory of this process and, separately, the sum over its worker processes.

    ru_maxrss cannot tell the workers apart: a child inherits the parent's high-water mark at fork, before its exec."""

    def __init__(self, interval: float = 0.05):
        super().__init__(daemon=True)
        self.interval, self.parent_mb, self.workers_mb, self.stop = interval, 0.0, 0.0, threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            self.parent_mb = max(self.parent_mb, _rss_mb(me))
            self.workers_mb = max(self.workers_mb, sum(_rss_mb(c) for c in _children(me)))
            time.sleep(self.interval)


def measure(data: str, img_size: int, workers: int, cache: str) -> None:
    """Runs in a fresh process: read, then build the cache; prints one JSON line."""
    from affectkit.data.cache import build_cache
    from affectkit.data.reader import read_dataset

    records = read_dataset(data, progress=False).records
    rss_before = _rss_mb(os.getpid())
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    build_cache(records, img_size, Path(cache), workers=workers, progress=False)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    print(json.dumps({
        "n": len(records),
        "seconds": seconds,
        "images_per_s": len(records) / seconds,
        "parent_before_build_mb": rss_before,
        "parent_peak_during_build_mb": sampler.parent_mb,
        "workers_peak_mb": sampler.workers_mb,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000,20000")
    parser.add_argument("--pool", type=int, default=500, help="distinct rendered faces")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", nargs=3, metavar=("DATA", "IMG_SIZE", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure[0], int(args.measure[1]), args.workers, args.measure[2])
        return

    from affectkit.data.synthetic import make_demo_dataset

    tmp = Path(tempfile.mkdtemp(prefix="affectkit-cache-bench-"))
    pool = make_demo_dataset(tmp / "pool", n=args.pool, seed=0, progress=False)
    rows = []
    for n in map(int, args.sizes.split(",")):
        data = layout(pool, tmp / f"data{n}", n)
        done = subprocess.run([sys.executable, __file__, "--workers", str(args.workers), "--measure", str(data),
                               str(args.img_size), str(tmp / f"cache{n}")], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        shutil.rmtree(tmp / f"cache{n}")
        r = rows[-1]
        print(f"{r['n']:6d} images at {args.img_size}px: {r['images_per_s']:6.0f} images/s; resident memory: "
              f"parent {r['parent_before_build_mb']:4.0f} MB before the build, {r['parent_peak_during_build_mb']:4.0f} MB "
              f"peak during it; {args.workers} workers {r['workers_peak_mb']:4.0f} MB peak together")
    build = np.array([r["parent_peak_during_build_mb"] - r["parent_before_build_mb"] + r["workers_peak_mb"] for r in rows])
    growth = (build.max() - build.min()) / build.min()
    print(f"build_memory_growth={growth:.3f} ({rows[0]['n']} -> {rows[-1]['n']} images; what the build adds to the "
          "parent plus the workers' peak)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
