"""``cfsx train``: fit a CNN to the image -> encoding pairs of a dataset.

The split into training, validation and hold-out samples is a seeded permutation, recorded in
the model, so ``cfsx evaluate`` scores exactly the samples that training never saw. Batches are
read from the .h5 file as they are needed (in memory when the images fit the configured limit),
through tf.data, so the dataset's size is bounded by the disk, not by memory. The weights of
the epoch with the lowest validation loss are kept.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, checkpoint, models, plots
from ._tensorflow import keras, tf
from .config import SimulationConfig, TrainingConfig, config_from_yaml_text
from .dataset import open_dataset, write_dataset
from .encoding import cfs_vectors, sub_encoding, transpose_permutation, vector_labels
from .errors import ClusterError, DataError, Terminated
from .metrics import regression_metrics
from .model_card import ModelCard, read_model_card
from .outputs import atomic_path, claim_outputs

log = logging.getLogger(__name__)

MIN_SAMPLES_PER_PART = 1  # every part of the split (train, validation, hold-out) needs at least this many


@dataclass(frozen=True)
class DataSummary:
    """What a model needs to know about a dataset: shapes, encoding, provenance."""

    path: Path
    samples: int
    image_size: int
    cfs: int
    n_components: int
    h_max: float
    lot_size: int
    config_text: str
    fingerprint: str
    parts: tuple[tuple[Path, int, str], ...] = ()  # (path, samples, fingerprint) of each file of the data
    columns: tuple[int, ...] | None = None  # the label columns of a sub-encoding (model.cfs below the data's)


def data_fingerprint(file) -> str:
    """A short hash of a dataset's seeds and config: the same data gives the same fingerprint."""
    digest = hashlib.sha256(str(file.attrs.get("config", "")).encode())
    if "seeds" in file:
        digest.update(np.ascontiguousarray(file["seeds"][:]).tobytes())
    digest.update(repr(file["images"].shape).encode())
    return digest.hexdigest()[:16]


def summarise_data(path: str | Path, cfs: int | None = None) -> DataSummary:
    """Check that a dataset can be used to train or evaluate, and describe it; with ``cfs`` (below the
    data's), as a dataset of that sub-encoding."""
    path, cfs_wanted = Path(path), cfs
    with open_dataset(path) as file:
        images = file["images"]
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{path}: /images must be (samples, M, M), got {images.shape}")
        if "encodings/achieved" not in file:
            raise DataError(f"{path} has no /encodings/achieved (the training labels)")
        labels = file["encodings/achieved"]
        if labels.shape[0] != images.shape[0]:
            raise DataError(f"{path}: {images.shape[0]} images but {labels.shape[0]} encodings")
        config = config_from_yaml_text(str(file.attrs["config"]))
        cfs = int(file.attrs["cfs"])
        if labels.ndim != 2 or labels.shape[1] != cfs * cfs - 1:
            raise DataError(f"{path}: encodings of shape {labels.shape} do not match CFS{cfs}")
        if config.diffraction.image_size != images.shape[1]:
            raise DataError(
                f"{path}: images are {images.shape[1]} wide but its config says {config.diffraction.image_size}"
            )
        columns = None if cfs_wanted in (None, cfs) else tuple(int(c) for c in sub_encoding(cfs, cfs_wanted))
        return DataSummary(
            path=path,
            samples=int(images.shape[0]),
            image_size=int(images.shape[1]),
            cfs=cfs if columns is None else cfs_wanted,
            n_components=int(labels.shape[1]) if columns is None else len(columns),
            columns=columns,
            h_max=float(config.diffraction.h_max),
            lot_size=int(config.diffraction.lot_size),
            config_text=str(file.attrs["config"]),
            fingerprint=data_fingerprint(file),
            parts=((path, int(images.shape[0]), data_fingerprint(file)),),
        )


def summarise_datasets(paths: list[str | Path], cfs: int | None = None) -> DataSummary:
    """One summary of several datasets trained on together (for example simulated data and a store).

    They must share the encoding and the image grid; the first file's simulation config stands for all.
    """
    if not paths:
        raise DataError("no training data given")
    summaries = [summarise_data(path, cfs) for path in paths]
    first = summaries[0]
    for other in summaries[1:]:
        if (other.cfs, other.image_size, other.columns) != (
            first.cfs,
            first.image_size,
            first.columns,
        ) or not np.isclose(other.h_max, first.h_max):
            raise DataError(
                f"{other.path} (CFS{other.cfs}, {other.image_size}-point images, h_max {other.h_max}) cannot be "
                f"trained on with {first.path} (CFS{first.cfs}, {first.image_size}-point images, h_max {first.h_max})"
            )
    if len(summaries) == 1:
        return first
    combined = hashlib.sha256("".join(s.fingerprint for s in summaries).encode()).hexdigest()[:16]
    return dataclasses.replace(
        first,
        samples=sum(s.samples for s in summaries),
        fingerprint=combined,
        parts=tuple(part for s in summaries for part in s.parts),
    )


