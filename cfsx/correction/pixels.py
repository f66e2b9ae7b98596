"""The pixels of a raw image: which are not measurements (mask step), their counting quantum and gaps, and where each
lies in reciprocal space (``Pixels``: the calibration's map, strip by strip)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from cfsx.config import GeometryConfig, MaskConfig
from cfsx.correction.geometry import PixelMap
from cfsx.errors import DataError

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


def row_strips(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of consecutive rows of about STRIP_PIXELS pixels each, covering the image."""
    rows = max(1, STRIP_PIXELS // max(shape[1], 1))
    for start in range(0, shape[0], rows):
        yield slice(start, min(start + rows, shape[0]))


def sample_valid(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
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
        values = np.unique(sample_valid(image, ~(finite & (image > 0))))
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
        typical = float(np.median(sample_valid(counts, ~counted)))
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


def pixels_under_cells(image, invalid, missing, pixels: Pixels, h_max: float, image_size: int):
    """Cells without a pixel centre inside (pixels larger than cells) that lie on a valid pixel: that
    pixel's value. Returns the mask of such cells and their values."""
    from cfsx.physics.engine import reciprocal_grid

    grid = reciprocal_grid(image_size, h_max)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    rows, columns = (np.rint(x).astype(np.int64) for x in pixels.map.pixel_of(h, k))
    inside = (rows >= 0) & (rows < image.shape[0]) & (columns >= 0) & (columns < image.shape[1])
    rows, columns = np.where(inside, rows, 0), np.where(inside, columns, 0)
    covered = missing & inside & ~invalid[rows, columns]
    return covered, image[rows[covered], columns[covered]]


def lattice_distance(coordinates: Coordinates, rows: slice) -> np.ndarray:
    """Distance (r.l.u.) of the pixel centres of ``rows`` from the nearest reciprocal lattice point (integer h, k
    of the model; in the file's units when the coordinates know the lattice)."""
    if isinstance(coordinates, Pixels):
        return coordinates.distance(rows)
    h, k = coordinates(rows)
    return np.hypot(h - np.round(h), k - np.round(k))


def near_lattice(shape: tuple[int, int], coordinates: Coordinates, radius: float) -> np.ndarray:
    """Pixels within ``radius`` r.l.u. of an integer h, k (strip by strip: no full-size float temporaries)."""
    near = np.empty(shape, dtype=bool)
    for rows in row_strips(shape):
        near[rows] = lattice_distance(coordinates, rows) <= radius
    return near
