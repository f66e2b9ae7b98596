"""Judging a fuzz case: its outcome against the contract of benchmarks/fuzz.py, from its result and the files of its
folder and the shared inputs before and after."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path

from harness import file_sha256

OUTCOMES = ("ok", "refused", "traceback", "internal", "multi-line", "hang", "crashed")
PROBLEMS = ("traceback", "internal", "multi-line", "hang", "crashed", "partial", "input changed")


def digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if path.is_dir():
        return "dir"
    return file_sha256(path)


def snapshot(folder: Path) -> dict[str, str]:
    found = {}
    for directory, subdirectories, files in os.walk(folder):
        for name in subdirectories + files:
            path = Path(directory) / name
            with contextlib.suppress(OSError):
                found[str(path.relative_to(folder))] = digest(path)
    return found


def shared_inputs(case: dict, shared: Path) -> dict[str, str]:
    return {name: digest(shared / name.removeprefix("@S/")) for name in case["inputs"]}


LEFTOVER = re.compile(r"(^\..*\.tmp-\d+)|(\.lock$)|(^\..*\.lock\.)")


def judge(case: dict, result: dict, before: dict, after: dict, shared_before: dict, shared_after: dict) -> dict:
    """The outcome of a case (ok, refused, traceback, internal, multi-line, hang, crashed) and its problems."""
    output = result.get("output", "")
    code = result.get("exit_code")
    if result.get("hang"):
        outcome = "hang"
    elif result.get("crashed"):
        outcome = "crashed"
    elif "Traceback" in output or result.get("traceback"):
        outcome = "traceback"
    elif code == 0:
        outcome = "ok"
    elif code == 2:
        outcome = "refused"  # Click's usage error: it may print usage lines
    elif code in (3, 4, 5, 6, 130):
        lines = [line for line in output.splitlines() if line.strip()]
        on_stderr = [line for line in result.get("stderr", "").splitlines() if line.strip()]
        clean = len(lines) == 1 and lines[0].startswith("error:") and on_stderr == lines
        outcome = "refused" if clean else "multi-line"
    else:
        outcome = "internal"  # exit 1 (a bug, by the contract), or an exit code outside the table
    problems = [] if outcome in ("ok", "refused") else [outcome]
    notes = []
    inputs_in_case = {p for p in before if p == "in" or p.startswith("in/")}
    changed_inputs = [p for p in inputs_in_case if after.get(p) != before[p]]
    changed_inputs += [p for p in shared_before if shared_after.get(p) != shared_before[p]]
    if changed_inputs:
        problems.append("input changed")
        notes.append("changed: " + ", ".join(sorted(changed_inputs)[:3]))
    if "pwned" in after or "in/pwned" in after:
        problems.append("input changed")
        notes.append("a YAML tag ran a command")
    if outcome not in ("hang", "crashed"):
        new = [p for p in after if p not in before]
        allow_parts = case["command"] == "simulate"
        if code == 0:
            leftovers = [p for p in new if LEFTOVER.search(Path(p).name) or (allow_parts and ".parts" in p)]
        else:
            leftovers = [p for p in new if not (allow_parts and ".parts" in p)]
            leftovers += [p for p in before if p not in inputs_in_case and after.get(p) != before[p]]
        if leftovers:
            problems.append("partial")
            notes.append("left: " + ", ".join(sorted(leftovers)[:3]))
    first = next((line.strip() for line in output.splitlines() if line.strip()), "")
    if result.get("traceback"):
        last = result["traceback"].strip().splitlines()[-1]
        first = f"{first} [{last}]" if first else last
    return {"outcome": outcome, "problems": list(dict.fromkeys(problems)), "notes": notes, "first_line": first,
            "exit_code": code, "seconds": round(result.get("seconds", 0.0), 2)}  # fmt: skip


def command_line(case: dict) -> str:
    return "cfsx " + " ".join(shlex.quote(arg.replace("@S/", "shared/")) for arg in case["args"])
