"""Durable storage behind the API server: one small interface, SQLite as the embedded default.

The store keeps every object in memory and hands each committed batch of changes to a
Backend. A backend must make a batch durable before `commit` returns (the API server
acknowledges writes only after that), and must give back, on `load`, the objects, the revision
and the retained change log, so that a restarted server continues the revision and watchers
resume without gaps. Another backend (etcd) only has to implement these three methods.
"""
from __future__ import annotations

import dataclasses
import os
import sqlite3
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Change:
    """One committed change. `data` is the object (for DELETED, its last state)."""

    rev: int
    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    namespace: str
    name: str
    data: bytes
    prev: bytes | None = None  # the state before a MODIFIED, for selector transitions


@dataclasses.dataclass
class Loaded:
    revision: int
    compacted: int
    objects: list[tuple[str, str, str, bytes]]  # kind, namespace, name, data
    log: list[Change]


class Backend(Protocol):
    def load(self) -> Loaded: ...

    def commit(self, changes: list[Change], compact_to: int) -> None: ...

    def close(self) -> None: ...


class SQLiteBackend:
    """WAL mode with synchronous=FULL: a commit is on disk when COMMIT returns.

    Only one thread may use it at a time (the API server's writer thread); batching many
    client writes into one transaction is what makes durable writes fast (one fsync for many).
    """

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS objects (
                kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
                rev INTEGER NOT NULL, data BLOB NOT NULL,
                PRIMARY KEY (kind, namespace, name));
            CREATE TABLE IF NOT EXISTS log (
                rev INTEGER PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL,
                namespace TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, prev BLOB);
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
            """
        )
        self._compacted = self._meta("compacted")

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def load(self) -> Loaded:
        objects = list(self._db.execute("SELECT kind, namespace, name, data FROM objects"))
        log = [Change(*row) for row in self._db.execute(
            "SELECT rev, type, kind, namespace, name, data, prev FROM log ORDER BY rev")]
        revision = max(self._meta("revision"), log[-1].rev if log else 0)
        return Loaded(revision, self._compacted, objects, log)

    def commit(self, changes: list[Change], compact_to: int) -> None:
        if not changes:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for c in changes:
                if c.type == "DELETED":
                    db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                               (c.kind, c.namespace, c.name))
                else:
                    db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                               (c.kind, c.namespace, c.name, c.rev, c.data))
            db.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(c.rev, c.type, c.kind, c.namespace, c.name, c.data, c.prev)
                            for c in changes])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('revision', ?)", (changes[-1].rev,))
            # Compact in steps, not on every commit: deleting a few rows per write costs more
            # than a larger sweep now and then.
            if compact_to - self._compacted >= 1000:
                db.execute("DELETE FROM log WHERE rev <= ?", (compact_to,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('compacted', ?)", (compact_to,))
                self._compacted = compact_to
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
