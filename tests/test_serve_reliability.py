"""cfsx serve under a careless, unlucky or hostile client (issue 30): what it may remove, who may share its store, its
processes, request bodies, the token, its options and its refusals. Real processes and sockets where the cases
need them (a second server, kill -9, chunked and stalled bodies, SIGINT)."""

import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

starlette = pytest.importorskip("starlette", reason="cfsx[serve] is not installed")
from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cfsx.app.cli import app as cli  # noqa: E402
from cfsx.app.serve import ServeSettings, create_app, served_models  # noqa: E402
from cfsx.app.serve_http import RedactToken, check_address  # noqa: E402
from cfsx.errors import EXIT_BAD_INPUT, EXIT_OUTPUT, EXIT_SIGINT, ConfigError, DataError, OutputError  # noqa: E402

TOKEN = "s3cret-token-of-some-length"


def settings(folder: Path, store: Path, **changes) -> ServeSettings:
    return ServeSettings(**{"models": served_models([str(folder / "small.keras")]), "store": store, "workers": 1,
                            **changes})  # fmt: skip


def upload(client, path: Path, **fields):
    with open(path, "rb") as handle:
        return client.post("/api/v1/interpret", files={"image": (path.name, handle.read())},
                           data={"replicates": "1", **fields})  # fmt: skip


