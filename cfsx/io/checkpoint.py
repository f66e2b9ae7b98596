"""Checkpoints: training's in ``MODEL.keras.parts/`` (what ``cfsx train --resume`` needs to continue exactly), and
``clear``, which removes a checkpoint folder of any run only when everything in it is cfsx's.

After every epoch one file, ``state.npz``, is replaced atomically: the weights, the optimizer's
variables (step count, learning rate, Adam moments), the best-so-far weights, the history, the
early-stopping and learning-rate-on-plateau counters. The epoch number also fixes the shuffling
and augmentation of the next epoch (their seed is (fit.seed, epoch)), so a resumed run makes the
same updates as an uninterrupted one and ends with the same weights. ``manifest.json`` names the
run (config, data fingerprints, starting model): a checkpoint of another run is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import DataError, OutputError
from cfsx.io.outputs import writing

STATE_FILE = "state.npz"
MANIFEST_FILE = "manifest.json"
TRAINING_FILES = r"manifest\.json|(partial-)?state\.npz"  # what a training run writes into MODEL.keras.parts/


def parts_dir(model_path: Path) -> Path:
    """The checkpoint directory of a model file: MODEL.keras.parts/."""
    return model_path.with_name(model_path.name + ".parts")


@dataclass
class TrainingState:
    """Everything that changes from epoch to epoch of a training run."""

    epoch: int  # epochs completed
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]  # optimizer.variables, in order
    best_weights: list[np.ndarray] | None
    best_loss: float
    best_epoch: int
    history: list[dict[str, float]]
    plateau: dict[str, float]  # ReduceLROnPlateau's wait, best and cooldown_counter
    stopped: bool  # early stopping ended the run after this epoch
    seconds: float  # training time so far, over every run


def prepare(parts: Path, manifest: dict[str, Any], resume: bool) -> TrainingState | None:
    """Open the checkpoints of a run: the saved state when resuming one, else a fresh, empty directory."""
    manifest_file = parts / MANIFEST_FILE
    if resume and parts.exists():
        try:
            existing = json.loads(manifest_file.read_text())
        except (OSError, ValueError):
            raise DataError(f"cannot resume: {manifest_file} is missing or corrupt") from None
        if existing != json.loads(json.dumps(manifest)):
            raise DataError(f"cannot resume: {parts} belongs to a training run with other data, config or --init")
        return load(parts) if (parts / STATE_FILE).exists() else None
    clear(parts, TRAINING_FILES)
    with writing(parts):
        parts.mkdir()
        manifest_file.write_text(json.dumps(manifest, indent=1))
    return None


def clear(parts: Path, ours: str, refuse_foreign: bool = True) -> None:
    """Remove a checkpoint folder of cfsx's: the files in it whose names match ``ours`` (a regular expression), then
    the folder. A folder that is a symbolic link, or that holds anything cfsx did not write, is refused in one line
    (nothing removed); with ``refuse_foreign`` False (a finished run tidying up) such things are left where they are."""
    if not parts.exists() and not parts.is_symlink():
        return
    if parts.is_symlink() or not parts.is_dir():
        if not refuse_foreign:
            return
        raise OutputError(f"{parts} is not a checkpoint folder cfsx made (a symbolic link or a file): move it away")
    entries = list(parts.iterdir())
    foreign = sorted(e.name for e in entries if e.is_symlink() or not e.is_file() or not re.fullmatch(ours, e.name))
    if foreign and refuse_foreign:
        raise OutputError(f"{parts} holds what cfsx did not write ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}): move it away, or pass --resume")  # fmt: skip
    for entry in entries:
        if entry.name not in foreign:
            entry.unlink()
    if not foreign:
        parts.rmdir()


def save(parts: Path, state: TrainingState) -> None:
    """Replace the checkpoint with ``state`` in one rename: a kill leaves the old or the new one, whole."""
    arrays = {f"weights_{i}": value for i, value in enumerate(state.weights)}
    arrays |= {f"optimizer_{i}": value for i, value in enumerate(state.optimizer)}
    arrays |= {f"best_{i}": value for i, value in enumerate(state.best_weights or [])}
    scalars = {
        field.name: getattr(state, field.name)
        for field in dataclasses.fields(state)
        if field.name not in ("weights", "optimizer", "best_weights")
    }
    counts = {"weights": len(state.weights), "optimizer": len(state.optimizer), "best": len(state.best_weights or [])}
    arrays["state_json"] = np.array(json.dumps({**scalars, "counts": counts}))
    path = parts / STATE_FILE
    temporary = parts / ("partial-" + STATE_FILE)
    try:
        with writing(path):
            np.savez(temporary, **arrays)
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load(parts: Path) -> TrainingState:
    """The training state of the last completed epoch saved in ``parts``."""
    path = parts / STATE_FILE
    try:
        with np.load(path, allow_pickle=False) as data:
            scalars = json.loads(str(data["state_json"]))
            counts = scalars.pop("counts")
            weights = [data[f"weights_{i}"] for i in range(counts["weights"])]
            optimizer = [data[f"optimizer_{i}"] for i in range(counts["optimizer"])]
            best = [data[f"best_{i}"] for i in range(counts["best"])] or None
        state = TrainingState(weights=weights, optimizer=optimizer, best_weights=best, **scalars)
    except Exception as error:  # noqa: BLE001  (NumPy, zipfile and json each raise their own for a damaged file)
        raise DataError(f"cannot resume: {path} is unreadable ({_reason(error)})") from None
    problem = _state_problem(state)
    if problem:
        raise DataError(f"cannot resume: {path} {problem}")
    return state


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


def _state_problem(state: TrainingState) -> str | None:
    """What is wrong with a checkpoint that reads (a counter out of range, an array that is not finite numbers)."""
    for name, value, least in (("epoch", state.epoch, 0), ("best_epoch", state.best_epoch, -1)):  # -1: none yet
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            return f"holds {name} = {value!r}, not a count of epochs"
    if state.best_epoch > state.epoch or len(state.history) != state.epoch:
        return f"is inconsistent: epoch {state.epoch}, best epoch {state.best_epoch}, {len(state.history)} in history"
    if not isinstance(state.seconds, int | float) or not np.isfinite(state.seconds) or state.seconds < 0:
        return f"holds seconds = {state.seconds!r}"
    arrays = [*state.weights, *state.optimizer, *(state.best_weights or [])]
    if any(array.dtype.kind not in "biuf" or not np.isfinite(array).all() for array in arrays):
        return "holds weights that are not finite numbers"
    return None
