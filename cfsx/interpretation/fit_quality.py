"""How well a model image explains a measured one, the yardsticks to judge that by, and the verdict.

Everything is computed on the measured cells only (mask 0 of ``cfsx correct``: not masked, inpainted or filled
by symmetry). A model image is compared after the scale and flat background that fit it best there.

- Fit quality, as diffuse-scattering work reports it: R1 = sum |I_obs - I_model| / sum |I_obs|, image R2, and,
  when each cell's noise variance is known (an image of counts: Poisson), the reduced chi^2.
- Yardsticks, by block cross-validation (the cells in 8 x 8 blocks, 5 folds of blocks: fit on 4, score on the
  5th; R2 pooled over every held-out cell): the range ceiling, the best Warren-Cowley image with every vector in
  the encoding's range (all (dx, dy) with |dx|, |dy| < n for CFS-n), and the periodic ceiling, with every vector
  the grid resolves. A finite crystal's image is not explained fully by a short range: the ceilings say what an
  encoding of that range can reach on this image.
- The verdict (``judge``): explained, partly explained or not explained, with its reasons in words.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from cfsx.physics.inversion import NO_WINDOW, cosine_design, half_window, largest_range

BLOCK = 8  # cells per side of a cross-validation block
FOLDS = 5
EXPLAINED, PARTLY, NOT_EXPLAINED = "explained", "partly explained", "not explained"
VERDICTS = (EXPLAINED, PARTLY, NOT_EXPLAINED)


@dataclass
class FitQuality:
    """One model image against the measured cells of an image, after its best scale and background."""

    r1: float  # sum |obs - fit| / sum |obs|
    r2: float  # 1 - sum (obs - fit)^2 / sum (obs - mean obs)^2
    chi2: float | None  # reduced: sum (obs - fit)^2 / variance / (cells - 2); None without the cells' variance
    scale: float
    background: float
    cells: int  # measured cells compared
    noise: float | None = None  # the model image's own noise relative to its mean (structure images)


def fit_quality(
    observed: np.ndarray,
    model: np.ndarray,
    measured: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    noise: float | None = None,
) -> FitQuality:
    """``model`` scaled and shifted to fit ``observed`` on the ``measured`` cells (all when None) by least squares,
    and the misfit there; ``variance``: the noise variance of each observed cell (for chi^2)."""
    observed, model = np.asarray(observed, dtype=np.float64), np.asarray(model, dtype=np.float64)
    use = np.isfinite(observed) & np.isfinite(model)
    if measured is not None:
        use &= np.asarray(measured, dtype=bool)
    y, x = observed[use], model[use]
    if y.size < 3:
        return FitQuality(float("nan"), float("nan"), None, float("nan"), float("nan"), int(y.size), noise)
    centred = x - x.mean()
    spread = float(centred @ centred)
    scale = float(centred @ (y - y.mean())) / spread if spread > 0 else 0.0  # a flat model: the mean alone
    background = float(y.mean() - scale * x.mean())
    residual = y - (scale * x + background)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(residual @ residual) / total if total > 0 else float("nan")
    r1 = float(np.abs(residual).sum() / max(float(np.abs(y).sum()), 1e-300))
    chi2 = None
    if variance is not None:
        sigma2 = np.asarray(variance, dtype=np.float64)[use]
        usable = np.isfinite(sigma2) & (sigma2 > 0)
        if usable.sum() > 2:
            chi2 = float(np.sum(residual[usable] ** 2 / sigma2[usable]) / (usable.sum() - 2))
    return FitQuality(r1, r2, chi2, float(scale), float(background), int(y.size), noise)


@dataclass
class Ceilings:
    """What Warren-Cowley images can explain of an image, by block cross-validation on its measured cells."""

    range_r2: float  # with every vector within the encoding's range
    periodic_r2: float  # with every vector the grid resolves
    range_vectors: int
    periodic_vectors: int
    odd_share: float  # of the measured variance, the part odd under (h, k) -> (-h, -k): 0 by Friedel's law
    noise_r2: float | None = None  # the R2 a noiseless model could reach against this noise (cells' variance known)


def ceilings(
    observed: np.ndarray, measured: np.ndarray | None, cfs: int, h_max: float, variance: np.ndarray | None = None
) -> Ceilings:
    """The range and periodic ceilings of one (M, M) image (module docstring), its odd share and, with the
    cells' noise ``variance``, the R2 that noise leaves reachable."""
    return ceilings_of(np.asarray(observed)[None], measured, cfs, h_max, [variance])[0]


