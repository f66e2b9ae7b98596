"""The cfsx dataset file (.h5), format version 2 (docs/format.md); version 1 files are read as before.

Writing always goes to a temporary name in the target directory and is renamed when
complete, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cfsx import __version__
from cfsx.errors import DataError
from cfsx.io.outputs import atomic_hdf5, check_free_space, claim_outputs, existing_input
from cfsx.io.samples import SAMPLE_DTYPES, SAMPLE_PATHS, Samples

FORMAT = "cfsx-dataset"
FORMAT_VERSION = 2  # 2: the NeXus entry (cfsx/nexus.py) beside the version 1 paths
READABLE_VERSIONS = (1, 2)

# The per-sample arrays by path, with the type each is stored as (cfsx.io.samples).
PATH_DTYPES = {SAMPLE_PATHS[name]: dtype for name, dtype in SAMPLE_DTYPES.items()}


def write_dataset(
    path: str | Path,
    *,
    attrs: dict[str, Any],
    n_samples: int,
    shapes: dict[str, tuple[int, ...]],
    batches: Iterable[Samples],
    compression: int = 4,
) -> None:
    """Write ``n_samples`` samples given as consecutive batches.

    ``shapes`` gives the per-sample shape of every array to store, by ``Samples`` field; others are skipped.
    """
    with atomic_hdf5(path) as file:
        file.attrs["format"] = FORMAT
        file.attrs["format_version"] = FORMAT_VERSION
        file.attrs["cfsx_version"] = __version__
        file.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key, value in attrs.items():
            file.attrs[key] = value
        datasets = {}
        for name, shape in shapes.items():
            options: dict[str, Any] = {"chunks": (1, *shape) if shape else (min(n_samples, 4096),)}
            if compression:
                options.update(compression="gzip", compression_opts=compression, shuffle=True)
            datasets[name] = file.create_dataset(SAMPLE_PATHS[name], shape=(n_samples, *shape),
                                                 dtype=SAMPLE_DTYPES[name], **options)  # fmt: skip
        written = 0
        for batch in batches:
            count = len(batch)
            if written + count > n_samples:
                raise DataError("more samples than announced were given to write_dataset")
            arrays = batch.present()
            check_free_space(file.filename, sum(arrays[name].nbytes for name in datasets), name=path)
            for name, dataset in datasets.items():
                dataset[written : written + count] = arrays[name]
            written += count
        if written != n_samples:
            raise DataError(f"only {written} of {n_samples} samples were given to write_dataset")
        _add_view(file)


# Arrays with one entry per sample besides the Samples: corrected images and knowledge stores.
PER_SAMPLE_EXTRAS = ("masks", "provenance", "sources", "counts", "variance")


class DatasetFile:
    """An open cfsx dataset, read by name: the per-sample arrays by ``Samples`` field (``array``, ``images``,
    ``labels``), the extras of corrected files and stores, and the root attributes (``attrs``)."""

    def __init__(self, file: h5py.File, path: Path) -> None:
        self.h5, self.path, self.attrs = file, path, file.attrs

    def __len__(self) -> int:
        return int(self.h5["images"].shape[0])

    def has(self, name: str) -> bool:
        """Whether the file holds the array ``name`` (a Samples field or an extra)."""
        return SAMPLE_PATHS.get(name, name) in self.h5

    def array(self, name: str) -> h5py.Dataset | None:
        """The array ``name`` (a Samples field or one of PER_SAMPLE_EXTRAS), read lazily; None when absent."""
        if name not in SAMPLE_PATHS and name not in PER_SAMPLE_EXTRAS:
            raise KeyError(f"no per-sample array {name!r} in a cfsx dataset")
        return self.h5[SAMPLE_PATHS.get(name, name)] if self.has(name) else None

    @property
    def images(self) -> h5py.Dataset:
        return self.h5["images"]

    @property
    def labels(self) -> h5py.Dataset | None:
        """The training labels (the achieved correlations), None in a file without them."""
        return self.array("achieved")

    def texts(self, name: str, limit: int | None = None) -> list[str] | None:
        """A per-sample text array (``sources``, ``provenance``) as strings (the first ``limit``), None when
        absent."""
        array = self.array(name)
        return None if array is None else list(array.asstr()[:limit])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-sample shape of every Samples array the file holds."""
        return {name: tuple(self.h5[path].shape[1:]) for name, path in SAMPLE_PATHS.items() if path in self.h5}

    def read(self, start: int, stop: int, names: Iterable[str]) -> Samples:
        """Samples ``start``..``stop`` - 1 of the arrays ``names``."""
        return Samples(**{name: self.h5[SAMPLE_PATHS[name]][start:stop] for name in names})


