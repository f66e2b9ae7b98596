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
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from cfsx import __version__
from cfsx.errors import DataError
from cfsx.io.outputs import atomic_hdf5, check_free_space, claim_outputs, existing_input

if TYPE_CHECKING:
    from cfsx.config import SimulationConfig

FORMAT = "cfsx-dataset"
FORMAT_VERSION = 2  # 2: the NeXus entry (cfsx/nexus.py) beside the version 1 paths
READABLE_VERSIONS = (1, 2)

# name in the file -> (dtype, per-sample shape key); the shape keys are filled in at creation.
SAMPLE_ARRAYS = {
    "seeds": np.uint64,
    "images": np.float32,
    "encodings/achieved": np.float32,
    "encodings/target": np.float32,
    "interactions": np.float32,
    "cycles": np.int32,
    "stop_reasons": np.uint8,  # index into engine.STOP_REASONS (files before it lack it)
    "lattices": np.uint8,
}


def write_dataset(
    path: str | Path,
    *,
    attrs: dict[str, Any],
    n_samples: int,
    shapes: dict[str, tuple[int, ...]],
    batches: Iterable[dict[str, np.ndarray]],
    compression: int = 4,
) -> None:
    """Write ``n_samples`` samples given as consecutive batches of arrays keyed as SAMPLE_ARRAYS.

    ``shapes`` gives the per-sample shape of every array to store; arrays not in it are skipped.
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
            datasets[name] = file.create_dataset(name, shape=(n_samples, *shape), dtype=SAMPLE_ARRAYS[name], **options)
        written = 0
        for batch in batches:
            count = len(batch["seeds"])
            if written + count > n_samples:
                raise DataError("more samples than announced were given to write_dataset")
            check_free_space(file.filename, sum(batch[name].nbytes for name in datasets), name=path)
            for name, dataset in datasets.items():
                dataset[written : written + count] = batch[name]
            written += count
        if written != n_samples:
            raise DataError(f"only {written} of {n_samples} samples were given to write_dataset")
        _add_view(file)


@contextlib.contextmanager
def open_dataset(path: str | Path) -> Iterator[h5py.File]:
    """Open a cfsx dataset for reading, with one clear error for anything that is not one."""
    path = existing_input(path)
    try:
        file = h5py.File(path, "r")
    except OSError:
        raise DataError(f"{path} is not a readable HDF5 file (corrupt or of another format)") from None
    with file:
        try:
            check_dataset(file, path)
            yield file
        except (OSError, RuntimeError) as error:
            if not _damaged(error):
                raise
            raise DataError(f"{path} is damaged: {_first_line(error)}") from None


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
# Arrays with one entry per sample besides SAMPLE_ARRAYS: corrected images and knowledge stores.
PER_SAMPLE_EXTRAS = ("masks", "provenance", "sources")


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
        arrays = {name: file[name] for name in [*SAMPLE_ARRAYS, *PER_SAMPLE_EXTRAS] if name in file}
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
        if name in SAMPLE_ARRAYS and array.dtype.kind not in "fiu":
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


@dataclass(frozen=True)
class ReachSummary:
    """How far the achieved alpha landed from the targets."""

    tolerance: float
    reached_fraction: float  # samples with every component within tolerance
    mean_max_deviation: float
    median_max_deviation: float
    p95_max_deviation: float
    worst_max_deviation: float
    mean_cycles: float
    max_cycles: int
    stops: dict[str, int] | None = None  # samples per stop reason (engine.STOP_REASONS); None for older files

    def summary(self) -> str:
        """Two lines: how closely the targets were reached, and why the feedback stopped."""
        reached = (
            f"targets reached within {self.tolerance:g}: {100 * self.reached_fraction:.1f} % of samples; "
            f"max |achieved - target| per sample: mean {self.mean_max_deviation:.3f}, median "
            f"{self.median_max_deviation:.3f}, 95th percentile {self.p95_max_deviation:.3f}, worst "
            f"{self.worst_max_deviation:.3f}"
        )
        if self.stops is None:
            return reached + (f"\nfeedback cycles: mean {self.mean_cycles:.1f}, max {self.max_cycles}; stop reasons "
                              "not recorded (a file made before cfsx recorded them)")  # fmt: skip
        counts = ", ".join(f"{name} {count}" for name, count in self.stops.items())
        return reached + f"\nfeedback stopped: {counts}; cycles: mean {self.mean_cycles:.1f}, max {self.max_cycles}"


def reach_summary(achieved: np.ndarray, target: np.ndarray, cycles: np.ndarray, tolerance: float,
                  stop_reasons: np.ndarray | None = None) -> ReachSummary:  # fmt: skip
    """How closely the samples reached their targets (largest component deviation), and why they stopped."""
    from cfsx.physics.engine import STOP_REASONS

    deviation = np.abs(np.asarray(achieved, np.float64) - np.asarray(target, np.float64)).max(axis=1)
    # The float32 labels are compared with a rounding margin.
    reached = deviation <= tolerance + 1e-6
    return ReachSummary(
        tolerance=float(tolerance),
        reached_fraction=float(reached.mean()),
        mean_max_deviation=float(deviation.mean()),
        median_max_deviation=float(np.median(deviation)),
        p95_max_deviation=float(np.percentile(deviation, 95)),
        worst_max_deviation=float(deviation.max()),
        mean_cycles=float(np.mean(cycles)),
        max_cycles=int(np.max(cycles)),
        stops=None if stop_reasons is None else
        {name: int(np.count_nonzero(np.asarray(stop_reasons) == code)) for code, name in enumerate(STOP_REASONS)},
    )  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """What ``cfsx info`` shows of a dataset: size, encoding, config, label statistics, feedback reach."""

    path: str
    samples: int
    cfs: int
    vectors: np.ndarray
    config: SimulationConfig | None
    created: str
    cfsx_version: str
    image_shape: tuple[int, ...]
    has_lattices: bool
    label_mean: np.ndarray
    label_std: np.ndarray
    label_min: np.ndarray
    label_max: np.ndarray
    reach: ReachSummary | None
    shard: tuple[int, int] | None
    kind: str = "simulated"  # simulated, corrected, store or arrays
    sources: tuple[str, ...] = ()  # the first few sources of corrected images and stores
    h_max: float | None = None

    def summary(self) -> str:
        """What ``cfsx info`` prints: size, encoding, settings, a table of the labels, the feedback's reach."""
        shape = " x ".join(map(str, self.image_shape))
        if self.kind == "corrected":
            shown = ", ".join(self.sources) or "not recorded"
            return (f"{self.path}: {self.samples} images corrected by cfsx correct ({shape}, h_max {self.h_max}), "
                    f"created {self.created or 'at an unknown time'}; sources: {shown}"
                    + (" ..." if self.samples > len(self.sources) else ""))  # fmt: skip
        lines = [
            f"{self.path}: cfsx dataset ({self.kind}), {self.samples} samples, CFS{self.cfs} "
            f"(D = {len(self.vectors)}), images {shape}",
            f"created {self.created} by cfsx {self.cfsx_version}"
            + (f"; shard {self.shard[0]} of {self.shard[1]}" if self.shard else "")
            + ("; lattices stored" if self.has_lattices else ""),
        ]
        if self.config:
            lines += _config_lines(self.config)
        if not self.label_mean.size:
            return "\n".join([*lines, "no labels (/encodings/achieved) in this file"])
        from cfsx.physics.encoding import vector_labels

        lines += ["labels (achieved alpha):", f"{'component':>14} {'mean':>7} {'std':>7} {'min':>7} {'max':>7}"]
        columns = (self.label_mean, self.label_std, self.label_min, self.label_max)
        for i, label in enumerate(vector_labels(self.vectors)):
            lines.append(f"{label:>14} " + " ".join(f"{values[i]:+7.3f}" for values in columns))
        if self.reach:
            lines.append(self.reach.summary())
        return "\n".join(lines)