def one_line(result, code: int, text: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and text in lines[0], result.output


# 1. The store: only what the server made is ever removed; a folder holding anything else is refused --------------


def test_a_store_with_foreign_files_is_refused_and_they_are_never_removed(served, tmp_path):
    store = tmp_path / "store"
    theirs = store / "results" / "2024-run-A" / "measurement.dat"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("a user's measurement")
    with pytest.raises(DataError, match=r"did not make \(results/2024-run-A\).*--foreign-files"):
        create_app(settings(served, store))
    assert not (tmp_path / "store.lock").exists()  # a refused start leaves no lock behind
    app = create_app(settings(served, store, foreign_files=True, retention_days=1e-9))
    with TestClient(app) as client:
        answer = upload(client, served / "raw0.npy")
        assert answer.status_code == 200, answer.text
        made = store / "results" / answer.json()["id"]
        assert made.is_dir()
    time.sleep(0.01)
    with TestClient(create_app(settings(served, store, foreign_files=True, retention_days=1e-9))):
        pass  # the restart prunes what is older than the retention: the server's folder, not the user's
    assert not made.exists() and theirs.read_text() == "a user's measurement"


def test_a_store_made_before_the_issued_ids_still_starts(served, tmp_path):
    store = tmp_path / "store"
    (store / "results" / ("a" * 32)).mkdir(parents=True)
    with sqlite3.connect(store / "feedback.sqlite") as database:  # the index of an earlier cfsx serve
        database.execute(
            "create table interpretations (id text primary key, model text not null, source text not "
            "null, created real not null, encoding text not null, final_source text not null)"
        )
        database.execute("insert into interpretations values (?, 'small', 'x.npy', 0, '{}', 'cnn')", ("a" * 32,))
    with TestClient(create_app(settings(served, store, retention_days=1.0))) as client:
        assert client.get("/api/v1/health").json()["interpretations"] == 1
    assert not (store / "results" / ("a" * 32)).exists()  # issued in 1970: older than the retention


# 2. One server per store ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def live_server(served: Path, store: Path, *options: str):
    """``cfsx serve`` in its own process on a free port; yields (port, process) once /health answers."""
    port = free_port()
    command = [sys.executable, "-m", "cfsx", "serve", "--port", str(port), "--store", str(store), "--model",
               str(served / "small.keras"), "--workers", "1", *options]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=store.parent)  # fmt: skip
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise AssertionError(f"the server stopped: {process.stdout.read()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        process.stdout.close()


def post_image(port: int, path: Path, timeout: float = 120) -> tuple[int, dict]:
    boundary = "cfsxboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip
    body = head.encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/interpret", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_second_server_on_the_same_store_is_refused_in_one_line(served, tmp_path):
    store = tmp_path / "store"
    with live_server(served, store):
        second = subprocess.run([sys.executable, "-m", "cfsx", "serve", "--port", str(free_port()), "--store",
                                 str(store), "--model", str(served / "small.keras")], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        lines = second.stderr.strip().splitlines()
        assert second.returncode == EXIT_OUTPUT and len(lines) == 1 and "in use by another cfsx run" in lines[0]
    with pytest.raises(OutputError, match="in use"), TestClient(create_app(settings(served, store))):
        create_app(settings(served, store))  # the same within one process: the first holds the lock until it ends


# 3, 14. The workers end with the server; a worker killed while idle costs no request ------------------------------


def test_workers_die_with_a_killed_server_and_an_idle_workers_death_costs_no_request(served, tmp_path):
    with live_server(served, tmp_path / "store") as (port, server):
        status, answer = post_image(port, served / "raw0.npy")
        assert status == 200, answer
        workers = children(server.pid)
        assert workers, "no worker process"
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # killed while idle (out of memory, an operator)
        time.sleep(0.5)
        status, answer = post_image(port, served / "raw1.npy")
        assert status == 200, answer
        workers = children(server.pid)
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
            time.sleep(0.2)
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                 and (Path(f"/proc/{pid}") / "stat").read_text().split()[2] != "Z"]  # fmt: skip
        assert not alive, f"workers {alive} outlived the killed server"


def test_sigint_ends_the_server_with_exit_130(served, tmp_path):
    with live_server(served, tmp_path / "store") as (_, server):
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == EXIT_SIGINT


# 5, 7. Request bodies: counted as they arrive, and timed ----------------------------------------------------------


def raw_request(port: int, head: str) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(head.encode())
    return connection


def status_of(connection: socket.socket) -> int:
    answer = connection.recv(4096).decode(errors="replace")
    return int(answer.split()[1])


MULTIPART_HEAD = ("--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.npy\"\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n")  # fmt: skip


def test_a_chunked_upload_past_the_limit_is_refused_while_it_arrives(served, tmp_path):
    with live_server(served, tmp_path / "store", "--max-upload-mb", "1") as (port, _):
        connection = raw_request(port, "POST /api/v1/interpret HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                       "Content-Type: multipart/form-data; boundary=b\r\n\r\n")  # fmt: skip
        chunk = b"\0" * 65536
        sent = 0
        with contextlib.suppress(OSError):  # the server may close the connection once it has refused
            connection.sendall(f"{len(MULTIPART_HEAD):x}\r\n{MULTIPART_HEAD}\r\n".encode())
            while sent < 200 * 2**20:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                connection.settimeout(0.0)
                with contextlib.suppress(BlockingIOError):
                    if connection.recv(1, socket.MSG_PEEK):
                        break
                connection.settimeout(30)
        connection.settimeout(30)
        assert status_of(connection) == 413
        assert sent < 20 * 2**20, f"{sent} bytes were taken before the refusal"
        connection.close()


def test_stalled_bodies_time_out_and_do_not_fill_the_queue(served, tmp_path):
    with live_server(served, tmp_path / "store", "--queue", "8", "--body-timeout", "2") as (port, _):
        stalled = [raw_request(port, "POST /api/v1/interpret HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                                     "Content-Type: multipart/form-data; boundary=b\r\n\r\n" + MULTIPART_HEAD[:100])
                   for _ in range(12)]  # fmt: skip
        time.sleep(0.3)
        status, answer = post_image(port, served / "raw0.npy")
        assert status == 200, answer  # twelve stalled clients do not keep a real one out
        assert [status_of(connection) for connection in stalled] == [408] * 12
        for connection in stalled:
            connection.close()


# 8, 16. Feedback and refusals ----------------------------------------------------------------------------------


def test_feedback_is_bounded_and_checked_against_the_models_labels(served, tmp_path):
    with TestClient(create_app(settings(served, tmp_path / "store"))) as client:
        identifier = upload(client, served / "raw0.npy").json()["id"]
        invented = {f"label{index}": 0.1 for index in range(400_000)}
        big = client.post("/api/v1/feedback", json={"id": identifier, "rating": 3, "encoding": invented})
        assert big.status_code == 413
        wrong = client.post("/api/v1/feedback", json={"id": identifier, "rating": 3, "encoding": {"alpha(9,9)": 0.1}})
        assert wrong.status_code == 400 and "alpha(0,1)" in wrong.json()["error"]
        nested = client.post("/api/v1/feedback", content="[" * 20000 + "]" * 20000,
                             headers={"Content-Type": "application/json"})  # fmt: skip
        assert nested.status_code == 400 and "\n" not in nested.json()["error"]
        assert client.post("/api/v1/feedback", json=[1, 2]).status_code == 400
        fine = client.post("/api/v1/feedback", json={"id": identifier, "rating": 5, "encoding": {"alpha(1,1)": 0.1}})
        assert fine.status_code == 200
        assert len(json.dumps(client.get("/api/v1/feedback").json())) < 2000


def test_refusals_name_the_clients_file_and_fields_never_the_servers_paths(served, tmp_path):
    store = tmp_path / "store"
    with TestClient(create_app(settings(served, store))) as client:
        np.save(tmp_path / "stack.npy", np.ones((3, 40, 40)))
        (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, }")
        for name in ("stack.npy", "broken.npy"):
            answer = upload(client, tmp_path / name)
            assert answer.status_code == 400 and name in answer.json()["error"], answer.text
            assert str(store) not in answer.text and "--" not in answer.json()["error"], answer.text
        zero = upload(client, served / "raw0.npy", pixels_per_rlu="0,0", origin="10,10")
        assert zero.status_code == 400 and "pixels_per_rlu" in zero.json()["error"], zero.text
        assert "needs origin and pixels_per_rlu" not in zero.json()["error"]
        two = client.post("/api/v1/interpret", files=[("image", ("a.npy", b"1")), ("image", ("b.npy", b"2"))])
        assert two.status_code == 400 and "HTTPException" not in two.json()["error"], two.text
        no_boundary = client.post("/api/v1/interpret", content=b"x", headers={"Content-Type": "multipart/form-data"})
        assert no_boundary.status_code == 400 and "HTTPException" not in no_boundary.json()["error"]
        answer = upload(client, served / "raw0.npy", replicates="5000")
        assert answer.status_code == 400 and "replicates" in answer.json()["error"]


def test_an_upload_of_a_cfsx_dataset_is_interpreted_as_it_is_and_named_by_the_client(served, small_run, tmp_path):
    from cfsx.simulation import simulate

    simulate(small_run(2, 1, seed=5), tmp_path / "one.h5", workers=1)
    simulate(small_run(2, 2, seed=6), tmp_path / "two.h5", workers=1)
    store = tmp_path / "store"
    with TestClient(create_app(settings(served, store, max_pixels=1500))) as client:
        answer = upload(client, tmp_path / "one.h5")
        assert answer.status_code == 200, answer.text
        record = answer.json()
        assert record["correction"] is None and record["interpretation"]["source"] == "one.h5"
        assert client.get(record["links"]["correction.png"]).status_code == 404  # nothing was corrected
        assert client.get(record["links"]["interpretation.png"]).status_code == 200
        many = upload(client, tmp_path / "two.h5")
        assert many.status_code == 413 and "two.h5" in many.json()["error"] and str(store) not in many.text
    with TestClient(create_app(settings(served, tmp_path / "store2"))) as client:
        read = upload(client, served / "raw0.npy").json()["correction"]["provenance"][0]
        assert read["step"] == "read" and read["source"] == "raw0.npy"  # the client's name, not the stored file's
        many = upload(client, tmp_path / "two.h5")
        assert many.status_code == 400 and "one image" in many.json()["error"]
        calibrated = upload(client, served / "raw0.npy", origin="32,32", pixels_per_rlu="16,16", centre="0,0")
        assert calibrated.status_code == 200, calibrated.text
        geometry = calibrated.json()["interpretation"]["correction"]["config"]["geometry"]
        assert geometry["origin"] == [32.0, 32.0] and geometry["pixels_per_rlu"] == [16.0, 16.0]
        assert geometry["centre"] == [0.0, 0.0]


def test_an_unexpected_error_is_one_line_of_json_and_the_server_stays_up(served, tmp_path, monkeypatch, caplog):
    app = create_app(settings(served, tmp_path / "store"))
    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.state.cfsx.store, "counts", lambda: 1 / 0)
        with caplog.at_level(logging.ERROR, logger="cfsx.serve"):
            broken = client.get("/api/v1/health")
        assert broken.status_code == 500 and "ZeroDivisionError" in broken.json()["error"]
        assert [record.getMessage().count("\n") for record in caplog.records] == [0]
        monkeypatch.undo()
        assert client.get("/api/v1/health").json()["status"] == "ok"


# 9, 10. The token: required beyond this machine, never in a URL or a log line --------------------------------------


def test_serving_beyond_this_machine_needs_a_token_or_an_explicit_no_token():
    assert check_address("127.0.0.1", 8000, None, False) is None and check_address("::1", 8000, None, False) is None
    assert check_address("localhost", 8000, None, False) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(ConfigError, match="--token-file"):
            check_address(host, 8000, None, False)
        assert check_address(host, 8000, TOKEN, False) is None
        assert "without a token" in check_address(host, 8000, None, True)
    for port in (0, 70000, -1):
        with pytest.raises(ConfigError, match="1..65535"):
            check_address("127.0.0.1", port, None, False)


def test_the_token_travels_in_a_cookie_set_once_never_in_links_or_logs(served, tmp_path):
    app = create_app(settings(served, tmp_path / "store", token=TOKEN))
    with TestClient(app) as client:
        assert client.get("/api/v1/health").status_code == 401
        opened = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        page = client.get("/")  # the client keeps the cookie, as a browser does
        assert page.status_code == 200 and "token=" not in page.text
        answer = upload(client, served / "raw0.npy")
        assert answer.status_code == 200 and not any("token" in link for link in answer.json()["links"].values())
        assert client.get(answer.json()["links"]["results.json"]).status_code == 200
        client.cookies.clear()
        assert client.get(f"/api/v1/health?token={TOKEN}").status_code == 401  # a token in an API URL is refused
        assert client.get("/?token=wrong-token-of-some-length", follow_redirects=False).status_code == 401
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/?token={TOKEN}&x=1", "1.1", 303), None)  # fmt: skip
    RedactToken().filter(record)
    assert TOKEN not in record.getMessage() and "token=[redacted]&x=1" in record.getMessage()


# 11. Start-up checks: models with their weights, knowledge stores; health says what is broken ----------------------


def test_damaged_models_and_stores_are_refused_at_start_up(served, tmp_path):
    import zipfile

    truncated = tmp_path / "truncated.keras"
    with zipfile.ZipFile(served / "small.keras") as source, zipfile.ZipFile(truncated, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data[: len(data) // 2] if item.filename == "model.weights.h5" else data)
    with pytest.raises(DataError, match="damaged"):
        served_models([str(truncated)])
    store = tmp_path / "store"
    store.mkdir()
    (store / "knowledge-small.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="knowledge store .* cannot take"):
        create_app(settings(served, store))


def test_a_store_that_fails_at_run_time_leaves_the_answer_and_shows_in_health(served, tmp_path):
    store = tmp_path / "store"
    with TestClient(create_app(settings(served, store))) as client:
        (store / "knowledge-small.h5").write_bytes(b"damaged after start-up")
        answer = upload(client, served / "raw0.npy")
        assert answer.status_code == 200 and "knowledge-small.h5" in answer.json()["knowledge_store_error"]
        health = client.get("/api/v1/health").json()
        assert health["status"] == "degraded" and "knowledge-small.h5" in health["problems"][0]


# 14. The options of cfsx serve: one line and exit 3, never a traceback or a start ---------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "70000"], "1..65535"),
        (["--max-upload-mb", "nan"], "--max-upload-mb"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
        (["--max-upload-mb", "-1"], "--max-upload-mb"),
        (["--max-pixels", "0"], "--max-pixels"),
        (["--replicates", "-1"], "--replicates"),
        (["--replicates", "5000"], "--replicates"),
        (["--retention-days", "nan"], "--retention-days"),
        (["--host", "0.0.0.0"], "--token-file"),
        (["--token-file", "{t}/binary-token"], "not UTF-8"),
        (["--token-file", "{t}"], "is a directory"),
        (["--store", "{t}/damaged"], "not a readable cfsx serve index"),
        (["--store", "{t}/folder-index"], "must be an SQLite file"),
    ],
)
def test_bad_serve_options_are_one_line_and_exit_3(options, message, served, tmp_path):
    (tmp_path / "binary-token").write_bytes(b"\xff\xfe" * 20)
    (tmp_path / "binary-token").chmod(0o600)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "feedback.sqlite").write_bytes(b"SQLite format 3\0" + b"\x13" * 2000)
    (tmp_path / "folder-index" / "feedback.sqlite").mkdir(parents=True)
    arguments = [option.format(t=tmp_path) for option in options]
    if "--store" not in arguments:
        arguments += ["--store", str(tmp_path / "store")]
    result = CliRunner().invoke(cli, ["serve", "--model", str(served / "small.keras"), *arguments])
    one_line(result, EXIT_BAD_INPUT, message)
    assert not (tmp_path / "store.lock").exists() and not (tmp_path / "damaged.lock").exists()


def test_every_answer_follows_the_openapi_document_made_from_the_records(served, tmp_path):
    """The OpenAPI document describes each request and answer by its record's schema (cfsx.app.serve_api), so what
    the server sends is what the document says; make fuzz drives the server from it with Schemathesis."""
    import dataclasses

    import jsonschema

    from cfsx.app.serve_api import FeedbackEntry, Health, InterpretAnswer

    with TestClient(create_app(settings(served, tmp_path / "store"))) as client:
        document = client.get("/api/v1/openapi.json").json()
        assert document["openapi"] == "3.1.0"

        def follows(value, name: str) -> None:
            schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
            jsonschema.Draft202012Validator(schema).validate(value)

        follows(client.get("/api/v1/health").json(), "Health")
        for model in client.get("/api/v1/models").json():
            follows(model, "ModelInfo")
        answer = upload(client, served / "raw0.npy").json()
        follows(answer, "InterpretAnswer")  # its interpretation against results.schema.json's record
        follows(client.post("/api/v1/feedback", json={"id": answer["id"], "rating": 2}).json(), "FeedbackStored")
        for entry in client.get("/api/v1/feedback").json():
            follows(entry, "FeedbackEntry")
        follows(client.get("/api/v1/results/" + "0" * 32 + "/results.json").json(), "Refusal")
        with pytest.raises(jsonschema.ValidationError):
            follows({"status": "ok"}, "Health")  # the document is not a placeholder: it requires the record's fields
    schemas = document["components"]["schemas"]
    for kind in (Health, InterpretAnswer, FeedbackEntry):
        assert list(schemas[kind.__name__]["properties"]) == [item.name for item in dataclasses.fields(kind)]
    form = document["paths"]["/api/v1/interpret"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["image"] and {"origin", "pixels_per_rlu", "centre"} <= set(form["properties"])
