"""What the fold of every zone learns from the per-zone sums: the falloff f(|Q|) (Poisson maximum likelihood), the
pixel noise, each zone judged against the others, the cross-zone consistency, and the folded image (``fold``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cfsx.correction.zones import Layout, PixelSpace, ZoneSums, accumulate

# A zone disagrees with the others when its mean squared deviation from their fold is this many times the noise's.
DISAGREEMENT = 4.0


MAX_LOG_FALLOFF = 30.0  # |c1| + |c2| + ... of log f on |Q| scaled to [0, 1]: beyond, the fit ran away


FULL_CELL = 0.75  # a zone covers a cell fully when it put at least this share of the most pixels any zone did


NOISE_SAMPLE = 1 << 18  # pixels the noise is estimated from (an even subsample of larger images)


CONSISTENCY_VECTORS = ((1, 0), (0, 1), (1, 1), (1, -1))  # G in the model's basis: b1, b2, b1 + b2, b1 - b2


@dataclass
class Falloff:
    """A smooth falloff f(|Q|) = exp(c0 + c1 |Q| + c2 |Q|^2 ...) fitted to the zones' mean intensities."""

    coefficients: list[float] = field(default_factory=list)  # c0, c1, ... (empty: none fitted)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        if not self.coefficients:
            return np.ones_like(q, dtype=np.float64)
        return np.exp(np.polynomial.polynomial.polyval(q, self.coefficients))

    def curve(self, q_max: float, points: int = 21) -> dict[str, list[float]]:
        q = np.linspace(0.0, q_max, points)
        return {"q": [round(float(x), 6) for x in q], "f": [float(x) for x in self(q)]}


def fit_falloff(sums: ZoneSums, degree: int, zone_weights: np.ndarray | None = None, iterations: int = 100
                ) -> Falloff:  # fmt: skip
    """The falloff that makes the zones agree: every zone's cell sums modelled as I = P(cell) f(|Q|) x pixels, with
    log f a polynomial in |Q| (no constant: P carries the level), fitted by maximum Poisson likelihood, alternating
    the closed-form P with iteratively reweighted least squares for f. Unbiased at a few counts per cell (where a
    fit of log I is not: the log of a small count's mean is biased low), and exact for an image that is periodic
    times such a falloff. ``zone_weights``: how much each zone counts (zones that disagree with the others less).
    No falloff when nothing can be fitted."""
    if degree < 1 or sums.q_total is None:
        return Falloff()
    use = sums.count > 0
    weight = np.ones(len(sums.count)) if zone_weights is None else np.asarray(zone_weights, dtype=np.float64)
    count = np.where(use, sums.count, 0).astype(np.float64) * weight[:, None]
    total = np.where(use, np.maximum(sums.total, 0.0), 0.0) * weight[:, None]
    q = np.where(use, sums.q_total / np.maximum(sums.count, 1), 0.0)
    shared = (count > 0).sum(axis=0) >= 2  # cells seen in at least two zones tell the falloff
    if not shared.any() or float(np.ptp(q[use])) <= 1e-9 or total.sum() <= 0:
        return Falloff()
    count, total, q = count[:, shared], total[:, shared], q[:, shared]
    scale = max(float(q.max()), 1e-12)
    powers = np.stack([(q / scale) ** j for j in range(1, degree + 1)], axis=-1)  # (Z, C, degree)
    coefficients = np.zeros(degree)
    seen = count > 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(iterations):
            f = np.exp(powers @ coefficients)
            exposure = (count * f).sum(axis=0)
            level = np.divide(total.sum(axis=0), exposure, out=np.zeros(exposure.shape), where=exposure > 0)
            mu = level[None, :] * count * f
            fitted = seen & (mu > 0) & np.isfinite(mu)
            if not fitted.any():
                return Falloff()
            # one IRLS step of the Poisson regression log mu = log(level count) + powers . coefficients
            eta = powers[fitted] @ coefficients
            working = eta + (total[fitted] - mu[fitted]) / mu[fitted]
            design = np.column_stack([np.ones(fitted.sum()), powers[fitted]])  # the constant: a shift of the levels
            root = np.sqrt(mu[fitted])
            if not (np.isfinite(working).all() and np.isfinite(root).all()):
                break  # a step too far (values beyond floating point): keep the last finite fit
            try:
                solution, *_ = np.linalg.lstsq(design * root[:, None], working * root, rcond=None)
            except np.linalg.LinAlgError:
                break
            if not np.isfinite(solution).all():
                break
            step = solution[1:] - coefficients
            coefficients = solution[1:]
            if np.abs(step).max() < 1e-13:
                break
    if np.abs(coefficients).sum() > MAX_LOG_FALLOFF:  # a falloff by more than e^MAX_LOG_FALLOFF is no falloff
        return Falloff()
    scaled = [0.0] + [float(c) / scale**j for j, c in enumerate(coefficients, start=1)]
    fitted_falloff = Falloff(scaled)
    mean_q = np.where(seen, q, np.nan)
    weights = count[seen]
    scaled[0] = -float(np.average(np.log(fitted_falloff(mean_q[seen])), weights=weights))  # 1 at the mean pixel
    return Falloff(scaled)


