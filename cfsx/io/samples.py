"""The per-sample arrays of a cfsx dataset as one record (``Samples``), and where each one lives in the file.

Simulation, decoding, training arrays and knowledge stores hand their samples to the dataset writer as
``Samples``; only the io package spells the paths (docs/format.md "Dataset").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

# A Samples field -> its path in a dataset file.
SAMPLE_PATHS = {
    "seeds": "seeds",
    "images": "images",
    "achieved": "encodings/achieved",
    "target": "encodings/target",
    "interactions": "interactions",
    "cycles": "cycles",
    "stop_reasons": "stop_reasons",
    "lattices": "lattices",
}
# A Samples field -> the type its array is stored as.
SAMPLE_DTYPES = {
    "seeds": np.uint64,
    "images": np.float32,
    "achieved": np.float32,
    "target": np.float32,
    "interactions": np.float32,
    "cycles": np.int32,
    "stop_reasons": np.uint8,  # index into engine.STOP_REASONS (files before it lack it)
    "lattices": np.uint8,
}


@dataclass
class Samples:
    """Arrays with one entry per sample, by name; None where a dataset does not hold one."""

    images: np.ndarray  # (S, M, M) the diffraction images
    seeds: np.ndarray | None = None  # (S,) each sample's seed
    achieved: np.ndarray | None = None  # (S, D) the correlations the structure reached: the training labels
    target: np.ndarray | None = None  # (S, D) the correlations the feedback aimed at
    interactions: np.ndarray | None = None  # (S, D) the pair interactions that reached them
    cycles: np.ndarray | None = None  # (S,) feedback cycles
    stop_reasons: np.ndarray | None = None  # (S,) why the feedback stopped (engine.STOP_REASONS)
    lattices: np.ndarray | None = None  # (S, N, N) the occupancies

    def __len__(self) -> int:
        return len(self.images)

    def present(self) -> dict[str, np.ndarray]:
        """The arrays held, by field name."""
        return {item.name: value for item in fields(self) if (value := getattr(self, item.name)) is not None}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The per-sample shape of every array held."""
        return {name: tuple(np.shape(value)[1:]) for name, value in self.present().items()}

    @classmethod
    def stack(cls, samples: Sequence[Mapping[str, np.ndarray]]) -> Samples:
        """One record of single samples' arrays (mappings by field name; other keys are left out)."""
        names = [name for name in SAMPLE_PATHS if name in samples[0]]
        return cls(**{name: np.stack([sample[name] for sample in samples]) for name in names})
