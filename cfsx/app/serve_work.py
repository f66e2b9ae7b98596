"""The work behind ``cfsx serve``, in its worker processes: one uploaded image -> corrected -> interpreted.

Each worker loads every served model once (Keras safe mode) and keeps it; a request names a model by its
key. The upload is written under a name the server chose (never one from the request), read by the same
readers as ``cfsx correct`` (their input rules apply), corrected onto the model's grid and interpreted.
The worker writes results.json and results.h5 into the request's own directory and returns the records;
the server appends them to the knowledge store and draws the figures when they are first asked for.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfsx.config.flags import Calibration
from cfsx.errors import AdvisedError, CfsxError, DataError, TooLargeError

MODELS: dict[str, tuple[Any, Any]] = {}  # this worker's loaded models: key -> (network, ModelCard)


@dataclass(frozen=True)
class Options:
    """What a request asks for, as ``cfsx interpret`` options: the model, the calibration, the refinement."""

    model: str
    calibration: Calibration = Calibration()
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
    correction: Any  # correction.Correction; None for an upload of a cfsx dataset (not corrected)
    document: dict[str, Any]  # results.json
    seconds: float


def start_worker(parent: int, paths: dict[str, str]) -> None:
    """Worker initialiser: end with the server ``parent`` (also when it is killed), then load every served model."""
    from cfsx.simulation.workers import worker_init

    worker_init(parent)
    load_models(paths)


def load_models(paths: dict[str, str]) -> None:
    """Worker initialiser: load every served model once."""
    from cfsx.learning.models import load_model

    for key, path in paths.items():
        MODELS[key] = load_model(path)


def interpret_upload(job: Job) -> Served:
    """Read, correct and interpret one upload as ``cfsx interpret`` does (the same library functions); write
    results.json and results.h5 beside it.

    Every problem with the input is a CfsxError with one line; the worker itself survives it."""
    from cfsx.correction import Correction
    from cfsx.interpretation import interpret_observed, read_observed
    from cfsx.interpretation.results import write_results

    started = time.perf_counter()
    if job.options.model not in MODELS:
        raise DataError(f"unknown model {job.options.model!r}")
    network, card = MODELS[job.options.model]
    correction, config = _configs(job.options)
    observed = read_observed([str(job.folder / job.upload)], card, correction, max_pixels=job.max_pixels)
    if len(observed.images) != 1:
        raise DataError(f"an upload is one image; this file holds {len(observed.images)}")
    observed.rename([job.source])
    (interpretation,) = interpret_observed(network, card, observed, config)
    document = write_results(job.folder, [interpretation], ["interpretation.png"])
    record = interpretation.correction  # None for a cfsx dataset, whose images are interpreted as they are
    corrected = None if record is None else Correction(interpretation.observed, interpretation.mask, record.steps,
                                                        job.source)  # fmt: skip
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
    if name != "interpretation.png" and interpretation.correction is None:
        raise FileNotFoundError(f"{name}: the image was not corrected")
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
def _configs(options: Options) -> tuple[Any, Any]:
    """The correction config (the built-in one with the request's calibration) and the interpretation config of a
    request, by the options' mapping that the CLI uses too; kept, as most requests ask the same."""
    from cfsx.config.flags import correction_config, interpretation_config

    correction = correction_config("correct", calibration=options.calibration)
    return correction, interpretation_config(refine=options.refine or None, replicates=options.replicates)


# Config keys a request sets by a form field of its own: refusals that advise a setting name the field.
FORM_FIELDS = {"geometry.origin": "origin", "geometry.pixels_per_rlu": "pixels_per_rlu", "geometry.centre": "centre"}


def failure(error: BaseException, job: Job) -> tuple[int, str]:
    """The HTTP status and one line for an error of ``interpret_upload``: about the client's file by its own name
    (never the server's paths), advising the request's form fields where it advises settings."""
    if isinstance(error, AdvisedError):
        message = error.text(FORM_FIELDS)
    elif isinstance(error, CfsxError):
        message = str(error)
    else:
        return 500, f"internal error ({type(error).__name__}); the server keeps running"
    for path in (job.folder / job.upload, job.folder):
        message = message.replace(str(path), job.source)
    return (413 if isinstance(error, TooLargeError) else 400), message.splitlines()[0]