def _config_lines(config: SimulationConfig) -> list[str]:
    """The simulation settings of a dataset, as ``cfsx info`` shows them."""
    lattice, diffraction, feedback, targets = config.lattice, config.diffraction, config.feedback, config.targets
    lines = [
        f"lattice {lattice.size} x {lattice.size}, c = {lattice.concentration}; lots: {diffraction.n_lots} of "
        f"{diffraction.lot_size} x {diffraction.lot_size}; h_max = {diffraction.h_max}; seed {config.run.seed}"
    ]
    if targets.distribution == "couplings":
        lines.append(f"targets: alpha after {targets.sweeps} sweeps at fixed couplings of strength "
                     f"{targets.coupling_range[0]}-{targets.coupling_range[1]} (log-uniform), no feedback")  # fmt: skip
    else:
        lines.append(f"targets: uniform in [{targets.low}, {targets.high}]")
    lines.append(
        f"feedback (decoding{'' if targets.distribution == 'couplings' else ' and targets'}): "
        f"{feedback.update} update, gain {feedback.gain}, {feedback.sweeps_per_cycle} sweeps/cycle, "
        f"tolerance {feedback.tolerance_for(lattice.size):g}, <= {feedback.max_cycles} cycles"
        + (f", stop after {feedback.stall_cycles} cycles without progress" if feedback.stall_cycles else "")
        + f", |J| <= {feedback.coupling_bound}"
    )
    return lines


