"""The code the benchmark scripts share: paths, their --output and --figures options, running cfsx, timing,
process pools, and the tables and marked blocks they write into docs/*.md.

The scripts import it as a sibling module (``from harness import ...``). They are run as
``python benchmarks/NAME.py``, which puts benchmarks/ first on sys.path. Importing this module loads neither cfsx
nor TensorFlow (the functions that need cfsx import it when called).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
ZRO2_PLANE = ROOT.parent / "shared" / "realdata" / "javelin-zro2-h0l" / "ZrO2.nxs"  # the real plane, when present
CFSX = (sys.executable, "-m", "cfsx")  # this interpreter's cfsx (run outside the source tree: the installed package)
TABLE_HELP = "write the table into this Markdown file"

# The seed study's targets and feedback loop (uniform targets, no early stop), which configs/cfs3.yaml and
# cfs4.yaml left for realisable targets in issue 13: make reproduce and the generalisation benchmark's
# reference models keep them, so that their committed figures stay reproducible.
SEED_STUDY_TARGETS = [
    "--set", "targets.distribution=uniform", "--set", "targets.low=-0.5", "--set", "targets.high=0.5",
    "--set", "feedback.stall_cycles=0", "--set", "feedback.noise_tolerance=0", "--set", "feedback.update=gain",
]  # fmt: skip


# --- command-line options ----------------------------------------------------------------------------------------


def add_output(
    parser: argparse.ArgumentParser, default: Path | None = None, help_text: str | None = TABLE_HELP
) -> None:
    """The ``--output`` option: the Markdown file whose marked block the script writes."""
    parser.add_argument("--output", type=Path, default=default, help=help_text)


def add_figures(parser: argparse.ArgumentParser, default: Path | None = None, help_text: str | None = None) -> None:
    """The ``--figures`` option: the folder of the figures the block shows."""
    parser.add_argument("--figures", type=Path, default=default, help=help_text)


def invocation(script: str, argv: Sequence[str] | None) -> str:
    """The command line of a run of benchmarks/SCRIPT, as the measured-by line quotes it."""
    return f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


# --- running and timing ------------------------------------------------------------------------------------------


def best_of(function: Callable[[], object], repeats: int = 3) -> float:
    """The shortest wall time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def run_cfsx(*arguments: str, cwd: Path | None = None) -> float:
    """Run one cfsx command, its output captured; exit with its stderr when it fails; return its wall time."""
    started = time.perf_counter()
    finished = subprocess.run([*CFSX, *arguments], cwd=cwd, capture_output=True, text=True)
    if finished.returncode:
        raise SystemExit(f"cfsx {' '.join(arguments)} failed: {finished.stderr.strip()}")
    return time.perf_counter() - started


def echo_cfsx(*arguments: str, cwd: Path | None = None) -> None:
    """Print a cfsx command and run it, its output shown; raise CalledProcessError when it fails."""
    print("+ cfsx " + " ".join(arguments), flush=True)
    subprocess.run([*CFSX, *arguments], check=True, cwd=cwd)


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


def spawn_pool(workers: int) -> ProcessPoolExecutor | None:
    """``workers`` spawned processes (started before TensorFlow is imported), or None for one worker: run here."""
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def generate_groups(folder: Path, groups: Sequence[str], workers: int) -> None:
    """Make the generalisation benchmark's files of ``groups`` in ``folder`` (generalisation_data.py)."""
    command = [sys.executable, str(BENCHMARKS / "generalisation_data.py"), "--output", str(folder)]
    subprocess.run([*command, "--groups", *groups, "--workers", str(workers)], check=True)


@functools.cache
def correction_config(overrides: tuple[str, ...]) -> Any:
    """The built-in ``correct`` config with ``--set`` overrides, loaded once per process for each set of them."""
    from cfsx.config import CorrectionConfig, load_config

    return load_config("correct", list(overrides), root=CorrectionConfig)


# --- files -------------------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_times(path: Path) -> dict[str, float]:
    """The times of a resumable run's steps kept so far in ``path`` (JSON), or none."""
    return json.loads(path.read_text()) if path.exists() else {}


def save_times(path: Path, times: dict[str, float]) -> None:
    """Keep the times of a resumable run's steps in ``path`` (JSON)."""
    path.write_text(json.dumps(times, indent=1))


# --- tables, figures and marked blocks ---------------------------------------------------------------------------


def machine_line(command: str) -> str:
    """'Measured by `COMMAND` in one run on DATE, PROCESSOR, N cores.'"""
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    return f"Measured by `{command}` in one run on {time.strftime('%Y-%m-%d')}, {machine}."


def timed_line(command: str, seconds: float) -> str:
    """'Measured by `COMMAND` on DATE (N cores, shared), in M minutes' (the rest of the sentence is the caller's)."""
    date = time.strftime("%Y-%m-%d")
    return f"Measured by `{command}` on {date} ({os.cpu_count()} cores, shared), in {seconds / 60:.1f} minutes"


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table: the header, its rule and one line per row."""
    lines = [f"| {' | '.join(header)} |", f"| {' | '.join('---' for _ in header)} |"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 4) -> str:
    """A table cell: the value with ``digits`` decimals, '-' for none or a non-finite value."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def mean_mae(rows: list[dict], **match: Any) -> float:
    """The mean 'mae' of the generalisation benchmark's results.json rows that match (NaN when none does)."""
    chosen = [row["mae"] for row in rows if all(row[key] == value for key, value in match.items())]
    return float(sum(chosen) / len(chosen)) if chosen else float("nan")


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def replace_block(
    path: Path, name: str, text: str, *, title: str = "", heading: str = "", blank_before_end: bool = False
) -> None:
    """Put ``text`` between <!-- NAME:start --> and <!-- NAME:end -->, keeping the rest of the document.

    A new block goes at the end, under ``heading`` when one is given; a new document starts with ``title``.
    ``blank_before_end`` keeps an empty line before the end marker (the fuzz block's layout).
    """
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{chr(10) if blank_before_end else ''}{end}"
    document = path.read_text() if path.exists() else title
    if start in document and end in document:
        before, rest = document.split(start, 1)
        after = rest.split(end, 1)[1]
        document = before + block + after
    else:
        document = document.rstrip() + ("\n\n" if document else "") + (f"{heading}\n\n" if heading else "")
        document += block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(document)
    temporary.replace(path)
