"""The same outputs from two versions of cfsx: the pipeline of ``make demo`` (small) run by each, compared.

Issue 28 moved every module; this checks that the move changed no result. Each version runs from its own source tree
(a git worktree of ``--before`` beside this one, with this tree's compiled engine) with the same commands:
simulate demo (16 samples), info, train (train-demo, 3 epochs), interpret of 4 new samples and one raw .npy image with
the trained model and with the built-in general-cfs4, correct of the raw image. Compared: every dataset array of the
simulated and corrected files bit for bit, and every number of results.json (timings, dates and paths aside).

    python tools/same_outputs.py --before 7cdb6cb      (about 2 minutes; exit 1 when anything differs)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parents[1]
SKIPPED_KEYS = {"created", "seconds", "durations", "cfsx_version", "timings", "path", "output", "model_path", "sha256"}


def pipeline(tree: Path, work: Path) -> None:
    """The demo's commands, run by the cfsx of ``tree`` into ``work``."""
    environment = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": ""}

    def cfsx(*arguments: str) -> None:
        subprocess.run([sys.executable, "-m", "cfsx", "-q", *arguments], cwd=work, env=environment, check=True)

    work.mkdir(parents=True)
    cfsx("simulate", "demo", "-o", "demo.h5", "--samples", "16", "--workers", "1")
    cfsx("simulate", "demo", "-o", "unseen.h5", "--samples", "4", "--seed", "7", "--workers", "1")
    cfsx("train", "demo.h5", "-o", "demo.keras", "--config", "train-demo", "--epochs", "3")
    with h5py.File(work / "unseen.h5") as file:
        np.save(work / "raw.npy", np.kron(file["images"][0], np.ones((4, 4))))
    cfsx("correct", "raw.npy", "-o", "raw-corrected.h5")
    cfsx("interpret", "unseen.h5", "raw.npy", "-o", "trained", "--model", "demo.keras", "--no-figures")
    cfsx("interpret", "raw.npy", "-o", "builtin", "--model", "general-cfs4", "--no-figures")


def arrays(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path) as file:
        file.visititems(lambda name, item: found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return found


def numbers(value, where: str = ""):
    """(path, number) for every number of a JSON document, keys in SKIPPED_KEYS left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in SKIPPED_KEYS:
                yield from numbers(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{where}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield where, value


def differences(before: Path, after: Path) -> tuple[list[str], int]:
    """What differs, and how many arrays and numbers were compared."""
    found, compared = [], 0
    for name in ("demo.h5", "unseen.h5", "raw-corrected.h5"):
        old, new = arrays(before / name), arrays(after / name)
        compared += len(old)
        for key in sorted(set(old) | set(new)):
            if key not in old or key not in new:
                found.append(f"{name}::{key}: only in one")
            elif np.asarray(old[key]).dtype.kind in "fiub" and not np.array_equal(old[key], new[key], equal_nan=True):
                found.append(f"{name}::{key}: arrays differ")
    for folder in ("trained", "builtin"):
        old = dict(numbers(json.loads((before / folder / "results.json").read_text())))
        new = dict(numbers(json.loads((after / folder / "results.json").read_text())))
        compared += len(old)
        found += [f"{folder}/results.json{key}: {old.get(key)} -> {new.get(key)}" for key in sorted(set(old) | set(new))
                  if old.get(key) != new.get(key)]  # fmt: skip
    return found, compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="7cdb6cb", help="the git revision to compare with")
    args = parser.parse_args()
    engine = next((HERE / ".venv").glob("lib/python*/site-packages/cfsx/_engine*.so"))
    with tempfile.TemporaryDirectory() as folder:
        old_tree = Path(folder) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), args.before], cwd=HERE, check=True,
                       capture_output=True)  # fmt: skip
        try:
            for tree in (old_tree, HERE):
                if not (tree / "cfsx" / engine.name).exists():
                    shutil.copy(engine, tree / "cfsx" / engine.name)
                if not (tree / "cfsx" / "configs").exists():
                    (tree / "cfsx" / "configs").symlink_to(tree / "configs")
            pipeline(old_tree, Path(folder) / "old")
            pipeline(HERE, Path(folder) / "new")
            found, compared = differences(Path(folder) / "old", Path(folder) / "new")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=HERE, capture_output=True)
    same = (
        f"the same outputs as {args.before}: {compared} dataset arrays and results.json numbers compared, none differ"
    )
    print("\n".join(found) if found else same)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
