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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import __version__
from .builtin import builtin_models, file_sha256, resolve_model
from .config import Sections, _is_int, _is_number, _require, config_from_yaml_text
from .correction import CorrectionConfig
from .dataset import FORMAT
from .encoding import named, sub_encoding, transpose_permutation, vector_labels
from .errors import ConfigError, DataError
from .estimates import (
    CNN,
    CORRECTION_TRAINED,
    FINAL_RULE,
    LEAST_SQUARES,
    REFINED,
    Estimates,
    choose_final,
    least_squares,
)
from .inversion import NO_WINDOW
from .metrics import image_mse, scaled_image_r2
from .outputs import atomic_directory, claim_outputs, hdf5_writer
from .simulate import decode, sample_seeds

log = logging.getLogger(__name__)

RESULTS_FORMAT = "cfsx-interpretation"
RESULTS_FORMAT_VERSION = 2  # 2: model.sha256, model.builtin, config.decode.concentration
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
INDENTED_RESULTS = 256  # results.json of more images is written on one line
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class InferenceConfig:
    batch_size: int = 256
    transpose: bool = True  # average with the transposed image's prediction (test-time augmentation)

    def __post_init__(self) -> None:
        _require(_is_int(self.batch_size) and self.batch_size >= 1, "inference.batch_size must be >= 1")
        _require(isinstance(self.transpose, bool), "inference.transpose must be true or false")


@dataclass(frozen=True)
class DecodeConfig:
    replicates: int = 4  # decoded structures per image, each with its own seed; 0: the CNN only
    seed: int = 0
    # the concentration of the decoded (and refined) structures; null: the model's decoding config's
    concentration: float | None = None

    def __post_init__(self) -> None:
        _require(_is_int(self.replicates) and self.replicates >= 0, "decode.replicates must be >= 0")
        _require(_is_int(self.seed) and self.seed >= 0, "decode.seed must be an integer >= 0")
        _require(
            self.concentration is None or (_is_number(self.concentration) and 0 < self.concentration < 1),
            f"decode.concentration must be null or in (0, 1), got {self.concentration!r}",
        )


@dataclass(frozen=True)
class RefineConfig:
    enabled: bool = False
    expected_iterations: int = 200
    decoded_iterations: int = 10
    seeds: int = 4  # decoded images averaged per evaluation of the refinement objective
    seed: int = 1000
    from_zero: bool = True  # also refine from zero correlations, to measure what the CNN's start is worth

    def __post_init__(self) -> None:
        _require(isinstance(self.enabled, bool), "refine.enabled must be true or false")
        _require(isinstance(self.from_zero, bool), "refine.from_zero must be true or false")
        for name in ("expected_iterations", "decoded_iterations", "seed"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 0, f"refine.{name} must be >= 0")
        _require(_is_int(self.seeds) and self.seeds >= 1, "refine.seeds must be >= 1")


@dataclass(frozen=True)
class OutputConfig:
    figures: bool = True

    def __post_init__(self) -> None:
        _require(isinstance(self.figures, bool), "output.figures must be true or false")


@dataclass(frozen=True)
class InterpretationConfig(Sections):
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        _require(
            self.decode.replicates > 0 or not self.refine.enabled,
            "refinement needs decoding: decode.replicates must be >= 1 with refine.enabled",
        )


