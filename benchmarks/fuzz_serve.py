"""Fuzz ``cfsx serve`` as a careless, unlucky or hostile client would (make fuzz; not in CI).

A live server on 127.0.0.1 (its own process, one worker, the built-in general-cfs2, a fresh store) gets:

1. Schemathesis cases drawn from its OpenAPI document (/api/v1/openapi.json, generated from the API's records):
   for every operation, requests that fit the schema and requests that do not (hypothesis, derandomized: the
   same cases on every run), each answer checked against the document (status, content type, schema).
2. Hand-written hostile cases: chunked and stalled bodies, bombs (declared sizes far beyond the cap), crafted
   HDF5 (links out of the upload's folder, virtual datasets), pickles, path traversal, a second server on the
   same store, concurrent uploads.

The contract: no traceback, no 5xx but 503 (and 500 from a worker that stopped on an image), no hang (60 s), no
process left behind, no file outside the store touched, every answer one line of JSON when it is an error; the
memory of the server and its workers is sampled and reported.

    .venv/bin/python benchmarks/fuzz_serve.py --output docs/reliability.md    # about 1200 cases, a few minutes
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
from harness import add_output, invocation, markdown_table, replace_block

TIMEOUT = 60.0  # seconds: a request taking longer is a hang
MODEL = "general-cfs2"
# Schemathesis examples per operation, half of them fitting the document and half not (an operation without
# parameters or body has one request that fits and none that does not).
EXAMPLES = {"POST /api/v1/interpret": 600, "POST /api/v1/feedback": 400, "GET /api/v1/results/{identifier}/{name}": 300,
            "GET /api/v1/health": 20, "GET /api/v1/models": 20, "GET /api/v1/feedback": 20}  # fmt: skip


class Server:
    """``cfsx serve`` in its own process: its address, its processes' memory, what it leaves behind."""

    def __init__(self, store: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "cfsx", "serve", "--port", str(self.port), "--store", str(store), "--model",
                   MODEL, "--workers", "1", "--replicates", "0", "--body-timeout", "3", "--max-upload-mb", "2",
                   *options]  # fmt: skip
        self.log = open(store.parent / f"server-{self.port}.log", "w")  # noqa: SIM115  (open for the server's life)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=store.parent)
        self.seen: set[int] = set()  # every process of the server seen (its workers, the resource tracker)
        self.peak_mb = 0.0
        for _ in range(600):
            if self.process.poll() is not None:
                raise SystemExit(f"the server did not start: {(store.parent / self.log.name).read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(self.url + "/api/v1/health", timeout=1)
                return
            time.sleep(0.1)

    def sample(self) -> None:
        """Note the server's processes and their resident memory."""
        processes = [self.process.pid, *descendants(self.process.pid)]
        self.seen.update(processes)
        self.peak_mb = max(self.peak_mb, sum(resident_mb(pid) for pid in processes))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> list[int]:
        """SIGTERM, then the processes of the server still alive 15 s later."""
        self.sample()
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(pid) for pid in self.seen):
            time.sleep(0.2)
        self.log.close()
        return [pid for pid in self.seen if running(pid)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def resident_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def running(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    return False


class Tally:
    """Each case's outcome, by family."""

    def __init__(self) -> None:
        self.rows: Counter = Counter()
        self.problems: list[str] = []

    def add(self, family: str, outcome: str, detail: str = "") -> None:
        self.rows[(family, outcome)] += 1
        if outcome not in ("answered", "refused"):
            self.problems.append(f"{family}: {outcome}: {detail}"[:400])


def judge(status: int, body: bytes) -> str:
    """'answered' (2xx), 'refused' (a 4xx or 503 with one line of JSON), or what breaks the contract."""
    if 200 <= status < 300:
        return "answered"
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return "not one line of JSON"
    if "\n" in error or "Traceback" in error:
        return "not one line of JSON"
    if status >= 500 and status != 503 and "stopped on this image" not in error:
        return "server error"
    return "refused"


def schemathesis_cases(server: Server, tally: Tally, scale: float) -> None:
    """Every operation of the document, cases that fit it and cases that do not, each answer checked against it."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # What an answer must be: documented (status, content type, schema) and not a server error. A request that fits
    # the document may still be refused (an upload that is no image cfsx reads): positive-data acceptance is not one.
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = max(1, round(EXAMPLES.get(label, 20) * scale / 2))

            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                family = f"{label} ({mode.value})"
                try:
                    response = case.call(base_url=server.url, timeout=TIMEOUT)
                except Exception as error:  # noqa: BLE001  (a timeout is a hang; a refused connection a crash)
                    tally.add(family, "hang" if "timed out" in str(error).lower() else "no answer", repr(error))
                    return
                outcome = judge(response.status_code, response.content)
                if outcome in ("answered", "refused") and mode is GenerationMode.POSITIVE:
                    try:
                        case.validate_response(response, checks=checks)
                    except Exception as failure:  # noqa: BLE001  (schemathesis' failure groups)
                        outcome = "answer not as documented"
                        tally.add(family, outcome, f"{response.status_code} {str(failure)[:300]}")
                        return
                tally.add(family, outcome, f"{response.status_code} {response.content[:200]!r}")

            with contextlib.suppress(Unsatisfiable):  # nothing of this operation can be made invalid (no parameters)
                run()
            server.sample()


def request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str = "GET"):
    """(status, body) of one request (never raises for an HTTP status)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}, method=method),
                                    timeout=TIMEOUT) as response:  # fmt: skip
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def multipart(name: str, content: bytes, **fields: str) -> tuple[bytes, dict[str, str]]:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n' for key, value in
             fields.items()]  # fmt: skip
    body = "".join(parts).encode() + (f'--b\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                                      "Content-Type: application/octet-stream\r\n\r\n").encode() + content  # fmt: skip
    return body + b"\r\n--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}


def hostile_files(folder: Path) -> dict[str, bytes]:
    """Uploads a careless or hostile client sends: bombs, crafted HDF5, pickles, odd sizes."""
    import h5py
    import imageio.v3 as imageio
    import tifffile

    made: dict[str, bytes] = {}

    def keep(name: str, write) -> None:
        path = folder / name
        write(path)
        made[name] = path.read_bytes()

    def declared(path: Path) -> None:
        with h5py.File(path, "w") as file:
            file.create_dataset("image", shape=(200_000, 200_000), dtype=np.float64, chunks=(256, 256))

    def outward_link(path: Path) -> None:
        with h5py.File(path, "w") as file:
            file["image"] = h5py.ExternalLink("/etc/passwd", "/")

    def virtual(path: Path) -> None:
        layout = h5py.VirtualLayout(shape=(64, 64), dtype=np.float64)
        layout[:] = h5py.VirtualSource("/etc/hostname", "data", shape=(64, 64))
        with h5py.File(path, "w") as file:
            file.create_virtual_dataset("image", layout)

    keep("declared.h5", declared)
    keep("outward.h5", outward_link)
    keep("virtual.h5", virtual)
    keep("bomb.tif", lambda path: tifffile.imwrite(path, np.zeros((9000, 9000), np.uint8), compression="zlib"))
    keep("bomb.png", lambda path: imageio.imwrite(path, np.zeros((9000, 9000), np.uint8)))
    keep("pickle.npy", lambda path: np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True))
    keep("plane.npy", lambda path: np.save(path, np.random.default_rng(0).gamma(3.0, 1.0, (128, 128))))
    keep("nan.npy", lambda path: np.save(path, np.full((64, 64), np.nan)))
    keep("tiny.npy", lambda path: np.save(path, np.ones((1, 1))))
    made["empty.npy"] = b""
    made["garbage.cbf"] = b"###CBF: VERSION\r\n" + os.urandom(5000)
    return made


