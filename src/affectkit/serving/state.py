"""What a server has seen, kept across restarts (``serve --state-dir DIR``): the faces in the drift monitor's window,
the predictions a report of the truth may still refer to, and every report received.

One SQLite file per model (``DIR/<model>-<digest>.sqlite``, named by the weights' SHA-256), so a restart, a crash or
a redeploy of the same model loses neither the reports clients sent nor the predictions they may still report on,
while another model never inherits outputs that were not its own. Every write is one transaction in write-ahead-log
mode, so a killed server leaves the file as it was after its last answered request. The file is plain SQLite: the
``reports`` table (time, prediction id, the truth and what the model said) reads straight into pandas.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import pandas as pd

from affectkit.errors import AffectkitError
from affectkit.inference.predictor import model_digest, model_files

SCHEMA = """
CREATE TABLE IF NOT EXISTS model (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS served (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
    expression TEXT NOT NULL, valence REAL NOT NULL, arousal REAL NOT NULL, confidence REAL NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time REAL NOT NULL,
    expression TEXT NOT NULL, valence REAL NOT NULL, arousal REAL NOT NULL, reported INTEGER NOT NULL DEFAULT 0,
    abstained INTEGER);
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, prediction_id TEXT NOT NULL,
    expression TEXT, valence REAL, arousal REAL,
    said_expression TEXT NOT NULL, said_valence REAL NOT NULL, said_arousal REAL NOT NULL, said_abstained INTEGER);
