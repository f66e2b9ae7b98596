"""What a model file carries besides its network: the ``ModelCard`` (encoding, image grid, the settings it
decodes with, its training run and hold-out metrics), read from the JSON entry of the .keras archive.

Reading a card needs neither TensorFlow nor the weights: ``cfsx info`` and the checks before a long run use it.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import DataError
from cfsx.io.outputs import existing_input
from cfsx.learning.builtin import resolve_model

METADATA_ENTRY = "cfsx_metadata.json"
MODEL_FORMAT = "cfsx-model"
MODEL_FORMAT_VERSION = 1


# Metadata every model carries (docs/format.md "Model"): what the CLI and the library read from it.
REQUIRED_METADATA = (
    "cfs",
    "vectors",
    "labels",
    "image_size",
    "h_max",
    "lot_size",
    "simulation_config",
    "training",
    "split",
    "metrics",
)
# Entries of the metadata's sections that evaluate and interpret read.
NESTED_METADATA = (
    ("training", "config"),
    ("training", "history"),
    ("training", "data_fingerprint"),
    ("training", "epochs_run"),
    ("training", "best_epoch"),
    ("training", "seconds"),
    ("metrics", "test"),
    ("split", "test"),
)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The cfsx metadata of a saved model (a path or a built-in model's name), without loading TensorFlow weights."""
    path = existing_input(resolve_model(path), "model file")
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(METADATA_ENTRY))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise DataError(f"{path} is not a cfsx model file ({one_line(str(error))})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        raise DataError(f"{path} is not a cfsx model file")
    if document.get("format_version") != MODEL_FORMAT_VERSION:
        raise DataError(f"{path}: model format version {document.get('format_version')} is not supported")
    missing = [key for key in REQUIRED_METADATA if key not in document]
    missing += [f"{section}.{key}" for section, key in NESTED_METADATA
                if not isinstance(document.get(section, {}), dict) or key not in document.get(section, {})]  # fmt: skip
    if missing:
        raise DataError(f"{path}: the model's metadata lacks {', '.join(missing)}")
    for key, kinds in (("image_size", (int,)), ("h_max", (int, float)), ("cfs", (int,))):
        value = document[key]
        if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
            raise DataError(f"{path}: the model's metadata has {key} = {value!r}, not a positive number")
    vectors = document["vectors"]
    cfs = document["cfs"]
    if not isinstance(cfs, int) or not isinstance(vectors, list) or len(vectors) != cfs * cfs - 1:
        raise DataError(f"{path}: the model's metadata names CFS{cfs} with {len(vectors)} vectors, which do not agree")
    return document


def one_line(text: str, limit: int = 200) -> str:
    """The first line of a long library message, shortened: enough to say what went wrong."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return first if len(first) <= limit else first[: limit - 3] + "..."


@dataclass(frozen=True)
class Scores:
    """Regression scores of a model's encodings on a set of samples (cfsx.physics.metrics.regression_metrics)."""

    samples: int
    r2: float
    mse: float
    mae: float
    mean_residual: float
    per_component: dict[str, dict[str, float]]  # per label: r2, mse, mae, mean_residual

    @classmethod
    def of(cls, plain: dict[str, Any]) -> Scores:
        """The scores of a metadata document's ``metrics`` entry (what a file lacks: NaN, none per component)."""
        missing = {"samples": 0, "per_component": {}}
        return cls(**{item.name: plain.get(item.name, missing.get(item.name, float("nan"))) for item in fields(cls)})


@dataclass(frozen=True)
class DataFile:
    """One file a model was trained on."""

    path: str
    samples: int
    fingerprint: str


@dataclass(frozen=True)
class SampleCounts:
    """How a model's training data was split."""

    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class TrainingRun:
    """How a model was trained: the config, the data, the run and its history (in the document's order)."""

    config: dict[str, Any]  # the resolved training config (configs/train.yaml)
    data: str  # the data files, comma-separated
    data_fingerprint: str
    data_files: list[DataFile]
    initialised_from: str | None  # the model fine-tuned from
    samples: SampleCounts
    strategy: str
    replicas: int
    epochs_run: int
    interrupted: bool
    resumed_at_epoch: int | None
    best_epoch: int
    seconds: float
    history: list[dict[str, float]]  # per epoch: losses, metrics, seconds, learning rate
    extra: dict[str, Any] = field(default_factory=dict)  # entries of the document this cfsx does not know: kept

    def document(self) -> dict[str, Any]:
        """The metadata document's ``training`` section."""
        plain = asdict(self)
        return {**{key: value for key, value in plain.items() if key != "extra"}, **self.extra}

    @classmethod
    def of(cls, plain: dict[str, Any]) -> TrainingRun:
        """The run a metadata document's ``training`` section describes; entries added after the first models
        (their data files, split sizes, strategy, replicas, interruption, resumption) default."""
        files = [DataFile(**item) for item in plain.get("data_files", [])]
        added = {"data": ", ".join(item.path for item in files), "initialised_from": None, "strategy": "default",
                 "replicas": 1, "interrupted": False, "resumed_at_epoch": None}  # fmt: skip
        known = {item.name for item in fields(cls)}
        values = {item.name: plain.get(item.name, added.get(item.name)) for item in fields(cls)}
        values["extra"] = {key: value for key, value in plain.items() if key not in known}
        values["data_files"] = files
        values["samples"] = SampleCounts(**plain.get("samples", {"train": 0, "validation": 0, "test": 0}))
        return cls(**values)


# The entries of a model's metadata document that ModelCard names (any other is kept in ``extra``).
DOCUMENT_KEYS = ("format", "format_version", "cfsx_version", "created", "cfs", "vectors", "labels", "image_size",
                 "h_max", "lot_size", "simulation_config", "training", "split", "metrics")  # fmt: skip


@dataclass(frozen=True)
class ModelCard:
    """A model's metadata as named records (docs/format.md "Model"): ``from_metadata`` reads the document a
    model file carries, ``metadata`` writes it; the one place that knows the document's keys."""

    path: Path
    cfs: int
    vectors: np.ndarray  # (D, 2) the encoding's lattice vectors
    labels: list[str]
    image_size: int  # M: the model reads M x M images
    h_max: float  # over h, k in [-h_max, h_max)
    lot_size: int  # of the first training file
    decoding_config: str  # the simulation YAML that decodes the model's encodings (interpret, evaluate)
    training: TrainingRun
    hold_out: Scores  # on the hold-out samples
    hold_out_indices: np.ndarray  # the hold-out samples' indices in the training data
    validation: Scores | None = None  # on the validation samples (files before it: None)
    validation_indices: np.ndarray | None = None
    created: str = ""
    cfsx_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # entries of the document this cfsx does not know: kept

    @property
    def components(self) -> int:
        """D, the number of correlations the model predicts."""
        return len(self.vectors)

    @property
    def hold_out_r2(self) -> float:
        return float(self.hold_out.r2)

    @property
    def architecture(self) -> str:
        return str(_nested(self.training.config, "model", "architecture") or "unknown")

    @classmethod
    def from_metadata(cls, document: dict[str, Any], path: str | Path) -> ModelCard:
        """The card of a checked metadata document (``read_metadata``)."""
        metrics, split = document["metrics"], document["split"]
        return cls(
            path=Path(path),
            cfs=int(document["cfs"]),
            vectors=np.asarray(document["vectors"], dtype=np.int64).reshape(-1, 2),
            labels=list(document["labels"]),
            image_size=int(document["image_size"]),
            h_max=float(document["h_max"]),
            lot_size=int(document["lot_size"]),
            decoding_config=str(document["simulation_config"]),
            training=TrainingRun.of(document["training"]),
            hold_out=Scores.of(metrics["test"]),
            hold_out_indices=np.asarray(split["test"], dtype=np.int64),
            validation=Scores.of(metrics["validation"]) if "validation" in metrics else None,
            validation_indices=np.asarray(split["validation"], dtype=np.int64) if "validation" in split else None,
            created=str(document.get("created", "")),
            cfsx_version=str(document.get("cfsx_version", "")),
            extra={key: value for key, value in document.items() if key not in DOCUMENT_KEYS},
        )

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata document of the model file (docs/format.md "Model"), ``format`` and its version included."""
        metrics = {"test": asdict(self.hold_out)}
        split = {"test": self.hold_out_indices.tolist()}
        if self.validation is not None:
            metrics = {"validation": asdict(self.validation), **metrics}
        if self.validation_indices is not None:
            split = {"validation": self.validation_indices.tolist(), **split}
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "cfsx_version": self.cfsx_version,
            "created": self.created,
            "cfs": self.cfs,
            "vectors": self.vectors.tolist(),
            "labels": list(self.labels),
            "image_size": self.image_size,
            "h_max": self.h_max,
            "lot_size": self.lot_size,
            "simulation_config": self.decoding_config,
            "training": self.training.document(),
            "split": split,
            "metrics": metrics,
            **self.extra,
        }

    def to_json(self) -> str:
        """The card as JSON text (its path and metadata document); ``from_json`` gives it back."""
        return json.dumps({"path": str(self.path), "metadata": self.metadata})

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """The card ``to_json`` wrote."""
        try:
            document = json.loads(text)
            return cls.from_metadata(document["metadata"], document["path"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"not a model card's JSON ({type(error).__name__}: {one_line(str(error))})") from None

    def summary(self) -> str:
        """What ``cfsx info`` prints of a model: encoding, grid, training run, hold-out, decoding settings."""
        training, test, simulation = self.training, self.hold_out, self.decoding()
        data = ", ".join(f"{item.path} ({item.samples} samples)" for item in training.data_files)
        split = training.samples
        lattice, diffraction = simulation.lattice, simulation.diffraction
        return "\n".join([
            f"{self.path}: cfsx model, CFS{self.cfs} (D = {self.components}), {self.architecture} CNN, images "
            f"{self.image_size} x {self.image_size} over h, k in [-{self.h_max}, {self.h_max})",
            f"created {self.created} by cfsx {self.cfsx_version}",
            f"trained on {data or training.data}: {split.train} training, {split.validation} "
            f"validation, {split.test} hold-out samples; {training.epochs_run} epochs (best "
            f"{training.best_epoch}), {training.seconds / 60:.1f} minutes"
            + (f"; fine-tuned from {training.initialised_from}" if training.initialised_from else "")
            + ("; interrupted" if training.interrupted else ""),
            f"hold-out ({test.samples} samples): R2 {test.r2:.4f}, MAE {test.mae:.4f}, MSE {test.mse:.2e}",
            f"simulation: {lattice.size} x {lattice.size} lattice at c = {lattice.concentration}, "
            f"{diffraction.n_lots} lots of {diffraction.lot_size} x {diffraction.lot_size}, "
            f"targets {simulation.targets.distribution}",
        ])  # fmt: skip

    def decoding(self):
        """The decoding settings as a SimulationConfig."""
        from cfsx.config import config_from_yaml_text

        return config_from_yaml_text(self.decoding_config)


def _nested(document: Any, *keys: str) -> Any:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def read_model_card(path: str | Path) -> ModelCard:
    """The card of a saved model (a path or a built-in model's name), checked, without TensorFlow."""
    path = resolve_model(path)
    try:
        return ModelCard.from_metadata(read_metadata(path), path)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise DataError(f"{path}: the model's metadata is malformed ({type(error).__name__}: {error})") from None


# The entries of a .keras archive besides cfsx's metadata.
KERAS_ENTRIES = ("config.json", "model.weights.h5")


def check_model_archive(path: str | Path) -> None:
    """Refuse a model file whose archive is damaged (an entry missing or failing its CRC), whose config is not JSON
    or whose weights cannot be read whole; without TensorFlow (``cfsx info``, ``cfsx serve`` at start-up)."""
    import io

    import h5py

    path = resolve_model(path)
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in (*KERAS_ENTRIES, METADATA_ENTRY) if name not in archive.namelist()]
            if missing:
                raise DataError(f"{path} is not a whole model file: it lacks {', '.join(missing)}")
            damaged = archive.testzip()
            if damaged is not None:
                raise DataError(f"{path} is damaged: its entry {damaged} fails its checksum")
            json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
        arrays: list = []
        with h5py.File(io.BytesIO(weights), "r") as file:
            file.visititems(lambda name, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
            if not arrays:
                raise DataError(f"{path} holds no weights")
            for array in arrays:
                array[()]
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is damaged: {one_line(str(error)) or type(error).__name__}") from None
