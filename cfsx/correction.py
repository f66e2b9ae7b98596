"""``cfsx correct``: make a measured image look like a training image.

Steps, in this order, each switchable in ``configs/correct.yaml``:
1. mask invalid pixels (NaN and inf always; optionally values <= 0, saturated values, given values);
2. find Bragg peaks and mask them: sharp, strong outliers above a local median (the default), a
   white top-hat with a disk, or (with a calibration) disks around every integer h, k;
3. resample to the training window h, k in [-h_max, h_max) on M x M points by AREA AVERAGING the
   valid detector pixels whose centres fall in each output cell (not point sampling); a cell with no
   pixel centre inside (pixels larger than cells) takes the valid pixel under its centre;
4. reconstruct cells without data: from the Friedel partner (-h, -k) and optional mirrors where
   those were measured, then biharmonic inpainting for the rest;
5. optional background: subtract a percentile, divide by a fitted falloff exp(-B (h^2 + k^2));
6. smoothing (Gaussian or median, in output pixels);
7. normalisation to a mean intensity (training images have mean c (1 - c) per site), or matching
   to the intensity histogram of a training dataset.
Every step records its parameters and what it did in the image's provenance.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import records
from .config import BraggConfig, CorrectionConfig, GeometryConfig, MaskConfig
from .errors import AdvisedError, DataError
from .geometry import PixelMap, axis_values, calibrate_from_file
from .readers import as_image, expand_inputs, file_of, read_image

log = logging.getLogger(__name__)

# Large images are worked on in strips of rows of about this many pixels, so that per-pixel temporaries
# (coordinates, cell indices) stay small; and robust statistics (medians) of larger images use an even
# subsample of about this many pixels.
STRIP_PIXELS = 1 << 22
SAMPLE_PIXELS = 1 << 22

Coordinates = Callable[[slice], tuple[np.ndarray, np.ndarray]]  # rows -> (h, k) of their pixels (broadcastable)
Progress = Callable[[float], None]  # the fraction of one image's correction done


# A zero region of a counting image is a gap when counting explains it with probability below
# exp(-GAP_EVIDENCE): when the counts expected over it at the local rate reach this number.
GAP_EVIDENCE = 20.0
GAP_MIN_RATE = 0.5  # counts per pixel: below this, solid zero patches are common (and chance ones percolate)
GAP_SURROUNDINGS = 15  # pixels: the window of the local count rate
MAX_MEDIAN_COUNTS = 1e4  # a "quantum" that makes the median pixel more counts than this is float rounding


# Mask codes of a corrected image.
MEASURED, FILLED_BY_SYMMETRY, INPAINTED = 0, 1, 2


@dataclass
class Correction:
    """One corrected image on the training grid, which cells were measured, and what every step did
    (one provenance entry per step that ran, in order, each naming its ``step``)."""

    image: np.ndarray  # (M, M) float32
    mask: np.ndarray  # (M, M) uint8: MEASURED, FILLED_BY_SYMMETRY or INPAINTED
    provenance: list[dict[str, Any]]
    source: str = ""  # the file (and dataset) it was read from; empty for an array
    counts: np.ndarray | None = None  # (M, M) measured pixels averaged into each cell (all zones); None: not kept
    # (M, M) the noise variance of each cell's value, in the image's units (NaN where inpainted); None where not
    # known (smoothing, histogram matching, files before it)
    variance: np.ndarray | None = None

    def step(self, name: str) -> dict[str, Any] | None:
        """The provenance entry of step ``name`` (mask, bragg, resample, ...), None when it did not run."""
        return next((entry for entry in self.provenance if entry["step"] == name), None)

    def summary(self) -> str:
        """One line: the image, masked pixels and Bragg peaks, and how many cells were filled."""
        from .results import short_name

        masked = (self.step("mask") or {}).get("masked_pixels", 0)
        peaks = (self.step("bragg") or {}).get("peak_pixels", 0)
        symmetry = int((self.mask == FILLED_BY_SYMMETRY).sum())
        inpainted = int((self.mask == INPAINTED).sum())
        name = short_name(self.source) if self.source else "array"
        return (
            f"{name}: {self.image.shape[0]}x{self.image.shape[1]}; {masked} pixels masked, {peaks} Bragg-peak pixels; "
            f"{symmetry} cells filled by symmetry, {inpainted} inpainted"
        )

    def record(self) -> dict[str, Any]:
        """What ``cfsx correct --json`` prints of the image: everything but the arrays, with the mask's counts."""
        cells = {"measured": MEASURED, "filled_by_symmetry": FILLED_BY_SYMMETRY, "inpainted": INPAINTED}
        return {"source": self.source, "shape": list(self.image.shape), "provenance": self.provenance,
                "cells": {name: int((self.mask == code).sum()) for name, code in cells.items()}}  # fmt: skip

    def to_json(self) -> str:
        """The whole record as JSON text; ``from_json`` gives it back."""
        return records.to_json(self)

    @classmethod
    def from_json(cls, text: str) -> Correction:
        """The record ``to_json`` wrote."""
        return records.from_json(cls, text)


