"""``cfsx correct`` on files: reading raw images with their calibration, batches with progress, previews for figures."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cfsx.config import CorrectionConfig
from cfsx.correction.geometry import calibrate_from_file
from cfsx.correction.pixels import Progress
from cfsx.correction.provenance import ResampleStep, Step, step_of
from cfsx.correction.record import Correction
from cfsx.correction.steps import correct_image
from cfsx.errors import DataError
from cfsx.io.readers import expand_inputs, file_of, read_image

log = logging.getLogger(__name__)


def mask_of(config: CorrectionConfig) -> np.ndarray | None:
    """The pixels the config's mask file (``mask.file``) excludes, None without one."""
    return read_image(config.mask.file)[0] != 0 if config.mask.file else None


def correct_file(
    spec: str,
    config: CorrectionConfig,
    extra_mask: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    progress: Progress | None = None,
    *,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, Correction]:
    """Read one image and correct it; a file's own r.l.u. axes calibrate it when the config has no calibration.
    Returns the raw image and the corrected one, whose provenance starts with what was read. ``max_pixels``:
    refuse a larger image (TooLargeError) before correcting it."""
    raw, info = read_image(spec, max_pixels)
    corrected = correct_image(raw, calibrate_from_file(config, raw.shape, info), extra_mask, reference, progress)
    corrected.provenance.insert(0, step_of({"step": "read", **info}))
    corrected.source = spec
    return raw, corrected


def warn_uncalibrated(provenances: list[list[Step]], sources: list[str]) -> None:
    """One warning line for the images read without a calibration (taken as the training window itself)."""
    from cfsx.io.readers import short_name

    names = [short_name(source) or "array" for steps, source in zip(provenances, sources, strict=True)
             if any(isinstance(step, ResampleStep) and not step.calibrated for step in steps)]  # fmt: skip
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        log.warning("%s: no calibration (no r.l.u. axes in the file, none given): taken as h, k in [-h_max, h_max) "
                    "of the training window, the whole image", shown)  # fmt: skip


FIGURE_PIXELS = 2048  # larger raw images are shown (in --figure) by every n-th pixel, n = size // this


def preview(raw: np.ndarray) -> np.ndarray:
    """The raw image for its figure: every n-th pixel of a large one (plotting 8192^2 pixels needs GBs)."""
    step = preview_step(raw.shape)
    return raw[::step, ::step]


def preview_step(shape: tuple[int, ...]) -> int:
    """The n of ``preview``."""
    return max(1, -(-max(shape) // FIGURE_PIXELS))


def _progress_within(progress: Callable[[float, int], None], number: int, total: int, fraction: float) -> None:
    """Report image ``number`` (from 0) ``fraction`` done, as images done of ``total``."""
    if fraction < 1.0:
        progress(number + fraction, total)


def reference_images(path, limit: int = 2000) -> np.ndarray:
    """Up to ``limit`` images of a training dataset, evenly spread, for histogram matching."""
    from cfsx.io.dataset import open_dataset

    with open_dataset(path) as file:
        images = file.images
        step = max(1, len(images) // limit)
        return np.asarray(images[::step][:limit], dtype=np.float64)


def correct_files(
    inputs: list[str],
    output,
    config: CorrectionConfig,
    reference: str | None = None,
    figure_dir=None,
    progress: Callable[[float, int], None] | None = None,
) -> list[Correction]:
    """Correct every image of ``inputs`` and write them, with masks and provenance, to ``output`` (.h5).

    ``progress(done, total)`` is told the number of images done, with fractions within a long image.
    """
    from cfsx.io.outputs import claim_outputs

    specs = expand_inputs(inputs)
    sources = [file_of(spec) for spec in specs]
    with claim_outputs(files=[output], inputs=[*sources, config.mask.file, reference]):  # before the work, not after
        return _correct_files(specs, output, config, reference, figure_dir, progress)


def _correct_files(
    specs: list[str],
    output,
    config: CorrectionConfig,
    reference: str | None,
    figure_dir,
    progress: Callable[[float, int], None] | None,
) -> list[Correction]:
    import json

    from cfsx.correction.corrected_file import write_corrections

    extra_mask = mask_of(config)
    reference_set = reference_images(reference) if reference else None
    if figure_dir is not None and not Path(figure_dir).is_dir():
        raise DataError(f"figure directory {figure_dir} does not exist")
    results = []
    for number, spec in enumerate(specs):
        within = functools.partial(_progress_within, progress, number, len(specs)) if progress else None
        raw, corrected = correct_file(spec, config, extra_mask, reference_set, within)
        results.append(corrected)
        log.info("%s: corrected (%s)", spec, ", ".join(step.kind for step in corrected.provenance))
        log.debug("%s: %s", spec, json.dumps(corrected.plain_provenance(), default=float))
        if figure_dir is not None:
            from cfsx.io import plots

            name = f"{number:04d}-{Path(spec.partition('::')[0]).stem}.png"
            figure = plots.correction_figure(preview(raw), corrected.image, corrected.mask, reference_set)
            plots.save(figure, Path(figure_dir) / name)
            zones = plots.zones_figure(preview(raw), corrected, preview_step(raw.shape))
            if zones is not None:
                plots.save(zones, Path(figure_dir) / name.replace(".png", "-zones.png"))
        del raw
        if progress:
            progress(number + 1, len(specs))
    warn_uncalibrated([c.provenance for c in results], specs)
    write_corrections(output, results, config)
    return results
