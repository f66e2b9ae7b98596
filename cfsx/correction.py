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
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Sections, _is_int, _is_number, _require
from .errors import DataError


@dataclass(frozen=True)
class MaskConfig:
    nonpositive: bool = True  # values <= 0 are "not measured" in many reduced data sets (not for raw counts!)
    negative: bool = True  # values < 0: the usual flag of detector gaps and dead pixels
    saturated: float | None = None  # values >= this are masked
    values: list[float] = field(default_factory=list)  # exact values to mask (for example a gap marker)
    edge: int = 0  # also mask valid pixels within this many pixels of a masked one (partly covered edge bins)

    def __post_init__(self) -> None:
        _require(_is_int(self.edge) and self.edge >= 0, "mask.edge must be an integer >= 0")
        _require(isinstance(self.nonpositive, bool), "mask.nonpositive must be true or false")
        _require(isinstance(self.negative, bool), "mask.negative must be true or false")
        _require(self.saturated is None or _is_number(self.saturated), "mask.saturated must be a number or null")
        _require(
            isinstance(self.values, list) and all(_is_number(v) for v in self.values), "mask.values must be numbers"
        )


@dataclass(frozen=True)
class BraggConfig:
    enabled: bool = True
    # local: sharp outliers above a local median (below); tophat: white top-hat with a disk;
    # lattice: disks at integer h, k (needs a calibration)
    method: str = "local"
    radius: int = 3  # top-hat disk radius in detector pixels
    threshold: float = 5.0  # top-hat: robust standard deviations of the top-hat image
    dilate: int = 2  # grow each masked peak by this many pixels
    lattice_radius: float = 0.08  # lattice method: mask radius around integer h, k, in reciprocal lattice units
    local_size: int = 15  # local: median window (pixels), wider than a Bragg peak, narrower than diffuse features
    local_threshold: float = 20.0  # local: a peak's seed stands this many robust sigmas above the local median
    local_contrast: float = 3.0  # local: ... and sqrt(I) this many times the local median's (9x the intensity)
    local_grow: float = 5.0  # local: a peak extends over connected pixels this many sigmas above the median

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "bragg.enabled must be true or false")
        _require(
            self.method in ("local", "tophat", "lattice"),
            f"bragg.method must be local, tophat or lattice, got {self.method!r}",
        )
        for name in ("radius", "dilate", "local_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"bragg.{name} >= 0")
        for name in ("threshold", "local_threshold", "local_contrast", "local_grow"):
            _require(_is_number(getattr(self, name)) and getattr(self, name) > 0, f"bragg.{name} must be a number > 0")
        _require(_is_number(self.lattice_radius) and self.lattice_radius > 0, "bragg.lattice_radius must be > 0")


@dataclass(frozen=True)
class GeometryConfig:
    """Reciprocal-space calibration; without origin the whole image is taken as the training window."""

    origin: list[float] | None = None  # [row, column] pixel of h = k = 0
    pixels_per_rlu: list[float] | None = None  # [along rows (h), along columns (k)]
    rotation: float = 0.0  # degrees, of the (h, k) axes against the pixel axes
    file_axes: bool = True  # without origin: calibrate from the file's own r.l.u. axes (Mantid MDHisto)
    centre: list[int] = field(default_factory=lambda: [0, 0])  # reciprocal lattice point the window is centred on

    def __post_init__(self) -> None:
        _require(isinstance(self.file_axes, bool), "geometry.file_axes must be true or false")
        _require(
            isinstance(self.centre, list) and len(self.centre) == 2 and all(_is_int(v) for v in self.centre),
            f"geometry.centre must be two integers [h, k] (a reciprocal lattice point), got {self.centre!r}",
        )
        for name in ("origin", "pixels_per_rlu"):
            value = getattr(self, name)
            _require(
                value is None or (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)),
                f"geometry.{name} must be [row, column] numbers or null",
            )
        _require((self.origin is None) == (self.pixels_per_rlu is None), "geometry needs origin and pixels_per_rlu")
        _require(self.pixels_per_rlu is None or min(self.pixels_per_rlu) > 0, "geometry.pixels_per_rlu must be > 0")
        _require(_is_number(self.rotation), "geometry.rotation must be a number")

    @property
    def calibrated(self) -> bool:
        return self.origin is not None


