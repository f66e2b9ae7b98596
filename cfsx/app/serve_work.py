"""The work behind ``cfsx serve``, in its worker processes: one uploaded image -> corrected -> interpreted.

Each worker loads every served model once (Keras safe mode) and keeps it; a request names a model by its
key. The upload is written under a name the server chose (never one from the request), read by the same
readers as ``cfsx correct`` (their input rules apply), corrected onto the model's grid and interpreted.
The worker writes results.json and results.h5 into the request's own directory and returns the records;
the server appends them to the knowledge store and draws the figures when they are first asked for.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.errors import CfsxError, DataError

MODELS: dict[str, tuple[Any, Any]] = {}  # this worker's loaded models: key -> (network, ModelCard)


class TooLarge(DataError):  # noqa: N818  (an HTTP 413, named after it)
    """The image has more pixels than the server takes."""


@dataclass(frozen=True)
class Options:
    """What a request asks for, as ``cfsx interpret`` options: the model, the calibration, the refinement."""

    model: str
    origin: tuple[float, float] | None = None
    pixels_per_rlu: tuple[float, float] | None = None
    centre: tuple[int, int] | None = None
    refine: bool = False
    replicates: int | None = None  # decoded structures per image (None: the interpret config's)


@dataclass(frozen=True)
class Job:
    """One request for a worker: the upload (already on disk, in the request's folder) and its options."""

    folder: Path  # results/<id>/, made by the server
    upload: str  # the upload's file name inside ``folder`` (chosen by the server)
    source: str  # the name the user gave the file, for the records only
    options: Options
    max_pixels: int


@dataclass
class Served:
    """What a worker returns: the interpretation and correction records, and the seconds it took."""

    interpretation: Any  # results.Interpretation
    correction: Any  # correction.Correction
    document: dict[str, Any]  # results.json
    seconds: float


def load_models(paths: dict[str, str]) -> None:
    """Worker initialiser: load every served model once."""
    from cfsx.learning.models import load_model

    for key, path in paths.items():
        MODELS[key] = load_model(path)


def interpret_upload(job: Job) -> Served:
    """Read, correct and interpret one upload; write results.json, results.h5 and the figures beside it.

    Every problem with the input is a CfsxError with one line; the worker itself survives it."""
    from cfsx.correction import correct_image
    from cfsx.correction.geometry import calibrate_from_file
    from cfsx.interpretation import Observed, check_images, interpret_observed
    from cfsx.interpretation.estimates import NO_WINDOW
    from cfsx.interpretation.results import results_document, write_results_h5
    from cfsx.io.readers import read_image

    started = time.perf_counter()
    if job.options.model not in MODELS:
        raise DataError(f"unknown model {job.options.model!r}")
    network, card = MODELS[job.options.model]
    raw, info = read_image(str(job.folder / job.upload))
    if raw.size > job.max_pixels:
        raise TooLarge(f"the image has {raw.size} pixels; this server takes at most {job.max_pixels}")
    correction, config = _configs(job.options, card.image_size, card.h_max)
    corrected = correct_image(raw, calibrate_from_file(correction, raw.shape, info))
    corrected.provenance.insert(0, {"step": "read", **info, "source": job.source})
    corrected.source = job.source
    # with the correction's record and variances, as interpret reads a file: the final rule uses them
    observed = Observed(corrected.image[None].astype(np.float64), [job.source], corrected.mask[None],
                        lot_sizes=np.array([NO_WINDOW]), corrections=[{"config": correction.to_dict(),
                        "steps": corrected.provenance}], variances=[corrected.variance])  # fmt: skip
    check_images(observed)
    (interpretation,) = interpret_observed(network, card, observed, config)
    document = results_document([interpretation], ["interpretation.png"])
    (job.folder / "results.json").write_text(json.dumps(document, indent=1))
    write_results_h5(job.folder / "results.h5", [interpretation])
    return Served(interpretation, corrected, document, time.perf_counter() - started)


FIGURES = ("interpretation.png", "correction.png")


def render_figure(folder: Path, name: str) -> Path:
    """Draw one of FIGURES of a finished interpretation from its files, when first asked for (an API client
    that never looks at them does not pay for them); written atomically, so concurrent requests are safe."""
    from cfsx.correction import preview
    from cfsx.interpretation.results import read_results_h5
    from cfsx.io import plots
    from cfsx.io.readers import read_image

    target = folder / name
    if target.is_file():
        return target
    (interpretation,) = read_results_h5(folder / "results.h5")
    if name == "interpretation.png":
        figure = plots.interpretation(interpretation)
    else:
        (upload,) = [path for path in folder.iterdir() if path.stem == "upload"]
        raw = read_image(str(upload))[0]
        figure = plots.correction_figure(preview(raw), interpretation.observed, interpretation.mask)
    partial = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.png"
    plots.save(figure, partial)
    partial.replace(target)
    return target


@functools.lru_cache(maxsize=64)
def _configs(options: Options, image_size: int, h_max: float) -> tuple[Any, Any]:
    """The correction config (the built-in one with the request's calibration, on the model's grid) and the
    interpretation config of a request; kept, as most requests ask the same."""
    from cfsx.config import CorrectionConfig, InterpretationConfig, load_config

    geometry = {
        "geometry.origin": list(options.origin) if options.origin else None,
        "geometry.pixels_per_rlu": list(options.pixels_per_rlu) if options.pixels_per_rlu else None,
        "geometry.centre": list(options.centre) if options.centre else None,
    }
    correction = load_config("correct", root=CorrectionConfig, **geometry, **{"output.image_size": image_size,
                                                                            "output.h_max": h_max})  # fmt: skip
    flags = {"refine.enabled": options.refine or None, "decode.replicates": options.replicates}
    return correction, load_config("interpret", root=InterpretationConfig, **flags)


def failure(error: BaseException) -> tuple[int, str]:
    """The HTTP status and one line for an error of ``interpret_upload``."""
    if isinstance(error, TooLarge):
        return 413, str(error)
    if isinstance(error, CfsxError):
        return 400, str(error).splitlines()[0]
    return 500, f"internal error ({type(error).__name__}); the server keeps running"
