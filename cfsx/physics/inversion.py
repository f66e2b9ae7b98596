"""The classical answer: alpha read off an image by inverting the Warren-Cowley relation.

A lot-averaged image is, in expectation (and exactly for ``n_lots: all``),
    I(h, k) = sum_v w(v) c (1 - c) alpha(v) cos 2 pi (h v_x + k v_y),
with the lot's Fejer window w(v) = (1 - |v_x|/L)(1 - |v_y|/L). It is linear in
g(v) = c (1 - c) alpha(v), so a least-squares fit of g over every vector up to a range R
(one of each pair v, -v) followed by alpha(v) = g(v) / g(0) estimates the encoding with no
knowledge of the concentration or of the image's scale. R is limited by the grid: a grid
step of 1/P cannot tell v from v + P, so 2 R < P.
"""

from __future__ import annotations

import numpy as np

from cfsx.errors import DataError
from cfsx.physics.engine import reciprocal_grid

# The lot size of "no lot window": the Fejer window 1 - |v|/L is 1 to within 1e-8 at every vector a grid
# resolves. What can be done for an image of unknown origin, whose domain size nobody knows.
NO_WINDOW = 10**9


def largest_range(image_size: int, h_max: float, lot_size: int) -> int:
    """The largest R for which the fit is well posed: 2 R < 1 / step and R < L."""
    period = image_size / (2.0 * h_max)  # 1 / grid step
    return max(0, min(lot_size - 1, int(np.ceil(period / 2.0)) - 1))


def half_window(max_range: int) -> np.ndarray:
    """(0, 0) and one of each pair v, -v with |v_x|, |v_y| <= R: the first nonzero coordinate positive."""
    span = np.arange(-max_range, max_range + 1)
    vx, vy = (axis.ravel() for axis in np.meshgrid(span, span, indexing="ij"))
    keep = (vx > 0) | ((vx == 0) & (vy >= 0))
    return np.stack([vx[keep], vy[keep]], axis=1)


def cosine_design(vectors: np.ndarray, image_size: int, h_max: float, lot_size: int) -> np.ndarray:
    """(M*M, V) columns w(v) m(v) cos 2 pi (h v_x + k v_y) for vectors v taken with -v (m = 2, or 1 for v = 0).

    The expected image (flattened) is this matrix times c (1 - c) alpha over the vectors.
    """
    vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, 2)
    grid = reciprocal_grid(image_size, h_max)
    h, k = (axis.ravel() for axis in np.meshgrid(grid, grid, indexing="ij"))
    window = (1 - np.abs(vectors[:, 0]) / lot_size) * (1 - np.abs(vectors[:, 1]) / lot_size)
    multiplicity = np.where((vectors == 0).all(axis=1), 1.0, 2.0)  # v and -v share a cosine
    return np.cos(2 * np.pi * (np.outer(h, vectors[:, 0]) + np.outer(k, vectors[:, 1]))) * (window * multiplicity)


class WarrenCowleyInversion:
    """Least-squares estimate of alpha at ``vectors`` from (S, M, M) images; build once, apply to many.

    An image whose fitted g(0) is not positive (not a diffuse pattern) gets NaN."""

    def __init__(self, vectors: np.ndarray, image_size: int, h_max: float, lot_size: int, max_range: int = 0) -> None:
        self.vectors = np.asarray(vectors, dtype=np.int64)
        limit = largest_range(image_size, h_max, lot_size)
        self.max_range = limit if max_range == 0 else int(max_range)
        if self.max_range > limit:
            raise DataError(f"inversion range {self.max_range} is larger than this grid allows ({limit})")
        if np.abs(self.vectors).max() > self.max_range:
            raise DataError(f"the encoding's vectors reach beyond the inversion range {self.max_range}")
        basis = half_window(self.max_range)
        index = {tuple(v): i for i, v in enumerate(basis)}
        self.image_size = image_size
        # Only the rows of the pseudo-inverse for g(0) and the encoding's vectors are ever used: row 0, then the rest.
        design = cosine_design(basis, image_size, h_max, lot_size)
        rows = [index[(0, 0)], *(index[tuple(v)] for v in self.vectors)]
        picked = np.linalg.lstsq(design.T @ design, np.eye(len(basis))[:, rows], rcond=None)[0]  # rows of inv(A'A)
        self._solve = picked.T @ design.T  # (1 + D, M*M): those rows of the pseudo-inverse of the design

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim == 2:
            return self(images[None])[0]
        if images.shape[1:] != (self.image_size, self.image_size):
            raise DataError(f"images of shape {images.shape[1:]} do not fit a {self.image_size}-point grid")
        fitted = images.reshape(len(images), -1) @ self._solve.T
        scale = fitted[:, :1]
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = fitted[:, 1:] / np.where(scale > 0, scale, np.nan)
        return np.clip(alpha, -1.0, 1.0)  # NaN where g(0) = c (1 - c) comes out <= 0: no diffuse pattern
