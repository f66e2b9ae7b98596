"""Load test of cfsx serve on loopback: REQUESTS requests of one 512 x 512 detector-like image from CLIENTS
concurrent clients, with a built-in model; throughput, p50/p95 latency, errors, and the server's memory
(server and workers) before and after. Writes the serve-load block of docs/serve.md."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from harness import add_output, machine_line, markdown_table, replace_block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB), from /proc."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for each in pids:
        status = Path(f"/proc/{each}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def detector_image(path: Path) -> None:
    """A CFS4 plane simulated by the engine, rendered 8x as a 512 x 512 detector image with counting noise."""
    from cfsx.config import load_config
    from cfsx.simulation import decode

    config = load_config("cfs4")
    encoding = np.zeros((1, 15))
    encoding[0, :3] = [-0.2, 0.1, 0.15]
    plane = decode(config, encoding, 3).images[0]
    rng = np.random.default_rng(0)
    np.save(path, rng.poisson(20.0 * np.kron(plane, np.ones((8, 8))) / plane.mean()).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", default="general-cfs4")
    parser.add_argument("--replicates", default="", help="decoded structures per image (default: the server's)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="stop after this many seconds")
    add_output(parser, help_text=None)
    parser.add_argument("--block", default="serve-load", help="the marked block of --output to write")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cfsx-serve-bench-"))
    image = folder / "detector.npy"
    detector_image(image)
    port = free_port()
    command = [str(Path(sys.executable).with_name("cfsx")), "serve", "--model", args.model, "--store",
               str(folder / "store"), "--port", str(port), "--queue", str(max(16, 2 * args.clients))]  # fmt: skip
    if args.workers:
        command += ["--workers", str(args.workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                health = httpx.get(f"{url}/api/v1/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        data = image.read_bytes()
        fields = {"model": args.model, **({"replicates": args.replicates} if args.replicates else {})}
        warm = httpx.post(f"{url}/api/v1/interpret", files={"image": ("detector.npy", data)}, data=fields, timeout=600)
        warm.raise_for_status()  # every worker has loaded its models; one answer checked
        for _ in range(health["workers"]):
            httpx.post(f"{url}/api/v1/interpret", files={"image": ("detector.npy", data)}, data=fields, timeout=600)
        before = memory_mb(server.pid)
        latencies: list[float] = []
        statuses: list[int] = []
        lock = threading.Lock()
        remaining = iter(range(args.requests))
        deadline = time.perf_counter() + args.timeout

        def client() -> None:
            with httpx.Client(timeout=600) as session:
                while time.perf_counter() < deadline:
                    with lock:
                        if next(remaining, None) is None:
                            return
                    started = time.perf_counter()
                    answer = session.post(f"{url}/api/v1/interpret", files={"image": ("detector.npy", data)},
                                          data=fields)  # fmt: skip
                    with lock:
                        latencies.append(time.perf_counter() - started)
                        statuses.append(answer.status_code)

        began = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    done = len(latencies)
    errors = sum(status != 200 for status in statuses)
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    rows = [(args.model, str(health["workers"]), str(args.clients), str(done), f"{done / seconds:.2f}", f"{p50:.2f}",
             f"{p95:.2f}", str(errors), f"{before:.0f}", f"{after:.0f}")]  # fmt: skip
    header = ("model", "workers", "clients", "requests", "images/s", "p50 s", "p95 s", "errors", "memory before MB",
              "memory after MB")  # fmt: skip
    replicates = args.replicates or "the server's default"
    command = f"python benchmarks/bench_serve.py --requests {args.requests}" + (
        f" --replicates {args.replicates}" if args.replicates else "")  # fmt: skip
    text = "\n".join([machine_line(command), "",
                      f"One 512 x 512 detector image (.npy, {len(data) // 1024} kB) per request, decoded structures "
                      f"per image: {replicates}; memory is the server's and its workers' resident set.", "",
                      markdown_table(header, rows)])  # fmt: skip
    print(text)
    if args.output:
        replace_block(args.output, args.block, text)


if __name__ == "__main__":
    main()