def pixel_noise(image: np.ndarray, invalid: np.ndarray, strips: Iterator[slice], scale: Callable[[slice], np.ndarray]
                ) -> float:  # fmt: skip
    """The pixels' noise (standard deviation, after dividing by ``scale``): from each valid pixel minus the mean
    of its four valid neighbours, whose variance is 5/4 of the noise's for white noise (robust: from the MAD)."""
    residuals = []
    total_rows, columns = image.shape
    # an even subsample of whole rows (every n-th, by the row's own index: the same whatever the strips), so a large
    # image costs a few hundred rows, not a pass over every pixel
    every = max(1, image.size // NOISE_SAMPLE)
    for rows in strips:
        low, high = max(rows.start, 1), min(rows.stop, total_rows - 1)  # rows with neighbours above and below
        chosen = np.arange(low + (-low) % every, high, every)
        if not len(chosen) or columns < 3:
            continue
        around = np.concatenate([chosen - 1, chosen, chosen + 1])
        block = image[around].astype(np.float64) / scale_rows(scale, around)
        bad = (invalid[around] | ~np.isfinite(block)).reshape(3, len(chosen), columns)
        block = block.reshape(3, len(chosen), columns)
        above, centre, below = block[0], block[1], block[2]
        neighbours = (above[:, 1:-1] + below[:, 1:-1] + centre[:, :-2] + centre[:, 2:]) / 4
        usable = ~(bad[1][:, 1:-1] | bad[0][:, 1:-1] | bad[2][:, 1:-1] | bad[1][:, :-2] | bad[1][:, 2:])
        residuals.append((centre[:, 1:-1] - neighbours)[usable])
    if not residuals:
        return 0.0
    residual = np.concatenate(residuals)
    if residual.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))) / math.sqrt(1.25))


def scale_rows(scale: Callable[[slice], np.ndarray], rows: np.ndarray) -> np.ndarray | float:
    """``scale`` (a function of a slice of rows: a number, or an array of those rows) at the listed rows."""
    first = scale(slice(int(rows[0]), int(rows[0]) + 1)) if len(rows) else 1.0
    if np.ndim(first) == 0:
        return float(first)
    return np.concatenate([np.asarray(scale(slice(int(row), int(row) + 1))) for row in rows], axis=0)


@dataclass
class ZoneStatistics:
    """What the fold found per zone and across zones (the correction's ``zones`` provenance)."""

    folded: np.ndarray  # (M * M) the window: the weighted mean over zones (NaN where no zone measured a cell)
    variance: np.ndarray  # (M * M) the noise variance of each cell of the window (NaN where unmeasured)
    pixels: np.ndarray  # (M * M) pixels averaged into each cell of the window
    zones_per_cell: np.ndarray  # (M * M) zones that measured each cell
    entries: list[dict[str, Any]]  # per zone: lattice point, pixels, coverage, agreement, chi2, weight
    consistency: list[dict[str, Any]]  # per G: correlation of I(Q) with I(Q + G), its noise ceiling, pairs
    noise: float


