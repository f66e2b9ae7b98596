"""``cfsx interpret``: from observed images to encodings, structures and how well they explain the images.

For every image: the CNN's encoding (averaged with the prediction on the transposed image, a
symmetry that lattice and image share); the structure and image the engine decodes from it
with the settings of the model's training data, several times with different seeds; image R2
and MSE of each decoded image against the observation (after the least-squares scale, since an
observation is in arbitrary units); a per-component uncertainty; optionally a refinement
(cfsx/interpretation/refinement.py) from the CNN's encoding and from zero correlations. Results go to an
output directory (results.json, following results.schema.json; results.h5; one figure per
image) written atomically, and optionally to a knowledge store that ``cfsx train`` can learn from.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cfsx import __version__
from cfsx.config import CorrectionConfig, InterpretationConfig, RefineConfig
from cfsx.errors import ConfigError, DataError
from cfsx.interpretation.estimates import (
    CNN,
    LEAST_SQUARES,
    REFINED,
    choose_final,
    least_squares,
)
from cfsx.interpretation.observed import Observed, Progress, check_images, image_facts, read_observed
from cfsx.interpretation.refinement import Refinement
from cfsx.interpretation.results import (
    Interpretation,
    ModelSummary,
    Provenance,
    write_results,
)
from cfsx.interpretation.store import record_store, store_attributes
from cfsx.io.outputs import atomic_directory, check_output_directory, claim_outputs
from cfsx.io.readers import file_of, short_name
from cfsx.learning.builtin import builtin_models, file_sha256, resolve_model
from cfsx.learning.model_card import ModelCard
from cfsx.physics.encoding import transpose_permutation
from cfsx.physics.inversion import NO_WINDOW
from cfsx.simulation import Decoded, decode, decode_replicates, sample_seeds

log = logging.getLogger(__name__)


def select_decoded(decoded_by: dict[str, Decoded], sources: list[str]) -> Decoded:
    """Per image, the decoded replicates of the estimate named in ``sources``."""
    first = next(iter(decoded_by.values()))
    chosen = {}
    for item in dataclasses.fields(Decoded):
        if item.name == "seeds":
            chosen["seeds"] = first.seeds
            continue
        arrays = [getattr(decoded_by[source], item.name)[index] for index, source in enumerate(sources)]
        chosen[item.name] = np.stack(arrays) if arrays else getattr(first, item.name)
    return Decoded(**chosen)


@dataclass
class InterpretationResult:
    """What ``interpret`` wrote: the records, the results.json document, and the seconds per stage."""

    output_dir: Path
    interpretations: list[Interpretation]
    document: dict[str, Any]
    seconds: dict[str, float]


@dataclass(frozen=True)
class InterpretationOutput:
    """Where ``interpret`` writes: the results directory, and optionally a knowledge store (.h5) to append the
    interpreted images to and an existing directory for the figures (default DIRECTORY/figures)."""

    directory: Path
    record: Path | None = None
    figures: Path | None = None


def interpret(
    model_path: str | Path,
    inputs: list[str],
    output: str | Path | InterpretationOutput,
    config: InterpretationConfig | None = None,
    correction: CorrectionConfig | None = None,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> InterpretationResult:
    """Interpret image files with a model and write the results; see the module docstring for what is written.

    ``output``: the results directory, or an InterpretationOutput that also names a knowledge store and a
    figure directory. Raw images are corrected with ``correction`` (its ``mask.file`` included)."""
    output = output if isinstance(output, InterpretationOutput) else InterpretationOutput(Path(output))
    files = [file_of(spec) for spec in inputs if not any(char in file_of(spec) for char in "*?[")]
    if output.figures is not None and not Path(output.figures).is_dir():
        raise DataError(f"figure directory {output.figures} does not exist")
    model_path = resolve_model(model_path)
    config, correction = config or InterpretationConfig(), correction or CorrectionConfig()
    with claim_outputs(files=[output.record], directories=[output.directory],
                       inputs=[model_path, *files, correction.mask.file]):  # fmt: skip
        check_output_directory(output.directory, "results.json")  # before reading: one line, no warnings first
        return _interpret(model_path, inputs, output, config, correction, workers, progress)


def interpret_images(
    model: str | Path,
    images: np.ndarray,
    config: InterpretationConfig | None = None,
    *,
    sources: list[str] | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> list[Interpretation]:
    """Interpret (S, M, M) images on the model's grid (as ``cfsx correct`` makes them) with a model (a built-in
    name or a .keras file); one record per image, nothing written. Images of unknown lot size are assumed, as
    for any measured image: the least squares fits them without a lot window. They count as corrected images
    whose correction record is not known: the final rule sees no masked Bragg peaks (only those left in)."""
    from cfsx.learning.models import load_model

    model_path = resolve_model(model)
    network, card = load_model(model_path)
    if np.iscomplexobj(images):
        raise DataError("the images are complex-valued: give their magnitude or real part")
    images = np.asarray(images, dtype=np.float64)
    size = card.image_size
    if images.size == 0:
        raise DataError("no images to interpret")
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise DataError(f"images of shape {images.shape}: the model takes (S, {size}, {size}) or ({size}, {size})")
    sources = sources or [f"image[{index}]" for index in range(len(images))]
    if len(sources) != len(images):
        raise DataError(f"{len(sources)} sources named for {len(images)} images")
    observed = Observed(images, list(sources), lot_sizes=np.full(len(images), NO_WINDOW))
    check_images(observed)
    return interpret_observed(network, card, observed, config or InterpretationConfig(), workers, progress)


def decoding_settings(card: ModelCard, config: InterpretationConfig):
    """The simulation config that decodes (and refines) with a model: its decoding config, with the user's
    composition and lattice size where given (``decode.concentration``, ``decode.lattice_size``)."""
    simulation = card.decoding()
    changes = {}
    if config.decode.concentration is not None:
        changes["concentration"] = config.decode.concentration
    if config.decode.lattice_size is not None:
        changes["size"] = config.decode.lattice_size
    if not changes:
        return simulation
    lattice = dataclasses.replace(simulation.lattice, **changes)
    return dataclasses.replace(simulation, lattice=lattice)


def _model_summary(card: ModelCard) -> ModelSummary:
    return ModelSummary(
        path=str(card.path),
        sha256=file_sha256(card.path),
        builtin=next((m.name for m in builtin_models() if m.path.resolve() == card.path.resolve()), None),
        cfs=card.cfs,
        architecture=card.architecture,
        image_size=card.image_size,
        h_max=card.h_max,
        hold_out_r2=card.hold_out_r2,
    )


def interpret_observed(
    network,
    card: ModelCard,
    observed: Observed,
    config: InterpretationConfig,
    workers: int = 1,
    progress: Progress | None = None,
    clock: dict[str, float] | None = None,
) -> list[Interpretation]:
    """The interpretation of every observed image by a loaded network and its card: estimates, final
    answer, decoded replicates, uncertainty and refinement. ``clock`` collects the stage times."""
    from cfsx.learning.models import predict_encodings

    clock = {} if clock is None else clock
    simulation = decoding_settings(card, config)
    # the refinement decodes on the model's own lattice: its objective was measured there (docs/interpretation.md)
    refining = decoding_settings(
        card, dataclasses.replace(config, decode=dataclasses.replace(config.decode, lattice_size=None))
    )
    vectors = card.vectors
    permutation = transpose_permutation(vectors) if config.inference.transpose else None
    cnn, transpose_difference = predict_encodings(network, observed.images, permutation, config.inference.batch_size)
    clock["cnn"] = time.perf_counter()
    if progress:
        progress("cnn", len(cnn), len(cnn))

    by_method = {
        CNN: cnn,
        LEAST_SQUARES: least_squares(observed.images, vectors, card.h_max, observed.lot_sizes),
    }
    refinements: list[dict[str, Refinement]] | None = None
    if config.refine.enabled:
        refinements, by_method[REFINED] = _refine_all(observed.images, cnn, refining, vectors, config.refine, progress)
    facts = image_facts(observed, card.h_max)
    estimates = choose_final(by_method, facts, card.architecture)
    by_method = estimates.by_method
    final = estimates.final
    clock["refine"] = time.perf_counter()

    def encode(images: np.ndarray) -> np.ndarray:
        return predict_encodings(network, images, permutation, config.inference.batch_size)[0]

    decoded_by, decoded, replicate_std, seeds = _decode_all(encode, simulation, estimates, observed, config, workers,
                                                            progress)  # fmt: skip
    clock["decode"] = time.perf_counter()
    assessments = _assess_all(observed, by_method, estimates.final_source, card, decoded_by, config)
    clock["assess"] = time.perf_counter()

    provenance = Provenance(
        model=_model_summary(card),
        config=config.to_dict(),
        decode_seeds=tuple(int(seed) for seed in seeds),
        cfsx_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return [
        Interpretation(
            source=source,
            observed=observed.images[index].astype(np.float32),
            vectors=vectors,
            encoding=final[index],
            final_source=estimates.final_source[index],
            estimates={name: values[index] for name, values in by_method.items()},
            transpose_difference=transpose_difference[index],
            provenance=provenance,
            replicate_std=None if replicate_std is None else replicate_std[index],
            decoded=None if decoded is None else decoded.image(index),
            decoded_image_r2=None if decoded is None else {n: d.image_r2[index] for n, d in decoded_by.items()},
            mask=None if observed.masks is None else observed.masks[index],
            truth=None if observed.truth is None else observed.truth[index],
            refinement=None if refinements is None else refinements[index],
            correction=None if observed.corrections is None else observed.corrections[index],
            fits=assessments[index].fits,
            ceilings=assessments[index].ceilings,
            verdict=assessments[index].verdict,
            model_image=assessments[index].model_image,
            facts=facts[index],
        )
        for index, source in enumerate(observed.sources)
    ]


def _decode_all(cnn: Callable[[np.ndarray], np.ndarray], simulation, estimates, observed: Observed,
                config: InterpretationConfig, workers: int, progress: Progress | None):  # fmt: skip
    """Every estimate decoded ``config.decode.replicates`` times (an undefined one stood in for by the final answer),
    the final answer's replicates, and how far their images move the CNN (a per-component uncertainty).
    ``cnn(images)``: the network's encodings. Returns (decoded by method, the final answer's, the uncertainty, the
    seeds); nothing without replicates."""
    seeds = sample_seeds(config.decode.seed, config.decode.replicates) if config.decode.replicates else []
    if not seeds:
        return {}, None, None, seeds
    decoded_by: dict[str, Decoded] = {}
    final = estimates.final
    for name, encodings in estimates.by_method.items():
        usable = np.where(np.isfinite(encodings).all(axis=1)[:, None], encodings, final)
        stage = (lambda kind, done, total, name=name: progress(f"decode {name}", done, total)) if progress else None
        decoded_by[name] = decode_replicates(simulation, usable, observed.images, seeds, workers, stage)
    decoded = select_decoded(decoded_by, estimates.final_source)
    again = cnn(decoded.images.reshape(-1, *decoded.images.shape[2:]))
    again = again.reshape(len(final), config.decode.replicates, -1)
    spread = again.std(axis=1, ddof=1) if config.decode.replicates > 1 else np.zeros_like(final)
    return decoded_by, decoded, spread, seeds


def _assess_all(observed: Observed, by_method: dict[str, np.ndarray], final_source: list[str], card: ModelCard,
                decoded_by: dict[str, Decoded], config: InterpretationConfig) -> list:  # fmt: skip
    """cfsx.interpretation.quality.assess for every image: model images, fit quality, ceilings, verdict."""
    from cfsx.interpretation.fit_quality import ceilings_of
    from cfsx.interpretation.quality import ImageEvidence, Structures, assess

    # the ceilings of images measured on the same cells in one cross-validation (CNN-only batches stay fast)
    measured_cells = [None if observed.masks is None else observed.masks[index] == 0 for index in
                      range(len(observed.images))]  # fmt: skip
    groups: dict[bytes, list[int]] = {}
    for index, cells in enumerate(measured_cells):
        groups.setdefault(b"" if cells is None else cells.tobytes(), []).append(index)
    limits: dict[int, Any] = {}
    for members in groups.values():
        variances = [None if observed.variances is None else observed.variances[i] for i in members]
        found = ceilings_of(observed.images[members], measured_cells[members[0]], card.cfs, card.h_max, variances)
        limits.update(zip(members, found, strict=True))
    assessments = []
    for index, image in enumerate(observed.images):
        evidence = ImageEvidence(
            None if observed.masks is None else observed.masks[index] == 0,
            None if observed.variances is None else observed.variances[index],
            None if observed.corrections is None else observed.corrections[index],
            limits[index],
        )
        structures = None
        if decoded_by:
            lattices = {name: decoded.lattices[index] for name, decoded in decoded_by.items()}
            structures = Structures(lattices, config.decode.image_inner, config.decode.image_outer)
        estimates = {name: values[index] for name, values in by_method.items()}
        grid = (card.image_size, card.h_max, card.cfs)
        assessments.append(assess(image, estimates, final_source[index], card.vectors, grid, evidence, structures))
    return assessments


def _interpret(
    model_path: Path,
    inputs: list[str],
    output: InterpretationOutput,
    config: InterpretationConfig,
    correction: CorrectionConfig,
    workers: int,
    progress: Progress | None,
) -> InterpretationResult:
    from cfsx.learning.models import load_model

    output_dir, record, figure_dir = Path(output.directory), output.record, output.figures
    clock = {"start": time.perf_counter()}
    network, card = load_model(model_path)
    if record is not None:
        from cfsx.io.dataset import check_appendable

        if config.decode.replicates == 0:
            raise ConfigError("--record stores decoded structures: decode.replicates must be >= 1")
        check_appendable(record, store_attributes(card, config.decode.lattice_size))
    observed = read_observed(inputs, card, correction, progress)
    clock["read"] = time.perf_counter()
    interpretations = interpret_observed(network, card, observed, config, workers, progress, clock)

    with atomic_directory(output_dir, "results.json") as temporary:
        figures: list[str | None] = [None] * len(interpretations)
        if config.output.figures:
            from cfsx.io import plots

            if figure_dir is None:
                (temporary / "figures").mkdir()
            for index, item in enumerate(interpretations):
                name = f"{index:04d}-{_stem(item.source)}.png"
                figures[index] = f"figures/{name}" if figure_dir is None else str(Path(figure_dir) / name)
                target = temporary / figures[index] if figure_dir is None else Path(figures[index])
                plots.save(plots.interpretation(item), target)
                if progress:
                    progress("figures", index + 1, len(interpretations))
        clock["figures"] = time.perf_counter()
        seconds = _durations(clock)
        log.info("%d images interpreted; seconds per stage: %s", len(interpretations), seconds)
        document = write_results(temporary, interpretations, figures, seconds)
        if record is not None:  # inside: a store that cannot take the images leaves no results either
            document["store_size"] = record_store(record, card, interpretations)
            document["store_skipped"] = sum(1 for item in interpretations if item.verdict
                                            and item.verdict.label == "not explained")  # fmt: skip
    return InterpretationResult(output_dir, interpretations, document, document["seconds"])


def _stem(source: str) -> str:
    name, _, index = short_name(source).partition("[")
    stem = Path(name).stem + (f"-{index.rstrip(']')}" if index else "")
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in stem)


def _durations(clock: dict[str, float]) -> dict[str, float]:
    names = list(clock)
    durations = {name: clock[name] - clock[previous] for previous, name in zip(names, names[1:], strict=False)}
    durations["total"] = clock[names[-1]] - clock[names[0]]
    return durations


def _refine_all(images, cnn, simulation, vectors, settings: RefineConfig, progress):
    """Refine every image's encoding from the CNN's start (and from zero): per image, its refinement per start,
    and the refined encodings (from the CNN)."""
    from cfsx.interpretation.refinement import ExpectedIntensity, refine  # scipy.optimize: only when refining

    diffraction = simulation.diffraction
    expected = ExpectedIntensity(
        vectors, diffraction.image_size, diffraction.h_max, diffraction.lot_size, simulation.lattice.concentration
    )
    bounds = tuple(np.asarray(bound) for bound in simulation.targets.bounds(len(vectors)))
    seeds = sample_seeds(settings.seed, settings.seeds)

    def decode_images(encoding: np.ndarray) -> np.ndarray:
        return decode(simulation, np.repeat(encoding[None], len(seeds), axis=0), 0, seeds=seeds).images

    def run(start: np.ndarray, image: np.ndarray):
        return refine(image, start, expected, decode_images, bounds,
                      (settings.expected_iterations, settings.decoded_iterations))  # fmt: skip

    records, refined = [], []
    for index, image in enumerate(images):
        record = {"from_cnn": run(cnn[index], image)}
        if settings.from_zero:
            record["from_zero"] = run(np.zeros(len(vectors)), image)
        records.append(record)
        refined.append(record["from_cnn"].refined.encoding)
        if progress:
            progress("refine", index + 1, len(images))
    return records, np.asarray(refined)
