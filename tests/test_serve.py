"""cfsx serve through the ASGI test client: every endpoint, every refusal, feedback across a restart, concurrency."""

import json
import threading

import h5py
import numpy as np
import pytest

starlette = pytest.importorskip("starlette", reason="cfsx[serve] is not installed")
from starlette.testclient import TestClient  # noqa: E402

from cfsx.app.serve import ServeSettings, create_app, served_models  # noqa: E402
from cfsx.app.serve_http import read_token  # noqa: E402
from cfsx.config import CorrectionConfig, InterpretationConfig, load_config  # noqa: E402
from cfsx.interpretation import interpret  # noqa: E402


def settings(folder, store, **changes) -> ServeSettings:
    return ServeSettings(**{"models": served_models([str(folder / "small.keras")]), "store": store, "workers": 1,
                            **changes})  # fmt: skip


def upload(client, path, headers=None, **fields):
    with open(path, "rb") as handle:
        data = {"replicates": "1", **fields}
        return client.post("/api/v1/interpret", files={"image": (path.name, handle.read())}, data=data,
                           headers=headers or {})  # fmt: skip


def test_endpoints_interpret_store_and_take_feedback_that_survives_a_restart(served, tmp_path):
    store = tmp_path / "store"
    with TestClient(create_app(settings(served, store))) as client:
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["models"] == ["small"] and health["workers"] == 1
        (model,) = client.get("/api/v1/models").json()
        assert model["cfs"] == 2 and model["labels"] == ["alpha(0,1)", "alpha(1,0)", "alpha(1,1)"]
        page = client.get("/")
        assert page.status_code == 200 and "<form" in page.text and "http" not in page.text.split("<script>")[1]
        assert "/api/v1/interpret" in json.dumps(client.get("/api/v1/openapi.json").json()["paths"])
        assert "POST /api/v1/feedback" in client.get("/api").text

        answer = upload(client, served / "raw0.npy")
        assert answer.status_code == 200, answer.text
        record = answer.json()
        assert set(record["interpretation"]["encoding"]) == set(model["labels"])
        assert record["knowledge_store_size"] == 1 and record["correction"]["source"] == "raw0.npy"
        for name, link in record["links"].items():
            fetched = client.get(link)
            assert fetched.status_code == 200 and len(fetched.content) > 100, name
        stored = json.loads(client.get(record["links"]["results.json"]).content)
        assert stored["images"][0]["encoding"] == record["interpretation"]["encoding"]

        # The same image through cfsx interpret (the same correction and decoding seeds): the same answer.
        config = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 1,
                                                                        "output.figures": False})  # fmt: skip
        cleaning = load_config("correct", root=CorrectionConfig)  # as cfsx interpret loads it
        cli = interpret(served / "small.keras", [str(served / "raw0.npy")], tmp_path / "cli", config, cleaning)
        np.testing.assert_allclose(list(record["interpretation"]["encoding"].values()),
                                   list(cli.document["images"][0]["encoding"].values()), rtol=1e-6)  # fmt: skip

        feedback = {"id": record["id"], "rating": 4, "comment": "looks right", "encoding": {"alpha(0,1)": -0.2}}
        assert client.post("/api/v1/feedback", json=feedback).json()["stored"] == 1
        for bad, status in ((dict(feedback, rating=9), 400), (dict(feedback, id="0" * 32), 404),
                            (dict(feedback, encoding={"alpha(0,1)": 3}), 400)):  # fmt: skip
            assert client.post("/api/v1/feedback", json=bad).status_code == status
    with TestClient(create_app(settings(served, store))) as client:  # a restart on the same store
        (kept,) = client.get("/api/v1/feedback").json()
        assert kept["rating"] == 4 and kept["suggested"] == {"alpha(0,1)": -0.2} and kept["source"] == "raw0.npy"
        assert "looks right" in client.get("/feedback").text
        assert client.get("/api/v1/health").json()["interpretations"] == 1
    with h5py.File(store / "knowledge-small.h5") as file:  # a training dataset of the interpreted images
        assert file.attrs["kind"] == "store" and file["images"].shape == (1, 32, 32)


