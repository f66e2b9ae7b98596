"""The estimates ``interpret`` makes of an image's encoding, and the rule that picks the final answer.

Every image gets the CNN's encoding and the classical least-squares one (cfsx.physics.inversion; with the lot
window of a simulated dataset, and none for a measured image, whose domain size is unknown), with a hybrid model
their blend, and with ``--refine`` the refined one. The final answer follows ``FinalRule`` (FINAL_RULE in words),
which reads what is known of each image (``ImageFacts``: what ``cfsx correct`` did to it, its long-range order).
Its parameters were chosen on half of the generalisation benchmark and scored on the other half
(benchmarks/final_rule.py, docs/interpretation.md "The final answer"). The decoded-image misfit (the refinement's
objective) and the model images' fits picked the better of CNN and least squares no better than the rule.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from cfsx.correction import INPAINTED
from cfsx.correction.provenance import BraggStep, CorrectionRecord, InputStep, ResampleStep, ZonesStep
from cfsx.physics.inversion import NO_WINDOW, WarrenCowleyInversion

CNN, LEAST_SQUARES, REFINED, BLEND = "cnn", "least_squares", "refined", "blend"
LONG_RANGE = 8  # sites: displacements from which an image's correlations are taken as long-range order or noise


@dataclass(frozen=True)
class FinalRule:
    """The parameters of the final rule, chosen on the even cases of benchmarks/final_rule.py (which searches them
    and says when these defaults are not its choice) and scored on the odd ones (docs/interpretation.md)."""

    blend_weight: float = 0.5  # the CNN's share of the blend
    # an image holds Bragg peaks that correct left in when its mean correlation at LONG_RANGE sites and beyond
    # stands this many standard errors above zero ...
    order_significance: float = 2.0
    min_order: float = 0.001  # ... and is above this (alpha units)

    def peaks(self, fact: ImageFacts) -> bool:
        """Bragg peaks masked by correct, or left in: order that reaches every distance."""
        ordered = fact.order_significance > self.order_significance and fact.long_range_order > self.min_order
        return fact.bragg_share > 0 or bool(ordered)

    def describe(self) -> str:
        """The rule in words, as results.json and the command line state it."""
        blend = "mean" if self.blend_weight == 0.5 else f"{self.blend_weight:g} x CNN + {1 - self.blend_weight:g} x"
        return (
            "for an image that went through cfsx correct, with a hybrid model (the least squares plus a correction "
            "learned on corrected images: the built-in general models): the CNN where correct masked Bragg peaks or "
            f"the image holds order that reaches every distance (Bragg peaks left in: its mean correlation at "
            f"{LONG_RANGE} sites and beyond more than {self.order_significance:g} standard errors above zero"
            + (f" and above {self.min_order:g}" if self.min_order else "")
            + f"), else the blend (the {blend} of the CNN and the least squares); for a simulated dataset's image, or "
            "with a model that is not a hybrid, the least squares (Warren-Cowley; the lot window of a simulated "
            "dataset, none for measured images); the CNN wherever the least squares is undefined. Chosen on half of "
            "the generalisation benchmark and scored on the other half (docs/interpretation.md). The other "
            "estimates are reported beside it with the fit of their model images."
        )


FINAL_RULE = FinalRule().describe()
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
    def of(cls, correction: CorrectionRecord | None, mask: np.ndarray | None, image: np.ndarray,
           variance: np.ndarray | None, h_max: float) -> ImageFacts:  # fmt: skip
        """The facts of one image from its correction record (None: not corrected), its
        cell mask (codes of cfsx.correction), the image (on the grid of half-width ``h_max``) and each cell's noise
        variance."""
        order = long_range_order(image, h_max)
        if correction is None:
            return cls(False, 0.0, 0.0, np.inf, *order)
        given, bragg_step = correction.step(InputStep), correction.step(BraggStep)
        pixels = int(np.prod(given.shape)) if given is not None and given.shape else 1
        bragg = (0 if bragg_step is None else bragg_step.peak_pixels) / max(pixels, 1)
        filled = 0.0 if mask is None else float(np.mean(mask == INPAINTED))
        counts = np.inf
        noise_model = getattr(correction.step(ZonesStep) or correction.step(ResampleStep), "noise_model", None) or ""
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


def long_range_order(image: np.ndarray, h_max: float) -> tuple[float, float]:
    """The image's mean correlation at LONG_RANGE sites and beyond (its Fourier coefficients at integer
    displacements, relative to its mean, one of each pair d, -d), and that mean in standard errors (their rms /
    sqrt(count)).

    Lot and counting noise averages out over the hundreds of coefficients; order that reaches every distance does
    not: a comb of Bragg peaks at the lattice points adds the same positive coefficient at every displacement.
    (NaN, NaN) when the grid does not reach that far."""
    values = np.asarray(image, dtype=np.float64)
    if values.ndim != 2 or not np.isfinite(values).all():
        return float("nan"), float("nan")
    # the grid runs from -h_max: shifted so that its first point is h = k = 0, the phases are those of the origin
    spectrum = np.fft.fft2(np.fft.ifftshift(values)).real / values.size
    rows, columns = (np.fft.fftfreq(n, d=2 * h_max / n) for n in values.shape)  # sites per cycle
    dx, dy = np.meshgrid(rows, columns, indexing="ij")
    integer = np.isclose(dx, np.round(dx)) & np.isclose(dy, np.round(dy))
    far = np.maximum(np.abs(dx), np.abs(dy)) >= LONG_RANGE
    half = (dx > 0) | ((dx == 0) & (dy > 0))  # F(-d) is F(d)'s conjugate: each pair once
    outer, mean = spectrum[integer & far & half], spectrum[0, 0]
    if outer.size < 2 or mean <= 0:
        return float("nan"), float("nan")
    error = np.sqrt(np.mean(outer**2) / outer.size)
    return float(outer.mean() / mean), float(outer.mean() / error) if error > 0 else 0.0


def choose_final(by_method: dict[str, np.ndarray], facts: list[ImageFacts], architecture: str,
                 rule: FinalRule = FinalRule()) -> Estimates:  # noqa: B008 (a frozen record)  # fmt: skip
    """FINAL_RULE applied per image to the methods' (S, D) encodings (CNN and least squares at least), given what is
    known of each image (``facts``, one per image) and the model's architecture. With a hybrid model the blend
    joins the methods as BLEND for every image (NaN where the least squares is undefined)."""
    cnn, fitted = by_method[CNN], by_method[LEAST_SQUARES]
    if len(facts) != len(cnn):
        raise ValueError(f"{len(facts)} image facts for {len(cnn)} images")
    defined = np.isfinite(fitted).all(axis=1)
    corrected = np.array([fact.corrected for fact in facts], dtype=bool)
    # Bragg peaks masked, or left in (order that reaches every distance): the hybrid's CNN was trained on both
    bragg = np.array([rule.peaks(fact) for fact in facts], dtype=bool)
    hybrid = architecture in CORRECTION_TRAINED
    by_hybrid = corrected & hybrid
    sources = np.where(~defined | (by_hybrid & bragg), CNN, np.where(by_hybrid, BLEND, LEAST_SQUARES))
    methods = dict(by_method)
    if hybrid:
        methods[BLEND] = np.where(defined[:, None], rule.blend_weight * cnn + (1 - rule.blend_weight) * fitted, np.nan)
    final = np.empty(cnn.shape, dtype=np.float64)
    for name in set(sources.tolist()):
        final[sources == name] = methods[name][sources == name]
    return Estimates(methods, final, sources.tolist())
