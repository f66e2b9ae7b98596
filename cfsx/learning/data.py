"""Training data: what a dataset holds (``DataSummary``), its split into training, validation and hold-out parts by
sample seed, and readers that stream batches within a memory limit (``evaluate`` reads through them too)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cfsx.config import config_from_yaml_text
from cfsx.errors import DataError
from cfsx.io.dataset import open_dataset
from cfsx.learning._tensorflow import tf
from cfsx.physics.encoding import sub_encoding

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
    if file.has("seeds"):
        digest.update(np.ascontiguousarray(file.array("seeds")[:]).tobytes())
    digest.update(repr(file.images.shape).encode())
    return digest.hexdigest()[:16]


def summarise_data(path: str | Path, cfs: int | None = None) -> DataSummary:
    """Check that a dataset can be used to train or evaluate, and describe it; with ``cfs`` (below the
    data's), as a dataset of that sub-encoding."""
    path, cfs_wanted = Path(path), cfs
    with open_dataset(path) as file:
        images, labels = file.images, file.labels
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise DataError(f"{path}: /images must be (samples, M, M), got {images.shape}")
        if labels is None:
            raise DataError(f"{path} has no /encodings/achieved (the training labels)")
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
            if file.has("seeds"):
                keys.append(np.stack([file.array("seeds")[()].astype(np.uint64), np.zeros(samples, np.uint64)], 1))
            else:
                keys.append(np.stack([np.arange(samples, dtype=np.uint64), np.full(samples, number + 1, np.uint64)], 1))
    return np.concatenate(keys)


class SampleReader:
    """Images and labels by index, from memory when they fit the limit, else from the open file."""

    def __init__(self, file, memory_limit_mb: int, columns: tuple[int, ...] | None = None) -> None:
        self._images = file.images
        self._labels = file.labels
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


def sample_batches(
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


def tf_dataset(generate: Callable, n_batches: int, image_size: int, n_components: int):
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
