"""Write a measured table into its marked block of docs/performance.md, keeping the prose around it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def machine_line(command: str) -> str:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"Measured by `{command}` in one run on {time.strftime('%Y-%m-%d')}, {machine}."


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join('---' for _ in header)} |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def replace_block(path: Path, name: str, text: str) -> None:
    """Put ``text`` between <!-- NAME:start --> and <!-- NAME:end -->, appending the block if it is new."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    document = path.read_text() if path.exists() else ""
    if start in document and end in document:
        before, rest = document.split(start, 1)
        after = rest.split(end, 1)[1]
        document = before + block + after
    else:
        document = document.rstrip() + ("\n\n" if document else "") + block + "\n"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(document)
    temporary.replace(path)


def best_of(function: Callable[[], object], repeats: int = 3) -> float:
    """The shortest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


# The seed study's targets and feedback loop (uniform targets, no early stop), which configs/cfs3.yaml and
# cfs4.yaml left for realisable targets in issue 13: make reproduce and the generalisation benchmark's
# reference models keep them, so that their committed figures stay reproducible.
SEED_STUDY_TARGETS = [
    "--set", "targets.distribution=uniform", "--set", "targets.low=-0.5", "--set", "targets.high=0.5",
    "--set", "feedback.stall_cycles=0", "--set", "feedback.noise_tolerance=0", "--set", "feedback.update=gain",
]  # fmt: skip


def run_logged(command: list[str], log: Path) -> float:
    """Run a command, its output appended to ``log`` (run in its folder); exit on failure; return its wall time."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("a") as stream:
        stream.write("$ " + " ".join(command) + "\n")
        stream.flush()
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=log.parent)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}; see {log}")
    return time.perf_counter() - start