@dataclass
class Observed:
    """The images to interpret, on the model's grid, with where they came from."""

    images: np.ndarray  # (S, M, M) float64
    sources: list[str]
    masks: np.ndarray | None = None  # (S, M, M) correction masks of raw images
    truth: np.ndarray | None = None  # (S, D) achieved alpha when the input was a simulated dataset
    lot_sizes: np.ndarray | None = None  # (S,) the lot size where known (simulated datasets), else NO_WINDOW


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
    metadata: dict[str, Any],
    correction: CorrectionConfig,
    mask_file: str | None = None,
    progress: Progress | None = None,
) -> Observed:
    """Images from cfsx .h5 files (simulate or correct) as they are; raw images corrected onto the model's grid."""
    from .correction import correct_file, expand_inputs, read_image
    from .dataset import open_dataset

    size, h_max = int(metadata["image_size"]), float(metadata["h_max"])
    grid = dataclasses.replace(correction.output, image_size=size, h_max=h_max)
    correction = dataclasses.replace(correction, output=grid)
    extra_mask = read_image(mask_file)[0] != 0 if mask_file else None
    specs = expand_inputs(inputs)
    images, sources, masks, truths, lots = [], [], [], [], []
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
                same_encoding = labels is not None and file_cfs >= int(metadata["cfs"])
                if same_encoding:  # a CFS4 file labels a CFS2 model's images too
                    labels = labels[:, sub_encoding(file_cfs, int(metadata["cfs"]))]
                file_masks = file["masks"][()] if "masks" in file else np.zeros(block.shape, np.uint8)
            images.append(block)
            lots.append(np.full(len(block), lot_size))
            sources += [f"{spec}::/images[{i}]" for i in range(len(block))]
            masks.append(file_masks)
            truths.append(labels if same_encoding else np.full((len(block), len(metadata["vectors"])), np.nan))
        else:
            corrected = correct_file(spec, correction, extra_mask)[1]
            images.append(corrected.image[None].astype(np.float64))
            lots.append(np.array([NO_WINDOW]))
            sources.append(spec)
            masks.append(corrected.mask[None])
            truths.append(np.full((1, len(metadata["vectors"])), np.nan))
        if progress:
            progress("read", number + 1, len(specs))
    stacked = np.concatenate(images)
    bad = ~np.isfinite(stacked).all(axis=(1, 2)) | (stacked.mean(axis=(1, 2)) <= 0) | (stacked.std(axis=(1, 2)) == 0)
    if bad.any():
        raise DataError(f"image {sources[int(bad.argmax())]} has NaN, inf, no positive mean or no contrast at all")
    truth = np.concatenate(truths).astype(np.float64)
    truth = None if np.isnan(truth).all() else truth
    return Observed(stacked, sources, np.concatenate(masks), truth, np.concatenate(lots).astype(np.int64))


def predict_encodings(model, images: np.ndarray, permutation: np.ndarray | None, batch_size: int):
    """CNN encodings, and half the difference between the plain and the transposed-image predictions."""
    from .training import predict

    plain = predict(model, images, batch_size)
    if permutation is None:
        return plain, np.zeros_like(plain)
    transposed = predict(model, np.swapaxes(images, 1, 2), batch_size)[:, permutation]
    return (plain + transposed) / 2.0, np.abs(plain - transposed) / 2.0


@dataclass
class Decoded:
    """Replicates of the decoded structures: arrays (S, R, ...) and their scores against the observation."""

    images: np.ndarray
    lattices: np.ndarray
    achieved: np.ndarray
    interactions: np.ndarray
    cycles: np.ndarray
    seeds: np.ndarray  # (R,)
    image_r2: np.ndarray  # (S, R)
    image_mse: np.ndarray  # (S, R) in the engine's units (the observation divided by the scale)
    scale: np.ndarray  # (S, R) least-squares factor: observation ~ scale * decoded image
    # (S, R(R-1)/2): image R2 of one replicate against another, both decoded from the same encoding. The
    # best image R2 any encoding can reach against an image of these simulation settings: the floor.
    image_r2_floor: np.ndarray