def zone_statistics(sums: ZoneSums, noise: float) -> ZoneStatistics:
    """Each zone against the fold of the others (agreement: correlation; chi2: mean squared deviation in units
    of the noise of both, on the cells the zone covers fully), zones down-weighted by 1/max(1, chi2), and the
    cross-zone consistency. The noise of a zone's cell is its pixels' summed variances (``sums.variance_total``)
    over their number squared, or ``noise``^2 / pixels without them.

    A cell that a zone covers only in part (a border zone, a gap's edge) samples another part of the cell than
    the others do, so that an exactly periodic image would still differ there: such cells (fewer than
    FULL_CELL of the most pixels any zone put in that cell) are averaged in but not compared."""
    total, count = sums.total, sums.count
    present = count.sum(axis=1) > 0
    # NumPy's square: an extreme noise level overflows to inf (refused later) instead of raising OverflowError
    variance_total = sums.variance_total if sums.variance_total is not None else np.square(np.float64(noise)) * count
    with np.errstate(invalid="ignore", divide="ignore"):
        means = total / count
        cell_variance = variance_total / count.astype(np.float64) ** 2  # of each zone's cell mean
    full = count >= FULL_CELL * count.max(axis=0, initial=0)[None, :]
    weights = np.ones(len(total))
    chi2 = np.full(len(total), np.nan)
    agreement = np.full(len(total), np.nan)
    for _ in range(2):  # once with equal weights, once with the weights that gives
        weighted_total = (weights[:, None] * total).sum(axis=0)
        weighted_count = (weights[:, None] * count).sum(axis=0)
        weighted_variance = (weights[:, None] ** 2 * variance_total).sum(axis=0)
        for zone in np.flatnonzero(present):
            others_total = weighted_total - weights[zone] * total[zone]
            others_count = weighted_count - weights[zone] * count[zone]
            cells = full[zone] & (count[zone] > 0) & (others_count > 0)
            if cells.sum() < 2:
                continue
            mine, theirs = means[zone, cells], others_total[cells] / others_count[cells]
            others_variance = (weighted_variance - weights[zone] ** 2 * variance_total[zone])[cells]
            expected = cell_variance[zone, cells] + others_variance / others_count[cells] ** 2
            if (expected > 0).all():
                chi2[zone] = float(np.mean((mine - theirs) ** 2 / expected))
            agreement[zone] = _correlation(mine, theirs)
        judged = np.isfinite(chi2)
        # a zone too small to judge weighs as the typical judged zone does, not as a zone known to agree
        typical = float(np.median(1.0 / np.maximum(1.0, chi2[judged]))) if judged.any() else 1.0
        weights = np.where(judged, 1.0 / np.maximum(1.0, chi2), typical)
    weighted_total = (weights[:, None] * total).sum(axis=0)
    weighted_count = (weights[:, None] * count).sum(axis=0)
    weighted_variance = (weights[:, None] ** 2 * variance_total).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        folded = np.where(weighted_count > 0, weighted_total / weighted_count, np.nan)
        variance = np.where(weighted_count > 0, weighted_variance / weighted_count**2, np.nan)
    cells_per_copy = count.shape[1]
    entries = []
    for zone in np.flatnonzero(present):
        index = sums.first + np.array(divmod(int(zone), sums.shape[1]))
        entries.append({
            "zone": [int(index[0]), int(index[1])],
            "pixels": int(sums.pixels[zone]),
            "coverage": float((count[zone] > 0).sum() / cells_per_copy),
            "mean": float(total[zone].sum() / count[zone].sum()),
            "agreement": _rounded(agreement[zone]),
            "chi2": _rounded(chi2[zone]),
            "weight": float(weights[zone]),
            "disagrees": bool(np.isfinite(chi2[zone]) and chi2[zone] > DISAGREEMENT),
        })  # fmt: skip
    tile = sums.tile
    return ZoneStatistics(folded[tile], variance[tile], count.sum(axis=0)[tile], (count > 0).sum(axis=0)[tile],
                          entries, _consistency(sums, means, cell_variance, full), noise)  # fmt: skip