@dataclass(frozen=True)
class Split:
    """Sample indices of the training, validation and hold-out parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_indices(samples: int, validation_split: float, test_split: float, seed: int) -> Split:
    """A seeded random split into sorted index arrays (train, validation, hold-out)."""
    n_test = int(round(samples * test_split))
    n_validation = int(round(samples * validation_split))
    n_train = samples - n_test - n_validation
    if min(n_test, n_validation, n_train) < MIN_SAMPLES_PER_PART:
        raise DataError(
            f"{samples} samples are too few for a validation split of {validation_split} and a hold-out "
            f"of {test_split}: every part needs at least {MIN_SAMPLES_PER_PART} sample"
        )
    order = np.random.default_rng(seed).permutation(samples)
    return Split(
        train=np.sort(order[n_test + n_validation :]),
        validation=np.sort(order[n_test : n_test + n_validation]),
        test=np.sort(order[:n_test]),
    )


def split_by_seed(seeds: np.ndarray, validation_split: float, test_split: float, seed: int) -> Split:
    """split_indices over the distinct sample seeds: the copies of one sample (a clean image and its
    corrupted copy) fall in the same part, so the hold-out never holds a copy of a training sample.
    Without copies it is split_indices itself."""
    distinct, group = np.unique(seeds, axis=0, return_inverse=True)
    group = group.ravel()
    if len(distinct) == len(seeds):
        return split_indices(len(seeds), validation_split, test_split, seed)
    parts = split_indices(len(distinct), validation_split, test_split, seed)
    return Split(*(np.flatnonzero(np.isin(group, chosen)) for chosen in (parts.train, parts.validation, parts.test)))


def dataset_seeds(summary: DataSummary) -> np.ndarray:
    """A key per sample of every file of ``summary``: (seed, 0), or (index, file number + 1) in a file without
    seeds (a knowledge store), so only samples made from the same seed share a key."""
    keys = []
    for number, (path, samples, _) in enumerate(summary.parts):
        with open_dataset(path) as file:
            if "seeds" in file:
                keys.append(np.stack([file["seeds"][()].astype(np.uint64), np.zeros(samples, np.uint64)], axis=1))
            else:
                keys.append(np.stack([np.arange(samples, dtype=np.uint64), np.full(samples, number + 1, np.uint64)], 1))
    return np.concatenate(keys)


class SampleReader:
    """Images and labels by index, from memory when they fit the limit, else from the open file."""

    def __init__(self, file, memory_limit_mb: int, columns: tuple[int, ...] | None = None) -> None:
        self._images = file["images"]
        self._labels = file["encodings/achieved"]
        self.columns = None if columns is None else list(columns)
        self.failure: DataError | None = None  # an error raised inside TensorFlow's input pipeline
        if self._images.size * 4 <= memory_limit_mb * 2**20:
            self._images = self._images[:]
            self._labels = self._labels[:] if self.columns is None else self._labels[:][:, self.columns]
            self.columns = None
            self._check(self._images, self._labels, np.arange(len(self._images)))

    def _check(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        bad = ~(np.isfinite(images).all(axis=(1, 2)) & np.isfinite(labels).all(axis=1))
        if bad.any():
            self.failure = DataError(f"sample {int(indices[bad.argmax()])} of the dataset contains NaN or inf values")
            raise self.failure

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Samples at sorted ``indices`` as float32 arrays."""
        images = np.asarray(self._images[indices], dtype=np.float32)
        labels = np.asarray(self._labels[indices], dtype=np.float32)
        if self.columns is not None:
            labels = labels[:, self.columns]
        self._check(images, labels, np.asarray(indices))
        return images, labels