def ceilings_of(
    images: np.ndarray, measured: np.ndarray | None, cfs: int, h_max: float, variances: list | None = None
) -> list[Ceilings]:
    """``ceilings`` of (S, M, M) images measured on the same cells, the cross-validation done for all at once."""
    images = np.asarray(images, dtype=np.float64)
    size = images.shape[-1]
    measured = np.ones(images.shape[1:], bool) if measured is None else np.asarray(measured, dtype=bool)
    measured = measured & np.isfinite(images).all(axis=0)
    near, far = cfs - 1, largest_range(size, h_max, NO_WINDOW)
    range_r2 = _cross_validated_r2(images, measured, near, h_max)
    periodic_r2 = _cross_validated_r2(images, measured, far, h_max)
    variances = variances or [None] * len(images)
    found = []
    for index, image in enumerate(images):
        noise_r2, variance = None, variances[index]
        if variance is not None:
            values, noise = image[measured], np.asarray(variance, dtype=np.float64)[measured]
            if np.isfinite(noise).all() and values.size > 2 and values.var() > 0:
                noise_r2 = float(1.0 - noise.mean() / values.var())
        found.append(Ceilings(float(range_r2[index]), float(periodic_r2[index]), len(half_window(near)) - 1,
                              len(half_window(far)) - 1, odd_share(image, measured), noise_r2))  # fmt: skip
    return found


def odd_share(observed: np.ndarray, measured: np.ndarray) -> float:
    """The share of the variance over measured cells whose Friedel mate (-h, -k) is measured too that is odd
    under (h, k) -> (-h, -k) (the window centred on a lattice point; cell m's mate is M - m)."""
    size = observed.shape[0]
    mate = (size - np.arange(size)) % size
    inside = np.arange(size) != 0
    pairs = measured & measured[np.ix_(mate, mate)] & np.outer(inside, inside)
    if pairs.sum() < 3:
        return float("nan")
    values, mates = observed[pairs], observed[np.ix_(mate, mate)][pairs]
    spread = float(np.var(values))
    return float(np.mean(((values - mates) / 2) ** 2) / spread) if spread > 0 else 0.0


def _cross_validated_r2(images: np.ndarray, measured: np.ndarray, max_range: int, h_max: float) -> np.ndarray:
    """(S,) block-cross-validated R2 of (S, M, M) images measured on the same cells."""
    size = images.shape[-1]
    design, folds = _fold_solvers(size, h_max, max_range, measured.tobytes())
    y = images.reshape(len(images), -1).T  # (cells, S)
    inside = measured.ravel()
    projected = design[inside].T @ y[inside]  # every measured cell's X'y; a fold's training part is this minus its own
    predicted, held = [], []
    for test, predictor in folds:
        training = projected - design[test].T @ y[test]
        predicted.append(predictor @ training)
        held.append(y[test])
    if not held:
        return np.full(len(images), np.nan)
    predicted, held = np.concatenate(predicted), np.concatenate(held)
    total = np.sum((held - held.mean(axis=0)) ** 2, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - np.sum((held - predicted) ** 2, axis=0) / total, np.nan)