def test_refusals_are_one_line_of_json_with_their_status(served, tmp_path):
    app = create_app(settings(served, tmp_path / "store", max_upload_bytes=40_000, max_pixels=3000))
    with TestClient(app) as client:
        np.save(tmp_path / "big.npy", np.ones((120, 120)))  # 115 kB
        np.save(tmp_path / "many.npy", np.ones((60, 60)))  # 3600 pixels in 29 kB
        nan = np.full((48, 48), np.nan)
        np.save(tmp_path / "nan.npy", nan)
        (tmp_path / "notes.txt").write_text("not an image")
        (tmp_path / "fake.npy").write_bytes(b"\x93NUMPY garbage")
        np.save(tmp_path / "complex.npy", np.ones((32, 32), dtype=complex))
        cases = [("big.npy", {}, 413, "larger than"), ("many.npy", {}, 413, "pixels"),
                 ("nan.npy", {}, 400, "no valid pixel"), ("notes.txt", {}, 400, "not an image file"),
                 ("fake.npy", {}, 400, "cannot read"), ("complex.npy", {}, 400, "complex"),
                 ("many.npy", {"model": "nothing"}, 404, "unknown model"),
                 ("many.npy", {"origin": "a,b"}, 400, "origin must be two numbers")]  # fmt: skip
        for name, fields, status, message in cases:
            answer = upload(client, tmp_path / name, **fields)
            assert answer.status_code == status and message in answer.json()["error"], (name, answer.text)
            assert "\n" not in answer.json()["error"]
        assert client.post("/api/v1/interpret", data={"model": "small"}).status_code == 400  # no image
        assert not any((tmp_path / "store" / "results").iterdir())  # refused uploads leave nothing behind
        app.state.cfsx.pending = app.state.cfsx.settings.queue  # a full queue
        busy = upload(client, served / "raw0.npy")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        app.state.cfsx.pending = 0
        assert client.get("/api/v1/results/" + "0" * 32 + "/results.json").status_code == 404
        assert client.get("/api/v1/results/..%2F..%2Fetc/passwd").status_code == 404
        assert client.get("/api/v1/health").json()["status"] == "ok"  # still up after every refusal


def test_a_token_guards_the_page_and_every_call(served, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-of-some-length\n")
    token_file.chmod(0o600)
    app = create_app(settings(served, tmp_path / "store", token=read_token(token_file)))
    with TestClient(app) as client:
        for path in ("/", "/api/v1/health", "/api/v1/models", "/feedback"):
            assert client.get(path).status_code == 401
        assert upload(client, served / "raw0.npy").status_code == 401
        assert client.get("/api/v1/health", headers={"Authorization": "Bearer s3cret-token-of-some-length"}).is_success
        assert client.get("/?token=s3cret-token-of-some-length").status_code == 200
    token_file.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        read_token(token_file)


def test_concurrent_requests_are_all_answered_and_stored(served, tmp_path):
    store = tmp_path / "store"
    with TestClient(create_app(settings(served, store, workers=2))) as client:
        answers: list = []

        def ask(index: int) -> None:
            answers.append(upload(client, served / f"raw{index % 2}.npy"))

        threads = [threading.Thread(target=ask, args=(index,)) for index in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers if a.status_code != 200]
        assert len({a.json()["id"] for a in answers}) == 6
        assert client.get("/api/v1/health").json()["interpretations"] == 6
    with h5py.File(store / "knowledge-small.h5") as file:
        assert file["images"].shape[0] == 6


def test_serve_refuses_a_missing_model_and_a_short_queue_in_one_line(served, tmp_path):
    from cfsx.errors import ConfigError, DataError

    with pytest.raises(DataError, match="no model file or built-in model"):
        served_models(["no-such-model"])
    with pytest.raises(ConfigError, match="at least 8"):
        create_app(settings(served, tmp_path / "store", queue=2))