class ConcatenatedReader:
    """Several SampleReaders read as one: global index i is sample i - offset of the file that holds it."""

    def __init__(self, readers: list[SampleReader], sizes: list[int]) -> None:
        self.readers = readers
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])

    @property
    def failure(self) -> DataError | None:
        return next((reader.failure for reader in self.readers if reader.failure), None)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices = np.asarray(indices)
        parts = [
            reader.read(indices[(indices >= start) & (indices < stop)] - start)
            for reader, start, stop in zip(self.readers, self.offsets[:-1], self.offsets[1:], strict=True)
            if ((indices >= start) & (indices < stop)).any()  # HDF5 refuses an empty selection
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@contextlib.contextmanager
def open_reader(summary: DataSummary, memory_limit_mb: int) -> Iterator[SampleReader | ConcatenatedReader]:
    """A reader over every file of ``summary``, the memory limit shared between them."""
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_dataset(path)) for path, _, _ in summary.parts]
        share = memory_limit_mb // len(files)
        readers = [SampleReader(file, share, summary.columns) for file in files]
        yield readers[0] if len(readers) == 1 else ConcatenatedReader(readers, [n for _, n, _ in summary.parts])


def _batches(
    reader: SampleReader | ConcatenatedReader,
    indices: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    transpose: np.ndarray | None = None,
    first_pass: int = 0,
):
    """A re-iterable source of batches; shuffled anew (and reproducibly) on every pass when seeded.

    With ``transpose`` (a label permutation, see encoding.transpose_permutation) each sample is
    transposed with probability 1/2, its labels permuted to match. Pass p (epoch p, from 0) draws
    from the seed (shuffle_seed, p), so a run resumed at epoch ``first_pass`` continues the same sequence.
    """
    passes = iter(range(first_pass, 2**62))

    def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = indices
        rng = None
        if shuffle_seed is not None:
            rng = np.random.default_rng([shuffle_seed, next(passes)])
            order = rng.permutation(indices)
        for start in range(0, len(order), batch_size):
            images, labels = reader.read(np.sort(order[start : start + batch_size]))
            if transpose is not None and rng is not None:
                flip = rng.random(len(images)) < 0.5
                images[flip] = images[flip].transpose(0, 2, 1)
                labels[flip] = labels[flip][:, transpose]
            yield images, labels

    return generate


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


