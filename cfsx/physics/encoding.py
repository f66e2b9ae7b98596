"""The CFS encoding: which lattice vectors a CFS-n encoding holds, and their names."""

import numpy as np

from cfsx.errors import ConfigError


def cfs_vectors(cfs: int) -> np.ndarray:
    """Vectors (dx, dy), 0 <= dx, dy < cfs, without (0, 0), row-major: shape (cfs*cfs - 1, 2)."""
    if not isinstance(cfs, (int, np.integer)) or isinstance(cfs, bool) or cfs < 2:
        raise ConfigError(f"cfs must be an integer >= 2, got {cfs!r}")
    return np.array([(dx, dy) for dx in range(cfs) for dy in range(cfs) if (dx, dy) != (0, 0)], dtype=np.int32)


def sub_encoding(data_cfs: int, cfs: int) -> np.ndarray:
    """Columns of a CFS-``data_cfs`` encoding that hold the CFS-``cfs`` encoding (its vectors, in its order).

    CFS-n's vectors are those of every larger CFS, so a CFS4 dataset also labels CFS2 and CFS3 models."""
    if cfs > data_cfs:
        raise ConfigError(f"a CFS{data_cfs} dataset cannot label a CFS{cfs} model (it lacks the longer vectors)")
    position = {(int(dx), int(dy)): i for i, (dx, dy) in enumerate(cfs_vectors(data_cfs))}
    return np.array([position[(int(dx), int(dy))] for dx, dy in cfs_vectors(cfs)])


def vector_labels(vectors: np.ndarray) -> list[str]:
    """Human-readable component names, for example 'alpha(0,1)'."""
    return [f"alpha({int(dx)},{int(dy)})" for dx, dy in vectors]


def named(labels: list[str], values) -> dict[str, float]:
    """Component name -> value, as plain floats (JSON-ready)."""
    return {label: float(value) for label, value in zip(labels, values, strict=True)}


def transpose_permutation(vectors: np.ndarray) -> np.ndarray:
    """Index of (dy, dx) for each (dx, dy): the labels of the transposed lattice (and image).

    Swapping the lattice's axes turns alpha(dx, dy) into alpha(dy, dx) and transposes the image,
    so a transposed training image with permuted labels is another exact training sample.
    """
    position = {(int(dx), int(dy)): i for i, (dx, dy) in enumerate(vectors)}
    try:
        return np.array([position[(int(dy), int(dx))] for dx, dy in vectors])
    except KeyError:
        raise ConfigError("the encoding's vectors are not closed under swapping dx and dy") from None