def _rounded(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def reported(value: Any, digits: int = 6) -> Any:
    """A record with every float rounded to ``digits`` significant digits (numpy scalars made plain): reports do
    not carry the last bits of sums, which depend on the order pixels were added in."""
    if isinstance(value, dict):
        return {key: reported(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [reported(item, digits) for item in value]
    if isinstance(value, float | np.floating):
        return float(f"{float(value):.{digits}g}") if math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    norm = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b / norm) if norm > 0 else float("nan")


def _consistency(sums: ZoneSums, means: np.ndarray, cell_variance: np.ndarray, full: np.ndarray
                 ) -> list[dict[str, Any]]:  # fmt: skip
    """Per G (in the model's basis): the correlation of the zone means I(Q) and I(Q + G) over the cells both zones
    cover fully, and the ceiling noise alone allows: sqrt((1 - e_a / var_a)(1 - e_b / var_b)), e the mean noise
    variance of a cell mean. A periodic image reaches the ceiling; an image that does not repeat stays far below."""
    rows, columns = sums.shape
    found = []
    for vector in CONSISTENCY_VECTORS:
        first, second, noise_first, noise_second = [], [], [], []
        for zone_row in range(rows):
            for zone_column in range(columns):
                other = (zone_row + vector[0], zone_column + vector[1])
                if not (0 <= other[0] < rows and 0 <= other[1] < columns):
                    continue
                a, b = zone_row * columns + zone_column, other[0] * columns + other[1]
                cells = full[a] & full[b] & (sums.count[a] > 0) & (sums.count[b] > 0)
                if not cells.any():
                    continue
                first.append(means[a, cells])
                second.append(means[b, cells])
                noise_first.append(cell_variance[a, cells])
                noise_second.append(cell_variance[b, cells])
        if not first:
            continue
        a, b = np.concatenate(first), np.concatenate(second)
        if a.size < 3:
            continue
        correlation = _correlation(a, b)
        ceiling = math.sqrt(
            max(0.0, 1 - float(np.mean(np.concatenate(noise_first))) / max(float(a.var()), 1e-300))
            * max(0.0, 1 - float(np.mean(np.concatenate(noise_second))) / max(float(b.var()), 1e-300))
        )
        consistency = _rounded(correlation / ceiling) if ceiling > 0 else None
        found.append({"G": list(vector), "correlation": _rounded(correlation), "ceiling": ceiling,
                      "pairs": int(a.size), "consistency": consistency})  # fmt: skip
    return found


@dataclass
class Fold:
    """Every measured zone of an image folded onto the window (``fold``)."""

    image: np.ndarray  # (M, M) float64: the weighted mean of the equivalent points; NaN where none was measured
    statistics: ZoneStatistics
    falloff: Falloff
    sums: ZoneSums  # the falloff-divided sums per zone


def fold(
    image: np.ndarray,
    invalid: np.ndarray,
    pixels: PixelSpace,
    strips: Callable[[], Iterator[slice]],
    layout: Layout,
    degree: int = 2,
    quantum: float | None = None,
) -> Fold:
    """The falloff fitted (``fit_falloff``) and divided out, every zone accumulated, compared with the others and
    weighted (``zone_statistics``): the window as the weighted mean of its equivalent points. ``strips()`` gives
    the row slices to work through. ``quantum``: the image is counts of this size, whose noise is Poisson
    (variance quantum x I per pixel); else one noise level for every pixel, estimated from the image."""
    raw = accumulate(image, invalid, pixels, strips(), layout)
    falloff = fit_falloff(raw, degree)
    falloff, sums, statistics = _divided(image, invalid, pixels, strips, layout, falloff, quantum)
    weights = np.array([entry["weight"] for entry in statistics.entries])
    if degree and any(entry["disagrees"] for entry in statistics.entries):  # zones out of line must not bend the
        # falloff: fit it again with their weights (two more passes over the pixels, so only when some disagree)
        present = raw.count.sum(axis=1) > 0
        zone_weights = np.ones(len(present))
        zone_weights[present] = weights
        falloff, sums, statistics = _divided(image, invalid, pixels, strips, layout,
                                             fit_falloff(raw, degree, zone_weights), quantum)  # fmt: skip
    return Fold(statistics.folded.reshape(layout.size, layout.size), statistics, falloff, sums)


def _divided(image, invalid, pixels: PixelSpace, strips, layout: Layout, falloff: Falloff, quantum: float | None):
    """The zones accumulated with ``falloff`` divided out, and their statistics."""
    scale = (lambda rows: falloff(pixels.q(rows))) if falloff.coefficients else (lambda rows: 1.0)
    noise = pixel_noise(image, invalid, strips(), scale)
    # Poisson: a pixel's variance is quantum x I / f^2 = quantum x P / f for I = P f. From the fold's P, not from
    # the pixel's own count, which would make low counts look precise.
    per_intensity = (lambda rows: quantum / np.asarray(scale(rows))) if quantum is not None else None
    sums = accumulate(image, invalid, pixels, strips(), layout, scale if falloff.coefficients else None,
                      variance=per_intensity)  # fmt: skip
    if quantum is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            level = sums.total.sum(axis=0) / sums.count.sum(axis=0)
        sums.variance_total = sums.variance_total * np.maximum(np.nan_to_num(level), 0.0)[None, :]
    return falloff, sums, zone_statistics(sums, noise)