def decode_replicates(simulation, encodings: np.ndarray, observed: np.ndarray, seeds: list[int], workers: int,
                      progress: Progress | None = None) -> Decoded:  # fmt: skip
    """Decode every encoding once per seed (the same seeds for every image) and score each replicate."""
    count, replicates = len(encodings), len(seeds)
    report = (lambda done, total: progress("decode", done, total)) if progress else None
    out = decode(simulation, np.repeat(encodings, replicates, axis=0), 0, workers, report, seeds * count)
    images = out["images"].astype(np.float64)
    repeated = np.repeat(observed, replicates, axis=0)
    r2, scale = scaled_image_r2(repeated, images)
    mse = image_mse(repeated / np.where(scale > 0, scale, np.nan)[:, None, None], images)

    def shaped(array: np.ndarray) -> np.ndarray:
        return array.reshape(count, replicates, *array.shape[1:])

    first, second = np.triu_indices(replicates, k=1)
    decoded = shaped(images)
    floor = scaled_image_r2(decoded[:, first].reshape(-1, *images.shape[1:]),
                            decoded[:, second].reshape(-1, *images.shape[1:]))[0]  # fmt: skip
    return Decoded(
        images=shaped(out["images"]),
        lattices=shaped(out["lattices"]),
        achieved=shaped(out["encodings/achieved"]),
        interactions=shaped(out["interactions"]),
        cycles=shaped(out["cycles"]),
        seeds=np.asarray(seeds, dtype=np.uint64),
        image_r2=shaped(r2),
        image_mse=shaped(mse),
        scale=shaped(scale),
        image_r2_floor=floor.reshape(count, len(first)),
    )


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
    output_dir: Path
    document: dict[str, Any]
    seconds: dict[str, float]


def interpret(
    model_path: str | Path,
    inputs: list[str],
    output_dir: str | Path,
    config: InterpretationConfig,
    correction: CorrectionConfig,
    *,
    mask_file: str | None = None,
    record: str | Path | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    figure_dir: str | Path | None = None,
) -> InterpretationResult:
    """Interpret images with a model; see the module docstring for what is written.

    Figures (``output.figures``) go to OUTPUT/figures/, or to the existing directory ``figure_dir``."""
    files = [spec.partition("::")[0] for spec in inputs if not any(char in spec for char in "*?[")]
    if figure_dir is not None and not Path(figure_dir).is_dir():
        raise DataError(f"figure directory {figure_dir} does not exist")
    model_path = resolve_model(model_path)
    with claim_outputs(files=[record], directories=[output_dir], inputs=[model_path, *files]):
        return _interpret(model_path, inputs, Path(output_dir), config, correction, mask_file, record, workers,
                          progress, figure_dir)  # fmt: skip


