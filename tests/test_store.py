"""The store of cfsx serve (cfsx/app/feedback.py) on its own, without a model or a server: what it issues, indexes,
keeps, removes and refuses. Fast, so that a mutation run can afford it for every mutant (docs/reliability.md)."""

import dataclasses
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="cfsx[serve] is not installed")

from cfsx.app.feedback import DATABASE, Feedback, Store  # noqa: E402
from cfsx.errors import DataError, OutputError  # noqa: E402


@dataclasses.dataclass
class _Interpretation:
    """What the store reads of an interpretation."""

    source: str = "plane.npy"
    final_source: str = "blend"
    labels: tuple = ("alpha(0,1)", "alpha(1,0)", "alpha(1,1)")
    encoding: np.ndarray = dataclasses.field(default_factory=lambda: np.array([0.1, -0.2, 0.05]))


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store")
    yield opened
    opened.close()


def test_ids_are_issued_into_the_index_before_any_folder(store):
    first, second = store.issue(), store.issue()
    assert first != second and len(first) == 32 and all(char in "0123456789abcdef" for char in first)
    with sqlite3.connect(store.folder / DATABASE) as database:
        issued = [row[0] for row in database.execute("select id from issued order by created")]
    assert issued == [first, second]
    assert store.results_folder(first) == store.folder / "results" / first
    for bad in ("../../etc", "A" * 32, first[:-1], first + "0", "g" * 32, ""):
        with pytest.raises(KeyError):
            store.results_folder(bad)


def test_interpretations_and_feedback_are_indexed_and_read_back_newest_first(store):
    identifier = store.issue()
    assert store.model_of(identifier) is None  # issued, not yet indexed
    store.add_interpretation(identifier, "general-cfs2", _Interpretation())
    assert store.model_of(identifier) == "general-cfs2" and store.model_of("0" * 32) is None
    first = store.add_feedback(Feedback(identifier, 4, "fits", {"alpha(0,1)": -0.2}, 100.0))
    second = store.add_feedback(Feedback(identifier, 2, "", None, 200.0))
    assert (first, second) == (1, 2)
    entries = store.feedback()
    assert [entry.number for entry in entries] == [2, 1] and [entry.rating for entry in entries] == [2, 4]
    newest, oldest = entries
    assert newest.suggested is None and oldest.suggested == {"alpha(0,1)": -0.2} and oldest.comment == "fits"
    assert oldest.interpreted == {"alpha(0,1)": 0.1, "alpha(1,0)": -0.2, "alpha(1,1)": 0.05}
    assert (oldest.model, oldest.source, oldest.created, oldest.id) == ("general-cfs2", "plane.npy", 100.0, identifier)
    assert [entry.number for entry in store.feedback(limit=1)] == [2]
    assert store.counts() == {"interpretations": 1, "feedback": 2}


def test_prune_removes_only_issued_folders_older_than_the_retention(tmp_path):
    store = Store(tmp_path / "store")
    old, recent = store.issue(), store.issue()
    for identifier in (old, recent):
        (store.results_folder(identifier)).mkdir()
        (store.results_folder(identifier) / "results.json").write_text("{}")
    with sqlite3.connect(store.folder / DATABASE) as database:
        database.execute("update issued set created = ? where id = ?", (time.time() - 3 * 86400, old))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("kept")
    linked = store.issue()
    os.symlink(elsewhere, store.results_folder(linked))  # an issued name that is a link: never followed
    with sqlite3.connect(store.folder / DATABASE) as database:
        database.execute("update issued set created = 0 where id = ?", (linked,))
    assert store.prune(2.0) == 1
    assert not store.results_folder(old).exists() and store.results_folder(recent).is_dir()
    assert (elsewhere / "keep.txt").read_text() == "kept"
    assert store.prune(2.0) == 0  # nothing older left
    assert store.prune(1e-9) == 1 and not store.results_folder(recent).exists()
    store.close()


def test_a_store_with_anything_else_is_refused_naming_it_and_left_alone(tmp_path):
    folder = tmp_path / "store"
    (folder / "results" / "2024-run-A").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    for own in ("knowledge-general-cfs4.h5", "knowledge-x.h5.lock", ".knowledge-x.h5.tmp-12"):
        (folder / own).write_bytes(b"")
    with pytest.raises(DataError, match=r"holds 2 files or folders .*\(notes\.txt, results/2024-run-A\).*foreign"):
        Store(folder)
    assert not (tmp_path / "store.lock").exists()  # refused: the lock is released
    store = Store(folder, foreign_files=True)
    assert [path.name for path in store.foreign()] == ["notes.txt", "2024-run-A"]
    assert store.prune(1e-9) == 0 and (folder / "notes.txt").read_text() == "mine"
    store.close()
    (folder / "notes2.txt").write_text("x")
    (folder / "notes3.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds 4 files .*, \.\.\.\)"):
        Store(folder)


