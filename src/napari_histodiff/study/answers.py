"""The answers database of a study (SQLite).

Durability rules: the database runs in WAL mode with ``synchronous=FULL``,
every answer is written in one ``BEGIN IMMEDIATE ... COMMIT`` transaction
(the answer, its line in the append-only log and the reader's position
together) and :meth:`AnswerDB.save_answer` returns only after the commit.
A process killed at any moment therefore loses at most the answer it was
writing, never one it had returned from. Several processes (two readers on
one study folder) may use the database at once; writers wait for each other
up to ``timeout`` seconds. WAL needs a local file system: on a network share,
give each reader a copy of the folder instead.

Tables: ``meta`` (format, schema version, study uid), ``readers`` (one row
per reader name and mode, with the shuffled case order and the position),
``answers`` (the current answer per reader and case) and ``answer_log``
(every answer ever saved, including changed ones).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import HistodiffError, InputError

DB_FORMAT = "napari-histodiff-study-answers"
SCHEMA_VERSION = 1
MODES = ("study", "training")

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE readers (
    reader_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('study', 'training')),
    order_seed INTEGER NOT NULL,
    case_order TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (name_key, mode)
);
CREATE TABLE answers (
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id) ON DELETE CASCADE,
    case_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    answer TEXT NOT NULL,
    confidence INTEGER CHECK (confidence IS NULL OR confidence BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '',
    seconds REAL NOT NULL CHECK (seconds >= 0),
    answered_at TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (reader_id, case_id)
);
CREATE TABLE answer_log (
    log_id INTEGER PRIMARY KEY,
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id) ON DELETE CASCADE,
    case_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    confidence INTEGER,
    comment TEXT NOT NULL,
    seconds REAL NOT NULL,
    answered_at TEXT NOT NULL,
    revision INTEGER NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def name_key(name: str) -> str:
    """The form of a reader name used to recognise a returning reader."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class ReaderRecord:
    """One reader (in study or training mode) as stored."""

    reader_id: int
    name: str
    mode: str
    order_seed: int
    case_order: tuple[str, ...]
    position: int
    started_at: str
    updated_at: str


@dataclass(frozen=True)
class AnswerRecord:
    """The current answer of one reader to one case."""

    reader_id: int
    case_id: str
    position: int
    answer: str
    confidence: int | None
    comment: str
    seconds: float
    answered_at: str
    revision: int


_READER_COLUMNS = (
    "reader_id, name, mode, order_seed, case_order, position, started_at, updated_at"
)
_ANSWER_COLUMNS = (
    "reader_id, case_id, position, answer, confidence, comment, seconds, "
    "answered_at, revision"
)


def _reader(row: tuple) -> ReaderRecord:
    values = list(row)
    values[4] = tuple(json.loads(values[4]))
    return ReaderRecord(*values)


