"""Every measured zone of a plane laid onto one window: which zones a plane reaches and the per-zone sums on one
period's cells (the lattice: cfsx.correction.lattice; the fit and the fold: cfsx.correction.zone_fit).

Occupancy diffuse scattering repeats with every reciprocal lattice vector G of the crystal, once a smooth
falloff in |Q| (form factors, Debye-Waller) is divided out: I(Q + G) = I(Q). A measured plane that spans
many Brillouin zones therefore measures the training window many times over; averaging the equivalent
points raises the signal and fills the gaps of one zone from the others (NXRefine and 3D-Delta-PDF
symmetrise volumes before anything else). Zones that disagree beyond the noise are listed and
down-weighted, never silently averaged.

Coordinates: a plane's points are given in the file's axes (row, column) in reciprocal lattice units of the
crystal's cell. The 2-D model's reciprocal lattice is spanned by two vectors b1 (the model's h) and b2 (its k)
in those axes: for a primitive cell b1 = (1, 0), b2 = (0, 1); in the h0l plane of an F-centred cubic crystal
the lattice points are (H, L) both even, so b1 = (2, 0), b2 = (0, 2) and the model's h is H / 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cfsx.errors import DataError

MAX_ZONES = 20000  # zones of one plane (a 25 x 25 r.l.u. detector at unit cells is 625)


MAX_ZONE_CELLS = 1 << 25  # zones x cells summed per zone: 4 arrays of this many float64 are 1 GB


ModelCoordinates = Callable[[slice], tuple[np.ndarray, np.ndarray]]  # rows -> model (h, k) of their pixels


@dataclass
class ZoneSums:
    """Sums over the pixels of every zone, folded onto ``cells``: one period's cells when the window holds a whole
    number of cells per period (``tile`` then maps them onto the window), else the window's own cells, each
    zone adding to every periodic copy."""

    first: np.ndarray  # (2,) int: model index of zone 0's lattice point
    shape: tuple[int, int]  # zones along h, along k
    total: np.ndarray  # (Z, cells) sum of intensities
    count: np.ndarray  # (Z, cells) number of pixels
    pixels: np.ndarray  # (Z,) valid pixels of each zone
    tile: np.ndarray  # (M * M,) the cell of each window cell
    q_total: np.ndarray | None = None  # (Z, cells) sum of the pixels' |Q|, when asked for
    variance_total: np.ndarray | None = None  # (Z, cells) sum of the pixels' noise variances, when asked for


@dataclass(frozen=True)
class Layout:
    """Where a fold puts pixels: the zones they reach (the first zone's model index and the numbers of zones
    along h and k) and the window's grid (M cells over [-h_max, h_max))."""

    first: np.ndarray
    shape: tuple[int, int]
    size: int
    h_max: float


class PixelSpace(Protocol):
    """The pixels of an image in the model's reciprocal space (cfsx.correction.Pixels)."""

    def __call__(self, rows: slice) -> tuple[np.ndarray, np.ndarray]: ...  # model (h, k) of the rows' pixels

    def q(self, rows: slice) -> np.ndarray: ...  # their |Q| in the file's r.l.u.


