"""Atomic file writes: a file is written under a temporary name beside its final one and renamed into place when
complete, so a reader (or a resumed run after a kill) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """The temporary path (``<name>.tmp``) to write ``path``'s content to; it replaces ``path`` when the block ends,
    and is removed instead when the block raises."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
