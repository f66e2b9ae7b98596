"""The images ``interpret`` reads: cfsx datasets as they are, raw files through ``cfsx correct`` onto the model's
grid, with what is known of each (its correction, cell variances, truth where simulated)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cfsx.config import CorrectionConfig, config_from_yaml_text
from cfsx.correction.provenance import CorrectionRecord, ReadStep, step_of
from cfsx.errors import DataError, TooLargeError
from cfsx.interpretation.estimates import (
    ImageFacts,
)
from cfsx.io.dataset import is_dataset
from cfsx.learning.model_card import ModelCard
from cfsx.physics.encoding import sub_encoding
from cfsx.physics.inversion import NO_WINDOW

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Observed:
    """The images to interpret, on the model's grid, with where they came from."""

    images: np.ndarray  # (S, M, M) float64
    sources: list[str]
    masks: np.ndarray | None = None  # (S, M, M) correction masks of raw images
    truth: np.ndarray | None = None  # (S, D) achieved alpha when the input was a simulated dataset
    lot_sizes: np.ndarray | None = None  # (S,) the lot size where known (simulated datasets), else NO_WINDOW
    corrections: list[CorrectionRecord | None] | None = None  # per image, how cfsx correct made it; None: simulated
    variances: list[np.ndarray | None] | None = None  # per image, each cell's noise variance where known

    def rename(self, sources: list[str]) -> None:
        """Name the images by ``sources`` (an upload by its client's file name), in their corrections' read steps
        too."""
        if len(sources) != len(self.sources):
            raise DataError(f"{len(sources)} names for {len(self.sources)} images")
        self.sources = list(sources)
        for record, source in zip(self.corrections or [], sources, strict=False):
            read = None if record is None else record.step(ReadStep)
            if read is not None:
                read.source = source


def read_observed(
    inputs: list[str],
    card: ModelCard,
    correction: CorrectionConfig,
    progress: Progress | None = None,
    *,
    max_pixels: int | None = None,
) -> Observed:
    """Images from cfsx .h5 files (simulate or correct) as they are; raw images corrected onto the model's grid.
    ``max_pixels``: refuse a larger image (TooLargeError) before correcting it."""
    from cfsx.correction import correct_file, mask_of
    from cfsx.io.dataset import open_dataset
    from cfsx.io.readers import expand_inputs

    size, h_max = card.image_size, card.h_max
    grid = dataclasses.replace(correction.output, image_size=size, h_max=h_max)
    correction = dataclasses.replace(correction, output=grid)
    extra_mask = mask_of(correction)
    specs = expand_inputs(inputs)
    images, sources, masks, truths, lots, corrections, variances = [], [], [], [], [], [], []
    for number, spec in enumerate(specs):
        if is_dataset(spec):
            with open_dataset(spec) as file:
                stored = file.images
                file_h_max, lot_size = float(file.attrs.get("h_max", h_max)), NO_WINDOW
                if "config" in file.attrs and file.attrs.get("kind") != "corrected":
                    diffraction = config_from_yaml_text(str(file.attrs["config"])).diffraction
                    file_h_max, lot_size = diffraction.h_max, diffraction.lot_size
                if max_pixels is not None and stored.size > max_pixels:
                    raise TooLargeError(f"{spec} holds {stored.size} pixels; the limit is {max_pixels}")
                if stored.ndim != 3 or stored.shape[1:] != (size, size) or not np.isclose(file_h_max, h_max):
                    raise DataError(
                        f"{spec} holds {stored.shape[1:]} images with h_max {file_h_max}; the model needs "
                        f"({size}, {size}) with h_max {h_max}"
                    )
                block = np.asarray(stored[()], dtype=np.float64)
                labels = None if file.labels is None else file.labels[()]
                file_cfs = int(file.attrs.get("cfs", 0))
                same_encoding = labels is not None and file_cfs >= card.cfs
                if same_encoding:  # a CFS4 file labels a CFS2 model's images too
                    labels = labels[:, sub_encoding(file_cfs, card.cfs)]
                file_masks = file.array("masks")[()] if file.has("masks") else np.zeros(block.shape, np.uint8)
                corrections += _stored_corrections(file, len(block))
                variances += list(file.array("variance")[()]) if file.has("variance") else [None] * len(block)
            images.append(block)
            lots.append(np.full(len(block), lot_size))
            sources += [f"{spec}::/images[{i}]" for i in range(len(block))]
            masks.append(file_masks)
            truths.append(labels if same_encoding else np.full((len(block), card.components), np.nan))
        else:
            corrected = correct_file(spec, correction, extra_mask, max_pixels=max_pixels)[1]
            corrections.append(corrected.correction_record(correction.to_dict()))
            variances.append(corrected.variance)
            images.append(corrected.image[None].astype(np.float64))
            lots.append(np.array([NO_WINDOW]))
            sources.append(spec)
            masks.append(corrected.mask[None])
            truths.append(np.full((1, card.components), np.nan))
        if progress:
            progress("read", number + 1, len(specs))
    truth = np.concatenate(truths).astype(np.float64)
    truth = None if np.isnan(truth).all() else truth
    observed = Observed(np.concatenate(images), sources, np.concatenate(masks), truth,
                        np.concatenate(lots).astype(np.int64), corrections, variances)  # fmt: skip
    check_images(observed)
    from cfsx.correction import warn_uncalibrated

    raw = [(entry.steps, source) for entry, source in zip(corrections, sources, strict=True) if entry]
    warn_uncalibrated([steps for steps, _ in raw], [source for _, source in raw])
    return observed


def _stored_corrections(file, count: int) -> list[CorrectionRecord | None]:
    """The correction config and steps of each image of a file of cfsx correct; None for other files."""

    import yaml

    if file.attrs.get("kind") != "corrected" or not file.has("provenance"):
        return [None] * count
    config = yaml.safe_load(str(file.attrs.get("config", ""))) or {}
    steps = [[step_of(entry) for entry in json.loads(text)] for text in file.texts("provenance")]
    return [CorrectionRecord(config, entries) for entries in steps]


def check_images(observed: Observed) -> None:
    """Refuse an image the estimates cannot read: NaN or inf, no positive mean, or no contrast at all."""
    images = observed.images
    bad = ~np.isfinite(images).all(axis=(1, 2)) | (images.mean(axis=(1, 2)) <= 0) | (images.std(axis=(1, 2)) == 0)
    if bad.any():
        source = observed.sources[int(bad.argmax())]
        raise DataError(f"image {source} has NaN, inf, no positive mean or no contrast at all")


def image_facts(observed: Observed, h_max: float) -> list[ImageFacts]:
    """What the final answer may know of each image: what cfsx correct did to it (raw images and files of cfsx
    correct count as corrected, simulated datasets not)."""
    facts = []
    for index, lot_size in enumerate(observed.lot_sizes):
        correction = None if observed.corrections is None else observed.corrections[index]
        image = observed.images[index]
        if correction is None:
            facts.append(dataclasses.replace(ImageFacts.of(None, None, image, None, h_max),
                                             corrected=bool(lot_size == NO_WINDOW)))  # fmt: skip
        else:
            mask = None if observed.masks is None else observed.masks[index]
            variance = None if observed.variances is None else observed.variances[index]
            facts.append(ImageFacts.of(correction, mask, image, variance, h_max))
    return facts
