"""The estimates ``interpret`` makes of an image's encoding, and the rule that picks the final answer.

Every image gets the CNN's encoding and the classical least-squares one (cfsx.inversion; with the lot
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

from .inversion import NO_WINDOW, WarrenCowleyInversion

CNN, LEAST_SQUARES, REFINED = "cnn", "least_squares", "refined"
FINAL_RULE = (
    "the CNN for an image that went through cfsx correct when the model is a hybrid (the least squares plus a "
    "correction learned on corrected images: the built-in general models); otherwise the least squares "
    "(Warren-Cowley; the lot window of a simulated dataset, none for measured images) wherever it is defined "
    "(finite, fitted g(0) > 0), else the CNN. Measured on the generalisation benchmark (docs/generalisation.md, "
    "docs/models.md). The other estimates are reported beside it with the fit of their model images."
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


def choose_final(by_method: dict[str, np.ndarray], cnn_first: np.ndarray | None = None) -> Estimates:
    """FINAL_RULE applied per image to the methods' (S, D) encodings (CNN and least squares at least);
    ``cnn_first`` (S,): the images whose final answer is the CNN's (corrected images, a hybrid model)."""
    cnn, fitted = by_method[CNN], by_method[LEAST_SQUARES]
    use_fit = np.isfinite(fitted).all(axis=1)
    if cnn_first is not None:
        use_fit &= ~np.asarray(cnn_first, dtype=bool)
    final = np.where(use_fit[:, None], fitted, cnn)
    return Estimates(by_method, final, [LEAST_SQUARES if fit else CNN for fit in use_fit])
