"""What the correction steps hand on to each other."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cfsx.correction.pixels import Pixels


@dataclass
class Work:
    """What the correction steps hand on: the raw image and its invalid pixels, then the image on the output grid
    with its cells that have no data (``missing``), the pixels averaged into each cell (``counts``) and how each
    cell was filled (``mask``)."""

    image: np.ndarray
    coordinates: Pixels
    extra_mask: np.ndarray | None
    reference: np.ndarray | None
    invalid: np.ndarray | None = None
    resampled: np.ndarray | None = None
    missing: np.ndarray | None = None
    counts: np.ndarray | None = None
    mask: np.ndarray | None = None
    variance: np.ndarray | None = None  # (M, M) the noise variance of each cell's value (NaN where unmeasured)
    periodic: bool = False  # the window is a fold of whole zones: -h_max and h_max are one cell