@contextlib.contextmanager
def open_dataset(path: str | Path) -> Iterator[DatasetFile]:
    """Open a cfsx dataset for reading, with one clear error for anything that is not one."""
    path = existing_input(path)
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path} is not a readable HDF5 file (corrupt or of another format)") from None
    with file:
        try:
            check_dataset(file, path)
            yield DatasetFile(file, Path(path))
        except (OSError, RuntimeError) as error:
            if not _damaged(error):
                raise
            raise DataError(f"{path} is damaged: {_first_line(error)}") from None


def is_dataset(spec: str) -> bool:
    """Whether ``spec`` names a whole .h5 file that is a cfsx dataset (not a dataset inside a file, ``::``)."""
    path = Path(spec)
    if "::" in spec or path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as file:
            return file.attrs.get("format") == FORMAT
    except OSError:
        return False


def _add_view(file: h5py.File) -> None:
    """The NeXus entry of a dataset (cfsx/nexus.py), titled by its kind."""
    from cfsx.io.nexus import add_view, h_max_of

    kind = str(file.attrs.get("kind", "simulated"))
    config = file.attrs.get("config")
    add_view(file, signal="images", h_max=h_max_of(dict(file.attrs)), title=f"cfsx dataset ({kind})",
             config_text=None if config is None else str(config))  # fmt: skip


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _damaged(error: BaseException) -> bool:
    """Whether libhdf5 failed to read the file (corrupt data, a broken link), not to write an output."""
    if isinstance(error, OSError) and error.errno is not None:
        return False  # the operating system's: a full disk, a permission; reported as such
    text = str(error).lower()
    return "write" not in text and any(word in text for word in ("read", "link", "heap", "decod", "filter", "object"))


# Root attributes that hold integers where present (format version 1).
INTEGER_ATTRS = ("cfs", "seed", "samples_total", "shard_index", "shard_count", "sample_start", "sample_stop",
                 "image_size")  # fmt: skip


def check_dataset(file: h5py.File, path: str | Path) -> None:
    """Refuse a file that is not a well-formed cfsx dataset, naming what is wrong."""
    if file.attrs.get("format") != FORMAT:
        raise DataError(f"{path} is not a cfsx dataset (no format = {FORMAT!r} attribute)")
    try:
        version = int(file.attrs.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise DataError(f"{path} has dataset format version {version}; this cfsx reads versions {readable}")
    try:
        arrays = {name: file[name] for name in [*PATH_DTYPES, *PER_SAMPLE_EXTRAS] if name in file}
    except (KeyError, OSError, RuntimeError) as error:  # a dangling or looping link, a damaged object header
        raise DataError(f"{path} is damaged: {_first_line(error)}") from None
    if not isinstance(arrays.get("images"), h5py.Dataset):
        raise DataError(f"{path} has no /images array")
    images = arrays["images"]
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] < 2:
        raise DataError(f"{path}: /images must hold square images (samples, M, M), not {images.shape}")
    samples = images.shape[0]
    for name, array in arrays.items():
        if not isinstance(array, h5py.Dataset) or array.ndim < 1:
            raise DataError(f"{path}: /{name} is not an array with one entry per sample")
        if array.shape[0] != samples:
            raise DataError(f"{path} is inconsistent: {samples} images but {array.shape[0]} entries in /{name}")
        if name in PATH_DTYPES and array.dtype.kind not in "fiu":
            raise DataError(f"{path}: /{name} holds {array.dtype} values, not real numbers")
    if images.chunks is not None and images.chunks[0] == 1 and images.id.get_num_chunks() != samples:
        raise DataError(f"{path} is incomplete: {images.id.get_num_chunks()} of its {samples} images were written")
    for key in INTEGER_ATTRS:
        value = file.attrs.get(key)
        if value is not None and not (np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.integer)):
            raise DataError(f"{path}: its attribute {key} = {value!r} is not an integer")
    cfs = file.attrs.get("cfs")
    if cfs is not None and cfs < 2:
        raise DataError(f"{path}: its attribute cfs = {cfs!r} is not a CFS size (an integer >= 2)")
    if file.attrs.get("kind") == "corrected":
        h_max = file.attrs.get("h_max")
        if h_max is None or np.ndim(h_max) != 0 or not np.issubdtype(np.asarray(h_max).dtype, np.number):
            raise DataError(f"{path}: a file of cfsx correct needs its attribute h_max (a number), got {h_max!r}")
    if "encodings/achieved" in arrays and cfs is not None:
        components = int(cfs) ** 2 - 1
        labels = arrays["encodings/achieved"]
        if labels.ndim != 2 or labels.shape[1] != components:
            raise DataError(
                f"{path}: /encodings/achieved is {labels.shape}, CFS{int(cfs)} needs (samples, {components})"
            )