def _tf_dataset(generate: Callable, n_batches: int, image_size: int, n_components: int):
    signature = (
        tf.TensorSpec((None, image_size, image_size), tf.float32),
        tf.TensorSpec((None, n_components), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    options = tf.data.Options()
    # A generator cannot be split by files: each worker of a multi-worker run keeps its share of the batches.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
    return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)


def predict_indices(model, reader: SampleReader | ConcatenatedReader, indices: np.ndarray, batch_size: int = 256):
    """(labels, predictions) for the samples at ``indices``."""
    truths, predictions = [], []
    for start in range(0, len(indices), batch_size):
        images, labels = reader.read(indices[start : start + batch_size])
        truths.append(labels)
        predictions.append(np.asarray(model.predict_on_batch(images)))
    return np.concatenate(truths), np.concatenate(predictions)


@dataclass
class EpochReport:
    """One finished epoch, as the progress callback sees it."""

    epoch: int
    epochs: int
    logs: dict[str, float]
    images_per_second: float
    best: bool


class _Monitor:
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


class _PlateauReducer(keras.callbacks.ReduceLROnPlateau):
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


class _Checkpointer(keras.callbacks.Callback):
    """Writes MODEL.parts/state.npz after every epoch (the last callback: it sees every counter updated)."""

    def __init__(self, parts: Path, monitor: _Monitor, reducer: _PlateauReducer | None, seconds: float) -> None:
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


@dataclass(frozen=True)
class TrainingResult:
    """What ``train`` wrote: the model, its history (CSV) and loss curves, and the metadata saved in it."""

    model_path: Path
    history_path: Path
    curve_path: Path
    metadata: dict[str, Any]
    terminated: bool = False  # stopped by SIGTERM (a batch system's time limit): resumable

    @property
    def card(self) -> ModelCard:
        """The written model's card (what ``load_model`` reads back)."""
        return ModelCard.from_metadata(self.metadata, self.model_path)

    @property
    def interrupted(self) -> bool:
        """Stopped before the last epoch (Ctrl-C or SIGTERM): the best weights so far were saved."""
        return bool(self.metadata["training"]["interrupted"])

    def summary(self) -> str:
        """What ``cfsx train`` prints: how the run ended, the best epoch and the hold-out scores, the side files."""
        training, test = self.metadata["training"], self.metadata["metrics"]["test"]
        lines = []
        if self.interrupted:
            lines.append(
                f"{'terminated (SIGTERM)' if self.terminated else 'interrupted'} after epoch {training['epochs_run']}: "
                "best weights so far kept; the same command with --resume continues the run"
            )
        elif training["resumed_at_epoch"]:
            lines.append(f"resumed after epoch {training['resumed_at_epoch']} from its checkpoint")
        lines.append(
            f"wrote {self.model_path} (best epoch {training['best_epoch']} of {training['epochs_run']}, "
            f"{training['seconds']:.0f} s); hold-out of {test['samples']}: R2 {test['r2']:.4f}, "
            f"MSE {test['mse']:.2e}, MAE {test['mae']:.2e}"
        )
        lines.append(f"history: {self.history_path}, loss curves: {self.curve_path}")
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """What ``cfsx train --json`` prints: the files and the metadata without the split's indices."""
        metadata = {key: value for key, value in self.metadata.items() if key != "split"}
        return {"model": str(self.model_path), "history": str(self.history_path), "curves": str(self.curve_path),
                "metadata": metadata}  # fmt: skip


@dataclass(frozen=True)
class TrainingArrays:
    """Training data as arrays (for example from a notebook): ``train`` writes them beside the model as
    MODEL-data.h5, a cfsx dataset, so that the model's metadata names data that ``evaluate`` can read again.

    ``vectors`` must be the lattice vectors of a CFS (cfsx.encoding.cfs_vectors), in that order: the engine
    decodes the model's encodings with them. ``simulation`` (default: the built-in defaults on the images'
    grid) is what the model decodes with; its encoding and grid are set from the arrays.
    """

    images: np.ndarray  # (S, M, M)
    labels: np.ndarray  # (S, D) each image's encoding
    vectors: np.ndarray  # (D, 2)
    h_max: float  # the images span h, k in [-h_max, h_max)
    lot_size: int  # the lots the images were averaged over
    simulation: SimulationConfig | None = None

    def write(self, path: Path) -> None:
        """Check the arrays and write them as a cfsx dataset of kind "arrays" (seeds: a hash of each sample)."""
        from .config import load_config

        images = np.asarray(self.images, dtype=np.float32)
        labels = np.asarray(self.labels, dtype=np.float32)
        vectors = np.asarray(self.vectors).reshape(-1, 2)
        cfs = int(round(np.sqrt(len(vectors) + 1)))
        if len(vectors) < 3 or not np.array_equal(vectors, cfs_vectors(cfs)):
            raise DataError("vectors must be the lattice vectors of a CFS in cfsx's order (cfsx.encoding.cfs_vectors)")
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"images must be (samples, M, M), got {images.shape}")
        if labels.shape != (len(images), len(vectors)):
            raise DataError(f"labels must be (samples, {len(vectors)}) for {len(images)} images, got {labels.shape}")
        base = self.simulation or load_config(None)
        diffraction = dataclasses.replace(base.diffraction, image_size=images.shape[1], h_max=float(self.h_max),
                                          lot_size=int(self.lot_size))  # fmt: skip
        simulation = dataclasses.replace(base, encoding=dataclasses.replace(base.encoding, cfs=cfs),
                                         diffraction=diffraction)  # fmt: skip
        simulation = config_from_yaml_text(simulation.to_yaml())  # checked like any config file
        seeds = np.array([int.from_bytes(hashlib.sha256(image.tobytes() + label.tobytes()).digest()[:8], "little")
                          for image, label in zip(images, labels, strict=True)], dtype=np.uint64)  # fmt: skip
        batch = {"seeds": seeds, "images": images, "encodings/achieved": labels}
        write_dataset(path, attrs={"config": simulation.to_yaml(), "cfs": cfs, "vectors": vectors, "kind": "arrays"},
                      n_samples=len(images), shapes={name: value.shape[1:] for name, value in batch.items()},
                      batches=[batch])  # fmt: skip


def data_file_of(output: Path) -> Path:
    """Where ``train`` writes training arrays given to it: MODEL-data.h5 beside MODEL.keras."""
    stem = output.with_suffix("")
    return stem.with_name(stem.name + "-data.h5")


def side_paths(model_path: Path) -> tuple[Path, Path]:
    """Where the history CSV and the loss-curve PNG of a model go."""
    stem = model_path.with_suffix("")
    return stem.with_name(stem.name + "-history.csv"), stem.with_name(stem.name + "-loss.png")


