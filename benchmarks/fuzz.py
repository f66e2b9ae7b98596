"""Fuzz every cfsx command with bad input and check the reliability contract (make fuzz; not in CI).

The contract (cfsx/errors.py, README): bad input gives ONE line on stderr that starts with "error:" and a
non-zero exit code (2 for Click's own usage errors, which may print usage lines; 3-6 otherwise), never a
traceback, never a partial or mixed output, never a changed input. Outputs are written to ``.NAME.tmp-PID``
and renamed when complete; ``OUTPUT.lock`` is held while a command runs; ``OUTPUT.parts/`` of simulate may
remain after a failure (for --resume) but not after success.

The cases are drawn by hypothesis with ``derandomize=True`` (the same cases on every run) and never shrunk:
each case's outcome is recorded, not raised. Every case runs in-process through Typer's CliRunner against
``cfsx.app.cli.app``, in a worker process that this script supervises: the worker stops a case after
``--timeout`` seconds with SIGALRM (a hang), and when that does not work (a hang inside compiled code) or the
worker dies (a crash), the worker is killed and replaced, and the case is recorded as a hang or crash.
Each case has a fresh directory: its generated inputs in ``in/``, its outputs in ``out/``; every file in it
and every shared input it names is hashed before and after.

    .venv/bin/python benchmarks/fuzz.py --output docs/reliability.md   # 1000 cases, 10-15 minutes
    .venv/bin/python benchmarks/fuzz.py --only 17,305 --keep            # re-run two cases, keep their files

The cases, the files they need, the worker and the judging are in benchmarks/fuzzing/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from fuzzing.cases import draw_cases
from fuzzing.files import describe_files, materialize, write_image
from fuzzing.judge import PROBLEMS, command_line, judge, shared_inputs, snapshot
from fuzzing.values import COMMANDS, TINY
from fuzzing.worker import Worker
from harness import ROOT, add_output, replace_block

TIMEOUT = 60.0


# --- setup: the valid files every case starts from ---------------------------------------------------------


def setup_shared(worker: Worker, shared: Path) -> None:
    shared.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    image = rng.uniform(0.5, 1.5, (40, 40)).astype(np.float32)
    np.save(shared / "image.npy", image)
    write_image(shared / "image.tif", "tif", image)
    commands = [
        ["simulate", "demo", "-o", "data.h5", "--samples", "40", "--workers", "1", *TINY],
        ["simulate", "demo", "-o", "shard-0.h5", "--samples", "8", "--shard", "0/2", "--workers", "1", *TINY],
        ["simulate", "demo", "-o", "shard-1.h5", "--samples", "8", "--shard", "1/2", "--workers", "1", *TINY],
        ["simulate", "demo", "-o", "shard-other-1.h5", "--samples", "8", "--seed", "5", "--shard", "1/2",
         "--workers", "1", *TINY],
        ["simulate", "demo", "-o", "shard-cfs3-1.h5", "--samples", "8", "--shard", "1/2", "--workers", "1", *TINY,
         "--set", "encoding.cfs=3"],
        ["simulate", "demo", "-o", "data-cfs3.h5", "--samples", "12", "--workers", "1", *TINY, "--set",
         "encoding.cfs=3"],
        ["train", "data.h5", "-o", "model.keras", "--config", "train-demo", "--epochs", "1"],
        ["correct", "image.npy", "-o", "corrected.h5", "--set", "output.image_size=16"],
        # simulated images (read as raw images): the store keeps only interpretations that explain their image
        ["interpret", "--model", "model.keras", "data.h5::/images[0]", "data.h5::/images[1]", "-o", "interp",
         "--replicates", "1", "--no-figures", "--record", "store.h5"],
        ["evaluate", "model.keras", "data.h5", "-o", "report", "--config", "train-demo", "--resimulated", "2",
         "--workers", "1"],
    ]  # fmt: skip
    for args in commands:
        result = worker.run(args, shared, 600)
        if result.get("exit_code") != 0:
            raise RuntimeError(f"setup failed: cfsx {' '.join(args)}: {result.get('output', result)}")
    if not (shared / "store.h5").is_file():
        raise RuntimeError("setup failed: interpret --record kept no interpretation (none explained its image)")
    for leftover in ("model-history.csv", "model-loss.png"):
        (shared / leftover).unlink(missing_ok=True)


# --- the report ----------------------------------------------------------------------------------------------


def _git_state() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cfsx"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
        return f"commit {commit}" + (" with uncommitted changes in cfsx/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


def _cell(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.replace("|", "\\|").replace("`", "'")


def report_section(records: list[dict], seconds: float, command: str, via_make: bool, listed: int = 30) -> str:
    """The text of the fuzz block of --output (between its markers): the totals and the cases that are not clean."""
    from cfsx import __version__

    totals: dict[str, Counter] = {name: Counter() for name in COMMANDS}
    for record in records:
        counts = totals[record["command"]]
        counts["cases"] += 1
        if not record["problems"]:
            counts[record["outcome"]] += 1
        for problem in record["problems"]:
            counts[problem] += 1
    columns = ["cases", "ok", "refused", *PROBLEMS]
    headers = ["command", "cases", "ok", "refused cleanly", "tracebacks", "internal errors", "multi-line",
               "hangs", "crashes", "partial outputs", "inputs changed"]  # fmt: skip
    lines = [
        "## Fuzzing (make fuzz)",
        "",
        (f"`make fuzz` (`{command}`; not part of CI)" if via_make else f"`{command}` (not part of CI)")
        + f" ran {len(records)} cases drawn by hypothesis "
        f"(derandomized: the same cases on every run, never shrunk) on {datetime.date.today().isoformat()}, "
        f"cfsx {__version__} ({_git_state()}), in {seconds / 60:.1f} min on {os.cpu_count()} cores. Each case runs "
        f"in-process through Typer's CliRunner in a supervised worker process (SIGALRM after {TIMEOUT:g} s: a hang; "
        "a worker that dies: a crash), with its own input and output folders; every input file is hashed before "
        "and after.",
        "",
        "| " + " | ".join(headers) + " |",
        "| --- |" + " ---: |" * (len(headers) - 1),
    ]
    grand = Counter()
    for name in COMMANDS:
        counts = totals[name]
        grand.update(counts)
        lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    lines.append("| **total** | " + " | ".join(f"**{grand[c]}**" for c in columns) + " |")
    lines += [
        "",
        "- ok: exit 0 and nothing left behind. Refused cleanly: exit 2 (Click's usage error, which may print usage "
        "lines), or exit 3-6 with exactly one non-empty line of output, on stderr, starting with `error:`.",
        "- Tracebacks: `Traceback` in the output, or an exception escaped the command. Internal errors: exit 1 "
        "(`internal error (...)`, a bug by the contract) or an exit code outside the table. Multi-line: exit 3-6 "
        "without exactly one `error:` line on stderr (more lines, progress-bar remnants, output on stdout).",
        f"- Hangs: more than {TIMEOUT:g} s. Crashes: the process died (a signal). Partial outputs: after a failure, "
        "anything new or changed in the case's folders (except simulate's `OUTPUT.parts/`); after success, a "
        "leftover `OUTPUT.lock`, `.NAME.tmp-PID` (or simulate's `OUTPUT.parts/`). Inputs changed: an input's "
        "sha256 differs afterwards. A case with several problems counts in each of their columns; ok and refused "
        "count only cases without problems.",
        "",
    ]
    bad = [r for r in records if r["problems"]]
    if not bad:
        return "\n".join([*lines, "Every case was clean."])
    lines += [
        f"### Cases that are not clean ({len(bad)}"
        + (f"; {listed} listed, one of each kind first" if len(bad) > listed else "")
        + ")",
        "",
        "Reproduce one with `.venv/bin/python benchmarks/fuzz.py --only ID --keep` (it makes the shared files "
        "again, keeps the case folder and prints the whole output). `shared/` is the folder of valid files made "
        "at the start: a 40-sample dataset `data.h5` (16 x 16 images, CFS2), its model `model.keras` "
        "(train-demo, 1 epoch), shards, `corrected.h5`, `store.h5`, `image.npy`.",
        "",
        "| id | command line (shortened); files | exit | first line of output | problem |",
        "| ---: | --- | ---: | --- | --- |",
    ]
    chosen, seen = [], set()
    for record in bad:  # one of every (command, problem) first, then in order
        key = (record["command"], record["problems"][0], record["first_line"][:40])
        if key not in seen:
            seen.add(key)
            chosen.append(record)
    chosen += [r for r in bad if r not in chosen]
    for record in sorted(chosen[:listed], key=lambda r: r["id"]):
        files = describe_files(record["case"])
        text = _cell(command_line(record["case"]), 170) + (f"; {_cell(files, 150)}" if files else "")
        problem = ", ".join(record["problems"]) + (f" ({'; '.join(record['notes'])})" if record["notes"] else "")
        lines.append(f"| {record['id']} | `{text}` | {record['exit_code'] if record['exit_code'] is not None else '-'}"
                     f" | {_cell(record['first_line'], 160)} | {_cell(problem, 120)} |")  # fmt: skip
    if len(bad) > listed:
        lines += ["", f"... and {len(bad) - listed} more (the run prints all of them)."]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output(parser, help_text="Markdown file whose 'Fuzzing (make fuzz)' section is written.")
    parser.add_argument("--work", type=Path, help="Folder for the cases [default: a temporary folder].")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (and each case's files).")
    parser.add_argument("--scale", type=float, default=1.0, help="Fraction of the 1000 cases to run (quick checks).")
    parser.add_argument("--only", help="Comma-separated case ids to run (their whole output is printed).")
    parser.add_argument("--list", action="store_true", help="Print the cases and stop.")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="Seconds before a case is a hang.")
    parser.add_argument("--memory-limit-gb", type=float, default=4.0,
                        help="RLIMIT_DATA of the worker: a MemoryError instead of the OOM killer.")  # fmt: skip
    options = parser.parse_args()

    began = time.perf_counter()
    cases = draw_cases(options.scale)
    if options.list:
        for case in cases:
            print(f"{case['id']:5d} {case['command']}/{case['kind']}: {command_line(case)}  [{describe_files(case)}]")
        return 0
    if options.only:
        wanted = {int(x) for x in options.only.split(",")}
        cases = [case for case in cases if case["id"] in wanted]
    work = options.work or Path(tempfile.mkdtemp(prefix="cfsx-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    shared = work / "shared"
    worker = Worker(work / "worker.log", int(options.memory_limit_gb * 2**30))
    print(f"cfsx fuzz: {len(cases)} cases, work folder {work}", flush=True)
    records: list[dict] = []
    try:
        worker.start()
        setup_shared(worker, shared)
        print(f"shared files made in {time.perf_counter() - began:.0f} s", flush=True)
        for number, case in enumerate(cases, 1):
            case_dir = work / "cases" / f"{case['id']:04d}"
            shutil.rmtree(case_dir, ignore_errors=True)
            (case_dir / "in").mkdir(parents=True)
            (case_dir / "out").mkdir()
            notes = materialize(case, case_dir, shared)
            before, shared_before = snapshot(case_dir), shared_inputs(case, shared)
            args = [arg.replace("@S/", f"{shared}/") for arg in case["args"]]
            result = worker.run(args, case_dir, options.timeout)
            after, shared_after = snapshot(case_dir), shared_inputs(case, shared)
            record = {"id": case["id"], "command": case["command"], "kind": case["kind"], "case": case,
                      **judge(case, result, before, after, shared_before, shared_after)}  # fmt: skip
            for folder, short in ((case_dir, ""), (shared, "shared/")):  # short paths in the report
                record["first_line"] = record["first_line"].replace(f"{folder}/", short)
            records.append(record)
            if options.only:
                print(f"--- case {case['id']}: {command_line(case)}\n    files: {describe_files(case)}")
                for note in notes:
                    print(f"    {note}")
                print(f"    exit {record['exit_code']}, {record['outcome']}, problems {record['problems']} "
                      f"{record['notes']}, {record['seconds']} s; folder {case_dir}\n--- output:")  # fmt: skip
                print(result.get("output", ""), result.get("traceback", ""), sep="\n")
            if shared_after != shared_before:  # a shared file was changed: make them again for the next cases
                shutil.rmtree(shared)
                setup_shared(worker, shared)
            if not options.keep:
                shutil.rmtree(case_dir, ignore_errors=True)
            if number % 50 == 0 or number == len(cases):
                counts = Counter(r["outcome"] if not r["problems"] else "not clean" for r in records)
                print(f"[{number:4d}/{len(cases)}] {(time.perf_counter() - began) / 60:5.1f} min  "
                      f"{case['command']:9s} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
                      flush=True)  # fmt: skip
    finally:
        worker.stop()
    seconds = time.perf_counter() - began
    bad = [r for r in records if r["problems"]]
    print(f"\n{len(records)} cases in {seconds / 60:.1f} min; {len(bad)} not clean "
          f"(worker started {worker.starts} times)")  # fmt: skip
    for record in bad:
        print(f"  #{record['id']} [{', '.join(record['problems'])}] exit {record['exit_code']}: "
              f"{command_line(record['case'])[:300]}\n      {describe_files(record['case'])[:300]}\n"
              f"      -> {record['first_line'][:300]} {record['notes']}")  # fmt: skip
    slowest = sorted(records, key=lambda r: -r["seconds"])[:5]
    print("slowest: " + ", ".join(f"#{r['id']} {r['command']} {r['seconds']:.0f} s" for r in slowest))
    if options.output and not options.only:
        command = ".venv/bin/python benchmarks/fuzz.py " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
        via_make = options.scale == 1.0 and options.work is None and not options.keep
        section = report_section(records, seconds, command, via_make)
        replace_block(options.output, "fuzz", section, title="# Reliability\n", blank_before_end=True)
        print(f"wrote {options.output}")
    if options.keep:
        (work / "results.json").write_text(json.dumps(records, indent=1, default=str))
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
