"""The raw pixels onto the training grid (step 3): area averages per cell, histogram matching, a fitted falloff."""

from __future__ import annotations

import math

import numpy as np

from cfsx.correction.pixels import Coordinates, row_strips


def area_average(
    image: np.ndarray, invalid: np.ndarray, h: np.ndarray, k: np.ndarray, image_size: int, h_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels whose centres fall in each output cell, and the count per cell."""
    total, count = _cell_sums(image, invalid, h, k, image_size, h_max)
    return _cell_means(total, count)


def _cell_sums(
    image: np.ndarray, invalid: np.ndarray, h: np.ndarray, k: np.ndarray, image_size: int, h_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the valid pixels whose centres fall in each output cell (flat, M * M).

    ``h`` and ``k`` need only broadcast to the image (a column and a row without rotation). Invalid pixels
    and those outside the window go to one extra cell that is dropped, so no pixel is copied out.
    """
    cells = image_size**2  # the index of the extra cell
    step = 2 * h_max / image_size
    rows = np.floor((h + h_max) / step + 0.5)
    columns = np.floor((k + h_max) / step + 0.5)
    row_part = np.where((rows >= 0) & (rows < image_size), rows * image_size, cells).astype(np.int64)
    column_part = np.where((columns >= 0) & (columns < image_size), columns, cells).astype(np.int64)
    index = row_part + column_part  # broadcast to the image
    np.minimum(index, cells, out=index)
    index[invalid] = cells
    index = index.ravel()
    total = np.bincount(index, weights=image.ravel(), minlength=cells + 1)
    return total[:-1], np.bincount(index, minlength=cells + 1)[:-1]


def _cell_means(total: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = math.isqrt(total.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return mean.reshape(size, size), count.reshape(size, size)


def resample_image(
    image: np.ndarray, invalid: np.ndarray, coordinates: Coordinates, image_size: int, h_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """area_average strip by strip: (h, k) of a strip of rows at a time, never of the whole image."""
    total, count = np.zeros(image_size**2), np.zeros(image_size**2, dtype=np.int64)
    for rows in row_strips(image.shape):
        h, k = coordinates(rows)
        strip_total, strip_count = _cell_sums(image[rows], invalid[rows], h, k, image_size, h_max)
        total += strip_total
        count += strip_count
    return _cell_means(total, count)


def match_histogram(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map each intensity of ``image`` to the reference intensity at the same quantile (scikit-image's
    ``match_histograms``): equal pixels stay equal, so a quantised image keeps one value per level."""
    from skimage.exposure import match_histograms

    levels = np.asarray(reference, dtype=np.float64).reshape(1, -1)  # every reference pixel, one distribution
    return match_histograms(np.asarray(image, dtype=np.float64), levels)


def exp_falloff(image: np.ndarray, h: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, float]:
    """exp(-B q^2) fitted to log I by least squares (q^2 = h^2 + k^2), normalised to 1 at q = 0."""
    q_squared = (h**2 + k**2).ravel()
    positive = image.ravel() > 0
    if positive.sum() < 3:
        return np.ones_like(image), 0.0
    slope, _ = np.polyfit(q_squared[positive], np.log(image.ravel()[positive]), 1)
    return np.exp(slope * (h**2 + k**2)), float(-slope)
