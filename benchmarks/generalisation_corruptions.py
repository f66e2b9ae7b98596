"""The generalisation benchmark's corruptions: Poisson counts, falloff, Bragg peaks, gaps, a beamstop and all of
them combined, at three levels each (benchmarks/generalisation_data.py, which re-exports every name, describes them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

KINDS = ("poisson", "falloff", "bragg", "gaps", "beamstop", "combined")
LEVELS = (1, 2, 3)
MASKED_KINDS = ("gaps", "beamstop", "combined")


@dataclass(frozen=True)
class CorruptionSettings:
    """Levels 1, 2, 3 of each corruption for one image family (pixel sizes differ, physics does not)."""

    counts: tuple[float, ...] = (100.0, 10.0, 1.0)  # poisson: counts per pixel at the mean clean level
    falloff_b: tuple[float, ...] = (0.1, 0.3, 1.0)  # r.l.u.^-2, exp(-B (h^2 + k^2))
    bragg_heights: tuple[float, ...] = (10.0, 100.0, 1000.0)  # peak maximum / mean clean level
    bragg_fwhm_px: tuple[float, float] = (0.5, 3.0)  # FWHM drawn uniformly in this range (pixels)
    bragg_single_pixel: float = 1 / 3  # probability of a one-pixel peak exactly at the integer h, k
    gaps: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (1, 1, 4), (2, 2, 6))  # (rows, columns, width px)
    beamstop_radius: tuple[float, ...] = (0.05, 0.1, 0.16)  # r.l.u.
    beamstop_arm: tuple[float, ...] = (0.03, 0.06, 0.09)  # arm width, r.l.u.


REDUCED_CORRUPTION = CorruptionSettings()
DETECTOR_CORRUPTION = CorruptionSettings(
    bragg_fwhm_px=(1.0, 2.0), bragg_single_pixel=0.0, gaps=((0, 1, 7), (1, 1, 7), (2, 2, 17))
)


def _peak_profile(axis: np.ndarray, sigma: float) -> np.ndarray:
    """sum over integers H of exp(-(x - H)^2 / 2 sigma^2) along one axis (sigma in r.l.u.)."""
    near = np.arange(np.floor(axis.min() - 6 * sigma), np.ceil(axis.max() + 6 * sigma) + 1)
    return np.exp(-((axis[:, None] - near[None, :]) ** 2) / (2 * sigma**2)).sum(axis=1)


def bragg_peaks(h: np.ndarray, k: np.ndarray, height: float, fwhm_px: float, pixel: float) -> np.ndarray:
    """Peaks of maximum ``height`` at every integer h, k: Gaussian of FWHM fwhm_px, or one pixel for fwhm_px = 0."""
    if fwhm_px == 0:
        on_h = np.isclose(h, np.round(h), rtol=0, atol=1e-9)
        on_k = np.isclose(k, np.round(k), rtol=0, atol=1e-9)
        return height * np.outer(on_h, on_k).astype(np.float64)
    sigma = fwhm_px * pixel / (2 * np.sqrt(2 * np.log(2)))
    return height * np.outer(_peak_profile(h, sigma), _peak_profile(k, sigma))


def gap_mask(shape: tuple[int, int], rows: int, columns: int, width: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for start in rng.integers(0, shape[0] - width + 1, size=rows):
        mask[start : start + width, :] = True
    for start in rng.integers(0, shape[1] - width + 1, size=columns):
        mask[:, start : start + width] = True
    return mask


def beamstop_mask(h: np.ndarray, k: np.ndarray, radius: float, arm: float, angle: float) -> np.ndarray:
    """A disk of ``radius`` around h = k = 0 and an arm of width ``arm`` from it to the border at ``angle``."""
    hh, kk = np.meshgrid(h, k, indexing="ij")
    along = hh * np.cos(angle) + kk * np.sin(angle)
    across = -hh * np.sin(angle) + kk * np.cos(angle)
    return (np.hypot(hh, kk) <= radius) | ((along >= 0) & (np.abs(across) <= arm / 2))


def draw_corruption(kind: str, level: int, settings: CorruptionSettings, rng: np.random.Generator) -> dict:
    """The random parameters of one corruption at one level (positions, widths, angle)."""
    index = LEVELS.index(level)
    if kind == "bragg":
        single = rng.random() < settings.bragg_single_pixel
        fwhm = rng.uniform(*settings.bragg_fwhm_px)
        return {"height": settings.bragg_heights[index], "fwhm_px": 0.0 if single else float(fwhm)}
    if kind == "gaps":
        rows, columns, width = settings.gaps[index]
        return {"rows": rows, "columns": columns, "width": width, "seed": int(rng.integers(2**63))}
    if kind == "beamstop":
        return {
            "radius": settings.beamstop_radius[index],
            "arm": settings.beamstop_arm[index],
            "angle": float(rng.uniform(0, 2 * np.pi)),
        }
    if kind == "falloff":
        return {"b": settings.falloff_b[index]}
    if kind == "poisson":
        return {"counts": settings.counts[index], "seed": int(rng.integers(2**63))}
    raise ValueError(f"unknown corruption {kind!r}")


def corrupt(
    clean: np.ndarray,
    h: np.ndarray,
    k: np.ndarray,
    pixel: float,
    steps: Sequence[tuple[str, dict]],
) -> tuple[np.ndarray, np.ndarray]:
    """Apply drawn corruptions (bragg, falloff, poisson, gaps, beamstop, in that order) to a clean image.

    Returns (image, mask): the mask marks gap (1) and beamstop (2) pixels; gaps are 0, the beamstop -1.
    Heights and counts are relative to the mean of the clean image.
    """
    params = dict(steps)
    mean = float(clean.mean())
    image = np.asarray(clean, dtype=np.float64).copy()
    mask = np.zeros(image.shape, dtype=np.uint8)
    if "bragg" in params:
        peak = params["bragg"]
        image += bragg_peaks(h, k, peak["height"] * mean, peak["fwhm_px"], pixel)
    if "falloff" in params:
        image *= np.exp(-params["falloff"]["b"] * (h[:, None] ** 2 + k[None, :] ** 2))
    if "poisson" in params:
        flux = params["poisson"]["counts"] / mean
        counts = np.random.default_rng(params["poisson"]["seed"]).poisson(np.clip(image, 0.0, None) * flux)
        image = counts / flux
    if "gaps" in params:
        gaps = params["gaps"]
        gap = gap_mask(image.shape, gaps["rows"], gaps["columns"], gaps["width"], np.random.default_rng(gaps["seed"]))
        image[gap] = 0.0
        mask[gap] = 1
    if "beamstop" in params:
        stop = params["beamstop"]
        shadow = beamstop_mask(h, k, stop["radius"], stop["arm"], stop["angle"])
        image[shadow] = -1.0
        mask[shadow] = 2
    return image, mask


def corrupted_set(
    clean: np.ndarray,
    h: np.ndarray,
    k: np.ndarray,
    pixel: float,
    settings: CorruptionSettings,
    seeds: Callable[[int, int], np.random.SeedSequence],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, dict]]:
    """Every kind at every level: images and masks keyed 'kind/level', and the drawn parameters.

    ``seeds(kind_index, level)`` gives each kind and level its own stream; 'combined' reuses the
    parameters of the single kinds at its level, with its own Poisson draw.
    """
    images, masks, drawn = {}, {}, {}
    for level in LEVELS:
        single = {}
        for index, kind in enumerate(KINDS[:-1]):
            single[kind] = draw_corruption(kind, level, settings, np.random.default_rng(seeds(index, level)))
            image, mask = corrupt(clean, h, k, pixel, [(kind, single[kind])])
            images[f"{kind}/{level}"], masks[f"{kind}/{level}"] = image, mask
        combined = dict(single)
        combined["poisson"] = draw_corruption(
            "poisson", level, settings, np.random.default_rng(seeds(len(KINDS) - 1, level))
        )
        images[f"combined/{level}"], masks[f"combined/{level}"] = corrupt(clean, h, k, pixel, list(combined.items()))
        drawn[str(level)] = single
    return images, masks, drawn