def hostile_cases(server: Server, store: Path, folder: Path, tally: Tally) -> None:
    """The hand-written cases (module docstring, 2)."""
    family = "hand-written"
    for name, content in hostile_files(folder).items():
        for fields in ({}, {"origin": "10,10", "pixels_per_rlu": "16,16"}, {"model": "../../etc/passwd"}):
            tally.add(family, judge(*request(server.url + "/api/v1/interpret", *multipart(name, content, **fields),
                                             method="POST")), name)  # fmt: skip
    for name in ("../../etc/passwd", "..%2F..%2Fstore.lock", "a" * 5000 + ".npy", "x.npy\x00.png"):
        body, headers = multipart(name, (folder / "plane.npy").read_bytes() if (folder / "plane.npy").exists() else b"")
        tally.add(family, judge(*request(server.url + "/api/v1/interpret", body, headers, "POST")), name[:40])
    for path in (
        "/api/v1/results/../../feedback.sqlite/results.json",
        "/api/v1/results/" + "0" * 32 + "/x.png",
        "/api/v1/results/%2e%2e/%2e%2e",
        "/api/v1/nothing",
        "/api/v1/results/" + "f" * 32 + "/results.h5",
    ):
        tally.add(family, judge(*request(server.url + path)), path[:60])  # fmt: skip
    chunked_and_stalled(server, tally)
    concurrent(server, folder, tally)
    second = subprocess.run([sys.executable, "-m", "cfsx", "serve", "--port", str(free_port()), "--store", str(store),
                             "--model", MODEL], capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = second.stderr.strip().splitlines()
    tally.add(family, "refused" if second.returncode == 4 and len(lines) == 1 else "second server not refused",
              second.stderr[-300:])  # fmt: skip
    server.sample()


def chunked_and_stalled(server: Server, tally: Tally) -> None:
    """A chunked body beyond the limit, and bodies that stall: refused while they arrive (413, 408)."""
    head = ("POST /api/v1/interpret HTTP/1.1\r\nHost: x\r\n{}Content-Type: multipart/form-data; "
            "boundary=b\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as connection:
        connection.sendall(head.format("Transfer-Encoding: chunked\r\n").encode())
        opening = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.npy"\r\n\r\n'
        connection.sendall(f"{len(opening):x}\r\n".encode() + opening + b"\r\n")
        chunk, sent = b"\0" * 65536, 0
        with contextlib.suppress(OSError):
            while sent < 400 * 2**20:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                connection.settimeout(0.0)
                with contextlib.suppress(BlockingIOError):
                    if connection.recv(1, socket.MSG_PEEK):
                        break
                connection.settimeout(TIMEOUT)
        connection.settimeout(TIMEOUT)
        status = status_of(connection)
    tally.add("hand-written", "refused" if status == 413 and sent < 200 * 2**20 else "chunked body not stopped",
              f"{status} after {sent} bytes")  # fmt: skip
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) for _ in range(16)]
    for connection in stalled:
        connection.sendall((head.format("Content-Length: 100000\r\n") + "--b\r\n").encode())
    for connection in stalled:
        status = status_of(connection)
        tally.add("hand-written", "refused" if status == 408 else "stalled body not timed out", str(status))
        connection.close()


