"""The record of one corrected image (``Correction``) and the codes of its cell mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfsx.correction.provenance import BraggStep, CorrectionRecord, MaskStep, Step, find_step
from cfsx.io import records

# Mask codes of a corrected image.
MEASURED, FILLED_BY_SYMMETRY, INPAINTED = 0, 1, 2


@dataclass
class Correction:
    """One corrected image on the training grid, which cells were measured, and what every step did
    (one provenance entry per step that ran, in order, each naming its ``step``)."""

    image: np.ndarray  # (M, M) float32
    mask: np.ndarray  # (M, M) uint8: MEASURED, FILLED_BY_SYMMETRY or INPAINTED
    provenance: list[Step]
    source: str = ""  # the file (and dataset) it was read from; empty for an array
    counts: np.ndarray | None = None  # (M, M) measured pixels averaged into each cell (all zones); None: not kept
    # (M, M) the noise variance of each cell's value, in the image's units (NaN where inpainted); None where not
    # known (smoothing, histogram matching, files before it)
    variance: np.ndarray | None = None

    def step(self, kind: type[Step] | str) -> Any:
        """The provenance entry of a step kind (MaskStep, BraggStep, ResampleStep, ... or its name: "zones"), None
        when it did not run."""
        return find_step(self.provenance, kind)

    def summary(self) -> str:
        """One line: the image, masked pixels and Bragg peaks, and how many cells were filled."""
        from cfsx.io.readers import short_name

        mask, bragg = self.step(MaskStep), self.step(BraggStep)
        masked = 0 if mask is None else mask.masked_pixels
        peaks = 0 if bragg is None else bragg.peak_pixels
        symmetry = int((self.mask == FILLED_BY_SYMMETRY).sum())
        inpainted = int((self.mask == INPAINTED).sum())
        name = short_name(self.source) if self.source else "array"
        return (
            f"{name}: {self.image.shape[0]}x{self.image.shape[1]}; {masked} pixels masked, {peaks} Bragg-peak pixels; "
            f"{symmetry} cells filled by symmetry, {inpainted} inpainted"
        )

    def record(self) -> dict[str, Any]:
        """What ``cfsx correct --json`` prints of the image: everything but the arrays, with the mask's counts."""
        cells = {"measured": MEASURED, "filled_by_symmetry": FILLED_BY_SYMMETRY, "inpainted": INPAINTED}
        return {"source": self.source, "shape": list(self.image.shape), "provenance": self.plain_provenance(),
                "cells": {name: int((self.mask == code).sum()) for name, code in cells.items()}}  # fmt: skip

    def plain_provenance(self) -> list[dict[str, Any]]:
        """The steps as files keep them (JSON objects named by ``step``)."""
        return [step.to_plain() for step in self.provenance]

    def correction_record(self, config: dict[str, Any]) -> CorrectionRecord:
        """How the image was made, as an interpretation carries it: the correction ``config`` and the steps."""
        return CorrectionRecord(config, list(self.provenance))

    def to_json(self) -> str:
        """The whole record as JSON text; ``from_json`` gives it back."""
        return records.to_json(self)

    @classmethod
    def from_json(cls, text: str) -> Correction:
        """The record ``to_json`` wrote."""
        return records.from_json(cls, text)