def describe(path: str | Path) -> DatasetInfo:
    """Everything ``cfsx info`` shows, read from the file."""
    from cfsx.config import config_from_yaml_text

    with open_dataset(path) as file:
        samples = int(file["images"].shape[0])
        labels = file["encodings/achieved"][()] if "encodings/achieved" in file else np.zeros((samples, 0))
        reach = None
        kind = str(file.attrs.get("kind", "simulated"))
        config_yaml = str(file.attrs.get("config", ""))
        config = config_from_yaml_text(config_yaml) if config_yaml and kind != "corrected" else None
        if samples and labels.shape[1] and "encodings/target" in file and "cycles" in file and config:
            stops = file["stop_reasons"][()] if "stop_reasons" in file else None
            tolerance = config.feedback.tolerance_for(config.lattice.size)
            reach = reach_summary(labels, file["encodings/target"][()], file["cycles"][()], tolerance, stops)
        shard = None
        if "shard_index" in file.attrs:
            shard = (int(file.attrs["shard_index"]), int(file.attrs["shard_count"]))
        empty = np.zeros(labels.shape[1])
        return DatasetInfo(
            path=str(path),
            samples=samples,
            cfs=int(file.attrs.get("cfs", 0)),
            vectors=np.asarray(file.attrs.get("vectors", np.zeros((0, 2), int))),
            config=config,
            created=str(file.attrs.get("created", "")),
            cfsx_version=str(file.attrs.get("cfsx_version", "")),
            image_shape=tuple(file["images"].shape[1:]),
            has_lattices="lattices" in file,
            label_mean=labels.mean(axis=0) if samples else empty,
            label_std=labels.std(axis=0) if samples else empty,
            label_min=labels.min(axis=0) if samples else empty,
            label_max=labels.max(axis=0) if samples else empty,
            reach=reach,
            shard=shard,
            kind=kind,
            sources=tuple(file["sources"].asstr()[:3]) if "sources" in file else (),
            h_max=float(file.attrs["h_max"]) if "h_max" in file.attrs else None,
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
        shapes = {name: tuple(file[name].shape[1:]) for name in SAMPLE_ARRAYS if name in file}

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for _, path, _ in shards:
            with open_dataset(path) as file:
                size = file["images"].shape[0]
                for start in range(0, size, 256):
                    yield {name: file[name][start : start + 256] for name in shapes}

    keep = {k: v for k, v in first.items() if k not in SHARD_ATTRS and k not in BASE_ATTRS}
    write_dataset(output, attrs=keep, n_samples=total, shapes=shapes, batches=batches(), compression=compression)
    return total


SHARD_ATTRS = ("shard_index", "shard_count", "sample_start", "sample_stop")
BASE_ATTRS = ("format", "format_version", "cfsx_version", "created")


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
        for name in [*SAMPLE_ARRAYS, *PER_SAMPLE_EXTRAS]:
            if name not in file:
                continue
            array = file[name]
            if array.maxshape[0] is not None or (name in SAMPLE_ARRAYS and array.dtype != SAMPLE_ARRAYS[name]):
                raise DataError(f"{path}: /{name} cannot take more samples ({array.dtype}, fixed size); "
                                "record into another store")  # fmt: skip


def append_samples(
    path: str | Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray], texts: dict[str, list[str]]
) -> int:
    """Append samples to a growing dataset (a knowledge store), creating it when missing; returns its size.

    ``arrays`` are keyed as SAMPLE_ARRAYS, ``texts`` are per-sample strings (for example /sources).
    The store is copied, extended and renamed into place, so an interrupted append loses nothing.
    An existing store must hold the same encoding and simulation settings (``attrs`` cfs and config).
    """
    path = Path(path)
    count = len(arrays["images"])
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
            values = np.asarray(values, dtype=SAMPLE_ARRAYS[name]) if name in SAMPLE_ARRAYS else values
            if name not in file:
                dtype = SAMPLE_ARRAYS.get(name, h5py.string_dtype())
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