class AnswerDB:
    """Connection to a study's answers database.

    Use :meth:`create` once when a study is made and :meth:`open` afterwards;
    close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._conn = connection
        self.path = path

    # -- opening ----------------------------------------------------------
    @staticmethod
    def _connect(path: Path, mode: str, timeout: float) -> sqlite3.Connection:
        uri = f"{path.absolute().as_uri()}?mode={mode}"
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @classmethod
    def create(cls, path: str | Path, study_uid: str) -> None:
        """Create an empty answers database for a study."""
        path = Path(path)
        if path.exists():
            raise InputError(f"answers database {path} exists already.")
        conn = cls._connect(path, "rwc", 30.0)
        try:
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", DB_FORMAT),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("study_uid", study_uid),
                    ("created", _now()),
                ],
            )
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    @classmethod
    def open(
        cls, path: str | Path, study_uid: str | None, *, timeout: float = 30.0
    ) -> AnswerDB:
        """Open and check an answers database.

        Parameters
        ----------
        path : str or Path
            The database file (never created here).
        study_uid : str or None
            The study it must belong to; ``None`` skips that check.
        timeout : float
            Seconds to wait for another process holding the write lock.

        Raises
        ------
        InputError
            If the file is missing, not an answers database, damaged, of a
            newer schema, or from another study.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"answers database {path} does not exist; pass a study folder "
                "made by `histodiff study create` (or its answers.sqlite)."
            )
        try:
            conn = cls._connect(path, "rw", timeout)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"cannot use {path} as an answers database ({exc}); check that the "
                "study folder is complete and writable, or restore it from a copy."
            ) from exc
        db = cls(conn, path)
        problem = None
        if meta.get("format") != DB_FORMAT:
            problem = f"{path} is not a napari-histodiff answers database"
        elif int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
            problem = (
                f"{path} has schema version {meta['schema_version']}, newer than "
                f"{SCHEMA_VERSION}; update napari-histodiff"
            )
        elif study_uid is not None and meta.get("study_uid") != study_uid:
            problem = (
                f"answers database {path} belongs to another study (uid "
                f"{meta.get('study_uid')!r}, expected {study_uid!r})"
            )
        elif check != "ok":
            problem = f"answers database {path} is damaged ({check})"
        if problem:
            db.close()
            raise InputError(problem + ".")
        return db

    def __enter__(self) -> AnswerDB:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Fold the write-ahead log into the file (if nobody else reads), then close."""
        if self._conn is None:
            return
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # another process holds it; the WAL stays, nothing is lost
        self._conn.close()
        self._conn = None  # type: ignore[assignment]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite failures become a clear HistodiffError."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise HistodiffError(
                f"could not write to the answers database {self.path} ({exc}); "
                "nothing was saved. Check the disk and that the folder is "
                "writable, then try again."
            ) from exc

    @property
    def study_uid(self) -> str:
        """The study this database belongs to."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'study_uid'")
        return row.fetchone()[0]

    # -- readers ----------------------------------------------------------
    def reader(self, name: str, mode: str) -> ReaderRecord | None:
        """The reader with this name (compared by :func:`name_key`) and mode."""
        row = self._conn.execute(
            f"SELECT {_READER_COLUMNS} FROM readers WHERE name_key = ? AND mode = ?",
            (name_key(name), mode),
        ).fetchone()
        return _reader(row) if row else None

    def add_reader(
        self, name: str, mode: str, case_order: Sequence[str], order_seed: int
    ) -> ReaderRecord:
        """Register a reader, or return the existing one of that name and mode."""
        if mode not in MODES:
            raise InputError(f"mode={mode!r} must be one of {', '.join(MODES)}.")
        now = _now()
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO readers (name, name_key, mode, order_seed, "
                "case_order, position, started_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    " ".join(name.split()),
                    name_key(name),
                    mode,
                    int(order_seed),
                    json.dumps(list(case_order)),
                    now,
                    now,
                ),
            )
        record = self.reader(name, mode)
        assert record is not None
        return record

    def readers(self, mode: str | None = None) -> list[ReaderRecord]:
        """All readers (of one mode), in registration order."""
        query = f"SELECT {_READER_COLUMNS} FROM readers"
        params: tuple = ()
        if mode is not None:
            query += " WHERE mode = ?"
            params = (mode,)
        rows = self._conn.execute(query + " ORDER BY reader_id", params).fetchall()
        return [_reader(row) for row in rows]

    def delete_reader(self, reader_id: int) -> None:
        """Delete a reader and their answers (used to restart training)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM readers WHERE reader_id = ?", (reader_id,))

    def set_position(self, reader_id: int, position: int) -> None:
        """Remember where a reader is (for resuming)."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE readers SET position = ?, updated_at = ? WHERE reader_id = ?",
                (int(position), _now(), reader_id),
            )

    # -- answers ----------------------------------------------------------
    def answers(self, reader_id: int) -> dict[str, AnswerRecord]:
        """Current answers of a reader, by case id."""
        rows = self._conn.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE reader_id = ?",
            (reader_id,),
        ).fetchall()
        return {row[1]: AnswerRecord(*row) for row in rows}

    def count_answers(self, mode: str | None = None) -> int:
        """Number of current answers (of one mode)."""
        query = "SELECT COUNT(*) FROM answers JOIN readers USING (reader_id)"
        params: tuple = ()
        if mode is not None:
            query += " WHERE mode = ?"
            params = (mode,)
        return int(self._conn.execute(query, params).fetchone()[0])

    def log_length(self, reader_id: int) -> int:
        """Number of answers ever saved by a reader (changes included)."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM answer_log WHERE reader_id = ?", (reader_id,)
        ).fetchone()
        return int(row[0])

    def save_answer(
        self,
        reader_id: int,
        case_id: str,
        position: int,
        answer: str,
        confidence: int | None,
        comment: str,
        seconds: float,
        next_position: int,
        *,
        allow_change: bool,
        expected_revision: int | None = None,
    ) -> AnswerRecord:
        """Save one answer and the reader's next position in one transaction.

        ``seconds`` is added to the time already recorded for the case when
        the answer is a change. Returns after the commit.

        Parameters
        ----------
        expected_revision : int, optional
            The revision of the answer the caller knows (0: none). If the
            database holds another one, someone else answered the case
            meanwhile under this reader's name and nothing is saved.

        Raises
        ------
        InputError
            If the case was answered already and ``allow_change`` is false,
            or its revision is not ``expected_revision``.
        """
        now = _now()
        with self._transaction() as conn:
            old = conn.execute(
                "SELECT seconds, revision FROM answers "
                "WHERE reader_id = ? AND case_id = ?",
                (reader_id, case_id),
            ).fetchone()
            if old is not None and not allow_change:
                raise InputError(
                    f"case {case_id} has an answer already and this study does "
                    "not allow changing answers."
                )
            current = old[1] if old else 0
            if expected_revision is not None and current != expected_revision:
                raise InputError(
                    f"case {case_id} was answered meanwhile in another session "
                    "under the same reader name (revision "
                    f"{current}, expected {expected_revision}); nothing was "
                    "saved. Close the other window and open the study again."
                )
            total = float(seconds) + (old[0] if old else 0.0)
            revision = old[1] + 1 if old else 1
            values = (
                reader_id,
                case_id,
                int(position),
                answer,
                confidence,
                comment,
                total,
                now,
                revision,
            )
            conn.execute(
                f"INSERT OR REPLACE INTO answers ({_ANSWER_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            conn.execute(
                "INSERT INTO answer_log (reader_id, case_id, answer, confidence, "
                "comment, seconds, answered_at, revision) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    reader_id,
                    case_id,
                    answer,
                    confidence,
                    comment,
                    float(seconds),
                    now,
                    revision,
                ),
            )
            conn.execute(
                "UPDATE readers SET position = ?, updated_at = ? WHERE reader_id = ?",
                (int(next_position), now, reader_id),
            )
        return AnswerRecord(*values)

    def study_answers(self) -> list[tuple[ReaderRecord, AnswerRecord]]:
        """Every current answer in study mode (training excluded), with its reader."""
        readers = {r.reader_id: r for r in self.readers("study")}
        rows = self._conn.execute(
            f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE reader_id IN "
            "(SELECT reader_id FROM readers WHERE mode = 'study') "
            "ORDER BY reader_id, position"
        ).fetchall()
        return [(readers[row[0]], AnswerRecord(*row)) for row in rows]

    def integrity_check(self) -> str:
        """``"ok"`` or SQLite's description of the damage."""
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]
