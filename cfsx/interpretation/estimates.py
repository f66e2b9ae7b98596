"""The estimates ``interpret`` makes of an image's encoding, and the rule that picks the final answer.

Every image gets the CNN's encoding and the classical least-squares one (cfsx.physics.inversion; with the lot
window of a simulated dataset, and none for a measured image, whose domain size is unknown), and with
``--refine`` the refined one.
The final answer is chosen by FINAL_RULE, which was measured on the generalisation benchmark
(docs/generalisation.md, docs/models.md): on images cfsx did not make, the least squares beat every CNN
trained on one setting's clean images, on clean images and on every corrupted kind and level after
``cfsx correct``; the built-in general models (``hybrid``: the least squares plus a learned correction,
trained on images cleaned by ``correct``) beat it on images that went through ``correct`` (18 of the 19
corrected sets), but not on clean simulated images. The decoded-image misfit (the refinement's objective)
picked the better of CNN and least squares only about half the time. The rule is one function so that a
better one replaces it in one place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cfsx.correction import INPAINTED
from cfsx.physics.inversion import NO_WINDOW, WarrenCowleyInversion

CNN, LEAST_SQUARES, REFINED, BLEND = "cnn", "least_squares", "refined", "blend"
# The CNN's share of the blend: chosen on the even cases of benchmarks/final_rule.py (0.3-0.7 tried; 0.5 best for
# all three built-in models), scored on the odd ones (docs/interpretation.md)
BLEND_WEIGHT = 0.5
# Long-range order (ImageFacts.order_significance, standard errors) above which an image is taken to hold Bragg
# peaks that correct left in: chosen on the same even cases (2-15 and none tried)
ORDER_SIGNIFICANCE = 2.0
FINAL_RULE = (
    "for an image that went through cfsx correct, with a hybrid model (the least squares plus a correction learned "
    "on corrected images: the built-in general models): the CNN where correct masked Bragg peaks or the image "
    "holds order that reaches every distance (Bragg peaks left in: its mean correlation beyond 8 sites more than 2 "
    "standard errors above zero), else the blend "
    "(the mean of the CNN and the least squares); for a simulated dataset's image, or with a model that is not a "
    "hybrid, the least squares (Warren-Cowley; the lot window of a simulated dataset, none for measured images); the "
    "CNN wherever the least squares is undefined. Chosen on half of the generalisation benchmark and scored on the "
    "other half (docs/interpretation.md). The other estimates are reported beside it with the fit of their model "
    "images."
)
CORRECTION_TRAINED = ("hybrid",)  # architectures whose CNN is the final answer for corrected images


@dataclass
class Estimates:
    """(S, D) encodings of S images by each method, and which one each image's final answer took."""

    by_method: dict[str, np.ndarray]
    final: np.ndarray
    final_source: list[str]


def least_squares(images: np.ndarray, vectors: np.ndarray, h_max: float, lot_sizes: np.ndarray | None = None
                  ) -> np.ndarray:  # fmt: skip
    """The least-squares encodings of (S, M, M) images; NaN rows where undefined.

    ``lot_sizes`` (S,): each image's lot size where it is known (a simulated dataset says it), NO_WINDOW
    where not. The window only rescales each vector's column, so the fit cannot tell the lot size itself.
    """
    lot_sizes = np.full(len(images), NO_WINDOW) if lot_sizes is None else np.asarray(lot_sizes)
    out = np.empty((len(images), len(vectors)))
    for lot_size in np.unique(lot_sizes):
        chosen = lot_sizes == lot_size
        key = tuple(map(tuple, np.asarray(vectors).tolist()))
        out[chosen] = _inversion(key, images.shape[-1], float(h_max), int(lot_size))(images[chosen])
    return out


@functools.lru_cache(maxsize=16)
def _inversion(vectors: tuple, image_size: int, h_max: float, lot_size: int) -> WarrenCowleyInversion:
    """One inversion per grid and encoding, kept: its design costs 0.1 s, each image then microseconds."""
    return WarrenCowleyInversion(np.array(vectors), image_size, h_max, lot_size)