def _interpret(
    model_path: str | Path,
    inputs: list[str],
    output_dir: Path,
    config: InterpretationConfig,
    correction: CorrectionConfig,
    mask_file: str | None,
    record: str | Path | None,
    workers: int,
    progress: Progress | None,
    figure_dir: str | Path | None,
) -> InterpretationResult:
    from .models import load_model

    clock = {"start": time.perf_counter()}
    model, metadata = load_model(model_path)
    simulation = config_from_yaml_text(metadata["simulation_config"])
    if config.decode.concentration is not None:  # the user knows the composition
        lattice = dataclasses.replace(simulation.lattice, concentration=config.decode.concentration)
        simulation = dataclasses.replace(simulation, lattice=lattice)
    vectors = np.asarray(metadata["vectors"])
    labels = vector_labels(vectors)
    if record is not None:
        from .dataset import check_appendable

        if config.decode.replicates == 0:
            raise ConfigError("--record stores decoded structures: decode.replicates must be >= 1")
        check_appendable(record, store_attributes(metadata))
    observed = read_observed(inputs, metadata, correction, mask_file, progress)
    clock["read"] = time.perf_counter()

    permutation = transpose_permutation(vectors) if config.inference.transpose else None
    cnn, transpose_difference = predict_encodings(model, observed.images, permutation, config.inference.batch_size)
    clock["cnn"] = time.perf_counter()
    if progress:
        progress("cnn", len(cnn), len(cnn))

    by_method = {
        CNN: cnn,
        LEAST_SQUARES: least_squares(observed.images, vectors, float(metadata["h_max"]), observed.lot_sizes),
    }
    refinements: list[dict[str, Any]] | None = None
    if config.refine.enabled:
        refinements, by_method[REFINED] = _refine_all(observed.images, cnn, simulation, vectors, labels,
                                                      config.refine, progress)  # fmt: skip
    architecture = metadata["training"]["config"]["model"]["architecture"]
    corrected = observed.lot_sizes == NO_WINDOW  # raw images and files of cfsx correct; not simulated datasets
    estimates = choose_final(by_method, corrected if architecture in CORRECTION_TRAINED else None)
    final = estimates.final
    clock["refine"] = time.perf_counter()

    decoded = replicate_std = None
    decoded_by: dict[str, Decoded] = {}
    if config.decode.replicates:
        seeds = sample_seeds(config.decode.seed, config.decode.replicates)
        for name, encodings in by_method.items():  # an undefined estimate is stood in for by the final one
            usable = np.where(np.isfinite(encodings).all(axis=1)[:, None], encodings, final)
            stage = (lambda kind, done, total, name=name: progress(f"decode {name}", done, total)) if progress else None
            decoded_by[name] = decode_replicates(simulation, usable, observed.images, seeds, workers, stage)
        decoded = select_decoded(decoded_by, estimates.final_source)
        # How far the decoded structures' own images move the CNN: the spread is a per-component uncertainty.
        flat = decoded.images.reshape(-1, *decoded.images.shape[2:])
        again = predict_encodings(model, flat, permutation, config.inference.batch_size)[0]
        again = again.reshape(len(final), config.decode.replicates, -1)
        replicate_std = again.std(axis=1, ddof=1) if config.decode.replicates > 1 else np.zeros_like(final)
    clock["decode"] = time.perf_counter()

    document = _document(model_path, metadata, config, observed, labels, estimates, transpose_difference,
                         replicate_std, decoded, decoded_by, refinements)  # fmt: skip
    with atomic_directory(output_dir, "results.json") as temporary:
        if config.output.figures:
            from . import plots

            if figure_dir is None:
                (temporary / "figures").mkdir()
            for index, entry in enumerate(document["images"]):
                name = f"{index:04d}-{_stem(observed.sources[index])}.png"
                entry["figure"] = f"figures/{name}" if figure_dir is None else str(Path(figure_dir) / name)
                title = short_name(observed.sources[index])
                if decoded is not None:
                    title += f": image R2 {decoded.image_r2[index].mean():.3f}"
                plots.interpretation_figure(
                    observed.images[index], None if decoded is None else decoded.lattices[index, 0],
                    None if decoded is None else decoded.images[index, 0], final[index],
                    transpose_difference[index] if replicate_std is None else replicate_std[index], vectors,
                    temporary / entry["figure"] if figure_dir is None else Path(entry["figure"]), title=title,
                )  # fmt: skip
                if progress:
                    progress("figures", index + 1, len(final))
        clock["figures"] = time.perf_counter()
        _write_arrays(temporary / "results.h5", document, observed, estimates, transpose_difference,
                      replicate_std, decoded, decoded_by, refinements)  # fmt: skip
        document["seconds"] = _durations(clock)
        log.info("%d images interpreted; seconds per stage: %s", len(final), document["seconds"])
        indent = 1 if len(document["images"]) <= INDENTED_RESULTS else None  # None: the C encoder, ~10x faster
        (temporary / "results.json").write_text(json.dumps(document, indent=indent))
        if record is not None:  # inside: a store that cannot take the images leaves no results either
            document["store_size"] = record_store(record, metadata, observed, final, decoded)
    return InterpretationResult(output_dir, document, document["seconds"])