"""
# Columns files written before them lack, added when such a file is opened: (table, column, type).
ADDED_COLUMNS = (("predictions", "abstained", "INTEGER"), ("reports", "said_abstained", "INTEGER"))
log = logging.getLogger(__name__)
PRUNE_EVERY = 256  # rows beyond a window are deleted in batches, not one per insert

Served = tuple[str, float, float, float]  # expression, valence, arousal, confidence
Said = tuple[str, float, float, bool | None]  # expression, valence, arousal, abstained (None: no threshold served)
Report = tuple[Said, str | None, float | None, float | None]  # what was said; the truth (None where not reported)


def state_file(folder: str | Path, model_path: str | Path) -> Path:
    """Where ``--state-dir folder`` keeps the state of this model."""
    weights, _, _ = model_files(model_path)
    return Path(folder) / f"{weights.stem}-{model_digest(model_path)[:16]}.sqlite"


class StateError(AffectkitError):
    """The state file refused a write that must not be lost."""


class ServingState:
    """The SQLite file behind ``--state-dir``; thread-safe. ``served`` keeps the last ``served_window`` faces and
    ``predictions`` the last ``remembered`` ones (both pruned as they grow); ``reports`` keeps every report."""

    def __init__(self, folder: str | Path, model_path: str | Path, class_names: Sequence[str], served_window: int,
                 remembered: int):
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AffectkitError(f"--state-dir {folder}: cannot create the folder ({exc.strerror}).") from None
        self.path = state_file(folder, model_path)
        self._keep = {"served": served_window, "predictions": remembered}
        self._since_prune = dict.fromkeys(self._keep, 0)
        self._lock = threading.Lock()
        try:
            # Autocommit: each write below is its own explicit transaction.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._add_missing_columns()
            # For whoever reads the file later: which model, and its classes in the order of its outputs.
            self._db.executemany("INSERT OR IGNORE INTO model VALUES (?, ?)",
                                 [("model", Path(model_path).name), ("class_names", ",".join(class_names))])
        except sqlite3.Error as exc:
            raise AffectkitError(f"{self.path}: not a usable affectkit serving state ({exc}); move it away to "
                                 "start afresh.") from None
        for table in self._keep:
            self._prune(table)

    def _add_missing_columns(self) -> None:
        for table, column, kind in ADDED_COLUMNS:
            # The names come from ADDED_COLUMNS, never from a request.
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _record(self, what: str, statement: str, rows: list[tuple]) -> None:
        """Faces served: a failed write (a full disk) is logged, and serving goes on without it."""
        try:
            with self._transaction() as db:
                db.executemany(statement, rows)
        except sqlite3.Error as exc:
            log.error("%s: could not record %d %s (%s)", self.path, len(rows), what, exc)

    def add_served(self, rows: Sequence[Served]) -> None:
        if rows:
            now = time.time()
            self._record("faces served", "INSERT INTO served (time, expression, valence, arousal, confidence) "
                         "VALUES (?, ?, ?, ?, ?)", [(now, *row) for row in rows])
            self._count("served", len(rows))

    def recent_served(self) -> list[Served]:
        """The last ``served_window`` faces, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT expression, valence, arousal, confidence FROM served "
                                    "ORDER BY seq DESC LIMIT ?", (self._keep["served"],)).fetchall()
        return rows[::-1]

    def add_predictions(self, rows: Sequence[tuple[str, Said]]) -> None:
        """``(prediction_id, (expression, valence, arousal, abstained))`` of faces served."""
        if rows:
            now = time.time()
            self._record("predictions", "INSERT INTO predictions (id, time, expression, valence, arousal, abstained) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [(pid, now, *said) for pid, said in rows])
            self._count("predictions", len(rows))

    def remembered(self) -> list[tuple[str, Said, bool]]:
        """The last ``remembered`` predictions, oldest first: id, what was said, whether it was reported."""
        with self._lock:
            rows = self._db.execute("SELECT id, expression, valence, arousal, abstained, reported FROM predictions "
                                    "ORDER BY seq DESC LIMIT ?", (self._keep["predictions"],)).fetchall()
        return [(pid, (expression, valence, arousal, _flag(abstained)), bool(reported))
                for pid, expression, valence, arousal, abstained, reported in rows[::-1]]

    def add_report(self, prediction_id: str, report: Report) -> None:
        """One report, and its prediction marked reported, in one transaction. Raises StateError where it cannot be
        written: a report the client was told is recorded must be."""
        said, expression, valence, arousal = report
        try:
            with self._transaction() as db:
                db.execute("UPDATE predictions SET reported = 1 WHERE id = ?", (prediction_id,))
                db.execute("INSERT INTO reports (time, prediction_id, expression, valence, arousal, said_expression, "
                           "said_valence, said_arousal, said_abstained) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (time.time(), prediction_id, expression, valence, arousal, *said))
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: the report could not be stored ({exc})") from None

    def reports(self, latest: int) -> tuple[list[Report], int]:
        """The latest ``latest`` reports, oldest first, and how many there have been in all."""
        with self._lock:
            rows = self._db.execute("SELECT said_expression, said_valence, said_arousal, said_abstained, expression, "
                                    "valence, arousal FROM reports ORDER BY seq DESC LIMIT ?", (latest,)).fetchall()
            (total,) = self._db.execute("SELECT COUNT(*) FROM reports").fetchone()
        return [((e, v, a, _flag(abstained)), *truth) for e, v, a, abstained, *truth in rows[::-1]], total

    def _count(self, table: str, added: int) -> None:
        self._since_prune[table] += added
        if self._since_prune[table] >= PRUNE_EVERY:
            self._prune(table)

    def _prune(self, table: str) -> None:
        self._since_prune[table] = 0
        # The table name comes from self._keep, never from a request.
        self._record("deletions", f"DELETE FROM {table} WHERE seq <= (SELECT MAX(seq) FROM {table}) - ?",
                     [(self._keep[table],)])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _flag(stored: int | None) -> bool | None:
    return None if stored is None else bool(stored)


def read_reports(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Every report a state file holds, oldest first (``time`` as a UTC timestamp, the truth and what the model
    said, ``said_abstained`` whether it abstained on the face: 1, 0, or empty where no threshold was served), and the
    model's class names. Opened read-only: a running server may keep writing."""
    path = Path(path)
    if not path.is_file():
        raise AffectkitError(f"{path} does not exist: give a state file `affectkit serve --state-dir` wrote.")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            names = dict(db.execute("SELECT key, value FROM model"))["class_names"]
            classes = names.split(",") if names else []  # none: a valence/arousal model
            # A file written before abstentions were kept has no such column (and served none).
            columns = {row[1] for row in db.execute("PRAGMA table_info(reports)")}
            abstained = "said_abstained" if "said_abstained" in columns else "NULL AS said_abstained"
            reports = pd.read_sql("SELECT time, prediction_id, expression, said_expression, valence, said_valence, "
                                  f"arousal, said_arousal, {abstained} FROM reports ORDER BY seq", db)
    except (sqlite3.Error, pd.errors.DatabaseError, KeyError) as exc:
        raise AffectkitError(f"{path} is not a state file `affectkit serve --state-dir` wrote ({exc}).") from None
    reports["time"] = pd.to_datetime(reports["time"], unit="s", utc=True)
    return reports, classes
