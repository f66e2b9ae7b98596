"""Every measured zone folded onto the window (step 3 of a calibrated image, cfsx.correction.zones), and the refusal
of a window too little measured with the advice where to look instead."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from cfsx.config import CorrectionConfig
from cfsx.correction.geometry import axis_values
from cfsx.correction.pixels import counting_quantum, row_strips
from cfsx.correction.provenance import ResampleStep, Step, step_of
from cfsx.correction.work import Work
from cfsx.errors import AdvisedError, DataError


def describe_noise(quantum: float | None) -> str:
    """How the pixels' noise is modelled: Poisson for an image of counts, else one level for every pixel."""
    if quantum is None:
        return "one level for every pixel, from the differences of neighbours"
    return f"Poisson: counts of {quantum:.6g} (variance = quantum x intensity)"


def window_record(work: Work, config: CorrectionConfig) -> dict[str, Any] | None:
    """The window's place in the file's axes: its centre, the lattice, and the axes' names (None: uncalibrated)."""
    if not config.geometry.calibrated:
        return None
    pixel_map = work.coordinates.map
    return {"centre": [float(v) for v in pixel_map.centre], "axes": config.geometry.axes,
            "basis": [list(v) for v in pixel_map.lattice.basis], "lattice": pixel_map.lattice.name,
            "through_origin": pixel_map.lattice.through_origin}  # fmt: skip


def _layout(work: Work, config: CorrectionConfig):
    """Where the fold puts the image's pixels: the zones they reach (from the model coordinates of its four
    corners) and the output grid."""
    from cfsx.correction.zones import Layout, zone_range

    rows, columns = work.image.shape
    pixel_map = work.coordinates.map
    corners = np.array([[-0.5, -0.5], [-0.5, columns - 0.5], [rows - 0.5, -0.5], [rows - 0.5, columns - 0.5]])
    model = (corners - pixel_map.origin) @ pixel_map.matrix.T - pixel_map.shift
    return Layout(*zone_range(model[:, 0], model[:, 1]), config.output.image_size, config.output.h_max)


def fold_step(work: Work, config: CorrectionConfig) -> list[Step]:
    """Every measured zone folded onto the window: the falloff fitted and divided out, each zone compared with
    the others and down-weighted when it disagrees (cfsx.correction.zones)."""
    from cfsx.correction.zone_fit import fold, reported

    geometry, out = config.geometry, config.output
    pixels, size = work.coordinates, out.image_size
    quantum = counting_quantum(work.image)
    folded = fold(work.image, work.invalid, pixels, functools.partial(row_strips, work.image.shape),
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
        raise window_refusal(work, config, measured)
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
        ResampleStep(method="fold of every measured zone", calibrated=True, geometry=dataclasses.asdict(geometry),
                     window=window_record(work, config), empty_cells=int(missing.sum()),
                     details={"image_size": size, "h_max": out.h_max,
                              "median_pixels_per_cell": float(np.median(stats.pixels[stats.pixels > 0])),
                              "cells_from_the_pixels_under_their_centre": 0 if under is None else int(under[0].sum())}),
        step_of(reported({"step": "zones", "lattice": pixels.map.lattice.describe(), "zones": len(stats.entries),
         "cells_measured": float(measured), "median_zones_per_cell": float(np.median(stats.zones_per_cell)),
         "falloff": {"model": "f(|Q|) = exp(c0 + c1 |Q| + ...), |Q| in the file's r.l.u.",
                     "coefficients": falloff.coefficients, "curve": falloff.curve(q_max)},
         "noise": noise, "noise_model": describe_noise(quantum), "consistency": stats.consistency,
         "disagreeing": disagreeing, "per_zone": stats.entries})),
    ]  # fmt: skip


MAX_UNDER_POINTS = 1 << 22  # empty cells x zones looked up by the fold's fallback (more: left to inpainting)


def _pixels_under_folded_cells(work: Work, config: CorrectionConfig, missing: np.ndarray, zones: np.ndarray,
                               falloff) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """Cells no pixel centre fell into (pixels coarser than cells along an axis): the mean over the zones of the
    valid pixel under the cell's centre in each (falloff divided out), as the window around one centre does.
    Returns the cells filled, their values and how many zones gave one; None when there is nothing to fill."""
    from cfsx.physics.engine import reciprocal_grid

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


def window_refusal(work: Work, config: CorrectionConfig, measured: float) -> DataError:
    """The error for a window too little measured; around one centre, it names the best-measured windows and
    the fold of all zones (by config key; the command line shows the flags)."""
    from cfsx.correction.zones import accumulate, candidate_coverage

    geometry, out = config.geometry, config.output
    where = f"only {100 * measured:.1f} % of the window h, k in [-h_max, h_max)"
    limit = f"(less than the {100 * out.min_measured:g} % required)"
    if not geometry.calibrated:
        return DataError(f"{where} is measured {limit}: check the mask")
    if geometry.zones == "all":
        return DataError(f"{where} is measured in any zone {limit}: check the calibration and the mask")
    layout = _layout(work, config)
    candidates = candidate_coverage(work.invalid, work.coordinates, row_strips(work.image.shape), layout)
    sums = accumulate(work.image, work.invalid, work.coordinates, row_strips(work.image.shape), layout)
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