def short_name(source: str) -> str:
    """'dir/data.h5::/images[3]' -> 'data.h5[3]'; 'dir/plane.tif' -> 'plane.tif'."""
    path, _, inner = source.partition("::")
    name = Path(path).name
    return name + inner[len("/images") :] if inner.startswith("/images[") else name


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
    low, high = (np.asarray(bound) for bound in simulation.targets.bounds(len(vectors)))
    seeds = sample_seeds(settings.seed, settings.seeds)

    def decode_images(encoding: np.ndarray) -> np.ndarray:
        return decode(simulation, np.repeat(encoding[None], len(seeds), axis=0), 0, seeds=seeds)["images"]

    def run(start: np.ndarray, image: np.ndarray):
        return refine(image, start, expected, decode_images, low, high,
                      settings.expected_iterations, settings.decoded_iterations)  # fmt: skip

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


def _spread(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "values": [float(v) for v in values]}  # fmt: skip


def _document(model_path, metadata, config, observed: Observed, labels, estimates: Estimates, transpose_difference,
              replicate_std, decoded: Decoded | None, decoded_by: dict[str, Decoded], refinements
              ) -> dict[str, Any]:  # fmt: skip
    """The results.json document (schema: cfsx/results.schema.json)."""
    records = []
    cnn, final = estimates.by_method[CNN], estimates.final
    for index, source in enumerate(observed.sources):
        defined = {name: bool(np.isfinite(values[index]).all()) for name, values in estimates.by_method.items()}
        record: dict[str, Any] = {
            "index": index,
            "source": source,
            "encoding": named(labels, final[index]),
            "final_source": estimates.final_source[index],
            "cnn_encoding": named(labels, cnn[index]),
            "estimates": {
                name: {
                    "encoding": named(labels, values[index]) if defined[name] else None,
                    "decoded_image_r2": _spread(decoded_by[name].image_r2[index])
                    if name in decoded_by and defined[name]
                    else None,
                }
                for name, values in estimates.by_method.items()
            },
            "uncertainty": {
                "replicates": None if replicate_std is None else named(labels, replicate_std[index]),
                "transpose": named(labels, transpose_difference[index]),
            },
            "decoded": None,
            "truth": None,
            "refinement": None,
            "figure": None,
        }
        if decoded is not None:
            record["decoded"] = {
                "image_r2": _spread(decoded.image_r2[index]),
                "image_mse": _spread(decoded.image_mse[index]),
                "scale": _spread(decoded.scale[index]),
                "image_r2_floor": _spread(decoded.image_r2_floor[index]) if decoded.image_r2_floor.size else None,
                "achieved": named(labels, decoded.achieved[index, 0]),
                "cycles": int(decoded.cycles[index, 0]),
            }
        if observed.truth is not None and np.isfinite(observed.truth[index]).all():
            truth = observed.truth[index]
            record["truth"] = {
                "encoding": named(labels, truth),
                "cnn_mae": float(np.abs(cnn[index] - truth).mean()),
                "final_mae": float(np.abs(final[index] - truth).mean()),
                "mae": {name: float(np.abs(values[index] - truth).mean()) if defined[name] else None
                        for name, values in estimates.by_method.items()},
            }  # fmt: skip
        if refinements is not None:
            record["refinement"] = refinements[index]
        records.append(record)
    r2 = decoded.image_r2.mean(axis=1) if decoded is not None else None
    document: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "cfsx_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "path": str(model_path),
            "sha256": file_sha256(model_path),
            "builtin": next((m.name for m in builtin_models() if m.path.resolve() == Path(model_path).resolve()), None),
            "cfs": int(metadata["cfs"]),
            "architecture": metadata["training"]["config"]["model"]["architecture"],
            "image_size": int(metadata["image_size"]),
            "h_max": float(metadata["h_max"]),
            "hold_out_r2": float(metadata["metrics"]["test"]["r2"]),
        },
        "labels": labels,
        "config": config.to_dict(),
        "decode_seeds": [] if decoded is None else [int(seed) for seed in decoded.seeds],
        "summary": {
            "images": len(records),
            "final_rule": FINAL_RULE,
            "final_sources": {name: estimates.final_source.count(name) for name in estimates.by_method},
            "image_r2_median": None if r2 is None else float(np.median(r2)),
            "image_r2_mean": None if r2 is None else float(r2.mean()),
        },
        "images": records,
    }
    if observed.truth is not None and np.isfinite(observed.truth).all():
        from .metrics import regression_metrics

        scored = {**estimates.by_method, "final": final}
        document["summary"]["encoding"] = {
            name: regression_metrics(observed.truth, values, labels)
            if len(values) > 1 and np.isfinite(values).all() else None
            for name, values in scored.items()
        }  # fmt: skip
    return document


