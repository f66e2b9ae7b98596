"""What ``cfsx serve`` keeps: every interpretation (an index in SQLite, its files in results/<id>/, its image
and decoded structure in a knowledge store per model) and the feedback users send about it.

The store directory holds ``feedback.sqlite`` (WAL journal: safe under concurrent requests and across
restarts), ``results/<id>/`` and ``knowledge-<model>.h5`` (the dataset layout of ``interpret --record``:
``cfsx train knowledge-general-cfs4.h5 --init general-cfs4`` fine-tunes on it). A suggested encoding is
kept as feedback, never as a label: it becomes one only when decoded again by the engine.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists interpretations (
    id text primary key, model text not null, source text not null, created real not null,
    encoding text not null, final_source text not null
);
create table if not exists feedback (
    number integer primary key autoincrement, id text not null references interpretations(id),
    rating integer not null, comment text not null, encoding text, created real not null
);
"""


@dataclass(frozen=True)
class Feedback:
    """One piece of feedback on an interpretation."""

    id: str  # the interpretation's
    rating: int  # 1 (wrong) .. 5 (right)
    comment: str
    encoding: dict[str, float] | None  # the encoding the user believes right, if given
    created: float  # seconds since the epoch


class Store:
    """The store directory of a server (module docstring). Opened by the server process only."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        (self.folder / "results").mkdir(parents=True, exist_ok=True)
        self._database = sqlite3.connect(self.folder / "feedback.sqlite", check_same_thread=False)
        self._database.execute("pragma journal_mode=wal")
        self._database.executescript(SCHEMA)
        self._database.commit()

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

    def known(self, identifier: str) -> bool:
        found = self._database.execute("select 1 from interpretations where id = ?", (identifier,)).fetchone()
        return found is not None

    def add_feedback(self, feedback: Feedback) -> int:
        """Keep one piece of feedback; returns its number."""
        encoding = None if feedback.encoding is None else json.dumps(feedback.encoding)
        with self._database:
            cursor = self._database.execute(
                "insert into feedback (id, rating, comment, encoding, created) values (?, ?, ?, ?, ?)",
                (feedback.id, feedback.rating, feedback.comment, encoding, feedback.created),
            )
        return int(cursor.lastrowid)

    def feedback(self, limit: int = 1000) -> list[dict[str, Any]]:
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
        return records

    def counts(self) -> dict[str, int]:
        interpretations = self._database.execute("select count(*) from interpretations").fetchone()[0]
        feedback = self._database.execute("select count(*) from feedback").fetchone()[0]
        return {"interpretations": int(interpretations), "feedback": int(feedback)}

    def prune(self, retention_days: float) -> int:
        """Remove the files (upload, results, figures) of interpretations older than the retention; the index,
        the feedback and the knowledge store keep them. Returns how many folders were removed."""
        cutoff = time.time() - retention_days * 86400
        removed = 0
        for folder in (self.folder / "results").iterdir():
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def close(self) -> None:
        self._database.close()
