"""How well each estimate of an image's encoding explains it: its model images, their fit quality on the measured
cells, the image's ceilings and the verdict (cfsx.interpretation.model_images, .fit_quality). Needs no decoding: without
decoded structures only the analytic images are scored, and the verdict is the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfsx.correction.provenance import CorrectionRecord, SymmetryStep, ZonesStep
from cfsx.interpretation.fit_quality import Ceilings, FitQuality, Verdict, ceilings, fit_quality, judge
from cfsx.interpretation.model_images import analytic_image, structure_images


@dataclass
class EstimateFit:
    """One estimate's model images against the image: analytic (always) and decoded-structure (when decoded)."""

    analytic: FitQuality
    structure: FitQuality | None = None


@dataclass
class Assessment:
    """One image: every estimate's fit, the ceilings, the verdict on the final estimate, and the model image shown
    (the final estimate's structure image when decoded, else its analytic one; fitted scale and background applied)."""

    fits: dict[str, EstimateFit]
    ceilings: Ceilings
    verdict: Verdict
    model_image: np.ndarray  # (M, M)


@dataclass(frozen=True)
class ImageEvidence:
    """What is known of one observed image besides its values: which cells were measured (None: all), their
    noise variance (None: unknown), the correction's record (None: not corrected) and its ceilings."""

    measured: np.ndarray | None = None
    variance: np.ndarray | None = None
    correction: dict[str, Any] | None = None
    ceilings: Ceilings | None = None  # already measured (``ceilings_of`` does a batch at once); None: measure them


@dataclass(frozen=True)
class Structures:
    """Structures decoded from an image's estimates (name -> (R, N, N) lattices) and the structure image's taper
    (cfsx.interpretation.model_images): flat to ``inner``, zero from ``outer`` lattice units."""

    lattices: dict[str, np.ndarray]
    inner: float
    outer: float


def assess(
    image: np.ndarray,
    estimates: dict[str, np.ndarray],
    final_source: str,
    vectors: np.ndarray,
    grid: tuple[int, float, int],
    evidence: ImageEvidence,
    structures: Structures | None = None,
) -> Assessment:
    """``image`` (M, M) and its ``estimates`` (name -> (D,) encoding, NaN where undefined); ``grid`` is (M, h_max,
    cfs); ``structures``: those decoded from the estimates."""
    size, h_max, cfs = grid
    measured, variance = evidence.measured, evidence.variance
    fits: dict[str, EstimateFit] = {}
    shown: dict[str, tuple[np.ndarray, FitQuality]] = {}
    for name, encoding in estimates.items():
        if not np.isfinite(encoding).all():
            continue
        model = analytic_image(encoding, vectors, size, h_max)
        fits[name] = EstimateFit(fit_quality(image, model, measured, variance))
        shown[name] = (model, fits[name].analytic)
        if structures is not None and name in structures.lattices:
            structure, noise = structure_images(structures.lattices[name], size, h_max, structures.inner,
                                                structures.outer)  # fmt: skip
            fits[name].structure = fit_quality(image, structure, measured, variance, noise)
            shown[name] = (structure, fits[name].structure)
    limits = evidence.ceilings or ceilings(image, measured, cfs, h_max, variance)
    final = fits.get(final_source) or next(iter(fits.values()))
    consistency, symmetry_chi2 = correction_evidence(evidence.correction)
    verdict = judge(final.analytic, limits, consistency, symmetry_chi2)
    model, quality = shown.get(final_source) or next(iter(shown.values()))
    return Assessment(fits, limits, verdict, (quality.scale * model + quality.background).astype(np.float32))


def correction_evidence(correction: CorrectionRecord | None) -> tuple[float | None, float | None]:
    """From a correction's record: the cross-zone consistency (the lowest over G of correlation over its noise
    ceiling) and the chi^2 of symmetry-equivalent cells against their mean; None where not measured."""
    if not correction:
        return None, None
    consistency = None
    zones = correction.step(ZonesStep)
    if zones:
        values = [entry["consistency"] for entry in zones.consistency if entry.get("consistency") is not None
                  and entry.get("pairs", 0) >= 50]  # fmt: skip
        consistency = min(values) if values else None
    symmetry = correction.step(SymmetryStep)
    return consistency, None if symmetry is None else symmetry.chi2