def _write_arrays(path: Path, document, observed: Observed, estimates: Estimates, transpose_difference,
                  replicate_std, decoded: Decoded | None, decoded_by: dict[str, Decoded], refinements
                  ) -> None:  # fmt: skip
    """results.h5: every array behind results.json."""
    import h5py

    with hdf5_writer(path) as file:
        file.attrs.update(format=RESULTS_FORMAT, format_version=RESULTS_FORMAT_VERSION, cfsx_version=__version__,
                          model=document["model"]["path"], labels=document["labels"],
                          config=yaml.safe_dump(document["config"], sort_keys=False))  # fmt: skip
        file["observed"] = observed.images.astype(np.float32)
        file.create_dataset("sources", data=observed.sources, dtype=h5py.string_dtype())
        if observed.masks is not None:
            file["masks"] = observed.masks
        if observed.truth is not None:
            file["truth"] = observed.truth.astype(np.float32)
        file["encodings/final"] = estimates.final.astype(np.float32)
        for name, values in estimates.by_method.items():
            file[f"encodings/{name}"] = values.astype(np.float32)
        file.create_dataset("final_source", data=estimates.final_source, dtype=h5py.string_dtype())
        file["uncertainty/transpose"] = transpose_difference.astype(np.float32)
        if decoded is None:
            return
        file["uncertainty/replicates"] = replicate_std.astype(np.float32)
        for name in ("images", "lattices", "achieved", "interactions", "cycles", "seeds", "image_r2", "image_mse",
                     "scale", "image_r2_floor"):  # fmt: skip
            file[f"decoded/{name}"] = getattr(decoded, name)
        for name, replicates in decoded_by.items():
            file[f"decoded_image_r2/{name}"] = replicates.image_r2
        if refinements is not None:
            for start in refinements[0]:
                encodings = [list(r[start]["refined"]["encoding"].values()) for r in refinements]
                file[f"refinement/{start}"] = np.array(encodings, dtype=np.float32)


def record_store(path, metadata, observed: Observed, final: np.ndarray, decoded: Decoded) -> int:
    """Append the interpreted images to a knowledge store (dataset layout); returns the store's size.

    Each image is stored in the engine's units (divided by its fitted scale) with the first decoded
    structure: /encodings/target is the interpreted encoding, /encodings/achieved the correlations of
    the structure that explains the image (the training label, as for simulated data).
    """
    from .dataset import append_samples

    first = (slice(None), 0)
    arrays = {
        "images": observed.images / decoded.scale[first][:, None, None],
        "encodings/achieved": decoded.achieved[first],
        "encodings/target": final,
        "interactions": decoded.interactions[first],
        "cycles": decoded.cycles[first],
        "lattices": decoded.lattices[first],
        "seeds": np.full(len(final), decoded.seeds[0], dtype=np.uint64),
    }
    return append_samples(path, store_attributes(metadata), arrays, {"sources": observed.sources})


def store_attributes(metadata: dict[str, Any]) -> dict[str, Any]:
    """The root attributes of a knowledge store for a model's interpretations."""
    return {
        "kind": "store",
        "cfs": int(metadata["cfs"]),
        "vectors": np.asarray(metadata["vectors"], dtype=np.int64),
        "config": metadata["simulation_config"],
    }