def train(
    data_paths: str | Path | list[str | Path] | TrainingArrays,
    output: str | Path,
    config: TrainingConfig,
    on_epoch: Callable[[EpochReport], None] | None = None,
    init: str | Path | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Train the configured architecture on one or more datasets and save the model with its metadata.

    With ``init`` (a saved model) training starts from that model's weights and architecture:
    fine-tuning, for example on simulated data plus a knowledge store of interpreted images.
    Every epoch is checkpointed in MODEL.parts/ (removed when training completes); with ``resume``
    a killed or interrupted run continues from its last completed epoch and ends with the weights
    an uninterrupted run gives (without checkpoints it starts afresh). ``data_paths`` may also be
    ``TrainingArrays``: they are written to MODEL-data.h5 and trained on from there.
    """
    output = Path(output)
    if output.suffix != ".keras":
        raise DataError(f"the model file must end in .keras: {output}")
    arrays = data_paths if isinstance(data_paths, TrainingArrays) else None
    paths = [data_file_of(output)] if arrays else data_paths if isinstance(data_paths, list) else [data_paths]
    written = [data_file_of(output)] if arrays else []
    with claim_outputs(files=[output, *side_paths(output), *written], directories=[checkpoint.parts_dir(output)],
                       inputs=[*paths, init] if not arrays else [init]):  # fmt: skip
        if arrays is not None and not (resume and paths[0].exists()):
            arrays.write(paths[0])
        return _train(paths, output, config, on_epoch, init, resume)


def _train(
    data_paths: list[str | Path],
    output: Path,
    config: TrainingConfig,
    on_epoch: Callable[[EpochReport], None] | None,
    init: str | Path | None,
    resume: bool,
) -> TrainingResult:
    summary = summarise_datasets(data_paths, config.model.cfs)
    initial = _check_init(init, summary) if init is not None else None
    if initial is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, architecture=initial.architecture))
    fit = config.fit
    learning_rate = fit.learning_rate if init is None else fit.fine_tune_learning_rate
    split = split_by_seed(dataset_seeds(summary), fit.validation_split, fit.test_split, fit.seed)

    keras.utils.set_random_seed(fit.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = distribution_strategy(fit.strategy)
    with strategy.scope():
        if init is None:
            model = models.build_model(config.model.architecture, summary.image_size, summary.n_components,
                                       cfs_vectors(summary.cfs).tolist(), summary.h_max)  # fmt: skip
        else:
            model = models.load_model(init)[0]
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="mse",
            metrics=["mae", keras.metrics.R2Score(name="r2")],
        )
    chief = is_chief(strategy)
    parts = checkpoint.parts_dir(output)
    manifest = {"config": config.to_dict(), "data": [fingerprint for _, _, fingerprint in summary.parts],
                "init": None if init is None else str(init)}  # fmt: skip
    state = checkpoint.prepare(parts, manifest, resume) if chief else None
    if state is not None:
        model.set_weights(state.weights)
        model.optimizer.build(model.trainable_variables)
        for variable, value in zip(model.optimizer.variables, state.optimizer, strict=True):
            variable.assign(value)
    transpose = transpose_permutation(cfs_vectors(summary.cfs)) if fit.augment else None
    monitor = _Monitor(len(split.train), fit.patience, on_epoch, fit.epochs)
    reducer = None
    if state is not None:
        monitor.restore(state)
    if fit.reduce_lr_patience:
        reducer = _PlateauReducer(
            state.plateau if state else None,
            factor=0.5,
            patience=fit.reduce_lr_patience,
            min_lr=learning_rate / 64,
        )
    first_epoch = state.epoch if state else 0
    log.info("%s: %d training, %d validation, %d hold-out samples; %s from epoch %d of %d",
             output, len(split.train), len(split.validation), len(split.test), config.model.architecture,
             first_epoch + 1, fit.epochs)  # fmt: skip
    callbacks = [monitor.callback, *([reducer] if reducer else [])]
    if chief:
        callbacks.append(_Checkpointer(parts, monitor, reducer, state.seconds if state else 0.0))
    started = time.perf_counter() - (state.seconds if state else 0.0)
    interrupted = terminated = False
    with open_reader(summary, fit.memory_limit_mb) as reader:
        shapes = (summary.image_size, summary.n_components)
        train_data = _tf_dataset(
            _batches(reader, split.train, fit.batch_size, fit.seed, transpose, first_pass=first_epoch),
            -(-len(split.train) // fit.batch_size),
            *shapes,
        )
        validation_data = _tf_dataset(
            _batches(reader, split.validation, 256), -(-len(split.validation) // 256), *shapes
        )
        try:
            if not monitor.stopped:
                model.fit(
                    train_data,
                    validation_data=validation_data,
                    epochs=fit.epochs,
                    initial_epoch=first_epoch,
                    verbose=0,
                    shuffle=False,
                    callbacks=callbacks,
                )
        except tf.errors.OpError as error:  # an exception in the input pipeline arrives wrapped
            raise reader.failure or DataError(f"training failed: {error.message.splitlines()[0]}") from None
        except KeyboardInterrupt as stop:
            # Ctrl-C or SIGTERM: keep what was learned. With at least one finished epoch the best weights
            # so far are saved (the metadata says "interrupted") and MODEL.parts/ stays for --resume.
            if monitor.best_weights is None:
                raise
            interrupted = True
            terminated = isinstance(stop, Terminated)
        model.set_weights(monitor.best_weights)
        labels = vector_labels(cfs_vectors(summary.cfs))
        scores = {
            name: regression_metrics(*predict_indices(model, reader, indices), labels)
            for name, indices in (("validation", split.validation), ("test", split.test))
        }
    seconds = time.perf_counter() - started
    metadata = {
        "cfsx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cfs": summary.cfs,
        "vectors": cfs_vectors(summary.cfs).tolist(),
        "labels": labels,
        "image_size": summary.image_size,
        "h_max": summary.h_max,
        "lot_size": summary.lot_size,
        "simulation_config": decode_config_text(config.model.decode_config, summary),
        "training": {
            "config": config.to_dict(),
            "data": ", ".join(str(path) for path, _, _ in summary.parts),
            "data_fingerprint": summary.fingerprint,
            "data_files": [
                {"path": str(path), "samples": samples, "fingerprint": fingerprint}
                for path, samples, fingerprint in summary.parts
            ],
            "initialised_from": None if init is None else str(init),
            "samples": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
            "strategy": fit.strategy,
            "replicas": strategy.num_replicas_in_sync,
            "epochs_run": len(monitor.history),
            "interrupted": interrupted,
            "resumed_at_epoch": first_epoch or None,
            "best_epoch": monitor.best_epoch,
            "seconds": seconds,
            "history": monitor.history,
        },
        "split": {"validation": split.validation.tolist(), "test": split.test.tolist()},
        "metrics": scores,
    }
    history_path, curve_path = side_paths(output)
    if not chief:
        # Every worker of a multi-worker run must save (saving can involve collective operations);
        # only the chief's file is kept.
        with tempfile.TemporaryDirectory() as folder:
            models.save_model(model, metadata, Path(folder) / output.name)
        return TrainingResult(output, history_path, curve_path, metadata, terminated)
    models.save_model(model, metadata, output)
    with atomic_path(history_path) as temporary:
        temporary.write_text(history_csv(monitor.history))
    plots.save(plots.loss_curves(monitor.history, title=f"{config.model.architecture} on CFS{summary.cfs}"), curve_path)
    if not interrupted:
        shutil.rmtree(parts, ignore_errors=True)
    return TrainingResult(output, history_path, curve_path, metadata, terminated)


def decode_config_text(name: str | None, summary: DataSummary) -> str:
    """The simulation config a model records for decoding: ``model.decode_config`` (a name or path) or the
    first data file's, with the model's encoding."""
    if name is None and summary.columns is None:
        return summary.config_text
    from .config import load_config

    simulation = load_config(name) if name is not None else config_from_yaml_text(summary.config_text)
    return dataclasses.replace(simulation, encoding=dataclasses.replace(simulation.encoding, cfs=summary.cfs)).to_yaml()


def _check_init(init: str | Path, summary: DataSummary) -> ModelCard:
    """The card of the model to start from, refused when it does not fit the data."""
    card = read_model_card(init)
    if card.cfs != summary.cfs or card.image_size != summary.image_size:
        raise DataError(
            f"{init} maps {card.image_size}-point images to CFS{card.cfs} encodings; the data has "
            f"{summary.image_size}-point images with CFS{summary.cfs} labels"
        )
    if not np.isclose(card.h_max, summary.h_max):
        raise DataError(f"{init} was trained with h_max {card.h_max}, the data has h_max {summary.h_max}")
    return card
