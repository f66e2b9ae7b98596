"""``cfsx interpret``: from observed images to encodings, structures and how well they explain the images.

For every image: the CNN's encoding (averaged with the prediction on the transposed image, a
symmetry that lattice and image share); the structure and image the engine decodes from it
with the settings of the model's training data, several times with different seeds; image R2
and MSE of each decoded image against the observation (after the least-squares scale, since an
observation is in arbitrary units); a per-component uncertainty; optionally a refinement
(cfsx/refinement.py) from the CNN's encoding and from zero correlations. Results go to an
output directory (results.json, following cfsx/results.schema.json; results.h5; one figure per
image) written atomically, and optionally to a knowledge store that ``cfsx train`` can learn from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .builtin import builtin_models, file_sha256, resolve_model
from .config import CorrectionConfig, InterpretationConfig, RefineConfig, config_from_yaml_text
from .dataset import FORMAT
from .encoding import sub_encoding, transpose_permutation, vector_labels
from .errors import ConfigError, DataError
from .estimates import (
    CNN,
    LEAST_SQUARES,
    REFINED,
    ImageFacts,
    choose_final,
    least_squares,
)
from .inversion import NO_WINDOW
from .model_card import ModelCard
from .outputs import atomic_directory, claim_outputs
from .readers import file_of
from .results import (
    Interpretation,
    ModelSummary,
    Provenance,
    results_document,
    short_name,
    stacked,
    write_results_h5,
)
from .simulation import Decoded, decode, decode_replicates, sample_seeds

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
INDENTED_RESULTS = 256  # results.json of more images is written on one line
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Observed:
    """The images to interpret, on the model's grid, with where they came from."""

    images: np.ndarray  # (S, M, M) float64
    sources: list[str]
    masks: np.ndarray | None = None  # (S, M, M) correction masks of raw images
    truth: np.ndarray | None = None  # (S, D) achieved alpha when the input was a simulated dataset
    lot_sizes: np.ndarray | None = None  # (S,) the lot size where known (simulated datasets), else NO_WINDOW
    # per image, how cfsx correct made it: {"config": the correction config, "steps": its provenance}; None for
    # simulated images
    corrections: list[dict[str, Any] | None] | None = None
    variances: list[np.ndarray | None] | None = None  # per image, each cell's noise variance where known


def _cfsx_dataset(spec: str) -> bool:
    import h5py

    path = Path(spec)
    if "::" in spec or path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as file:
            return file.attrs.get("format") == FORMAT
    except OSError:
        return False


def read_observed(
    inputs: list[str],
    card: ModelCard,
    correction: CorrectionConfig,
    progress: Progress | None = None,
) -> Observed:
    """Images from cfsx .h5 files (simulate or correct) as they are; raw images corrected onto the model's grid."""
    from .correction import correct_file, mask_of
    from .dataset import open_dataset
    from .readers import expand_inputs

    size, h_max = card.image_size, card.h_max
    grid = dataclasses.replace(correction.output, image_size=size, h_max=h_max)
    correction = dataclasses.replace(correction, output=grid)
    extra_mask = mask_of(correction)
    specs = expand_inputs(inputs)
    images, sources, masks, truths, lots, corrections, variances = [], [], [], [], [], [], []
    for number, spec in enumerate(specs):
        if _cfsx_dataset(spec):
            with open_dataset(spec) as file:
                stored = file["images"]
                file_h_max, lot_size = float(file.attrs.get("h_max", h_max)), NO_WINDOW
                if "config" in file.attrs and file.attrs.get("kind") != "corrected":
                    diffraction = config_from_yaml_text(str(file.attrs["config"])).diffraction
                    file_h_max, lot_size = diffraction.h_max, diffraction.lot_size
                if stored.ndim != 3 or stored.shape[1:] != (size, size) or not np.isclose(file_h_max, h_max):
                    raise DataError(
                        f"{spec} holds {stored.shape[1:]} images with h_max {file_h_max}; the model needs "
                        f"({size}, {size}) with h_max {h_max}"
                    )
                block = np.asarray(stored[()], dtype=np.float64)
                labels = file["encodings/achieved"][()] if "encodings/achieved" in file else None
                file_cfs = int(file.attrs.get("cfs", 0))
                same_encoding = labels is not None and file_cfs >= card.cfs
                if same_encoding:  # a CFS4 file labels a CFS2 model's images too
                    labels = labels[:, sub_encoding(file_cfs, card.cfs)]
                file_masks = file["masks"][()] if "masks" in file else np.zeros(block.shape, np.uint8)
                corrections += _stored_corrections(file, len(block))
                variances += list(file["variance"][()]) if "variance" in file else [None] * len(block)
            images.append(block)
            lots.append(np.full(len(block), lot_size))
            sources += [f"{spec}::/images[{i}]" for i in range(len(block))]
            masks.append(file_masks)
            truths.append(labels if same_encoding else np.full((len(block), card.components), np.nan))
        else:
            corrected = correct_file(spec, correction, extra_mask)[1]
            corrections.append({"config": correction.to_dict(), "steps": corrected.provenance})
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
    from .correction import warn_uncalibrated

    raw = [(entry["steps"], source) for entry, source in zip(corrections, sources, strict=True) if entry]
    warn_uncalibrated([steps for steps, _ in raw], [source for _, source in raw])
    return observed