@dataclass(frozen=True)
class ReconstructionConfig:
    friedel: bool = True  # fill (h, k) from (-h, -k)
    mirrors: bool = False  # also from (-h, k) and (h, -k): only for crystals with those mirror planes
    inpaint: bool = True  # biharmonic inpainting of what is still missing

    def __post_init__(self) -> None:
        for name in ("friedel", "mirrors", "inpaint"):
            _require(isinstance(getattr(self, name), bool), f"reconstruction.{name} must be true or false")


@dataclass(frozen=True)
class BackgroundConfig:
    subtract_percentile: float | None = None  # subtract this percentile of the image (clipped at zero)
    radial_falloff: bool = False  # divide by a fitted exp(-B (h^2 + k^2))

    def __post_init__(self) -> None:
        _require(
            self.subtract_percentile is None
            or (_is_number(self.subtract_percentile) and 0 <= self.subtract_percentile < 100),
            "background.subtract_percentile must be in [0, 100) or null",
        )
        _require(isinstance(self.radial_falloff, bool), "background.radial_falloff must be true or false")


@dataclass(frozen=True)
class SmoothingConfig:
    method: str = "none"  # gaussian, median or none
    size: float = 0.7  # Gaussian sigma or median window, in output pixels

    def __post_init__(self) -> None:
        _require(self.method in ("gaussian", "median", "none"), "smoothing.method must be gaussian, median or none")
        _require(_is_number(self.size) and self.size >= 0, "smoothing.size must be a number >= 0")


@dataclass(frozen=True)
class OutputConfig:
    image_size: int = 64
    h_max: float = 1.0
    mean: float = 0.25  # normalised mean intensity: c (1 - c) of the training data at c = 0.5
    min_measured: float = 0.1  # refuse an image that measures less than this fraction of the window's cells

    def __post_init__(self) -> None:
        _require(_is_number(self.min_measured) and 0 <= self.min_measured <= 1, "output.min_measured must be in [0, 1]")
        _require(isinstance(self.image_size, int) and self.image_size >= 4, "output.image_size must be >= 4")
        _require(_is_number(self.h_max) and self.h_max > 0, "output.h_max must be > 0")
        _require(_is_number(self.mean) and self.mean > 0, "output.mean must be > 0")