def merge_shards(paths: list[str | Path], output: str | Path, compression: int = 4) -> int:
    """Join the shard files of one run, in shard order, into the file a single run writes."""
    if not paths:
        raise DataError("no shard files given")
    with claim_outputs(files=[output], inputs=paths):
        return _merge_shards(paths, output, compression)


def _merge_shards(paths: list[str | Path], output: str | Path, compression: int) -> int:
    shards = []
    for path in paths:
        with open_dataset(path) as file:
            if "shard_index" not in file.attrs:
                raise DataError(f"{path} is not a shard (it has no shard_index attribute)")
            attrs = dict(file.attrs)
            shards.append((int(attrs["shard_index"]), Path(path), attrs))
    shards.sort(key=lambda item: item[0])
    first = shards[0][2]
    count = int(first["shard_count"])
    for index, path, attrs in shards:
        if attrs["config"] != first["config"]:
            raise DataError(f"{path} was made with a different config than {shards[0][1]}")
        if int(attrs["shard_count"]) != count:
            raise DataError(f"{path} is shard {index} of {attrs['shard_count']}, others are of {count}")
    indices = [index for index, _, _ in shards]
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        duplicated = sorted({i for i in indices if indices.count(i) > 1})
        detail = f"missing shards {missing}" if missing else f"duplicated shards {duplicated}"
        raise DataError(f"cannot merge: {detail} (of {count})")
    total = int(first["samples_total"])
    if sum(int(a["sample_stop"]) - int(a["sample_start"]) for _, _, a in shards) != total:
        raise DataError("the shards do not add up to the run's sample count")

    with open_dataset(shards[0][1]) as file:
        shapes = file.shapes()

    def batches() -> Iterator[Samples]:
        for _, path, _ in shards:
            with open_dataset(path) as file:
                for start in range(0, len(file), 256):
                    yield file.read(start, start + 256, shapes)

    keep = {k: v for k, v in first.items() if k not in SHARD_ATTRS and k not in BASE_ATTRS}
    write_dataset(output, attrs=keep, n_samples=total, shapes=shapes, batches=batches(), compression=compression)
    return total


SHARD_ATTRS = ("shard_index", "shard_count", "sample_start", "sample_stop")
BASE_ATTRS = ("format", "format_version", "cfsx_version", "created")


@dataclass
class CorrectedImages:
    """What a file of ``cfsx correct`` holds per image (docs/format.md "Corrected images"); cfsx.correction makes
    them from its Correction records."""

    images: np.ndarray  # (S, M, M) float32
    masks: np.ndarray  # (S, M, M) uint8 cell codes
    provenance: list[str]  # per image: its correction steps as JSON text
    sources: list[str]  # per image: the file (and dataset) it was read from
    counts: np.ndarray | None = None  # (S, M, M) measured pixels per cell
    variance: np.ndarray | None = None  # (S, M, M) each cell's noise variance
    windows: list[dict[str, Any] | None] | None = None  # per image: its calibrated window (NeXus axes)


