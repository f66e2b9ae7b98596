"""The CFS encoding: which lattice vectors a CFS-n encoding holds, and their names."""

import numpy as np

from .errors import ConfigError


def cfs_vectors(cfs: int) -> np.ndarray:
    """Vectors (dx, dy), 0 <= dx, dy < cfs, without (0, 0), row-major: shape (cfs*cfs - 1, 2)."""
    if not isinstance(cfs, (int, np.integer)) or isinstance(cfs, bool) or cfs < 2:
        raise ConfigError(f"cfs must be an integer >= 2, got {cfs!r}")
    return np.array([(dx, dy) for dx in range(cfs) for dy in range(cfs) if (dx, dy) != (0, 0)], dtype=np.int32)


def vector_labels(vectors: np.ndarray) -> list[str]:
    """Human-readable component names, for example 'alpha(0,1)'."""
    return [f"alpha({int(dx)},{int(dy)})" for dx, dy in vectors]
