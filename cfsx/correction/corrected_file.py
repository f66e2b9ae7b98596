"""The file ``cfsx correct`` writes (a cfsx dataset of kind "corrected", cfsx.io.dataset) from Correction records,
and the records read back from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cfsx.config import CorrectionConfig
from cfsx.correction.provenance import ResampleStep, step_of
from cfsx.correction.record import Correction
from cfsx.io.dataset import CorrectedImages, read_corrected, write_corrected


def write_corrections(path: str | Path, corrections: list[Correction], config: CorrectionConfig) -> None:
    """The dataset of kind "corrected" that ``cfsx correct`` writes: images, masks, sources and each image's
    provenance (JSON text), with the config that made them; ``read_corrections`` gives the records back."""
    counts = [c.counts for c in corrections]
    variance = [c.variance for c in corrections]
    corrected = CorrectedImages(
        images=np.stack([c.image for c in corrections]),
        masks=np.stack([c.mask for c in corrections]),
        provenance=[json.dumps(c.plain_provenance(), default=float) for c in corrections],
        sources=[c.source for c in corrections],
        counts=np.stack(counts) if all(item is not None for item in counts) else None,
        variance=np.stack(variance) if all(item is not None for item in variance) else None,
        windows=[getattr(c.step(ResampleStep), "window", None) for c in corrections],
    )
    attrs = {"image_size": config.output.image_size, "h_max": config.output.h_max}
    write_corrected(path, corrected, attrs, config.to_yaml())


def read_corrections(path: str | Path) -> list[Correction]:
    """The Correction records of a file that ``write_corrections`` wrote."""
    corrected = read_corrected(path)
    count = len(corrected.images)
    counts = [None] * count if corrected.counts is None else list(corrected.counts)
    variance = [None] * count if corrected.variance is None else list(corrected.variance)
    provenance = [[step_of(entry) for entry in json.loads(text)] for text in corrected.provenance]
    return [Correction(*parts) for parts in zip(corrected.images, corrected.masks, provenance, corrected.sources,
                                                   counts, variance, strict=True)]  # fmt: skip
