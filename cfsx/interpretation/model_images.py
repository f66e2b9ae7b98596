"""Model images: what an estimate says the measured image should look like.

Two kinds, for every estimate of an image's encoding:
- the analytic image: the Warren-Cowley sum of the estimate itself, 1 + sum_v 2 alpha(v) cos 2 pi (h v_x + k v_y)
  over the encoding's vectors (times c (1 - c), which the fit's scale absorbs); noiseless and free;
- the structure image: the expected intensity of the structures decoded from the estimate, which carry every
  correlation the estimate's Hamiltonian implies, not only the encoding's. A decoded lattice's own image is mostly
  lot noise (51 % of the mean at the built-in decoding settings); the Warren-Cowley sum of the decoded lattices'
  mean correlations, tapered at long range (flat to ``inner``, a cosine to zero at ``outer`` lattice units), is the
  smooth expectation a large crystal gives, with a noise of a few per cent (docs/interpretation.md).
"""

from __future__ import annotations

import functools

import numpy as np

from cfsx.physics.engine import autocorrelation, cosine_transform
from cfsx.physics.inversion import NO_WINDOW, cosine_design


def analytic_image(encoding: np.ndarray, vectors: np.ndarray, image_size: int, h_max: float) -> np.ndarray:
    """(M, M): 1 + sum over the encoding's vectors v (and -v) of 2 alpha(v) cos 2 pi (h v_x + k v_y)."""
    key = tuple(map(tuple, np.asarray(vectors, dtype=np.int64).tolist()))
    design = _design(key, image_size, float(h_max))
    return (1.0 + design @ np.asarray(encoding, dtype=np.float64)).reshape(image_size, image_size)


@functools.lru_cache(maxsize=8)
def _design(vectors: tuple, image_size: int, h_max: float) -> np.ndarray:
    """The cosine design of an encoding's vectors on a grid, made once."""
    return cosine_design(np.array(vectors), image_size, h_max, NO_WINDOW)


def taper(displacements: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """(len, len) weights of the displacements (dx, dy): 1 up to |d| = inner, a half cosine down to 0 at outer."""
    distance = np.hypot(*np.meshgrid(displacements, displacements, indexing="ij"))
    falling = 0.5 * (1.0 + np.cos(np.pi * (distance - inner) / max(outer - inner, 1e-12)))
    return np.where(distance <= inner, 1.0, np.where(distance >= outer, 0.0, falling))


def structure_image(lattices: np.ndarray, image_size: int, h_max: float, inner: float, outer: float) -> np.ndarray:
    """(M, M): the Warren-Cowley sum of the mean correlations of ``lattices`` (R, N, N), tapered (``taper``),
    divided by c (1 - c): the smooth expected image of the decoded structures (1 on average for no order)."""
    lattices = np.asarray(lattices)
    gamma = np.mean([autocorrelation(lattice) for lattice in lattices], axis=0)
    size = gamma.shape[0]
    radius = int(min(np.ceil(outer), size // 2 - 1))
    displacements = np.arange(-radius, radius + 1)
    weights = gamma[np.ix_(displacements % size, displacements % size)] * taper(displacements, inner, outer)
    variance = float(gamma[0, 0]) or 1.0
    return cosine_transform(displacements, weights / variance, image_size, h_max)


def structure_images(lattices: np.ndarray, image_size: int, h_max: float, inner: float, outer: float
                     ) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """The structure image of all R lattices, and its noise: the RMS difference of the images of two halves of
    the lattices, over 2 (the noise of the whole average, which has half the variance of a half's), relative to
    the mean intensity, per image; None with fewer than two lattices."""
    whole = structure_image(lattices, image_size, h_max, inner, outer)
    if len(lattices) < 2:
        return whole, None
    half = len(lattices) // 2
    first = structure_image(lattices[:half], image_size, h_max, inner, outer)
    second = structure_image(lattices[half : 2 * half], image_size, h_max, inner, outer)
    noise = float(np.sqrt(np.mean((first - second) ** 2)) / 2.0 / abs(float(np.mean(whole)) or 1.0))
    return whole, np.float64(noise)
