"""What runs beside the fit: the distribution strategy, the per-epoch monitor and progress, the learning-rate
plateau and the checkpoints that make ``train --resume`` continue bit for bit."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import ClusterError
from cfsx.io import checkpoint
from cfsx.learning._tensorflow import keras, tf

log = logging.getLogger(__name__)


def distribution_strategy(name: str):
    """The tf.distribute strategy: none (the default device), mirrored (the devices of this machine)
    or multiworker (the workers described by the TF_CONFIG environment variable)."""
    try:
        if name == "mirrored":
            return tf.distribute.MirroredStrategy()
        if name == "multiworker":
            spec = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec().as_dict()
            if sum(len(tasks) for kind, tasks in spec.items() if kind in ("chief", "worker")) > 1:
                # Keras 3's fit() fails on the PerReplica inputs of several workers
                # (keras-team/keras#20585, tensorflow/tensorflow#72388): refuse clearly instead.
                raise ClusterError(
                    "Keras 3 cannot yet train with MultiWorkerMirroredStrategy across several workers "
                    "(keras-team/keras#20585); use --strategy mirrored on one node with several devices"
                )
            return tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise ClusterError(f"cannot set up the {name} strategy: {error}") from None
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


@dataclass
class EpochReport:
    """One finished epoch, as the progress callback sees it."""

    epoch: int
    epochs: int
    logs: dict[str, float]
    images_per_second: float
    best: bool


class Monitor:
    """Keras callback: keeps the best weights, stops early, reports each epoch."""

    def __init__(self, n_train: int, patience: int, on_epoch: Callable[[EpochReport], None] | None, epochs: int):
        monitor = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                monitor.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                monitor.epoch_end(self.model, epoch, logs or {})

        self.callback = Callback()
        self.n_train, self.patience, self.on_epoch, self.epochs = n_train, patience, on_epoch, epochs
        self.best_loss = np.inf
        self.best_epoch = -1
        self.best_weights = None
        self.started = time.perf_counter()
        self.history: list[dict[str, float]] = []
        self.stopped = False

    def restore(self, state: checkpoint.TrainingState) -> None:
        self.best_loss, self.best_epoch, self.best_weights = state.best_loss, state.best_epoch, state.best_weights
        self.history, self.stopped = list(state.history), state.stopped

    def epoch_end(self, model, epoch: int, logs: dict[str, Any]) -> None:
        seconds = time.perf_counter() - self.started
        row = {"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()}, "seconds": seconds}
        row["learning_rate"] = float(np.asarray(model.optimizer.learning_rate))  # the rate this epoch ran at
        self.history.append(row)
        best = bool(logs["val_loss"] < self.best_loss)
        if best:
            self.best_loss, self.best_epoch = float(logs["val_loss"]), epoch + 1
            self.best_weights = model.get_weights()
        if self.on_epoch:
            self.on_epoch(EpochReport(epoch + 1, self.epochs, row, self.n_train / max(seconds, 1e-9), best))
        if self.patience and epoch + 1 - self.best_epoch >= self.patience:
            model.stop_training = self.stopped = True


class PlateauReducer(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters survive a resume (Keras resets them when training begins)."""

    def __init__(self, restored: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restored = restored

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.restored:
            self.wait, self.best, self.cooldown_counter = (self.restored[k] for k in ("wait", "best", "cooldown"))

    def counters(self) -> dict[str, float]:
        return {"wait": int(self.wait), "best": float(self.best), "cooldown": int(self.cooldown_counter)}


class Checkpointer(keras.callbacks.Callback):
    """Writes MODEL.parts/state.npz after every epoch (the last callback: it sees every counter updated)."""

    def __init__(self, parts: Path, monitor: Monitor, reducer: PlateauReducer | None, seconds: float) -> None:
        super().__init__()
        self.parts, self.monitor, self.reducer, self.seconds = parts, monitor, reducer, seconds
        self.run_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        monitor = self.monitor
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{key} {value:.4g}" for key, value in (logs or {}).items()))
        checkpoint.save(
            self.parts,
            checkpoint.TrainingState(
                epoch=epoch + 1,
                weights=self.model.get_weights(),
                optimizer=[np.asarray(variable.numpy()) for variable in self.model.optimizer.variables],
                best_weights=monitor.best_weights,
                best_loss=monitor.best_loss,
                best_epoch=monitor.best_epoch,
                history=monitor.history,
                plateau=self.reducer.counters() if self.reducer else {},
                stopped=monitor.stopped,
                seconds=self.seconds + time.perf_counter() - self.run_started,
            ),
        )


def history_csv(history: list[dict[str, float]]) -> str:
    """The per-epoch history as CSV text, one row per epoch."""
    buffer = io.StringIO()
    if history:
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return buffer.getvalue()
