"""The records of ``cfsx train``: its inputs as arrays (``TrainingArrays``) and its result (``TrainingResult``)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.config import SimulationConfig, config_from_yaml_text
from cfsx.errors import DataError
from cfsx.io.dataset import write_dataset
from cfsx.io.samples import Samples
from cfsx.learning.model_card import ModelCard
from cfsx.physics.encoding import cfs_vectors


@dataclass(frozen=True)
class TrainingResult:
    """What ``train`` wrote: the model with its card, its history (CSV) and loss curves."""

    model_path: Path
    history_path: Path
    curve_path: Path
    card: ModelCard  # what the model file carries (``load_model`` reads it back)
    terminated: bool = False  # stopped by SIGTERM (a batch system's time limit): resumable

    @property
    def interrupted(self) -> bool:
        """Stopped before the last epoch (Ctrl-C or SIGTERM): the best weights so far were saved."""
        return self.card.training.interrupted

    def summary(self) -> str:
        """What ``cfsx train`` prints: how the run ended, the best epoch and the hold-out scores, the side files."""
        training, test = self.card.training, self.card.hold_out
        lines = []
        if self.interrupted:
            lines.append(
                f"{'terminated (SIGTERM)' if self.terminated else 'interrupted'} after epoch {training.epochs_run}: "
                "best weights so far kept; the same command with --resume continues the run"
            )
        elif training.resumed_at_epoch:
            lines.append(f"resumed after epoch {training.resumed_at_epoch} from its checkpoint")
        lines.append(
            f"wrote {self.model_path} (best epoch {training.best_epoch} of {training.epochs_run}, "
            f"{training.seconds:.0f} s); hold-out of {test.samples}: R2 {test.r2:.4f}, "
            f"MSE {test.mse:.2e}, MAE {test.mae:.2e}"
        )
        lines.append(f"history: {self.history_path}, loss curves: {self.curve_path}")
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """What ``cfsx train --json`` prints: the files and the metadata without the split's indices."""
        metadata = {key: value for key, value in self.card.metadata.items() if key not in ("split", "format",
                                                                                        "format_version")}  # fmt: skip
        return {"model": str(self.model_path), "history": str(self.history_path), "curves": str(self.curve_path),
                "metadata": metadata}  # fmt: skip


@dataclass(frozen=True)
class TrainingArrays:
    """Training data as arrays (for example from a notebook): ``train`` writes them beside the model as
    MODEL-data.h5, a cfsx dataset, so that the model's metadata names data that ``evaluate`` can read again.

    ``vectors`` must be the lattice vectors of a CFS (cfsx.physics.encoding.cfs_vectors), in that order: the engine
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
        from cfsx.config import load_config

        images = np.asarray(self.images, dtype=np.float32)
        labels = np.asarray(self.labels, dtype=np.float32)
        vectors = np.asarray(self.vectors).reshape(-1, 2)
        cfs = int(round(np.sqrt(len(vectors) + 1)))
        if len(vectors) < 3 or not np.array_equal(vectors, cfs_vectors(cfs)):
            raise DataError("vectors must be the lattice vectors of a CFS in cfsx's order (encoding.cfs_vectors)")
        if images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) == 0:
            raise DataError(f"images must be (samples, M, M) with at least one sample, got {images.shape}")
        if not (np.isfinite(images).all() and np.isfinite(labels).all()):
            raise DataError("the images or labels hold NaN or infinite values")
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
        batch = Samples(images=images, seeds=seeds, achieved=labels)
        write_dataset(path, attrs={"config": simulation.to_yaml(), "cfs": cfs, "vectors": vectors, "kind": "arrays"},
                      n_samples=len(images), shapes=batch.shapes(), batches=[batch])  # fmt: skip


def data_file_of(output: Path) -> Path:
    """Where ``train`` writes training arrays given to it: MODEL-data.h5 beside MODEL.keras."""
    stem = output.with_suffix("")
    return stem.with_name(stem.name + "-data.h5")


def side_paths(model_path: Path) -> tuple[Path, Path]:
    """Where the history CSV and the loss-curve PNG of a model go."""
    stem = model_path.with_suffix("")
    return stem.with_name(stem.name + "-history.csv"), stem.with_name(stem.name + "-loss.png")
