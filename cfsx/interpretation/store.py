"""The knowledge store: interpretations that explain their images, appended as a dataset ``cfsx train`` learns from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.interpretation.results import (
    Interpretation,
    stacked,
)
from cfsx.io.samples import Samples
from cfsx.learning.model_card import ModelCard


def record_store(path, card: ModelCard, interpretations: list[Interpretation]) -> int:
    """Append the interpreted images to a knowledge store (dataset layout); returns the store's size.

    Each image is stored in the engine's units (divided by its fitted scale) with the first decoded
    structure: /encodings/target is the interpreted encoding, /encodings/achieved the correlations of
    the structure that explains the image (the training label, as for simulated data).
    """
    from cfsx.interpretation.fit_quality import NOT_EXPLAINED
    from cfsx.io.dataset import append_samples, check_appendable

    lattice_size = interpretations[0].decoded.lattices.shape[-1]
    # images the model does not explain are no fine-tuning data: their decoded structures explain nothing
    interpretations = [item for item in interpretations if not (item.verdict and item.verdict.label == NOT_EXPLAINED)]
    if not interpretations:
        check_appendable(path, store_attributes(card, lattice_size))
        return _store_size(path)
    decoded = [item.decoded for item in interpretations]
    samples = Samples(
        images=np.stack([item.observed / d.scale[0] for item, d in zip(interpretations, decoded, strict=True)]),
        achieved=np.stack([d.achieved[0] for d in decoded]),
        target=stacked(interpretations),
        interactions=np.stack([d.interactions[0] for d in decoded]),
        cycles=np.array([d.cycles[0] for d in decoded]),
        lattices=np.stack([d.lattices[0] for d in decoded]),
        seeds=np.full(len(interpretations), interpretations[0].provenance.decode_seeds[0], dtype=np.uint64),
    )
    sources = [item.source for item in interpretations]
    return append_samples(path, store_attributes(card, lattice_size), samples, {"sources": sources})


def _store_size(path) -> int:
    """The images a knowledge store holds (0 when it does not exist yet)."""
    from cfsx.io.dataset import open_dataset

    if not Path(path).exists():
        return 0
    with open_dataset(path) as file:
        return len(file)


def store_attributes(card: ModelCard, lattice_size: int | None = None) -> dict[str, Any]:
    """The root attributes of a knowledge store for a model's interpretations, whose structures were decoded on
    ``lattice_size`` (None: the model's own decoding lattice)."""
    config = card.decoding_config
    if lattice_size is not None and lattice_size != card.decoding().lattice.size:
        simulation = card.decoding()
        config = dataclasses.replace(simulation, lattice=dataclasses.replace(simulation.lattice, size=lattice_size))
        config = config.to_yaml()
    return {"kind": "store", "cfs": card.cfs, "vectors": card.vectors, "config": config}
