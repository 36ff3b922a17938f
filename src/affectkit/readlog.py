"""A long read's log: what each item gave, appended as one JSON line as soon as it is read, so that a run stopped on
the way (Ctrl-C, a kill) goes on from the log and reads only the items it lacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from affectkit.atomic import atomic_write_text


def _logged(log: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The items a log written for ``key`` holds, by id, and the log rewritten to them alone (a line cut short where
    the process was killed, and what follows it, is read again); a log of other inputs is started over."""
    lines = log.read_text().splitlines() if log.is_file() else []
    entries: dict[str, dict[str, Any]] = {}
    try:
        fresh = json.loads(lines[0]) != {"key": key} if lines else True
        for line in lines[1:] if not fresh else []:
            entry = json.loads(line)
            entries[entry["id"]] = entry
    except (ValueError, KeyError, TypeError):
        pass
    atomic_write_text(log, "".join(json.dumps(line) + "\n" for line in [{"key": key}, *entries.values()]))
    return entries


class ReadLog:
    """The log at ``path`` of a read of the inputs ``key`` describes (``path`` None: nothing is written). Each
    entry is a JSON object with the item's ``id``; :attr:`entries` holds those read before, by id. Closed with
    :meth:`close` (``contextlib.closing``)."""

    def __init__(self, path: Path | None, key: dict[str, Any]) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.entries = _logged(path, key) if path is not None else {}
        self._writer = path.open("a") if path is not None else None

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` appended to the log, and returned as read back from JSON: a run that went on from its log then
        gives the numbers an uninterrupted one gives."""
        line = json.dumps(entry, default=float)  # NumPy scalars as floats
        if self._writer is not None:
            self._writer.write(line + "\n")
            self._writer.flush()
        return json.loads(line)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