def fold_of_cells(size: int) -> np.ndarray:
    """(M, M): the fold (0..FOLDS-1) of each cell's 8 x 8 block, the blocks dealt round-robin in a fixed shuffle."""
    blocks = -(-size // BLOCK)
    order = np.random.default_rng(0).permutation(blocks * blocks) % FOLDS
    block_rows, block_columns = np.meshgrid(np.arange(size) // BLOCK, np.arange(size) // BLOCK, indexing="ij")
    return order[block_rows * blocks + block_columns]


@functools.lru_cache(maxsize=8)
def _fold_solvers(size: int, h_max: float, max_range: int, mask: bytes):
    """The cosine design, and per fold the held-out cells and the matrix that predicts them from the training
    cells' X'y (through the pseudo-inverse of their normal equations). Kept for the last few masks: a batch of
    images measured alike (every cell, or one detector) pays for them once; each image then costs products."""
    measured = np.frombuffer(mask, dtype=bool).reshape(size, size).ravel()
    design = cosine_design(half_window(max_range), size, h_max, NO_WINDOW)
    folds = fold_of_cells(size).ravel()
    inside = design[measured]
    normal = inside.T @ inside  # every measured cell's; a fold's is this minus its held-out cells'
    solvers = []
    for fold in range(FOLDS):
        train = np.flatnonzero(measured & (folds != fold))
        test = np.flatnonzero(measured & (folds == fold))
        if not len(test) or len(train) < design.shape[1] // 2:
            continue
        values, vectors = np.linalg.eigh(normal - design[test].T @ design[test])
        keep = values > 1e-10 * values.max()
        inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T  # the training cells' (X'X)^+
        solvers.append((test, design[test] @ inverse))  # predicts the held-out cells from the training cells' X'y
    return design, solvers


# --- the verdict -----------------------------------------------------------------------------------------------

# Thresholds (measured on the generalisation benchmark: docs/interpretation.md, benchmarks/verdict.py).
PERIODIC_FLOOR = 0.5  # periodic ceiling below this share of what noise leaves: no occupancy image explains it
SYMMETRY_CHI2 = 4.0  # equivalent cells of the correction this far apart (in units of their noise): not symmetric
ODD_LIMIT = 0.1  # odd share above this: the image breaks Friedel's law (centred wrong, or not diffraction)
RANGE_FLOOR = 0.2  # range ceiling below this: the encoding's range explains little; its share is not judged
CONSISTENCY_FLOOR = 0.5  # cross-zone correlation over its noise ceiling below this: not periodic in Q
RANGE_SHARE = 0.7  # range ceiling below this share of the periodic one: correlations beyond the range matter
ESTIMATE_SHARE = 0.8  # the estimate's R2 below this share of the range ceiling: it misses what the range explains
ESTIMATE_FLOOR = 0.3  # ... and below this share of it: it explains too little to be read


@dataclass
class Verdict:
    """Whether the final encoding explains the image: ``label`` one of VERDICTS, ``reasons`` in words."""

    label: str
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.label}: {'; '.join(self.reasons)}" if self.reasons else self.label


def judge(
    final: FitQuality, limits: Ceilings, consistency: float | None = None, symmetry_chi2: float | None = None
) -> Verdict:
    """The verdict on a final estimate's analytic fit (``final``), the image's ceilings and what its correction
    measured: for a calibrated image of several zones the cross-zone consistency (correlation of I(Q) and I(Q + G)
    over its noise ceiling), and the chi^2 of symmetry-equivalent cells against their mean before averaging."""
    severe, mild = [], []
    if symmetry_chi2 is not None and symmetry_chi2 > SYMMETRY_CHI2:
        severe.append(
            f"symmetry-equivalent cells disagree (chi2 {symmetry_chi2:.1f} against their noise): the image breaks the "
            "symmetry it was averaged with (Friedel's law about a lattice point, or the plane group's)"
        )
    if consistency is not None and consistency < CONSISTENCY_FLOOR:
        severe.append(
            f"not periodic in reciprocal space (cross-zone r = {consistency:.2f} of what noise allows): occupancy "
            "correlations alone cannot explain this image"
        )
    if np.isfinite(limits.odd_share) and limits.odd_share > ODD_LIMIT:
        severe.append(
            f"not centrosymmetric ({limits.odd_share:.2f} of the variance is odd under (h, k) -> (-h, -k)): "
            "Friedel's law fails about the window's centre (a centre off the lattice, or not diffraction)"
        )
    reachable = limits.noise_r2 if limits.noise_r2 is not None and limits.noise_r2 > 0 else 1.0
    if not np.isfinite(limits.periodic_r2) or limits.periodic_r2 < PERIODIC_FLOOR * reachable:
        severe.append(
            f"no Warren-Cowley image explains it (periodic ceiling {limits.periodic_r2:.2f} with "
            f"{limits.periodic_vectors} vectors"
            + (f", where noise leaves {reachable:.2f}" if reachable < 1 else "")
            + "): not the diffuse scattering of occupancy correlations on this grid"
        )
    judged = limits.range_r2 >= RANGE_FLOOR
    reach = final.r2 / limits.range_r2 if judged else float("nan")
    if not severe and judged and not reach >= ESTIMATE_FLOOR:
        severe.append(f"the estimate's analytic image reaches {reach:.2f} of the range ceiling (R2 {final.r2:.2f} of "
                      f"{limits.range_r2:.2f})")  # fmt: skip
    if severe:
        return Verdict(NOT_EXPLAINED, severe)
    if not judged:
        mild.append(
            f"the encoding's range explains little of this image (range ceiling {limits.range_r2:.2f}, "
            f"periodic {limits.periodic_r2:.2f}): its correlations are longer-ranged, or it is mostly noise"
        )
    elif limits.range_r2 < RANGE_SHARE * limits.periodic_r2:
        mild.append(f"correlations beyond the encoding's range matter: periodic ceiling {limits.periodic_r2:.2f}, "
                    f"range ceiling {limits.range_r2:.2f}")  # fmt: skip
    if judged and reach < ESTIMATE_SHARE:
        mild.append(f"the estimate's analytic image reaches {reach:.2f} of the range ceiling (R2 {final.r2:.2f} of "
                    f"{limits.range_r2:.2f})")  # fmt: skip
    return Verdict(PARTLY, mild) if mild else Verdict(EXPLAINED)