def _stored_corrections(file, count: int) -> list[dict[str, Any] | None]:
    """The correction config and steps of each image of a file of cfsx correct; None for other files."""
    import json

    import yaml

    if file.attrs.get("kind") != "corrected" or "provenance" not in file:
        return [None] * count
    config = yaml.safe_load(str(file.attrs.get("config", ""))) or {}
    return [{"config": config, "steps": json.loads(text)} for text in file["provenance"].asstr()[()]]


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
    for any measured image: the least squares fits them without a lot window."""
    from .models import load_model

    model_path = resolve_model(model)
    network, card = load_model(model_path)
    images = np.asarray(images, dtype=np.float64)
    size = card.image_size
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


def check_images(observed: Observed) -> None:
    """Refuse an image the estimates cannot read: NaN or inf, no positive mean, or no contrast at all."""
    images = observed.images
    bad = ~np.isfinite(images).all(axis=(1, 2)) | (images.mean(axis=(1, 2)) <= 0) | (images.std(axis=(1, 2)) == 0)
    if bad.any():
        source = observed.sources[int(bad.argmax())]
        raise DataError(f"image {source} has NaN, inf, no positive mean or no contrast at all")


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
    from .models import predict_encodings

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
    refinements: list[dict[str, Any]] | None = None
    if config.refine.enabled:
        refinements, by_method[REFINED] = _refine_all(observed.images, cnn, refining, vectors,
                                                      vector_labels(vectors), config.refine, progress)  # fmt: skip
    estimates = choose_final(by_method, image_facts(observed, card.h_max), card.architecture)
    by_method = estimates.by_method
    final = estimates.final
    clock["refine"] = time.perf_counter()

    decoded = replicate_std = None
    decoded_by: dict[str, Decoded] = {}
    seeds = sample_seeds(config.decode.seed, config.decode.replicates) if config.decode.replicates else []
    if seeds:
        for name, encodings in by_method.items():  # an undefined estimate is stood in for by the final one
            usable = np.where(np.isfinite(encodings).all(axis=1)[:, None], encodings, final)
            stage = (lambda kind, done, total, name=name: progress(f"decode {name}", done, total)) if progress else None
            decoded_by[name] = decode_replicates(simulation, usable, observed.images, seeds, workers, stage)
        decoded = select_decoded(decoded_by, estimates.final_source)
        # How far the decoded structures' own images move the CNN: the spread is a per-component uncertainty.
        flat = decoded.images.reshape(-1, *decoded.images.shape[2:])
        again = predict_encodings(network, flat, permutation, config.inference.batch_size)[0]
        again = again.reshape(len(final), config.decode.replicates, -1)
        replicate_std = again.std(axis=1, ddof=1) if config.decode.replicates > 1 else np.zeros_like(final)
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
        )
        for index, source in enumerate(observed.sources)
    ]


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


def _assess_all(observed: Observed, by_method: dict[str, np.ndarray], final_source: list[str], card: ModelCard,
                decoded_by: dict[str, Decoded], config: InterpretationConfig) -> list:  # fmt: skip
    """cfsx.quality.assess for every image: model images, fit quality, ceilings, verdict."""
    from .fit_quality import ceilings_of
    from .quality import ImageEvidence, Structures, assess

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
    from .models import load_model

    output_dir, record, figure_dir = Path(output.directory), output.record, output.figures
    clock = {"start": time.perf_counter()}
    network, card = load_model(model_path)
    if record is not None:
        from .dataset import check_appendable

        if config.decode.replicates == 0:
            raise ConfigError("--record stores decoded structures: decode.replicates must be >= 1")
        check_appendable(record, store_attributes(card, config.decode.lattice_size))
    observed = read_observed(inputs, card, correction, progress)
    clock["read"] = time.perf_counter()
    interpretations = interpret_observed(network, card, observed, config, workers, progress, clock)

    with atomic_directory(output_dir, "results.json") as temporary:
        figures: list[str | None] = [None] * len(interpretations)
        if config.output.figures:
            from . import plots

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
        write_results_h5(temporary / "results.h5", interpretations)
        document = results_document(interpretations, figures)
        document["seconds"] = _durations(clock)
        log.info("%d images interpreted; seconds per stage: %s", len(interpretations), document["seconds"])
        indent = 1 if len(interpretations) <= INDENTED_RESULTS else None  # None: the C encoder, ~10x faster
        (temporary / "results.json").write_text(json.dumps(document, indent=indent))
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


def _refine_all(images, cnn, simulation, vectors, labels, settings: RefineConfig, progress):
    """Refine every image's encoding from the CNN's start (and from zero); returns records and encodings."""
    from .refinement import ExpectedIntensity, refine

    diffraction = simulation.diffraction
    expected = ExpectedIntensity(
        vectors, diffraction.image_size, diffraction.h_max, diffraction.lot_size, simulation.lattice.concentration
    )
    bounds = tuple(np.asarray(bound) for bound in simulation.targets.bounds(len(vectors)))
    seeds = sample_seeds(settings.seed, settings.seeds)

    def decode_images(encoding: np.ndarray) -> np.ndarray:
        return decode(simulation, np.repeat(encoding[None], len(seeds), axis=0), 0, seeds=seeds)["images"]

    def run(start: np.ndarray, image: np.ndarray):
        return refine(image, start, expected, decode_images, bounds,
                      (settings.expected_iterations, settings.decoded_iterations))  # fmt: skip

    records, refined = [], []
    for index, image in enumerate(images):
        from_cnn = run(cnn[index], image)
        record = {"from_cnn": from_cnn.to_dict(labels)}
        if settings.from_zero:
            record["from_zero"] = run(np.zeros(len(vectors)), image).to_dict(labels)
        records.append(record)
        refined.append(from_cnn.best.encoding)
        if progress:
            progress("refine", index + 1, len(images))
    return records, np.asarray(refined)


def record_store(path, card: ModelCard, interpretations: list[Interpretation]) -> int:
    """Append the interpreted images to a knowledge store (dataset layout); returns the store's size.

    Each image is stored in the engine's units (divided by its fitted scale) with the first decoded
    structure: /encodings/target is the interpreted encoding, /encodings/achieved the correlations of
    the structure that explains the image (the training label, as for simulated data).
    """
    from .dataset import append_samples, check_appendable
    from .fit_quality import NOT_EXPLAINED

    lattice_size = interpretations[0].decoded.lattices.shape[-1]
    # images the model does not explain are no fine-tuning data: their decoded structures explain nothing
    interpretations = [item for item in interpretations if not (item.verdict and item.verdict.label == NOT_EXPLAINED)]
    if not interpretations:
        check_appendable(path, store_attributes(card, lattice_size))
        return _store_size(path)
    decoded = [item.decoded for item in interpretations]
    arrays = {
        "images": np.stack([item.observed / d.scale[0] for item, d in zip(interpretations, decoded, strict=True)]),
        "encodings/achieved": np.stack([d.achieved[0] for d in decoded]),
        "encodings/target": stacked(interpretations),
        "interactions": np.stack([d.interactions[0] for d in decoded]),
        "cycles": np.array([d.cycles[0] for d in decoded]),
        "lattices": np.stack([d.lattices[0] for d in decoded]),
        "seeds": np.full(len(interpretations), interpretations[0].provenance.decode_seeds[0], dtype=np.uint64),
    }
    sources = [item.source for item in interpretations]
    return append_samples(path, store_attributes(card, lattice_size), arrays, {"sources": sources})


def _store_size(path) -> int:
    """The images a knowledge store holds (0 when it does not exist yet)."""
    from .dataset import open_dataset

    if not Path(path).exists():
        return 0
    with open_dataset(path) as file:
        return len(file["images"]) if "images" in file else 0


def store_attributes(card: ModelCard, lattice_size: int | None = None) -> dict[str, Any]:
    """The root attributes of a knowledge store for a model's interpretations, whose structures were decoded on
    ``lattice_size`` (None: the model's own decoding lattice)."""
    config = card.decoding_config
    if lattice_size is not None and lattice_size != card.decoding().lattice.size:
        simulation = card.decoding()
        config = dataclasses.replace(simulation, lattice=dataclasses.replace(simulation.lattice, size=lattice_size))
        config = config.to_yaml()
    return {"kind": "store", "cfs": card.cfs, "vectors": card.vectors, "config": config}