def test_one_store_one_server_and_the_lock_goes_with_it(tmp_path):
    first = Store(tmp_path / "store")
    assert (tmp_path / "store.lock").exists()
    with pytest.raises(OutputError, match="in use"):
        Store(tmp_path / "store")
    first.close()
    assert not (tmp_path / "store.lock").exists()
    again = Store(tmp_path / "store")  # and a new server may open it
    assert again.counts() == {"interpretations": 0, "feedback": 0}
    again.close()


def test_a_store_of_an_earlier_version_counts_its_indexed_ids_as_issued(tmp_path):
    folder = tmp_path / "store"
    (folder / "results" / ("b" * 32)).mkdir(parents=True)
    with sqlite3.connect(folder / DATABASE) as database:
        database.execute(
            "create table interpretations (id text primary key, model text not null, source text not "
            "null, created real not null, encoding text not null, final_source text not null)"
        )
        database.execute("insert into interpretations values (?, 'm', 'x.npy', 5.0, '{}', 'cnn')", ("b" * 32,))
    store = Store(folder)
    assert store.foreign() == [] and store.model_of("b" * 32) == "m"
    assert store.prune(1.0) == 1  # issued at t = 5 s: long ago
    store.close()


@pytest.mark.parametrize("damage", ["garbage", "directory", "file store"])
def test_a_damaged_index_or_a_store_that_is_a_file_is_refused_in_one_line(tmp_path, damage):
    folder = tmp_path / "store"
    if damage == "file store":
        folder.write_text("not a folder")
        words = "is a file, not a directory"
    else:
        folder.mkdir()
        if damage == "garbage":
            (folder / DATABASE).write_bytes(b"SQLite format 3\0" + b"\x13" * 4000)
            words = "not a readable cfsx serve index"
        else:
            (folder / DATABASE).mkdir()
            words = "must be an SQLite file"
    with pytest.raises(DataError, match=words) as refused:
        Store(folder)
    assert "\n" not in str(refused.value) and not Path(f"{folder}.lock").exists()


def test_knowledge_stores_are_named_by_model(store):
    assert store.knowledge_store("general-cfs4") == store.folder / "knowledge-general-cfs4.h5"


def test_the_retention_is_counted_in_days_to_the_second(tmp_path):
    store = Store(tmp_path / "store")
    identifier = store.issue()
    store.results_folder(identifier).mkdir()
    with sqlite3.connect(store.folder / DATABASE) as database:
        database.execute("update issued set created = ? where id = ?", (time.time() - 1.5 * 86400, identifier))
    assert store.prune(2.0) == 0 and store.prune(1.6) == 0  # 1.5 days old: kept by a retention of 1.6 days
    assert store.prune(1.4) == 1 and not store.results_folder(identifier).exists()
    second = store.issue()
    store.results_folder(second).mkdir()
    with sqlite3.connect(store.folder / DATABASE) as database:  # a day and 30 s: a retention of one day removes it
        database.execute("update issued set created = ? where id = ?", (time.time() - 86400 - 30, second))
    assert store.prune(1.0 + 60 / 86400) == 0 and store.prune(1.0) == 1
    store.close()


def test_a_refusal_lists_three_strays_and_says_when_there_are_more(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "zzz.txt"):  # zzz: after "results" in sort order, still not the store's
        (folder / name).write_text("x")
    with pytest.raises(
        DataError, match=r"holds 3 files or folders cfsx serve did not make \(a\.txt, b\.txt, zzz\.txt\):"
    ):
        Store(folder)
    (folder / "c.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"holds 4 files or folders cfsx serve did not make \(a\.txt, b\.txt, c\.txt, \.\.\.\):"
    ):
        Store(folder)


def test_records_are_read_only_and_the_index_serves_every_thread(tmp_path):
    import threading

    entry = Feedback("x", 3, "", None, 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.rating = 5  # type: ignore[misc]
    store = Store(tmp_path / "store")
    found = []
    worker = threading.Thread(target=lambda: found.append(store.issue()))  # the server's threads share the index
    worker.start()
    worker.join()
    assert len(found) == 1 and store.model_of(found[0]) is None and store.counts()["interpretations"] == 0
    store.close()


def test_feedback_is_listed_up_to_a_thousand_by_default(store):
    identifier = store.issue()
    store.add_interpretation(identifier, "m", _Interpretation())
    for number in range(1001):
        store.add_feedback(Feedback(identifier, 3, f"{number}", None, float(number)))
    assert len(store.feedback()) == 1000 and store.feedback()[-1].comment == "1"