def write_corrected(path: str | Path, corrected: CorrectedImages, attrs: dict[str, Any], config_text: str) -> None:
    """The dataset of kind "corrected" (root attributes ``attrs``: image_size, h_max, ...), atomically;
    ``read_corrected`` gives it back."""
    from cfsx.io.nexus import add_view, add_window_axes

    size, h_max = corrected.images.shape[-1], float(attrs["h_max"])
    with atomic_hdf5(path, size=corrected.images.nbytes + corrected.masks.nbytes) as file:
        file.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, kind="corrected", cfsx_version=__version__,
                          created=datetime.now(timezone.utc).isoformat(timespec="seconds"), config=config_text,
                          **attrs)  # fmt: skip
        options = {"chunks": (1, size, size), "compression": "gzip", "shuffle": True}
        file.create_dataset("images", data=corrected.images, **options)
        file.create_dataset("masks", data=corrected.masks, **options)
        text = h5py.string_dtype()
        file.create_dataset("provenance", data=corrected.provenance, dtype=text)
        file.create_dataset("sources", data=corrected.sources, dtype=text)
        if corrected.counts is not None:
            file.create_dataset("counts", data=corrected.counts.astype(np.int64), **options)
        if corrected.variance is not None:
            file.create_dataset("variance", data=corrected.variance, **options)
        add_view(file, signal="images", h_max=h_max, title="cfsx correct", config_text=config_text)
        add_window_axes(file["entry/data"], corrected.windows or [], size, h_max)


def read_corrected(path: str | Path) -> CorrectedImages:
    """The images, masks and provenance of a file that ``write_corrected`` wrote."""
    with open_dataset(path) as file:
        if file.attrs.get("kind") != "corrected":
            raise DataError(f"{path} is not a file of cfsx correct (kind corrected)")
        counts, variance = file.array("counts"), file.array("variance")
        return CorrectedImages(
            images=file.images[()],
            masks=file.array("masks")[()],
            provenance=file.texts("provenance"),
            sources=file.texts("sources"),
            counts=None if counts is None else counts[()],
            variance=None if variance is None else variance[()],
        )


def check_appendable(path: str | Path, attrs: dict[str, Any]) -> None:
    """Refuse a growing dataset (a store) that exists and holds data of another kind, encoding or config."""
    path = Path(path)
    if not path.exists():
        if not path.parent.is_dir():
            raise DataError(f"directory {path.parent} of the store does not exist")
        return
    with open_dataset(path) as file:
        for key in ("kind", "cfs", "config"):
            if str(file.attrs.get(key)) != str(attrs.get(key)):
                raise DataError(f"{path} holds other data ({key} differs); record into another store")
        for name in [*SAMPLE_PATHS, *PER_SAMPLE_EXTRAS]:
            array = file.array(name)
            if array is None:
                continue
            dtype = SAMPLE_DTYPES.get(name)
            if array.maxshape[0] is not None or (dtype is not None and array.dtype != dtype):
                raise DataError(f"{path}: {array.name} cannot take more samples ({array.dtype}, fixed size); "
                                "record into another store")  # fmt: skip


def append_samples(path: str | Path, attrs: dict[str, Any], samples: Samples, texts: dict[str, list[str]]) -> int:
    """Append samples to a growing dataset (a knowledge store), creating it when missing; returns its size.

    ``texts`` are per-sample strings (PER_SAMPLE_EXTRAS, for example ``sources``).
    The store is copied, extended and renamed into place, so an interrupted append loses nothing.
    An existing store must hold the same encoding and simulation settings (``attrs`` cfs and config).
    """
    path = Path(path)
    count = len(samples)
    arrays = {SAMPLE_PATHS[name]: np.asarray(value, SAMPLE_DTYPES[name]) for name, value in samples.present().items()}
    check_appendable(path, attrs)
    with atomic_hdf5(path, "a", copy_from=path if path.exists() else None) as file:
        if not path.exists():
            file.attrs.update(
                format=FORMAT,
                format_version=FORMAT_VERSION,
                cfsx_version=__version__,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                **attrs,
            )
        for name, values in [*arrays.items(), *texts.items()]:
            if name not in file:
                dtype = PATH_DTYPES.get(name, h5py.string_dtype())
                shape = np.shape(values)[1:]
                file.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                                    chunks=(1, *shape) if shape else (256,), compression="gzip")  # fmt: skip
            dataset = file[name]
            if dataset.shape[1:] != np.shape(values)[1:]:
                raise DataError(f"{path}: /{name} holds {dataset.shape[1:]} per sample, not {np.shape(values)[1:]}")
            start = dataset.shape[0]
            dataset.resize(start + count, axis=0)
            dataset[start:] = values
        if "entry" not in file and file.attrs["format_version"] >= 2:
            _add_view(file)
        total = int(file["images"].shape[0])
        if any(file[name].shape[0] != total for name in [*arrays, *texts]):
            raise DataError(f"{path} is inconsistent: its arrays hold different numbers of samples")
    return total
