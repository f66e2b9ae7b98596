"""The correction steps in order (mask, Bragg, resample or fold, reconstruct, background, smoothing, normalise) and
``correct_image``, which runs them on one image."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from cfsx.config import CorrectionConfig
from cfsx.correction.bragg import bragg_peaks
from cfsx.correction.fold import describe_noise, fold_step, window_record, window_refusal
from cfsx.correction.pixels import Pixels, Progress, counting_quantum, invalid_pixels, pixels_under_cells, row_strips
from cfsx.correction.provenance import (
    BackgroundStep,
    BraggStep,
    FalloffStep,
    FillStep,
    InpaintStep,
    InputStep,
    MaskStep,
    NormaliseStep,
    ResampleStep,
    SmoothingStep,
    Step,
    SymmetryStep,
    step_of,
)
from cfsx.correction.record import FILLED_BY_SYMMETRY, INPAINTED, Correction
from cfsx.correction.resample import exp_falloff, match_histogram, resample_image
from cfsx.correction.work import Work
from cfsx.errors import AdvisedError, DataError
from cfsx.io.readers import as_image


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


def _mask_step(work: Work, config: CorrectionConfig) -> list[Step]:
    work.invalid = invalid_pixels(work.image, config.mask, work.extra_mask)
    masked = int(np.count_nonzero(work.invalid))
    if masked == work.invalid.size:
        raise DataError("no valid pixel in the image (all masked, NaN, or <= 0)")
    return [MaskStep(masked_pixels=masked, details=dataclasses.asdict(config.mask))]


def _bragg_step(work: Work, config: CorrectionConfig) -> list[Step]:
    if not config.bragg.enabled:
        return []
    peaks, found = bragg_peaks(work.image, work.invalid, config.bragg, work.coordinates)
    work.invalid |= peaks
    return [BraggStep(peaks=found.pop("peaks"), peak_pixels=found.pop("peak_pixels"),
                      diffuse_maxima_kept=found.pop("diffuse_maxima_kept", None),
                      details={**dataclasses.asdict(config.bragg), **found})]  # fmt: skip


def _resample_step(work: Work, config: CorrectionConfig) -> list[Step]:
    geometry, out = config.geometry, config.output
    if geometry.calibrated and geometry.zones == "all":
        return fold_step(work, config)
    resampled, count = resample_image(work.image, work.invalid, work.coordinates, out.image_size, out.h_max)
    missing = count == 0
    covered = pixels_under_cells(work.image, work.invalid, missing, work.coordinates, out.h_max, out.image_size)
    resampled[covered[0]] = covered[1]
    missing[covered[0]] = False
    count[covered[0]] = 1
    measured = 1.0 - missing.mean()
    if missing.all() or measured < out.min_measured:
        raise window_refusal(work, config, measured)
    work.resampled, work.missing, work.counts = resampled, missing, count
    quantum = counting_quantum(work.image)
    with np.errstate(invalid="ignore", divide="ignore"):
        if quantum is not None:  # Poisson: the variance of a mean of n counts' values is quantum x mean / n
            work.variance = np.where(missing, np.nan, quantum * np.maximum(resampled, 0) / count)
        else:
            from cfsx.correction.zone_fit import pixel_noise

            noise = pixel_noise(work.image, work.invalid, row_strips(work.image.shape), lambda rows: 1.0)
            work.variance = np.where(missing, np.nan, np.float64(noise) ** 2 / count)
    work.mask = np.zeros(missing.shape, dtype=np.uint8)
    return [
        ResampleStep(method="area average", calibrated=geometry.calibrated, geometry=dataclasses.asdict(geometry),
                     window=window_record(work, config), noise_model=describe_noise(quantum),
                     empty_cells=int(missing.sum()),
                     details={"image_size": out.image_size, "h_max": out.h_max,
                              "cells_from_the_pixel_under_their_centre": int(covered[0].sum()),
                              "median_pixels_per_cell": float(np.median(count[count > 0])) if (count > 0).any()
                              else 0.0})
    ]  # fmt: skip


def _reconstruct_step(work: Work, config: CorrectionConfig) -> list[Step]:
    from skimage import restoration

    from cfsx.correction.symmetry import symmetry_average
    from cfsx.correction.zone_fit import reported

    rec, done = config.reconstruction, []
    group = rec.group
    lattice = work.coordinates.map.lattice
    centred_on_origin = not np.any(work.coordinates.map.centre)
    if group == "friedel" and not lattice.through_origin:
        done.append(SymmetryStep(skipped="Friedel's law: the plane does not pass through the origin"))
        group = "none"
    elif group == "friedel" and not work.periodic and not centred_on_origin:
        # (-h, -k) about another lattice point is Friedel's mate only where the image repeats with the lattice
        done.append(
            SymmetryStep(skipped="Friedel's law: the window is centred off the origin and the zones are not folded")
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
        done.append(step_of(reported({"step": "symmetry", **record})))
    missing = work.missing
    if missing.any():
        if rec.inpaint:
            work.resampled = restoration.inpaint_biharmonic(np.where(missing, 0.0, work.resampled), missing)
            done.append(InpaintStep(cells=int(missing.sum())))
        else:
            work.resampled = np.where(missing, np.nanmean(work.resampled[~missing]), work.resampled)
            done.append(FillStep(cells=int(missing.sum())))
        work.mask[missing] = INPAINTED
    return done


def _background_step(work: Work, config: CorrectionConfig) -> list[Step]:
    background, out, done = config.background, config.output, []
    if background.subtract_percentile is not None:
        level = float(np.percentile(work.resampled, background.subtract_percentile))
        work.resampled = np.maximum(work.resampled - level, 0.0)  # the noise stays what it was
        done.append(BackgroundStep(percentile=background.subtract_percentile, subtracted=level))
    if background.radial_falloff:
        grid = np.linspace(-out.h_max, out.h_max, out.image_size, endpoint=False)
        grid_h, grid_k = np.meshgrid(grid, grid, indexing="ij")
        falloff, b_factor = exp_falloff(work.resampled, grid_h, grid_k)
        work.resampled = work.resampled / falloff
        if work.variance is not None:
            work.variance = work.variance / falloff**2
        done.append(FalloffStep(B=b_factor))
    return done


def _smoothing_step(work: Work, config: CorrectionConfig) -> list[Step]:
    from scipy import ndimage

    smoothing = config.smoothing
    if smoothing.method != "none" and smoothing.size > 0:
        work.variance = None  # neighbouring cells share noise now: a variance per cell no longer describes it
    if smoothing.method == "gaussian" and smoothing.size > 0:
        work.resampled = ndimage.gaussian_filter(work.resampled, smoothing.size, mode="wrap")
    elif smoothing.method == "median" and smoothing.size > 0:
        work.resampled = ndimage.median_filter(work.resampled, size=max(1, round(smoothing.size)), mode="wrap")
    return [SmoothingStep(method=smoothing.method, size=smoothing.size)]


def _normalise_step(work: Work, config: CorrectionConfig) -> list[Step]:
    if work.reference is not None:
        work.resampled = match_histogram(work.resampled, work.reference)
        work.variance = None  # a nonlinear map of the intensities
        return [NormaliseStep(method="histogram matching to the reference images")]
    mean, target = work.resampled.mean(), config.output.mean
    if not np.isfinite(mean) or mean <= 0:
        raise DataError("the corrected image has no positive mean intensity; check the mask and background")
    work.resampled = work.resampled * (target / mean)
    if work.variance is not None:
        work.variance = work.variance * (target / mean) ** 2
    return [NormaliseStep(mean=target, factor=float(f"{target / mean:.9g}"))]


# The correction, in order (module docstring): each step changes the work and returns its provenance entries
# (none when it is switched off), with the fraction of one image's time done after it (for progress bars).
STEPS: tuple[tuple[Callable[[Work, CorrectionConfig], list[Step]], float | None], ...] = (
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
    work = Work(image, Pixels(image.shape, config.geometry, out.h_max, out.image_size), extra_mask, reference)
    provenance: list[Step] = [InputStep(shape=list(image.shape))]
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