def status_of(connection: socket.socket) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(connection.recv(4096).decode(errors="replace").split()[1])
    return 0


def concurrent(server: Server, folder: Path, tally: Tally) -> None:
    """24 uploads at once: each answered or told to come back (503)."""
    from concurrent.futures import ThreadPoolExecutor

    body, headers = multipart("plane.npy", (folder / "plane.npy").read_bytes())
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda _: request(server.url + "/api/v1/interpret", body, headers, "POST"), range(24)))
    for status, content in answers:
        tally.add("hand-written", judge(status, content), f"concurrent {status}")


def tree_digest(folder: Path, skip: Path) -> dict[str, str]:
    """The sha256 of every file under ``folder`` outside ``skip``."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.rglob("*"))
            if path.is_file() and skip not in path.parents and path != skip}  # fmt: skip


def report(tally: Tally, server: Server, leftover: list[int], touched: list[str], seconds: float, argv) -> str:
    families = sorted({family for family, _ in tally.rows})
    outcomes = ["answered", "refused", "server error", "not one line of JSON", "answer not as documented", "hang",
                "no answer"]  # fmt: skip
    others = sorted({outcome for _, outcome in tally.rows} - set(outcomes))
    header = ("family", "cases", *outcomes, *others)
    every = (*outcomes, *others)
    rows = [(family, str(sum(n for (f, _), n in tally.rows.items() if f == family)),
             *(str(tally.rows[(family, outcome)]) for outcome in every)) for family in families]  # fmt: skip
    total = sum(tally.rows.values())
    rows.append(("**total**", f"**{total}**", *(f"**{sum(n for (_, o), n in tally.rows.items() if o == outcome)}**"
                                               for outcome in (*outcomes, *others))))  # fmt: skip
    clean = not tally.problems and not leftover and not touched
    lines = [
        "## Fuzzing the server (make fuzz)",
        "",
        f"`{invocation('fuzz_serve.py', argv)}` ran {total} cases against a live `cfsx serve` on 127.0.0.1 ({MODEL}, "
        f"one worker) on {datetime.date.today()}, in {seconds / 60:.1f} min: Schemathesis cases drawn from the "
        "server's OpenAPI document (generated from the API's records: cases that fit it, each answer validated "
        "against it, and cases that do not) and hand-written hostile cases (bombs, crafted HDF5, pickles, path "
        "traversal, chunked and stalled bodies, 24 concurrent uploads, a second server on the store).",
        "",
        markdown_table(header, rows),
        "",
        f"- Memory of the server and its workers (resident, peak of the samples): {server.peak_mb:.0f} MB.",
        f"- Processes left 15 s after SIGTERM: {len(leftover)}. Files outside the store touched: {len(touched)}.",
        "- answered: 2xx. refused: a 4xx, or 503, with one line of JSON. server error: any other 5xx (a worker that "
        "stopped on an image, 500, counts as refused). hang: no answer within 60 s.",
        "",
        "Every case was clean."
        if clean
        else "Problems:\n\n" + "\n".join(f"- {line}" for line in tally.problems[:40]),  # fmt: skip
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_output(parser, help_text="Markdown file whose fuzz-serve block is rewritten (default: print only).")
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of the Schemathesis cases (quick runs).")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cfsx-fuzz-serve-") as work:
        work = Path(work)
        (work / "mine").mkdir()
        (work / "mine" / "notes.txt").write_text("a user's file beside the store")
        (work / "uploads").mkdir()
        store = work / "store"
        before = tree_digest(work, store)
        server = Server(store)
        tally = Tally()
        try:
            schemathesis_cases(server, tally, args.scale)
            hostile_cases(server, store, work / "uploads", tally)
            if not server.alive():
                tally.add("server", "no answer", "the server process ended during the campaign")
        finally:
            leftover = server.stop()
        after = tree_digest(work, store)
        touched = [path for path in before if before[path] != after.get(path)]
        touched += [path for path in after if path not in before and "/uploads/" not in path and "server-" not in path]
    text = report(tally, server, leftover, touched, time.perf_counter() - started, argv)
    print(text)
    if args.output:
        replace_block(args.output, "fuzz-serve", text, blank_before_end=True)
    return 0 if not tally.problems and not leftover and not touched else 1


if __name__ == "__main__":
    raise SystemExit(main())
