"""Bragg peaks in a raw image (step 2): sharp, strong outliers above a local median, a white top-hat, or disks at the
lattice points; the resolution test that keeps diffuse maxima."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cfsx.config import BraggConfig
from cfsx.correction.pixels import Coordinates, lattice_distance, near_lattice, row_strips, sample_valid
from cfsx.errors import DataError


def bragg_peaks(
    image: np.ndarray, invalid: np.ndarray, config: BraggConfig, coordinates: Coordinates | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean mask of Bragg-peak pixels and a record of what was found.

    ``coordinates(rows)`` gives (h, k) of the pixels of those rows: needed by the lattice method only.
    """
    from scipy import ndimage

    kept = 0
    if config.method == "lattice":
        if coordinates is None:
            raise DataError("the lattice Bragg finder needs the pixels' h, k (a calibration)")
        peaks = near_lattice(image.shape, coordinates, config.lattice_radius)
    else:
        lattice = config.positions == "lattice" and coordinates is not None
        near = near_lattice(image.shape, coordinates, config.lattice_radius) if lattice else None
        if config.method == "local":
            peaks = _local_outliers(image, invalid, config, near)
        else:
            peaks = _tophat_outliers(image, invalid, config) & (True if near is None else near)
        del near
        if config.tail is not None and peaks.any():
            peaks, kept = _resolution_limited(image, invalid, peaks, config)
        if lattice and peaks.any():
            # Bragg peaks stand at every lattice point: the footprint of a typical peak found (the median of their
            # radii) is masked at all of them, so that a point whose peak is faint here, or lies just outside the
            # image, loses its tails too.
            peaks |= near_lattice(image.shape, coordinates, float(np.median(_peak_radii(peaks, coordinates))))
    if config.dilate and peaks.any():
        peaks = ndimage.binary_dilation(peaks, iterations=config.dilate)
    _, count = ndimage.label(peaks)
    return peaks, {"peaks": int(count), "peak_pixels": int(np.count_nonzero(peaks)), "diffuse_maxima_kept": kept}


def _resolution_limited(image: np.ndarray, invalid: np.ndarray, peaks: np.ndarray, config: BraggConfig
                        ) -> tuple[np.ndarray, int]:  # fmt: skip
    """The peaks no wider than the resolution, and how many were kept as diffuse maxima.

    A Bragg peak is the instrument's resolution function at a lattice point: one resolution (``config.resolution``,
    FWHM in pixels) beyond its maximum it has fallen to nothing. A diffuse maximum, however sharp, has tails: where
    the mean excess over the surroundings on the ring one resolution + 1 pixel from the maximum is above ``tail``
    times the maximum's excess, and above three of its standard errors, the peak is a diffuse maximum and is kept.
    The surroundings are the pixels between 2 and 3 ring radii away (their median and spread).
    """
    from scipy import ndimage

    labels, count = ndimage.label(peaks)
    ring = config.resolution + 1.0
    reach = int(np.ceil(3 * ring))
    offsets = np.arange(-reach, reach + 1)
    distance = np.hypot(offsets[:, None], offsets[None, :])
    on_ring, around = np.abs(distance - ring) < 0.5, (distance >= 2 * ring) & (distance <= 3 * ring)
    maxima = ndimage.maximum_position(np.where(invalid, -np.inf, image), labels, np.arange(1, count + 1))
    diffuse = np.zeros(count + 1, dtype=bool)
    rows, columns = image.shape
    for label, (row, column) in enumerate(maxima, start=1):
        window_rows, window_columns = row + offsets, column + offsets  # beyond the image: not there, not wrapped
        inside = np.outer((window_rows >= 0) & (window_rows < rows), (window_columns >= 0) & (window_columns < columns))
        window = np.ix_(np.clip(window_rows, 0, rows - 1), np.clip(window_columns, 0, columns - 1))
        values, valid = image[window], ~invalid[window] & inside
        tail, surroundings = values[on_ring & valid], values[around & valid]
        if tail.size < 1 or surroundings.size < 3:  # a peak in a corner keeps a quarter of its ring
            continue
        background = float(np.median(surroundings))
        excess, height = float(tail.mean()) - background, float(image[row, column]) - background
        error = float(np.std(surroundings)) / np.sqrt(tail.size)
        diffuse[label] = height > 0 and excess > config.tail * height and excess > 3 * error
    return peaks & ~diffuse[labels], int(diffuse.sum())


def _robust_sigma(values: np.ndarray) -> float:
    """The noise's standard deviation from the median absolute deviation; where that is 0 (a faint image of
    counts: most pixels zero, like their median) from the mean absolute deviation of all but the largest 1 %."""
    deviation = np.abs(values - np.median(values))
    sigma = 1.4826 * float(np.median(deviation))
    if sigma == 0 and deviation.size:
        bulk = deviation[deviation <= np.percentile(deviation, 99)]
        sigma = 1.2533 * float(bulk.mean()) if bulk.size else 0.0
    return sigma or float(values.std()) or 1.0


def _peak_radii(peaks: np.ndarray, coordinates: Coordinates) -> np.ndarray:
    """Per connected peak, the largest distance of its pixels from the nearest integer h, k."""
    from scipy import ndimage

    labels, count = ndimage.label(peaks)
    radii = np.zeros(count + 1)
    for rows in row_strips(peaks.shape):
        strip = labels[rows]
        if strip.any():
            distance = np.broadcast_to(lattice_distance(coordinates, rows), strip.shape)
            np.maximum.at(radii, strip[strip > 0], distance[strip > 0])
    return radii[1:]