def zone_range(corners_h: np.ndarray, corners_k: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The first zone index and the numbers of zones along h and k that pixels with these (h, k) extremes reach."""
    low = np.floor(np.array([corners_h.min(), corners_k.min()]) + 0.5).astype(np.int64)
    high = np.floor(np.array([corners_h.max(), corners_k.max()]) + 0.5).astype(np.int64)
    shape = (int(high[0] - low[0] + 1), int(high[1] - low[1] + 1))
    if shape[0] * shape[1] > MAX_ZONES:
        raise DataError(
            f"the image spans {shape[0]} x {shape[1]} Brillouin zones (more than {MAX_ZONES}): check the calibration"
        )
    return low, shape


def _shifts(h_max: float, step: float) -> range:
    """Integers n such that a point at hw in [-1/2, 1/2) shifted by n can land in the window's cells."""
    return range(math.ceil(-h_max - step / 2 - 0.5), math.floor(h_max + step / 2 + 0.5) + 1)


def _period_cells(size: int, h_max: float) -> int | None:
    """Cells per period (1 in the model's units) when the window's grid repeats with the lattice, else None."""
    period = size / (2 * h_max)
    return round(period) if abs(period - round(period)) < 1e-9 and round(period) >= 1 else None


def _placements(hw: np.ndarray, size: int, h_max: float) -> Iterator[tuple[int, np.ndarray]]:
    """(shift n, window cell) of points at hw in [-1/2, 1/2) for every n that can land them in the window;
    cells outside it are ``size``."""
    step = 2 * h_max / size
    for n in _shifts(h_max, step):
        cell = np.floor((hw + n + h_max) / step + 0.5).astype(np.int64)
        yield n, np.where((cell >= 0) & (cell < size), cell, size)


def accumulate(
    image: np.ndarray,
    invalid: np.ndarray,
    pixels: PixelSpace,
    strips: Iterator[slice],
    layout: Layout,
    falloff: Callable[[slice], np.ndarray] | None = None,
    variance: Callable[[slice], np.ndarray] | None = None,
) -> ZoneSums:
    """Every valid pixel, divided by ``falloff(rows)`` when given, added per zone to the cell where the fold puts
    it (see ZoneSums), with its noise variance (``variance(rows)``, in the falloff-divided units) when given;
    without a falloff, with its |Q| (for ``fit_falloff``)."""
    size, h_max, first, shape = layout.size, layout.h_max, layout.first, layout.shape
    coordinates, q = pixels, (pixels.q if falloff is None else None)
    zone_count = shape[0] * shape[1]
    period = _period_cells(size, h_max)
    side = period or size
    cells = side * side
    if zone_count * (cells + 1) > MAX_ZONE_CELLS:
        raise DataError(
            f"folding {zone_count} zones onto {side} x {side} cells each is too large ({zone_count * cells:,} "
            f"zone-cells, limit {MAX_ZONE_CELLS:,}): choose a window of a whole number of cells per zone "
            "(output.image_size / (2 output.h_max) an integer), or fold only the window (geometry.zones centre)"
        )
    total = np.zeros(zone_count * (cells + 1))
    count = np.zeros(zone_count * (cells + 1), dtype=np.int64)
    zone_pixels = np.zeros(zone_count, dtype=np.int64)
    q_total = np.zeros(total.size) if q is not None else None
    variance_total = np.zeros(total.size) if variance is not None else None
    for rows in strips:
        h, k = np.broadcast_arrays(*coordinates(rows))
        valid = ~invalid[rows]
        values = image[rows].astype(np.float64)
        if falloff is not None:
            values = values / falloff(rows)
        zh, zk = np.floor(h + 0.5), np.floor(k + 0.5)
        hw, kw = (h - zh)[valid], (k - zk)[valid]
        zone = (zh[valid].astype(np.int64) - first[0]) * shape[1] + (zk[valid].astype(np.int64) - first[1])
        values = values[valid]
        q_values = np.broadcast_to(q(rows), valid.shape)[valid] if q is not None else None
        variances = np.broadcast_to(variance(rows), valid.shape)[valid] if variance is not None else None
        zone_pixels += np.bincount(zone, minlength=zone_count)
        if period:  # one placement: the cell within the period
            placements = [(np.floor((hw + h_max) * period + 0.5).astype(np.int64) % period,
                           np.floor((kw + h_max) * period + 0.5).astype(np.int64) % period)]  # fmt: skip
        else:
            placements = [(r, c) for _, r in _placements(hw, size, h_max) for _, c in _placements(kw, size, h_max)]
        for row_cell, column_cell in placements:
            inside = (row_cell < side) & (column_cell < side)
            index = zone * (cells + 1) + np.where(inside, row_cell * side + column_cell, cells)
            if not index.size:
                continue
            # a strip reaches a few rows of zones: count into the span of indices it touches, not all zones' cells
            low = int(index.min())
            index -= low
            span = slice(low, low + int(index.max()) + 1)
            total[span] += np.bincount(index, weights=values)
            count[span] += np.bincount(index)
            if q_total is not None:
                q_total[span] += np.bincount(index, weights=q_values)
            if variance_total is not None:
                variance_total[span] += np.bincount(index, weights=variances)
    m = np.arange(size)
    tile = ((m[:, None] % side) * side + m[None, :] % side).ravel() if period else np.arange(cells)

    def cut(array: np.ndarray) -> np.ndarray:
        return array.reshape(zone_count, cells + 1)[:, :cells]

    return ZoneSums(first, shape, cut(total), cut(count), zone_pixels, tile,
                        None if q_total is None else cut(q_total),
                        None if variance_total is None else cut(variance_total))  # fmt: skip


def candidate_coverage(
    invalid: np.ndarray, coordinates: ModelCoordinates, strips: Iterator[slice], layout: Layout
) -> list[tuple[np.ndarray, float]]:
    """Per lattice point (model index, relative to the window's centre), the fraction of the window centred on it
    whose cells hold a valid pixel centre; best first, unmeasured ones left out."""
    size, h_max, first, shape = layout.size, layout.h_max, layout.first, layout.shape
    shifts = _shifts(h_max, 2 * h_max / size)
    margin = len(shifts)
    rows_c, columns_c = shape[0] + margin, shape[1] + margin
    offset = shifts.stop - 1
    measured = np.zeros((rows_c * columns_c, size * size + 1), dtype=bool)
    for rows in strips:
        h, k = np.broadcast_arrays(*coordinates(rows))
        valid = ~invalid[rows]
        zh, zk = np.floor(h + 0.5), np.floor(k + 0.5)
        hw, kw = (h - zh)[valid], (k - zk)[valid]
        zh, zk = zh[valid].astype(np.int64) - first[0], zk[valid].astype(np.int64) - first[1]
        for n, row_cell in _placements(hw, size, h_max):
            for m, column_cell in _placements(kw, size, h_max):
                cell = np.where((row_cell < size) & (column_cell < size), row_cell * size + column_cell, size * size)
                measured[(zh - n + offset) * columns_c + (zk - m + offset), cell] = True
    fractions = measured[:, :-1].mean(axis=1)
    order = np.argsort(-fractions, kind="stable")
    start = first - offset
    return [(start + np.array(divmod(int(i), columns_c)), float(fractions[i])) for i in order if fractions[i] > 0]
