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
import resource
import shutil
import subprocess
import sys
import tempfile
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


def measure(data: str, img_size: int, workers: int, cache: str) -> None:
    """Runs in a fresh process: read, then build the cache; prints one JSON line."""
    from affectkit.data.cache import build_cache
    from affectkit.data.reader import read_dataset

    records = read_dataset(data, progress=False).records
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    build_cache(records, img_size, Path(cache), workers=workers, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "n": len(records),
        "seconds": seconds,
        "images_per_s": len(records) / seconds,
        "parent_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parent_peak_before_build_mb": rss_before / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
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
        print(f"{r['n']:6d} images at {args.img_size}px: {r['images_per_s']:7.0f} images/s, "
              f"parent peak {r['parent_peak_mb']:6.0f} MB (before build {r['parent_peak_before_build_mb']:.0f} MB), "
              f"worker peak {r['worker_peak_mb']:5.0f} MB")
    workers = np.array([r["worker_peak_mb"] for r in rows])
    growth = (workers.max() - workers.min()) / workers.min()
    print(f"worker_peak_growth={growth:.3f} ({rows[0]['n']} -> {rows[-1]['n']} images)")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
