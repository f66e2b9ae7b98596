"""What ``cfsx serve`` keeps: every interpretation (an index in SQLite, its files in results/<id>/, its image
and decoded structure in a knowledge store per model) and the feedback users send about it.

The store directory holds ``feedback.sqlite`` (WAL journal: safe under concurrent requests and across
restarts), ``results/<id>/`` and ``knowledge-<model>.h5`` (the dataset layout of ``interpret --record``:
``cfsx train knowledge-general-cfs4.h5 --init general-cfs4`` fine-tunes on it). A suggested encoding is
kept as feedback, never as a label: it becomes one only when decoded again by the engine.

One server at a time: the store is locked (``STORE.lock`` beside it, the lock of every cfsx output) while a server
runs. The server removes only what it made: every results folder's id is written to the index before the folder
is made, and a store that holds anything else is refused at start-up unless the user says it may.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cfsx.app.serve_api import FeedbackEntry
from cfsx.errors import DataError

SCHEMA = """
create table if not exists interpretations (
    id text primary key, model text not null, source text not null, created real not null,
    encoding text not null, final_source text not null
);
create table if not exists feedback (
    number integer primary key autoincrement, id text not null references interpretations(id),
    rating integer not null, comment text not null, encoding text, created real not null
);
create table if not exists issued (id text primary key, created real not null);
insert or ignore into issued select id, created from interpretations;
"""
DATABASE = "feedback.sqlite"
# What a store holds besides results/: the index with its journal files and the knowledge stores (and their locks and
# the temporary files of their atomic appends).
OWN_FILES = (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", f"{DATABASE}-journal")
OWN_PATTERNS = ("knowledge-*.h5", "knowledge-*.h5.lock", ".knowledge-*")


@dataclass(frozen=True)
class Feedback:
    """One piece of feedback on an interpretation."""

    id: str  # the interpretation's
    rating: int  # 1 (wrong) .. 5 (right)
    comment: str
    encoding: dict[str, float] | None  # the encoding the user believes right, if given
    created: float  # seconds since the epoch


class Store:
    """The store directory of a server (module docstring), locked while it is open. ``foreign_files``: start on a
    folder that holds files the server did not make (they are left alone); refused otherwise."""

    def __init__(self, folder: str | Path, foreign_files: bool = False) -> None:
        from cfsx.io.outputs import OutputLock

        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"the store {self.folder} is a file, not a directory")
        self._lock = OutputLock(self.folder)
        self._lock.acquire()
        try:
            (self.folder / "results").mkdir(parents=True, exist_ok=True)
            self._database = _open_index(self.folder / DATABASE)
            strays = self.foreign()
            if strays and not foreign_files:
                shown = ", ".join(str(path.relative_to(self.folder)) for path in strays[:3])
                raise DataError(
                    f"the store {self.folder} holds {len(strays)} files or folders cfsx serve did not make ({shown}"
                    f"{', ...' if len(strays) > 3 else ''}): give another --store, or --foreign-files to leave them "
                    "alone and start"
                )
        except BaseException:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self._database.close()
            self._lock.release()
            raise

    def foreign(self) -> list[Path]:
        """What the store holds that the server did not make (never removed by it)."""
        issued = {row[0] for row in self._database.execute("select id from issued")}
        strays = [
            path
            for path in sorted(self.folder.iterdir())
            if not (
                path.name in OWN_FILES or path.name == "results" or any(fnmatch(path.name, p) for p in OWN_PATTERNS)
            )
        ]
        strays += [path for path in sorted((self.folder / "results").iterdir()) if path.name not in issued]
        return strays  # fmt: skip

    def issue(self) -> str:
        """A new interpretation's id, written to the index before its results folder is made."""
        identifier = uuid.uuid4().hex
        with self._database:
            self._database.execute("insert into issued values (?, ?)", (identifier, time.time()))
        return identifier

    def results_folder(self, identifier: str) -> Path:
        """results/<id>/ of an id the server made (hex); nothing else reaches the file system."""
        if not (len(identifier) == 32 and all(char in "0123456789abcdef" for char in identifier)):
            raise KeyError(identifier)
        return self.folder / "results" / identifier

    def knowledge_store(self, model: str) -> Path:
        return self.folder / f"knowledge-{model}.h5"

    def add_interpretation(self, identifier: str, model: str, interpretation: Any) -> None:
        """Index an interpretation (its files are already in results/<id>/)."""
        encoding = dict(zip(interpretation.labels, map(float, interpretation.encoding), strict=True))
        with self._database:
            self._database.execute(
                "insert into interpretations values (?, ?, ?, ?, ?, ?)",
                (identifier, model, interpretation.source, time.time(), json.dumps(encoding),
                 interpretation.final_source),
            )  # fmt: skip

    def model_of(self, identifier: str) -> str | None:
        """The model an interpretation was made with, None when there is no such interpretation."""
        found = self._database.execute("select model from interpretations where id = ?", (identifier,)).fetchone()
        return None if found is None else str(found[0])

    def add_feedback(self, feedback: Feedback) -> int:
        """Keep one piece of feedback; returns its number."""
        encoding = None if feedback.encoding is None else json.dumps(feedback.encoding)
        with self._database:
            cursor = self._database.execute(
                "insert into feedback (id, rating, comment, encoding, created) values (?, ?, ?, ?, ?)",
                (feedback.id, feedback.rating, feedback.comment, encoding, feedback.created),
            )
        return int(cursor.lastrowid)

    def feedback(self, limit: int = 1000) -> list[FeedbackEntry]:
        """The latest feedback with what it is about, newest first."""
        rows = self._database.execute(
            "select f.number, f.id, f.rating, f.comment, f.encoding, f.created, i.model, i.source, i.encoding "
            "from feedback f join interpretations i on i.id = f.id order by f.number desc limit ?",
            (limit,),
        ).fetchall()
        keys = ("number", "id", "rating", "comment", "suggested", "created", "model", "source", "interpreted")
        records = [dict(zip(keys, row, strict=True)) for row in rows]
        for record in records:
            for key in ("suggested", "interpreted"):
                record[key] = None if record[key] is None else json.loads(record[key])
        return [FeedbackEntry(**record) for record in records]

    def counts(self) -> dict[str, int]:
        interpretations = self._database.execute("select count(*) from interpretations").fetchone()[0]
        feedback = self._database.execute("select count(*) from feedback").fetchone()[0]
        return {"interpretations": int(interpretations), "feedback": int(feedback)}

    def prune(self, retention_days: float) -> int:
        """Remove the files (upload, results, figures) of the interpretations this server issued longer ago than the
        retention; the index, the feedback and the knowledge store keep them, and nothing the server did not make
        is touched. Returns how many folders were removed."""
        cutoff = time.time() - retention_days * 86400
        removed = 0
        for (identifier,) in self._database.execute("select id from issued where created < ?", (cutoff,)).fetchall():
            folder = self.results_folder(identifier)
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def close(self) -> None:
        """Close the index and release the store's lock."""
        with contextlib.suppress(sqlite3.Error):
            self._database.close()
        self._lock.release()


def _open_index(path: Path) -> sqlite3.Connection:
    """The index (feedback.sqlite), created when missing; a damaged one is refused in one line."""
    if path.exists() and not path.is_file():
        raise DataError(f"{path} is not a file: the store's index must be an SQLite file")
    database = None
    try:
        database = sqlite3.connect(path, check_same_thread=False)
        database.execute("pragma journal_mode=wal")
        database.executescript(SCHEMA)
        database.commit()
        database.execute("select count(*) from interpretations").fetchone()
        return database
    except sqlite3.Error as error:
        if database is not None:
            database.close()
        raise DataError(f"{path} is not a readable cfsx serve index ({error}); move it away or give another --store"
                        ) from None  # fmt: skip