def _strips(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of consecutive rows of about STRIP_PIXELS pixels each, covering the image."""
    rows = max(1, STRIP_PIXELS // max(shape[1], 1))
    for start in range(0, shape[0], rows):
        yield slice(start, min(start + rows, shape[0]))


def _sample(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """values[~invalid], or for large images an even subsample of about SAMPLE_PIXELS of them (for medians)."""
    step = max(1, values.size // SAMPLE_PIXELS) | 1  # odd: not aligned with the columns
    return values.ravel()[::step][~invalid.ravel()[::step]]


def invalid_pixels(image: np.ndarray, config: MaskConfig, extra: np.ndarray | None = None) -> np.ndarray:
    """True where a pixel carries no usable intensity."""
    invalid = ~np.isfinite(image)
    with np.errstate(invalid="ignore"):
        if config.zeros != "values":
            quantum = counting_quantum(image) if config.zeros == "auto" else None
            invalid |= (image == 0) if quantum is None else zero_gaps(image, quantum)
        if config.negative:
            invalid |= image < 0
        if config.saturated is not None:
            invalid |= image >= config.saturated
    for value in config.values:
        invalid |= image == value
    if extra is not None:
        if extra.shape != image.shape:
            raise DataError(f"mask of shape {extra.shape} does not fit the image {image.shape}")
        invalid |= extra.astype(bool)
    if config.edge and invalid.any():
        from scipy import ndimage

        invalid = ndimage.binary_dilation(invalid, iterations=config.edge)
    return invalid


def counting_quantum(image: np.ndarray) -> float | None:
    """The count of an image of (scaled) counts: every positive value an integer multiple of it; else None.

    The quantum is the smallest step between the image's distinct positive values (or the smallest value).
    Float images pass this by rounding alone only with a tiny quantum, which MAX_MEDIAN_COUNTS rules out.
    """
    finite = np.isfinite(image)
    with np.errstate(invalid="ignore"):
        values = np.unique(_sample(image, ~(finite & (image > 0))))
    if values.size == 0:
        return None
    quantum = float(min(values[0], np.diff(values).min())) if values.size > 1 else float(values[0])
    ratios = values / quantum
    if np.median(ratios) > MAX_MEDIAN_COUNTS or np.abs(ratios - np.rint(ratios)).max() > 1e-2:
        return None
    return quantum


def zero_gaps(image: np.ndarray, quantum: float) -> np.ndarray:
    """The gaps of a counting image: connected regions of 2 x 2 blocks of zeros where the local
    count rate (mean counts per pixel within GAP_SURROUNDINGS, each pixel clipped at median + 5 sqrt(median)
    + 5 counts) is at least GAP_MIN_RATE and the counts
    expected over the blocks reach GAP_EVIDENCE. Isolated zeros, and zero patches where counting makes
    them likely (faint regions), are measured values: there a gap needs a mask file or negative flags."""
    from scipy import ndimage

    with np.errstate(invalid="ignore"):
        zero = image == 0
        blocks = ndimage.binary_opening(zero, structure=np.ones((2, 2), bool))
        if not blocks.any():
            return blocks
        counted = np.isfinite(image) & (image >= 0)
        counts = np.where(counted, image / quantum, 0.0)
        # Outliers (Bragg peaks) must not raise the local rate around them: counts are clipped far above the median.
        typical = float(np.median(_sample(counts, ~counted)))
        np.minimum(counts, typical + 5.0 * np.sqrt(typical) + 5.0, out=counts)
        total = ndimage.uniform_filter(counts, GAP_SURROUNDINGS, mode="mirror")
        weight = ndimage.uniform_filter(counted.astype(np.float64), GAP_SURROUNDINGS, mode="mirror")
    rate = np.where(weight > 1e-9, total / np.maximum(weight, 1e-9), 0.0)[blocks]
    regions, count = ndimage.label(blocks)
    evidence = np.bincount(regions[blocks], weights=rate, minlength=count + 1)
    size = np.bincount(regions[blocks], minlength=count + 1)
    gap = (evidence >= GAP_EVIDENCE) & (evidence >= GAP_MIN_RATE * size)
    gap[0] = False
    return gap[regions]


class Pixels:
    """The pixels of one image in the model's reciprocal space: ``pixels(rows)`` is (h, k) of those rows
    (broadcastable), ``distance(rows)`` their distance (r.l.u.) from the nearest lattice point, ``q(rows)`` |Q|."""

    def __init__(self, shape: tuple[int, int], geometry: GeometryConfig, h_max: float, image_size: int) -> None:
        self.shape, self.map = shape, PixelMap.of(shape, geometry, h_max, image_size)

    def __call__(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        return self.map(rows, self.shape)

    def distance(self, rows: slice) -> np.ndarray:
        return self.map.lattice_distance(*self(rows))

    def q(self, rows: slice) -> np.ndarray:
        return self.map.q(rows, self.shape)


def pixel_coordinates(
    shape: tuple[int, int], geometry: GeometryConfig, h_max: float, image_size: int, rows: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(h, k) of every pixel centre (of the given rows only, when ``rows`` is given): from the calibration,
    or the whole image as the training window.

    Uncalibrated, the image is taken to cover the M x M cells of the training grid, so that the
    m-th of M equal blocks of pixels lands in output cell m (centred on h_m = -h_max + m step).
    """
    return tuple(np.broadcast_arrays(*_pixel_axes(shape, geometry, h_max, image_size, rows)))


def _pixel_axes(
    shape: tuple[int, int], geometry: GeometryConfig, h_max: float, image_size: int, rows: slice | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """pixel_coordinates as arrays that broadcast to the pixels (no full-size grid without a rotation)."""
    return Pixels(shape, geometry, h_max, image_size)(slice(None) if rows is None else rows)


def pixel_of(h: np.ndarray, k: np.ndarray, shape: tuple[int, int], geometry: GeometryConfig, h_max: float,
             image_size: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The (fractional) pixel row and column at (h, k): the inverse of pixel_coordinates."""
    return PixelMap.of(shape, geometry, h_max, image_size).pixel_of(h, k)


def _pixel_under_cells(image, invalid, missing, pixels: Pixels, h_max: float, image_size: int):
    """Cells without a pixel centre inside (pixels larger than cells) that lie on a valid pixel: that
    pixel's value. Returns the mask of such cells and their values."""
    from .engine import reciprocal_grid

    grid = reciprocal_grid(image_size, h_max)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    rows, columns = (np.rint(x).astype(np.int64) for x in pixels.map.pixel_of(h, k))
    inside = (rows >= 0) & (rows < image.shape[0]) & (columns >= 0) & (columns < image.shape[1])
    rows, columns = np.where(inside, rows, 0), np.where(inside, columns, 0)
    covered = missing & inside & ~invalid[rows, columns]
    return covered, image[rows[covered], columns[covered]]


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
        peaks = _near_lattice(image.shape, coordinates, config.lattice_radius)
    else:
        lattice = config.positions == "lattice" and coordinates is not None
        near = _near_lattice(image.shape, coordinates, config.lattice_radius) if lattice else None
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
            peaks |= _near_lattice(image.shape, coordinates, float(np.median(_peak_radii(peaks, coordinates))))
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
        window_rows, window_columns = (row + offsets) % rows, (column + offsets) % columns
        values = image[np.ix_(window_rows, window_columns)]
        valid = ~invalid[np.ix_(window_rows, window_columns)]
        tail, surroundings = values[on_ring & valid], values[around & valid]
        if tail.size < 3 or surroundings.size < 3:
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


def _lattice_distance(coordinates: Coordinates, rows: slice) -> np.ndarray:
    """Distance (r.l.u.) of the pixel centres of ``rows`` from the nearest reciprocal lattice point (integer h, k
    of the model; in the file's units when the coordinates know the lattice)."""
    if isinstance(coordinates, Pixels):
        return coordinates.distance(rows)
    h, k = coordinates(rows)
    return np.hypot(h - np.round(h), k - np.round(k))


def _near_lattice(shape: tuple[int, int], coordinates: Coordinates, radius: float) -> np.ndarray:
    """Pixels within ``radius`` r.l.u. of an integer h, k (strip by strip: no full-size float temporaries)."""
    near = np.empty(shape, dtype=bool)
    for rows in _strips(shape):
        near[rows] = _lattice_distance(coordinates, rows) <= radius
    return near


def _peak_radii(peaks: np.ndarray, coordinates: Coordinates) -> np.ndarray:
    """Per connected peak, the largest distance of its pixels from the nearest integer h, k."""
    from scipy import ndimage

    labels, count = ndimage.label(peaks)
    radii = np.zeros(count + 1)
    for rows in _strips(peaks.shape):
        strip = labels[rows]
        if strip.any():
            distance = np.broadcast_to(_lattice_distance(coordinates, rows), strip.shape)
            np.maximum.at(radii, strip[strip > 0], distance[strip > 0])
    return radii[1:]


def _tophat_outliers(image: np.ndarray, invalid: np.ndarray, config: BraggConfig) -> np.ndarray:
    """Pixels whose white top-hat (with a disk) stands ``threshold`` robust sigmas above its median."""
    from skimage import morphology

    if invalid.all():
        return np.zeros_like(invalid)
    filled = np.where(invalid, np.median(_sample(image, invalid)).astype(image.dtype), image)
    top_hat = morphology.white_tophat(filled, morphology.disk(config.radius))
    del filled
    values = _sample(top_hat, invalid)
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
    root = np.where(invalid, np.median(_sample(image, invalid)).astype(image.dtype), image)
    np.sqrt(np.maximum(root, 0, out=root), out=root)
    if image.size > config.local_coarse_above:
        local_median = _block_median(root, size)
    else:
        local_median = ndimage.median_filter(root, size=size).__getitem__
    strong = np.empty(image.shape, dtype=bool)
    for rows in _strips(image.shape):  # strip by strip: no full-size temporaries
        median = local_median(rows)
        np.greater(root[rows], config.local_contrast * median, out=strong[rows])
        root[rows] -= median
    del local_median, median
    residual = root  # sqrt(I) minus its local median
    sigma = _robust_sigma(_sample(residual, invalid))
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


def _resample(
    image: np.ndarray, invalid: np.ndarray, coordinates: Coordinates, image_size: int, h_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """area_average strip by strip: (h, k) of a strip of rows at a time, never of the whole image."""
    total, count = np.zeros(image_size**2), np.zeros(image_size**2, dtype=np.int64)
    for rows in _strips(image.shape):
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


def _falloff(image: np.ndarray, h: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, float]:
    """exp(-B q^2) fitted to log I by least squares (q^2 = h^2 + k^2), normalised to 1 at q = 0."""
    q_squared = (h**2 + k**2).ravel()
    positive = image.ravel() > 0
    if positive.sum() < 3:
        return np.ones_like(image), 0.0
    slope, _ = np.polyfit(q_squared[positive], np.log(image.ravel()[positive]), 1)
    return np.exp(slope * (h**2 + k**2)), float(-slope)


def correct_image(
    raw: Any,
    config: CorrectionConfig,
    extra_mask: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Correction:
    """Run the correction steps (module docstring) on one image; ``reference``: training images to match;
    ``progress(fraction)`` is told how much of the image's correction is done after each long step.

    Extreme values (1e300, subnormals) may overflow on the way; the result is then checked and refused.
    The time and memory grow linearly with the number of pixels; ``raw`` is not changed.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _correct_image(raw, config, extra_mask, reference, progress or (lambda fraction: None))


def correct_images(
    images: Any, config: CorrectionConfig | None = None, reference: np.ndarray | None = None
) -> list[Correction]:
    """``correct_image`` on each of several raw images (a (S, H, W) array or a list of 2-D arrays), with the
    built-in config's defaults when no ``config`` is given."""
    config = config or CorrectionConfig()
    return [correct_image(image, config, reference=reference) for image in images]


@dataclass
class _Work:
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


def _mask_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    work.invalid = invalid_pixels(work.image, config.mask, work.extra_mask)
    masked = int(np.count_nonzero(work.invalid))
    if masked == work.invalid.size:
        raise DataError("no valid pixel in the image (all masked, NaN, or <= 0)")
    return [{"step": "mask", **dataclasses.asdict(config.mask), "masked_pixels": masked}]


def _bragg_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    if not config.bragg.enabled:
        return []
    peaks, found = bragg_peaks(work.image, work.invalid, config.bragg, work.coordinates)
    work.invalid |= peaks
    return [{"step": "bragg", **dataclasses.asdict(config.bragg), **found}]


def _resample_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    geometry, out = config.geometry, config.output
    if geometry.calibrated and geometry.zones == "all":
        return _fold_step(work, config)
    resampled, count = _resample(work.image, work.invalid, work.coordinates, out.image_size, out.h_max)
    missing = count == 0
    covered = _pixel_under_cells(work.image, work.invalid, missing, work.coordinates, out.h_max, out.image_size)
    resampled[covered[0]] = covered[1]
    missing[covered[0]] = False
    count[covered[0]] = 1
    measured = 1.0 - missing.mean()
    if missing.all() or measured < out.min_measured:
        raise _refusal(work, config, measured)
    work.resampled, work.missing, work.counts = resampled, missing, count
    quantum = counting_quantum(work.image)
    with np.errstate(invalid="ignore", divide="ignore"):
        if quantum is not None:  # Poisson: the variance of a mean of n counts' values is quantum x mean / n
            work.variance = np.where(missing, np.nan, quantum * np.maximum(resampled, 0) / count)
        else:
            from .zones import pixel_noise

            noise = pixel_noise(work.image, work.invalid, _strips(work.image.shape), lambda rows: 1.0)
            work.variance = np.where(missing, np.nan, np.float64(noise) ** 2 / count)
    work.mask = np.zeros(missing.shape, dtype=np.uint8)
    return [
        {"step": "resample", "method": "area average", "image_size": out.image_size, "h_max": out.h_max,
         "geometry": dataclasses.asdict(geometry), "calibrated": geometry.calibrated, **_window(work, config),
         "noise_model": _noise_model(quantum),
         "empty_cells": int(missing.sum()), "cells_from_the_pixel_under_their_centre": int(covered[0].sum()),
         "median_pixels_per_cell": float(np.median(count[count > 0])) if (count > 0).any() else 0.0}
    ]  # fmt: skip


def _noise_model(quantum: float | None) -> str:
    """How the pixels' noise is modelled: Poisson for an image of counts, else one level for every pixel."""
    if quantum is None:
        return "one level for every pixel, from the differences of neighbours"
    return f"Poisson: counts of {quantum:.6g} (variance = quantum x intensity)"


def _window(work: _Work, config: CorrectionConfig) -> dict[str, Any]:
    """The window's place in the file's axes: its centre, the lattice, and the axes' names (calibrated only)."""
    if not config.geometry.calibrated:
        return {}
    pixel_map = work.coordinates.map
    return {"window": {"centre": [float(v) for v in pixel_map.centre], "axes": config.geometry.axes,
                       "basis": [list(v) for v in pixel_map.lattice.basis], "lattice": pixel_map.lattice.name,
                       "through_origin": pixel_map.lattice.through_origin}}  # fmt: skip


def _layout(work: _Work, config: CorrectionConfig):
    """Where the fold puts the image's pixels: the zones they reach (from the model coordinates of its four
    corners) and the output grid."""
    from .zones import Layout, zone_range

    rows, columns = work.image.shape
    pixel_map = work.coordinates.map
    corners = np.array([[-0.5, -0.5], [-0.5, columns - 0.5], [rows - 0.5, -0.5], [rows - 0.5, columns - 0.5]])
    model = (corners - pixel_map.origin) @ pixel_map.matrix.T - pixel_map.shift
    return Layout(*zone_range(model[:, 0], model[:, 1]), config.output.image_size, config.output.h_max)


def _fold_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    """Every measured zone folded onto the window: the falloff fitted and divided out, each zone compared with
    the others and down-weighted when it disagrees (cfsx.zones)."""
    from .zones import fold, reported

    geometry, out = config.geometry, config.output
    pixels, size = work.coordinates, out.image_size
    quantum = counting_quantum(work.image)
    folded = fold(work.image, work.invalid, pixels, functools.partial(_strips, work.image.shape),
                  _layout(work, config), geometry.falloff_degree, quantum)  # fmt: skip
    stats, falloff, noise, image = folded.statistics, folded.falloff, folded.statistics.noise, folded.image
    indices = folded.sums.first + np.stack(np.divmod(np.arange(len(folded.sums.pixels)), folded.sums.shape[1]), 1)
    missing = ~np.isfinite(image)
    under = _pixels_under_folded_cells(work, config, missing, indices, falloff)
    if under is not None:
        cells, values, zones_used = under
        image[cells] = values
        stats.pixels.reshape(size, size)[cells] = zones_used
        stats.variance.reshape(size, size)[cells] = np.nan  # one pixel per zone: its noise is not modelled here
        missing = ~np.isfinite(image)
    measured = 1.0 - missing.mean()
    if missing.all() or measured < out.min_measured:
        raise _refusal(work, config, measured)
    work.resampled, work.missing = np.where(missing, 0.0, image), missing
    work.counts, work.mask = stats.pixels.reshape(size, size), np.zeros(missing.shape, dtype=np.uint8)
    work.periodic = float(2 * out.h_max).is_integer()
    work.variance = stats.variance.reshape(size, size)
    for entry, index in zip(stats.entries, [e["zone"] for e in stats.entries], strict=True):
        point = pixels.map.point_of(np.array(index))
        entry["G"] = [float(v) for v in point]
        entry["name"] = axis_values(geometry.axes, point, ",")
    q_max = float(np.hypot(*np.abs(pixels.map.point_of(np.abs(indices).max(axis=0) + 1))))
    disagreeing = [entry["name"] for entry in stats.entries if entry["disagrees"]]
    for entry in stats.consistency:  # G in the file's axes too: (2, 0) of an F lattice, not the model's (1, 0)
        vector = np.asarray(entry["G"]) @ pixels.map.lattice.matrix
        entry["G_file"] = [float(v) for v in vector]
        entry["name"] = axis_values(geometry.axes, vector, ",")
    return [
        {"step": "resample", "method": "fold of every measured zone", "image_size": size, "h_max": out.h_max,
         "geometry": dataclasses.asdict(geometry), "calibrated": True, **_window(work, config),
         "empty_cells": int(missing.sum()), "median_pixels_per_cell": float(np.median(stats.pixels[stats.pixels > 0])),
         "cells_from_the_pixels_under_their_centre": 0 if under is None else int(under[0].sum())},
        reported({"step": "zones", "lattice": pixels.map.lattice.describe(), "zones": len(stats.entries),
         "cells_measured": float(measured), "median_zones_per_cell": float(np.median(stats.zones_per_cell)),
         "falloff": {"model": "f(|Q|) = exp(c0 + c1 |Q| + ...), |Q| in the file's r.l.u.",
                     "coefficients": falloff.coefficients, "curve": falloff.curve(q_max)},
         "noise": noise, "noise_model": _noise_model(quantum), "consistency": stats.consistency,
         "disagreeing": disagreeing, "per_zone": stats.entries}),
    ]  # fmt: skip


MAX_UNDER_POINTS = 1 << 22  # empty cells x zones looked up by the fold's fallback (more: left to inpainting)


def _pixels_under_folded_cells(work: _Work, config: CorrectionConfig, missing: np.ndarray, zones: np.ndarray,
                               falloff) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """Cells no pixel centre fell into (pixels coarser than cells along an axis): the mean over the zones of the
    valid pixel under the cell's centre in each (falloff divided out), as the window around one centre does.
    Returns the cells filled, their values and how many zones gave one; None when there is nothing to fill."""
    from .engine import reciprocal_grid

    if not missing.any() or missing.sum() * len(zones) > MAX_UNDER_POINTS:
        return None
    grid = reciprocal_grid(config.output.image_size, config.output.h_max)
    rows, columns = np.nonzero(missing)
    h = grid[rows][:, None] + zones[None, :, 0]  # (cells, zones): the cell's equivalent point in every zone
    k = grid[columns][:, None] + zones[None, :, 1]
    pixel_map, image = work.coordinates.map, work.image
    pixel_rows, pixel_columns = (np.rint(x).astype(np.int64) for x in pixel_map.pixel_of(h, k))
    inside = (pixel_rows >= 0) & (pixel_rows < image.shape[0]) & (pixel_columns >= 0) & (pixel_columns < image.shape[1])
    pixel_rows, pixel_columns = np.where(inside, pixel_rows, 0), np.where(inside, pixel_columns, 0)
    usable = inside & ~work.invalid[pixel_rows, pixel_columns]
    if not usable.any():
        return None
    file_points = pixel_map.point_of(np.stack([h, k], axis=-1))
    scale = falloff(np.hypot(file_points[..., 0], file_points[..., 1])) if falloff.coefficients else 1.0
    values = np.where(usable, image[pixel_rows, pixel_columns] / scale, 0.0)
    used = usable.sum(axis=1)
    filled = used > 0
    cells = np.zeros(missing.shape, dtype=bool)
    cells[rows[filled], columns[filled]] = True
    return cells, values.sum(axis=1)[filled] / used[filled], used[filled]


def _refusal(work: _Work, config: CorrectionConfig, measured: float) -> DataError:
    """The error for a window too little measured; around one centre, it names the best-measured windows and
    the fold of all zones (by config key; the command line shows the flags)."""
    from .zones import accumulate, candidate_coverage

    geometry, out = config.geometry, config.output
    where = f"only {100 * measured:.1f} % of the window h, k in [-h_max, h_max)"
    limit = f"(less than the {100 * out.min_measured:g} % required)"
    if not geometry.calibrated:
        return DataError(f"{where} is measured {limit}: check the mask")
    if geometry.zones == "all":
        return DataError(f"{where} is measured in any zone {limit}: check the calibration and the mask")
    layout = _layout(work, config)
    candidates = candidate_coverage(work.invalid, work.coordinates, _strips(work.image.shape), layout)
    sums = accumulate(work.image, work.invalid, work.coordinates, _strips(work.image.shape), layout)
    pixel_map, names = work.coordinates.map, geometry.axes
    advice = []
    for index, fraction in candidates[:2]:
        if fraction > measured:
            point = pixel_map.point_of(index)
            value = "{" + axis_values(names, point).replace("=", ": ") + "}" if names else axis_values(names, point)
            advice.append(
                ("geometry.centre", value, axis_values(names, point, ","), f"{100 * fraction:.0f} % measured")
            )
    folded = float((sums.count.sum(axis=0) > 0)[sums.tile].mean())
    if folded > measured:
        advice.append(("geometry.zones", "all", "all", f"{100 * folded:.0f} % of the window measured in some zone"))
    centre = axis_values(names, pixel_map.centre)
    if not advice:
        return DataError(f"{where} around the centre {centre} is measured {limit}; check the calibration")
    return AdvisedError(f"{where} around the centre {centre} is measured {limit}; try {{advice}}", advice)


def _reconstruct_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    from skimage import restoration

    from .symmetry import symmetry_average
    from .zones import reported

    rec, done = config.reconstruction, []
    group = rec.group
    lattice = work.coordinates.map.lattice
    centred_on_origin = not np.any(work.coordinates.map.centre)
    if group == "friedel" and not lattice.through_origin:
        done.append({"step": "symmetry", "symmetry": "none",
                     "skipped": "Friedel's law: the plane does not pass through the origin"})  # fmt: skip
        group = "none"
    elif group == "friedel" and not work.periodic and not centred_on_origin:
        # (-h, -k) about another lattice point is Friedel's mate only where the image repeats with the lattice
        done.append(
            {
                "step": "symmetry",
                "symmetry": "none",
                "skipped": "Friedel's law: the window is centred off the origin and the zones are not folded",
            }
        )
        group = "none"
    if group in ("mm", "4", "4mm") and not (lattice.rectangular and (lattice.square or group == "mm")):
        raise DataError(
            f"symmetry {group} acts along the plane's axes: it needs a basis along them"
            f"{' of equal lengths' if '4' in group else ''}; the plane's is {lattice.describe()}"
        )
    if group != "none":
        weights = np.where(work.missing, 0, work.counts).astype(np.float64)
        work.resampled, filled, record, work.variance = symmetry_average(
            work.resampled, weights, group, work.periodic, work.variance
        )
        work.mask[filled] = FILLED_BY_SYMMETRY
        work.missing &= ~filled
        done.append(reported({"step": "symmetry", **record}))
    missing = work.missing
    if missing.any():
        if rec.inpaint:
            work.resampled = restoration.inpaint_biharmonic(np.where(missing, 0.0, work.resampled), missing)
            done.append({"step": "inpaint", "method": "biharmonic", "cells": int(missing.sum())})
        else:
            work.resampled = np.where(missing, np.nanmean(work.resampled[~missing]), work.resampled)
            done.append({"step": "fill", "method": "mean", "cells": int(missing.sum())})
        work.mask[missing] = INPAINTED
    return done


def _background_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    background, out, done = config.background, config.output, []
    if background.subtract_percentile is not None:
        level = float(np.percentile(work.resampled, background.subtract_percentile))
        work.resampled = np.maximum(work.resampled - level, 0.0)  # the noise stays what it was
        done.append({"step": "background", "percentile": background.subtract_percentile, "subtracted": level})
    if background.radial_falloff:
        grid = np.linspace(-out.h_max, out.h_max, out.image_size, endpoint=False)
        grid_h, grid_k = np.meshgrid(grid, grid, indexing="ij")
        falloff, b_factor = _falloff(work.resampled, grid_h, grid_k)
        work.resampled = work.resampled / falloff
        if work.variance is not None:
            work.variance = work.variance / falloff**2
        done.append({"step": "falloff", "model": "exp(-B q^2)", "B": b_factor})
    return done


def _smoothing_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    from scipy import ndimage

    smoothing = config.smoothing
    if smoothing.method != "none" and smoothing.size > 0:
        work.variance = None  # neighbouring cells share noise now: a variance per cell no longer describes it
    if smoothing.method == "gaussian" and smoothing.size > 0:
        work.resampled = ndimage.gaussian_filter(work.resampled, smoothing.size, mode="wrap")
    elif smoothing.method == "median" and smoothing.size > 0:
        work.resampled = ndimage.median_filter(work.resampled, size=max(1, round(smoothing.size)), mode="wrap")
    return [{"step": "smoothing", **dataclasses.asdict(smoothing)}]


def _normalise_step(work: _Work, config: CorrectionConfig) -> list[dict[str, Any]]:
    if work.reference is not None:
        work.resampled = match_histogram(work.resampled, work.reference)
        work.variance = None  # a nonlinear map of the intensities
        return [{"step": "normalise", "method": "histogram matching to the reference images"}]
    mean, target = work.resampled.mean(), config.output.mean
    if not np.isfinite(mean) or mean <= 0:
        raise DataError("the corrected image has no positive mean intensity; check the mask and background")
    work.resampled = work.resampled * (target / mean)
    if work.variance is not None:
        work.variance = work.variance * (target / mean) ** 2
    return [{"step": "normalise", "method": "mean", "mean": target, "factor": float(f"{target / mean:.9g}")}]


# The correction, in order (module docstring): each step changes the work and returns its provenance entries
# (none when it is switched off), with the fraction of one image's time done after it (for progress bars).
STEPS: tuple[tuple[Callable[[_Work, CorrectionConfig], list[dict[str, Any]]], float | None], ...] = (
    (_mask_step, 0.1),
    (_bragg_step, 0.8),
    (_resample_step, 0.95),
    (_reconstruct_step, None),
    (_background_step, None),
    (_smoothing_step, None),
    (_normalise_step, None),
)


def _correct_image(raw: Any, config: CorrectionConfig, extra_mask, reference, progress: Progress) -> Correction:
    image = as_image(raw)
    out, geometry = config.output, config.geometry
    if not geometry.calibrated and (geometry.centre is not None or geometry.lattice != "P"):
        raise AdvisedError(
            "the image has no calibration (no r.l.u. axes in the file, none given), so a centre or a crystal lattice "
            "cannot be placed on it: give {advice}",
            [("geometry.origin", "[row, column]", "ROW,COL", "the pixel of h = k = 0"),
             ("geometry.pixels_per_rlu", "[rows, columns]", "A,B", "")],
        )  # fmt: skip
    work = _Work(image, Pixels(image.shape, config.geometry, out.h_max, out.image_size), extra_mask, reference)
    provenance: list[dict[str, Any]] = [{"step": "input", "shape": list(image.shape)}]
    for step, done in STEPS:
        provenance += step(work, config)
        if done is not None:
            progress(done)
    if not np.all(np.isfinite(work.resampled)):
        raise DataError("the correction produced NaN or infinite values")
    progress(1.0)
    variance = None if work.variance is None else np.where(work.mask == INPAINTED, np.nan, work.variance)
    return Correction(work.resampled.astype(np.float32), work.mask, provenance, counts=work.counts.astype(np.int64),
                      variance=variance)  # fmt: skip


def mask_of(config: CorrectionConfig) -> np.ndarray | None:
    """The pixels the config's mask file (``mask.file``) excludes, None without one."""
    return read_image(config.mask.file)[0] != 0 if config.mask.file else None


def correct_file(
    spec: str,
    config: CorrectionConfig,
    extra_mask: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, Correction]:
    """Read one image and correct it; a file's own r.l.u. axes calibrate it when the config has no calibration.
    Returns the raw image and the corrected one, whose provenance starts with what was read."""
    raw, info = read_image(spec)
    corrected = correct_image(raw, calibrate_from_file(config, raw.shape, info), extra_mask, reference, progress)
    corrected.provenance.insert(0, {"step": "read", **info})
    corrected.source = spec
    return raw, corrected


def warn_uncalibrated(provenances: list[list[dict[str, Any]]], sources: list[str]) -> None:
    """One warning line for the images read without a calibration (taken as the training window itself)."""
    from .results import short_name

    names = [short_name(source) or "array" for steps, source in zip(provenances, sources, strict=True)
             if any(step["step"] == "resample" and not step.get("calibrated", True) for step in steps)]  # fmt: skip
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        log.warning("%s: no calibration (no r.l.u. axes in the file, none given): taken as h, k in [-h_max, h_max) "
                    "of the training window, the whole image", shown)  # fmt: skip


FIGURE_PIXELS = 2048  # larger raw images are shown (in --figure) by every n-th pixel, n = size // this


def preview(raw: np.ndarray) -> np.ndarray:
    """The raw image for its figure: every n-th pixel of a large one (plotting 8192^2 pixels needs GBs)."""
    step = preview_step(raw.shape)
    return raw[::step, ::step]


def preview_step(shape: tuple[int, ...]) -> int:
    """The n of ``preview``."""
    return max(1, -(-max(shape) // FIGURE_PIXELS))


def _progress_within(progress: Callable[[float, int], None], number: int, total: int, fraction: float) -> None:
    """Report image ``number`` (from 0) ``fraction`` done, as images done of ``total``."""
    if fraction < 1.0:
        progress(number + fraction, total)


def reference_images(path, limit: int = 2000) -> np.ndarray:
    """Up to ``limit`` images of a training dataset, evenly spread, for histogram matching."""
    from .dataset import open_dataset

    with open_dataset(path) as file:
        images = file["images"]
        step = max(1, len(images) // limit)
        return np.asarray(images[::step][:limit], dtype=np.float64)


def correct_files(
    inputs: list[str],
    output,
    config: CorrectionConfig,
    reference: str | None = None,
    figure_dir=None,
    progress: Callable[[float, int], None] | None = None,
) -> list[Correction]:
    """Correct every image of ``inputs`` and write them, with masks and provenance, to ``output`` (.h5).

    ``progress(done, total)`` is told the number of images done, with fractions within a long image.
    """
    from .outputs import claim_outputs

    specs = expand_inputs(inputs)
    sources = [file_of(spec) for spec in specs]
    with claim_outputs(files=[output], inputs=[*sources, config.mask.file, reference]):  # before the work, not after
        return _correct_files(specs, output, config, reference, figure_dir, progress)


def _correct_files(
    specs: list[str],
    output,
    config: CorrectionConfig,
    reference: str | None,
    figure_dir,
    progress: Callable[[float, int], None] | None,
) -> list[Correction]:
    import json

    from .dataset import write_corrections

    extra_mask = mask_of(config)
    reference_set = reference_images(reference) if reference else None
    if figure_dir is not None and not Path(figure_dir).is_dir():
        raise DataError(f"figure directory {figure_dir} does not exist")
    results = []
    for number, spec in enumerate(specs):
        within = functools.partial(_progress_within, progress, number, len(specs)) if progress else None
        raw, corrected = correct_file(spec, config, extra_mask, reference_set, within)
        results.append(corrected)
        log.info("%s: corrected (%s)", spec, ", ".join(step["step"] for step in corrected.provenance))
        log.debug("%s: %s", spec, json.dumps(corrected.provenance, default=float))
        if figure_dir is not None:
            from . import plots

            name = f"{number:04d}-{Path(spec.partition('::')[0]).stem}.png"
            figure = plots.correction_figure(preview(raw), corrected.image, corrected.mask, reference_set)
            plots.save(figure, Path(figure_dir) / name)
            zones = plots.zones_figure(preview(raw), corrected, preview_step(raw.shape))
            if zones is not None:
                plots.save(zones, Path(figure_dir) / name.replace(".png", "-zones.png"))
        del raw
        if progress:
            progress(number + 1, len(specs))
    warn_uncalibrated([c.provenance for c in results], specs)
    write_corrections(output, results, config)
    return results