@dataclass(frozen=True)
class ImageFacts:
    """What the final answer may know of an image besides its estimates: what ``cfsx correct`` did to it."""

    corrected: bool  # it went through cfsx correct (a raw file); False for a simulated dataset's image
    bragg_share: float = 0.0  # share of its pixels masked as Bragg peaks
    filled_share: float = 0.0  # share of the window's cells inpainted (no measurement, no symmetry mate)
    counts: float = np.inf  # median counts behind a cell's value (Poisson; symmetry mates included); inf: not counts
    long_range_order: float = np.nan  # long_range_order of the image: its mean correlation far away (NaN: unknown)
    order_significance: float = np.nan  # ... in standard errors

    @classmethod
    def of(cls, correction: dict | None, mask: np.ndarray | None, image: np.ndarray, variance: np.ndarray | None,
           h_max: float) -> ImageFacts:  # fmt: skip
        """The facts of one image from its correction record ({"config", "steps"}, None: not corrected), its
        cell mask (codes of cfsx.correction), the image (on the grid of half-width ``h_max``) and each cell's noise
        variance."""
        order = long_range_order(image, h_max)
        if correction is None:
            return cls(False, 0.0, 0.0, np.inf, *order)
        steps = {entry["step"]: entry for entry in correction["steps"]}
        pixels = int(np.prod(steps.get("input", {}).get("shape", [1])))
        bragg = steps.get("bragg", {}).get("peak_pixels", 0) / max(pixels, 1)
        filled = 0.0 if mask is None else float(np.mean(mask == INPAINTED))
        counts = np.inf
        noise_model = (steps.get("zones") or steps.get("resample") or {}).get("noise_model", "")
        if noise_model.startswith("Poisson") and variance is not None:
            measured = np.isfinite(variance) & (variance > 0)
            if measured.any():
                counts = float(np.median(np.asarray(image)[measured] ** 2 / variance[measured]))
        return cls(
            corrected=True,
            bragg_share=float(bragg),
            filled_share=filled,
            counts=counts,
            long_range_order=order[0],
            order_significance=order[1],
        )


LONG_RANGE = 8  # sites: displacements from which an image's correlations are taken as long-range order or noise


def long_range_order(image: np.ndarray, h_max: float) -> tuple[float, float]:
    """The image's mean correlation at LONG_RANGE sites and beyond (its Fourier coefficients at integer
    displacements, relative to its mean), and that mean in standard errors (their rms / sqrt(count)).

    Lot and counting noise averages out over the hundreds of coefficients; order that reaches every distance does
    not: a comb of Bragg peaks at the lattice points adds the same positive coefficient at every displacement.
    (NaN, NaN) when the grid does not reach that far."""
    values = np.asarray(image, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        return float("nan"), float("nan")
    spectrum = np.fft.fft2(values).real / values.size
    displacements = [np.fft.fftfreq(n, d=2 * h_max / n) for n in values.shape]  # sites per cycle
    integer = np.logical_and.outer(*(np.isclose(d, np.round(d)) for d in displacements))
    far = np.maximum.outer(*(np.abs(d) for d in displacements)) >= LONG_RANGE
    outer, mean = spectrum[integer & far], spectrum[0, 0]
    if outer.size < 2 or mean <= 0:
        return float("nan"), float("nan")
    error = np.sqrt(np.mean(outer**2) / outer.size)
    return float(outer.mean() / mean), float(outer.mean() / error) if error > 0 else 0.0


def choose_final(by_method: dict[str, np.ndarray], facts: list[ImageFacts], architecture: str) -> Estimates:
    """FINAL_RULE applied per image to the methods' (S, D) encodings (CNN and least squares at least), given what is
    known of each image (``facts``) and the model's architecture. The blend, where any image takes it, joins the
    methods as BLEND."""
    cnn, fitted = by_method[CNN], by_method[LEAST_SQUARES]
    defined = np.isfinite(fitted).all(axis=1)
    corrected = np.array([fact.corrected for fact in facts], dtype=bool)
    # Bragg peaks masked, or left in (order that reaches every distance): the hybrid's CNN was trained on both
    bragg = np.array([fact.bragg_share > 0 or fact.order_significance > ORDER_SIGNIFICANCE for fact in facts])
    by_hybrid = corrected & (architecture in CORRECTION_TRAINED)
    sources = np.where(~defined | (by_hybrid & bragg), CNN, np.where(by_hybrid, BLEND, LEAST_SQUARES))
    methods = dict(by_method)
    if (sources == BLEND).any():
        methods[BLEND] = np.where(defined[:, None], BLEND_WEIGHT * cnn + (1 - BLEND_WEIGHT) * fitted, np.nan)
    final = np.empty_like(cnn)
    for name in set(sources.tolist()):
        final[sources == name] = methods[name][sources == name]
    return Estimates(methods, final, sources.tolist())