@dataclass(frozen=True)
class CorrectionConfig(Sections):
    mask: MaskConfig = field(default_factory=MaskConfig)
    bragg: BraggConfig = field(default_factory=BraggConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        _require(
            not (self.bragg.enabled and self.bragg.method == "lattice" and not self.geometry.calibrated),
            "bragg.method lattice needs a calibration (geometry.origin and geometry.pixels_per_rlu)",
        )


# Mask codes of a corrected image.
MEASURED, FILLED_BY_SYMMETRY, INPAINTED = 0, 1, 2


@dataclass
class Corrected:
    image: np.ndarray  # (M, M) float32
    mask: np.ndarray  # (M, M) uint8: MEASURED, FILLED_BY_SYMMETRY or INPAINTED
    provenance: list[dict[str, Any]]


def as_image(array: Any) -> np.ndarray:
    """A 2-D float64 copy of any numeric array, with one clear error for anything else."""
    try:
        image = np.array(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"not a numeric image (dtype {getattr(array, 'dtype', type(array).__name__)})") from None
    image = np.squeeze(image)
    if image.ndim != 2 or min(image.shape) < 2:
        raise DataError(f"an image must be 2-D with at least 2 x 2 pixels, got shape {np.shape(array)}")
    return image


def invalid_pixels(image: np.ndarray, config: MaskConfig, extra: np.ndarray | None = None) -> np.ndarray:
    """True where a pixel carries no usable intensity."""
    invalid = ~np.isfinite(image)
    with np.errstate(invalid="ignore"):
        if config.nonpositive:
            invalid |= image <= 0
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


def pixel_coordinates(
    shape: tuple[int, int], geometry: GeometryConfig, h_max: float, image_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(h, k) of every pixel centre: from the calibration, or the whole image as the training window.

    Uncalibrated, the image is taken to cover the M x M cells of the training grid, so that the
    m-th of M equal blocks of pixels lands in output cell m (centred on h_m = -h_max + m step).
    """
    rows, columns = np.meshgrid(np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float), indexing="ij")
    if not geometry.calibrated:
        window = 2 * h_max
        half_cell = h_max / image_size
        return (
            -h_max - half_cell + window * (rows + 0.5) / shape[0],
            -h_max - half_cell + window * (columns + 0.5) / shape[1],
        )
    u = (rows - geometry.origin[0]) / geometry.pixels_per_rlu[0]
    v = (columns - geometry.origin[1]) / geometry.pixels_per_rlu[1]
    angle = math.radians(geometry.rotation)
    # Diffuse scattering of a lattice repeats with the reciprocal lattice: any lattice point can be the centre.
    h = math.cos(angle) * u - math.sin(angle) * v - geometry.centre[0]
    k = math.sin(angle) * u + math.cos(angle) * v - geometry.centre[1]
    return h, k


def pixel_of(h: np.ndarray, k: np.ndarray, shape: tuple[int, int], geometry: GeometryConfig, h_max: float,
             image_size: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The (fractional) pixel row and column at (h, k): the inverse of pixel_coordinates."""
    if not geometry.calibrated:
        window, half_cell = 2 * h_max, h_max / image_size
        return (h + h_max + half_cell) * shape[0] / window - 0.5, (k + h_max + half_cell) * shape[1] / window - 0.5
    h, k = h + geometry.centre[0], k + geometry.centre[1]
    angle = math.radians(geometry.rotation)
    u, v = math.cos(angle) * h + math.sin(angle) * k, -math.sin(angle) * h + math.cos(angle) * k
    return geometry.origin[0] + u * geometry.pixels_per_rlu[0], geometry.origin[1] + v * geometry.pixels_per_rlu[1]


def _pixel_under_cells(image, invalid, missing, geometry: GeometryConfig, h_max: float, image_size: int):
    """Cells without a pixel centre inside (pixels larger than cells) that lie on a valid pixel: that
    pixel's value. Returns the mask of such cells and their values."""
    from .engine import reciprocal_grid

    grid = reciprocal_grid(image_size, h_max)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    rows, columns = (np.rint(x).astype(np.int64) for x in pixel_of(h, k, image.shape, geometry, h_max, image_size))
    inside = (rows >= 0) & (rows < image.shape[0]) & (columns >= 0) & (columns < image.shape[1])
    rows, columns = np.where(inside, rows, 0), np.where(inside, columns, 0)
    covered = missing & inside & ~invalid[rows, columns]
    return covered, image[rows[covered], columns[covered]]


def bragg_peaks(image: np.ndarray, invalid: np.ndarray, config: BraggConfig, h: np.ndarray, k: np.ndarray):
    """Boolean mask of Bragg-peak pixels and a record of what was found."""
    from scipy import ndimage
    from skimage import morphology

    if config.method == "lattice":
        distance = np.hypot(h - np.round(h), k - np.round(k))
        peaks = distance <= config.lattice_radius
    elif config.method == "local":
        peaks = _local_outliers(image, invalid, config)
    else:
        valid = ~invalid
        if not valid.any():
            return np.zeros_like(invalid), {"peak_pixels": 0}
        filled = np.where(valid, image, np.median(image[valid]))
        top_hat = morphology.white_tophat(filled, morphology.disk(config.radius))
        values = top_hat[valid]
        spread = 1.4826 * np.median(np.abs(values - np.median(values)))
        if spread <= 0:
            spread = values.std() or 1.0
        peaks = valid & (top_hat > np.median(values) + config.threshold * spread)
    if config.dilate and peaks.any():
        peaks = ndimage.binary_dilation(peaks, iterations=config.dilate)
    labels, count = ndimage.label(peaks)
    return peaks, {"peaks": int(count), "peak_pixels": int(peaks.sum())}


def _local_outliers(image: np.ndarray, invalid: np.ndarray, config: BraggConfig) -> np.ndarray:
    """Bragg peaks as sharp, strong outliers above a local median of sqrt(I).

    The square root makes Poisson noise uniform, so one robust sigma (of sqrt(I) minus its local
    median) serves the whole image. A peak needs a seed that is both significant (local_threshold
    sigmas) and strong (sqrt(I) local_contrast times the median's): significance alone would take
    sharp diffuse maxima at high counts. Each peak is the connected region local_grow sigmas up
    around its seeds (hysteresis), which takes in its tails.
    """
    from scipy import ndimage

    valid = ~invalid
    if not valid.any():
        return np.zeros_like(invalid)
    root = np.sqrt(np.maximum(np.where(valid, image, np.median(image[valid])), 0.0))
    background = ndimage.median_filter(root, size=max(config.local_size, 1))
    residual = root - background
    values = residual[valid]
    sigma = 1.4826 * np.median(np.abs(values - np.median(values))) or values.std() or 1.0
    significance = np.where(valid, residual / sigma, 0.0)
    seeds = (significance > config.local_threshold) & (root > config.local_contrast * background)
    regions, _ = ndimage.label(significance > config.local_grow)
    return np.isin(regions, np.unique(regions[seeds & (regions > 0)]))


def area_average(
    image: np.ndarray, invalid: np.ndarray, h: np.ndarray, k: np.ndarray, image_size: int, h_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels whose centres fall in each output cell, and the count per cell."""
    step = 2 * h_max / image_size
    rows = np.floor((h + h_max) / step + 0.5).astype(np.int64)
    columns = np.floor((k + h_max) / step + 0.5).astype(np.int64)
    inside = ~invalid & (rows >= 0) & (rows < image_size) & (columns >= 0) & (columns < image_size)
    cells = rows[inside] * image_size + columns[inside]
    total = np.bincount(cells, weights=image[inside], minlength=image_size**2)
    count = np.bincount(cells, minlength=image_size**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return mean.reshape(image_size, image_size), count.reshape(image_size, image_size)


def symmetry_fill(image: np.ndarray, missing: np.ndarray, mirrors: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing cells from (-h, -k) (and mirrors) where the partner was measured.

    On the grid h_m = -h_max + step m, the partner of m is M - m; row and column 0 (h = -h_max)
    have no partner inside the window.
    """
    size = image.shape[0]
    partner = (size - np.arange(size)) % size
    has_partner = np.arange(size) != 0
    operations = [(partner, partner)]
    if mirrors:
        operations += [(partner, np.arange(size)), (np.arange(size), partner)]
    filled = image.copy()
    still_missing = missing.copy()
    by_symmetry = np.zeros_like(missing)
    for row_map, column_map in operations:
        source = filled[np.ix_(row_map, column_map)]
        source_missing = still_missing[np.ix_(row_map, column_map)]
        usable = still_missing & ~source_missing
        usable &= np.outer(has_partner | (row_map == np.arange(size)), has_partner | (column_map == np.arange(size)))
        filled[usable] = source[usable]
        by_symmetry |= usable
        still_missing &= ~usable
    return filled, by_symmetry


def match_histogram(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map each pixel, by its rank, to the same quantile of the reference intensities."""
    levels = np.sort(np.asarray(reference, dtype=np.float64).ravel())
    ranks = np.argsort(np.argsort(image, axis=None), axis=None).reshape(image.shape)
    return np.interp(ranks / max(image.size - 1, 1), np.linspace(0.0, 1.0, levels.size), levels)


def _falloff(image: np.ndarray, h: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, float]:
    """exp(-B q^2) fitted to log I by least squares (q^2 = h^2 + k^2), normalised to 1 at q = 0."""
    q_squared = (h**2 + k**2).ravel()
    positive = image.ravel() > 0
    if positive.sum() < 3:
        return np.ones_like(image), 0.0
    slope, _ = np.polyfit(q_squared[positive], np.log(image.ravel()[positive]), 1)
    return np.exp(slope * (h**2 + k**2)), float(-slope)


def calibrate_from_file(config: CorrectionConfig, shape: tuple[int, int], info: dict[str, Any]) -> CorrectionConfig:
    """The config with the calibration of the file's bin edges in r.l.u., when it has none of its own.

    Pixel i of an axis with edges e_0..e_n covers [e_i, e_i+1], so h = 0 lies at pixel -e_0 / step - 1/2.
    """
    axes = info.get("axes")
    if config.geometry.calibrated or not config.geometry.file_axes or not axes or not axes.get("rlu"):
        return config
    origin, pixels_per_rlu = [], []
    for (first, last), pixels in zip((axes["rows"], axes["columns"]), shape, strict=True):
        step = (last - first) / pixels
        if not step > 0:
            raise DataError(f"the file's axes {first}..{last} do not increase")
        origin.append(-first / step - 0.5)
        pixels_per_rlu.append(1.0 / step)
    geometry = dataclasses.replace(config.geometry, origin=origin, pixels_per_rlu=pixels_per_rlu)
    return dataclasses.replace(config, geometry=geometry)


def correct_image(
    raw: Any,
    config: CorrectionConfig,
    extra_mask: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> Corrected:
    """Run the correction steps (module docstring) on one image; ``reference``: training images to match.

    Extreme values (1e300, subnormals) may overflow on the way; the result is then checked and refused.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _correct_image(raw, config, extra_mask, reference)


def _correct_image(raw: Any, config: CorrectionConfig, extra_mask, reference) -> Corrected:
    from scipy import ndimage
    from skimage import restoration

    image = as_image(raw)
    provenance: list[dict[str, Any]] = [{"step": "input", "shape": list(image.shape)}]
    invalid = invalid_pixels(image, config.mask, extra_mask)
    provenance.append({"step": "mask", **dataclasses.asdict(config.mask), "masked_pixels": int(invalid.sum())})
    if invalid.all():
        raise DataError("no valid pixel in the image (all masked, NaN, or <= 0)")
    out = config.output
    h, k = pixel_coordinates(image.shape, config.geometry, out.h_max, out.image_size)
    if config.bragg.enabled:
        peaks, found = bragg_peaks(image, invalid, config.bragg, h, k)
        invalid = invalid | peaks
        provenance.append({"step": "bragg", **dataclasses.asdict(config.bragg), **found})
    resampled, count = area_average(image, invalid, h, k, out.image_size, out.h_max)
    missing = count == 0
    covered = _pixel_under_cells(image, invalid, missing, config.geometry, out.h_max, out.image_size)
    resampled[covered[0]] = covered[1]
    missing[covered[0]] = False
    provenance.append(
        {"step": "resample", "method": "area average", "image_size": out.image_size, "h_max": out.h_max,
         "geometry": dataclasses.asdict(config.geometry), "empty_cells": int(missing.sum()),
         "cells_from_the_pixel_under_their_centre": int(covered[0].sum()),
         "median_pixels_per_cell": float(np.median(count[count > 0])) if (count > 0).any() else 0.0}
    )  # fmt: skip
    measured = 1.0 - missing.mean()
    if missing.all() or measured < out.min_measured:
        raise DataError(
            f"only {100 * measured:.1f} % of the window h, k in [-h_max, h_max) around {config.geometry.centre} is "
            f"measured (output.min_measured {out.min_measured:g}); centre it on a measured region "
            "(geometry.centre), check the calibration, or set geometry.file_axes false to take the whole image"
        )
    mask = np.zeros(missing.shape, dtype=np.uint8)
    rec = config.reconstruction
    if rec.friedel and missing.any():
        resampled, by_symmetry = symmetry_fill(resampled, missing, rec.mirrors)
        mask[by_symmetry] = FILLED_BY_SYMMETRY
        missing &= ~by_symmetry
        provenance.append({"step": "symmetry", "mirrors": rec.mirrors, "filled_cells": int(by_symmetry.sum())})
    if missing.any():
        if rec.inpaint:
            resampled = restoration.inpaint_biharmonic(np.where(missing, 0.0, resampled), missing)
            provenance.append({"step": "inpaint", "method": "biharmonic", "cells": int(missing.sum())})
        else:
            resampled = np.where(missing, np.nanmean(resampled[~missing]), resampled)
            provenance.append({"step": "fill", "method": "mean", "cells": int(missing.sum())})
        mask[missing] = INPAINTED
    background = config.background
    if background.subtract_percentile is not None:
        level = float(np.percentile(resampled, background.subtract_percentile))
        resampled = np.maximum(resampled - level, 0.0)
        provenance.append({"step": "background", "percentile": background.subtract_percentile, "subtracted": level})
    if background.radial_falloff:
        grid = np.linspace(-out.h_max, out.h_max, out.image_size, endpoint=False)
        grid_h, grid_k = np.meshgrid(grid, grid, indexing="ij")
        falloff, b_factor = _falloff(resampled, grid_h, grid_k)
        resampled = resampled / falloff
        provenance.append({"step": "falloff", "model": "exp(-B q^2)", "B": b_factor})
    smoothing = config.smoothing
    if smoothing.method == "gaussian" and smoothing.size > 0:
        resampled = ndimage.gaussian_filter(resampled, smoothing.size, mode="wrap")
    elif smoothing.method == "median" and smoothing.size > 0:
        resampled = ndimage.median_filter(resampled, size=max(1, round(smoothing.size)), mode="wrap")
    provenance.append({"step": "smoothing", **dataclasses.asdict(smoothing)})
    if reference is not None:
        resampled = match_histogram(resampled, reference)
        provenance.append({"step": "normalise", "method": "histogram matching to the reference images"})
    else:
        mean = resampled.mean()
        if not np.isfinite(mean) or mean <= 0:
            raise DataError("the corrected image has no positive mean intensity; check the mask and background")
        resampled = resampled * (out.mean / mean)
        provenance.append({"step": "normalise", "method": "mean", "mean": out.mean, "factor": out.mean / mean})
    if not np.all(np.isfinite(resampled)):
        raise DataError("the correction produced NaN or infinite values")
    return Corrected(resampled.astype(np.float32), mask, provenance)


MANTID_SIGNAL = "MDHistoWorkspace/data/signal"


def read_image(spec: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one image: .npy, TIFF, PNG, HDF5/NeXus (``file.h5::/path``, or the Mantid MDHisto layout),
    or any detector format that fabio reads (CBF, EDF, ...). Returns the image and what was read."""
    from pathlib import Path

    path_text, _, inner = spec.partition("::")
    path = Path(path_text)
    if not path.is_file():
        raise DataError(f"no such image file: {path}")
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"source": str(path)}
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        elif suffix == ".png":
            import imageio.v3 as imageio

            array = imageio.imread(path)
            if array.ndim == 3:  # colour PNG: its luminance
                array = array[..., :3].mean(axis=-1)
        elif suffix in (".h5", ".hdf5", ".nxs", ".nx5", ".hdf"):
            array, info = _read_hdf5(path, inner, info)
        else:
            array = _read_fabio(path)
    except DataError:
        raise
    except Exception as error:  # every reader has its own exception types for a damaged file
        raise DataError(f"cannot read {path} as an image: {error}") from None
    return as_image(array), info


def _read_hdf5(path, inner: str, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    import h5py

    with h5py.File(path, "r") as file:
        name = inner or (MANTID_SIGNAL if MANTID_SIGNAL in file else "")
        if not name:
            raise DataError(f"{path}: give the dataset path as {path}::/path/to/data")
        if name not in file or not isinstance(file[name], h5py.Dataset):
            raise DataError(f"{path} has no dataset {name}")
        info["dataset"] = name
        array = file[name][()]
        if name == MANTID_SIGNAL:
            # Bin edges of the two axes; the signal is stored (Q2, Q1): rows along Q2.
            axes = [file["MDHistoWorkspace/data/Q2"], file["MDHistoWorkspace/data/Q1"]]
            info["axes"] = {
                "rows": [float(axes[0][0]), float(axes[0][-1])],
                "columns": [float(axes[1][0]), float(axes[1][-1])],
                "names": [_text(axis.attrs.get("long_name", axis.name)) for axis in axes],
                "rlu": all(_text(axis.attrs.get("frame", "")) == "HKL" for axis in axes),
            }
    return array, info


def _text(value: Any) -> str:
    """An HDF5 string attribute, stored as bytes or as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_fabio(path) -> np.ndarray:
    import fabio

    return fabio.open(str(path)).data


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, directories (their image files, sorted) and glob patterns -> image specs."""
    import glob
    from pathlib import Path

    image_suffixes = {".npy", ".tif", ".tiff", ".png", ".h5", ".hdf5", ".nxs", ".cbf", ".edf", ".img", ".mccd"}
    specs: list[str] = []
    for item in inputs:
        path = Path(item.partition("::")[0])
        if path.is_dir():
            specs += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in image_suffixes)
        elif any(char in item for char in "*?[") and not path.exists():
            specs += sorted(glob.glob(item))
        else:
            specs.append(item)
    if not specs:
        raise DataError(f"no image files found in {' '.join(inputs)}")
    return specs


def correct_file(
    spec: str, config: CorrectionConfig, extra_mask: np.ndarray | None = None, reference: np.ndarray | None = None
) -> tuple[np.ndarray, Corrected]:
    """Read one image and correct it; a file's own r.l.u. axes calibrate it when the config has no calibration.
    Returns the raw image and the corrected one, whose provenance starts with what was read."""
    raw, info = read_image(spec)
    corrected = correct_image(raw, calibrate_from_file(config, raw.shape, info), extra_mask, reference)
    corrected.provenance.insert(0, {"step": "read", **info})
    return raw, corrected


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
    mask_file: str | None = None,
    reference: str | None = None,
    figure_dir=None,
    progress=None,
) -> list[Corrected]:
    """Correct every image of ``inputs`` and write them, with masks and provenance, to ``output`` (.h5)."""
    import json
    from datetime import datetime, timezone
    from pathlib import Path

    import h5py

    from . import __version__
    from .dataset import FORMAT, FORMAT_VERSION, atomic_path

    specs = expand_inputs(inputs)
    extra_mask = read_image(mask_file)[0] != 0 if mask_file else None
    reference_set = reference_images(reference) if reference else None
    if figure_dir is not None and not Path(figure_dir).is_dir():
        raise DataError(f"figure directory {figure_dir} does not exist")
    results, sources = [], []
    for number, spec in enumerate(specs):
        raw, corrected = correct_file(spec, config, extra_mask, reference_set)
        results.append(corrected)
        sources.append(spec)
        if figure_dir is not None:
            from . import plots

            name = f"{number:04d}-{Path(spec.partition('::')[0]).stem}.png"
            plots.correction_figure(raw, corrected.image, corrected.mask, Path(figure_dir) / name, reference_set)
        if progress:
            progress(number + 1, len(specs))
    size = config.output.image_size
    with atomic_path(output) as temporary, h5py.File(temporary, "w") as file:
        file.attrs.update(
            format=FORMAT, format_version=FORMAT_VERSION, kind="corrected", cfsx_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            config=config.to_yaml(), image_size=size, h_max=config.output.h_max,
        )  # fmt: skip
        options = {"chunks": (1, size, size), "compression": "gzip", "shuffle": True}
        file.create_dataset("images", data=np.stack([r.image for r in results]), **options)
        file.create_dataset("masks", data=np.stack([r.mask for r in results]), **options)
        text = h5py.string_dtype()
        file.create_dataset("provenance", data=[json.dumps(r.provenance, default=float) for r in results], dtype=text)
        file.create_dataset("sources", data=sources, dtype=text)
    return results
