"""Symmetry-equivalent cells of the window averaged, and missing cells filled from measured equivalents.

The operations act on the 2-D model's (h, k) about the window's centre, a reciprocal lattice point:
Friedel's law (-h, -k) holds for a plane through the origin only (the mate of an off-origin plane lies in
another plane); ``2``, ``mm``, ``4`` and ``4mm`` are the plane group's rotations and mirrors, which the crystal
must have. On the grid h_m = -h_max + 2 h_max m / M, -h is cell M - m; cell 0 (-h_max) has its mate inside the
window only when the window is periodic (a fold of whole zones).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Each operation maps cell (m, n) to the cell whose value it takes: "m", "n" as they are, "-m", "-n" negated.
OPERATIONS = {
    "identity": ("m", "n"),
    "2": ("-m", "-n"),
    "mirror h": ("-m", "n"),
    "mirror k": ("m", "-n"),
    "4": ("-n", "m"),
    "4^3": ("n", "-m"),
    "diagonal": ("n", "m"),
    "antidiagonal": ("-n", "-m"),
}
GROUPS = {
    "none": ("identity",),
    "2": ("identity", "2"),
    "mm": ("identity", "2", "mirror h", "mirror k"),
    "4": ("identity", "4", "2", "4^3"),
    "4mm": tuple(OPERATIONS),
}


def group_operations(group: str) -> tuple[str, ...]:
    """The operations of a symmetry setting (friedel is the two-fold rotation about the centre)."""
    return GROUPS["2" if group == "friedel" else group]


def _terms(size: int, periodic: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per rule (m, -m, n, -n): the index grid it gives each cell (m, n) and where that index is in the window."""
    m, n = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    everywhere = np.ones((size, size), bool)
    return {
        "m": (m, everywhere),
        "n": (n, everywhere),
        "-m": ((size - m) % size, everywhere if periodic else m != 0),
        "-n": ((size - n) % size, everywhere if periodic else n != 0),
    }


def symmetry_average(
    image: np.ndarray, weights: np.ndarray, group: str, periodic: bool, variance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], np.ndarray | None]:
    """Every cell the weighted mean of its equivalents (weights: pixels per cell; 0 where not measured);
    returns the image, the cells filled (no data of their own, a measured equivalent), a record of how far
    equivalent measured cells disagreed (rms relative to the image's spread, and chi2 when the cells' noise
    ``variance`` is given) and the variance of the averaged cells (None without ``variance``)."""
    terms = _terms(image.shape[0], periodic)
    values = np.where(weights > 0, image, 0.0)
    known = variance is not None
    variances = np.where(weights > 0, variance, 0.0) if known else np.zeros(image.shape)
    total = np.zeros(image.shape, dtype=np.float64)
    weight = np.zeros(image.shape, dtype=np.float64)
    spread = np.zeros(image.shape, dtype=np.float64)  # sum of w^2 v: the variance of the weighted sum
    partners = np.zeros(image.shape, dtype=np.int64)
    for name in group_operations(group):
        (rows, rows_inside), (columns, columns_inside) = (terms[rule] for rule in OPERATIONS[name])
        source_weight = np.where(rows_inside & columns_inside, weights[rows, columns], 0)
        total += source_weight * values[rows, columns]
        weight += source_weight
        spread += source_weight**2 * variances[rows, columns]
        partners += (source_weight > 0) & (name != "identity")
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged = np.where(weight > 0, total / np.where(weight > 0, weight, 1), image)
    measured = weights > 0
    filled = ~measured & (weight > 0)
    compared = measured & (partners > 0)
    record: dict[str, Any] = {"symmetry": group, "operations": list(group_operations(group)),
                              "filled_cells": int(filled.sum()), "averaged_cells": int(compared.sum())}  # fmt: skip
    if compared.any():
        deviation = image[compared] - averaged[compared]
        contrast = float(np.std(image[measured])) if measured.sum() > 1 else 0.0
        record["rms_deviation"] = float(np.sqrt(np.mean(deviation**2)))
        record["relative_deviation"] = record["rms_deviation"] / contrast if contrast > 0 else None
    with np.errstate(invalid="ignore", divide="ignore"):
        averaged_variance = np.where(weight > 0, spread / weight**2, np.nan) if known else None
    if known and compared.any():
        # a cell's deviation from its orbit's weighted mean m: var = v (1 - 2 w / W) + var(m)
        own, total_weight = variances[compared], weight[compared]
        expected = own * (1 - 2 * weights[compared] / total_weight) + averaged_variance[compared]
        usable = expected > 0
        record["chi2"] = float(np.mean(deviation[usable] ** 2 / expected[usable])) if usable.any() else None
    return averaged, filled, record, averaged_variance
