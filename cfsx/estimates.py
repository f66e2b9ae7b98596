"""The estimates ``interpret`` makes of an image's encoding, and the rule that picks the final answer.

Every image gets the CNN's encoding and the classical least-squares one (cfsx.inversion; with the lot
window of a simulated dataset, and none for a measured image, whose domain size is unknown), and with
``--refine`` the refined one.
The final answer is chosen by FINAL_RULE, which was measured on the generalisation benchmark
(docs/generalisation.md): on images cfsx did not make, the least squares beat every CNN cfsx has
trained so far, on clean images and on every corrupted kind and level after ``cfsx correct``, while
the decoded-image misfit (the refinement's objective) picked the better of the two only about half
the time. The rule is one function so that a better one replaces it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inversion import NO_WINDOW, WarrenCowleyInversion

CNN, LEAST_SQUARES, REFINED = "cnn", "least_squares", "refined"
FINAL_RULE = (
    "least squares (Warren-Cowley; the lot window of a simulated dataset, none for measured images) wherever it "
    "is defined (finite, fitted g(0) > 0), else the CNN; measured on the generalisation benchmark "
    "(docs/generalisation.md), where it is the better estimate on clean images and on every corrupted kind and "
    "level after cfsx correct. The CNN's and the refined encodings are reported beside it with their decoded "
    "image R2."
)


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
        out[chosen] = WarrenCowleyInversion(vectors, images.shape[-1], h_max, int(lot_size))(images[chosen])
    return out


def choose_final(by_method: dict[str, np.ndarray]) -> Estimates:
    """FINAL_RULE applied per image to the methods' (S, D) encodings (CNN and least squares at least)."""
    cnn, fitted = by_method[CNN], by_method[LEAST_SQUARES]
    defined = np.isfinite(fitted).all(axis=1)
    final = np.where(defined[:, None], fitted, cnn)
    return Estimates(by_method, final, [LEAST_SQUARES if ok else CNN for ok in defined])