def _tophat_outliers(image: np.ndarray, invalid: np.ndarray, config: BraggConfig) -> np.ndarray:
    """Pixels whose white top-hat (with a disk) stands ``threshold`` robust sigmas above its median."""
    from skimage import morphology

    if invalid.all():
        return np.zeros_like(invalid)
    filled = np.where(invalid, np.median(sample_valid(image, invalid)).astype(image.dtype), image)
    top_hat = morphology.white_tophat(filled, morphology.disk(config.radius))
    del filled
    values = sample_valid(top_hat, invalid)
    spread = 1.4826 * np.median(np.abs(values - np.median(values)))
    if spread <= 0:
        spread = values.std() or 1.0
    return ~invalid & (top_hat > np.median(values) + config.threshold * spread)


def _local_outliers(image: np.ndarray, invalid: np.ndarray, config: BraggConfig, near: np.ndarray | None = None
                    ) -> np.ndarray:  # fmt: skip
    """Bragg peaks as sharp, strong outliers above a local median of sqrt(I).

    The square root makes Poisson noise uniform, so one robust sigma (of sqrt(I) minus its local
    median) serves the whole image. A peak needs a seed that is both significant (local_threshold
    sigmas) and strong (sqrt(I) local_contrast times the median's): significance alone would take
    sharp diffuse maxima at high counts. Each peak is the connected region local_grow sigmas up
    around its seeds (hysteresis), which takes in its tails. Images of more than local_coarse_above
    pixels take the local median from blocks (_block_median), in linear time; the peaks are still
    found pixel by pixel. With ``near`` only seeds there count. Works in the image's precision (float32
    or float64), in place where it can.
    """
    from scipy import ndimage

    if invalid.all():
        return np.zeros_like(invalid)
    size = max(config.local_size, 1)
    root = np.where(invalid, np.median(sample_valid(image, invalid)).astype(image.dtype), image)
    np.sqrt(np.maximum(root, 0, out=root), out=root)
    if image.size > config.local_coarse_above:
        local_median = _block_median(root, size)
    else:
        local_median = ndimage.median_filter(root, size=size).__getitem__
    strong = np.empty(image.shape, dtype=bool)
    for rows in row_strips(image.shape):  # strip by strip: no full-size temporaries
        median = local_median(rows)
        np.greater(root[rows], config.local_contrast * median, out=strong[rows])
        root[rows] -= median
    del local_median, median
    residual = root  # sqrt(I) minus its local median
    sigma = _robust_sigma(sample_valid(residual, invalid))
    residual /= sigma  # the significance of each pixel
    np.copyto(residual, 0.0, where=invalid)
    seeds = np.greater(residual, config.local_threshold)
    seeds &= strong
    if near is not None:
        seeds &= near
    grown = np.greater(residual, config.local_grow)
    del strong, residual, root
    regions, count = ndimage.label(grown)
    del grown
    keep = np.zeros(count + 1, dtype=bool)
    keep[regions[seeds]] = True
    keep[0] = False
    return keep[regions]


def _block_median(image: np.ndarray, size: int) -> Callable[[slice], np.ndarray]:
    """A local median in linear time: the median of each size x size block, interpolated bilinearly
    between the block centres (and held constant beyond the outer ones) back to every pixel.
    Returns it as a function of a slice of rows, so that it is made a strip at a time.

    The blocks tile the image; where a side is not a multiple of ``size`` the last block is flush
    with the edge and overlaps its neighbour.
    """
    sizes = [min(size, n) for n in image.shape]
    starts = [np.unique(np.r_[np.arange(0, n - s + 1, s), n - s]) for n, s in zip(image.shape, sizes, strict=True)]
    tiled = (image.shape[1] // sizes[1]) * sizes[1]  # columns covered by whole blocks from the left
    medians = np.empty((len(starts[0]), len(starts[1])), dtype=image.dtype)
    for index, first in enumerate(starts[0]):
        strip = image[first : first + sizes[0]]
        blocks = strip[:, :tiled].reshape(sizes[0], -1, sizes[1]).transpose(1, 0, 2).reshape(-1, sizes[0] * sizes[1])
        medians[index, : len(blocks)] = np.median(blocks, axis=1, overwrite_input=True)  # blocks is a copy
        if tiled < image.shape[1]:
            medians[index, -1] = np.median(strip[:, -sizes[1] :])
    centres = [first + (s - 1) / 2 for first, s in zip(starts, sizes, strict=True)]
    rows, columns = (_interpolation(c, n, image.dtype) for c, n in zip(centres, image.shape, strict=True))
    along_columns = (columns @ medians.T).T  # (row blocks, columns)
    return lambda strip: np.asarray(rows[strip] @ along_columns, dtype=image.dtype)


def _interpolation(centres: np.ndarray, length: int, dtype) -> Any:
    """The sparse (length x centres) matrix of linear interpolation from values at ``centres`` to the
    positions 0..length-1, constant beyond the first and the last centre."""
    from scipy import sparse

    positions = np.arange(length)
    upper = np.clip(np.searchsorted(centres, positions), 1, max(len(centres) - 1, 1))
    lower = upper - 1
    if len(centres) == 1:
        lower, upper, weight = np.zeros(length, int), np.zeros(length, int), np.zeros(length)
    else:
        weight = np.clip((positions - centres[lower]) / (centres[upper] - centres[lower]), 0.0, 1.0)
    entries = np.r_[1 - weight, weight].astype(dtype)
    return sparse.csr_array((entries, (np.r_[positions, positions], np.r_[lower, upper])), shape=(length, len(centres)))
