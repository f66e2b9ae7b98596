"""``cfsx evaluate``: how good is a model, and how good could it be?

On the model's recorded hold-out (or on the whole of another file) it reports:
- R2, MSE and MAE of the predicted encodings, overall and per component, with parity and
  residual plots, beside the classical Warren-Cowley inversion scored on the same samples;
- the data: histograms of every encoding component and of pixel intensities;
- the intrinsic error of the stochastic simulation: images re-simulated from the true
  encodings with new seeds, compared with the originals (the floor for any interpretation);
- the decoded-image test: each predicted encoding simulated again by the engine and compared
  with its input image; also for the classical estimate and for models of other CFS sizes.
On a file without known encodings (measured images from cfsx correct) only the decoded-image
test runs (evaluate_unlabelled). Everything is written to a report directory (metrics.json,
report.md, PNGs), atomically.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cfsx import __version__
from cfsx.config import EncodingConfig, EvaluationConfig, SimulationConfig, TrainingConfig, config_from_yaml_text
from cfsx.errors import DataError
from cfsx.io import plots
from cfsx.io.dataset import open_dataset
from cfsx.io.outputs import atomic_directory, claim_outputs
from cfsx.learning.data import SampleReader, summarise_data
from cfsx.learning.evaluation_report import (
    HOLD_OUT,
    UNLABELLED,
    WHOLE_FILE,
    CorruptedScores,
    EncodingScores,
    EstimateSpread,
    EvaluationReport,
    ImageScores,
    ScoreSummary,
    TrainingSummary,
    image_scores,
)
from cfsx.learning.model_card import ModelCard
from cfsx.learning.models import load_model, predict
from cfsx.learning.training import DataSummary, predict_indices
from cfsx.physics.encoding import cfs_vectors, named, vector_labels
from cfsx.physics.inversion import WarrenCowleyInversion
from cfsx.physics.metrics import image_r2
from cfsx.simulation import decode, decode_replicates

HISTOGRAM_IMAGES = 2000  # pixel histograms use at most this many images


def _check_grid(card: ModelCard, image_size: int, h_max: float, what: str) -> None:
    if card.image_size != image_size or not np.isclose(card.h_max, h_max):
        raise DataError(
            f"{what} was trained on {card.image_size}-point images with h_max {card.h_max}, "
            f"the data has {image_size}-point images with h_max {h_max}"
        )


def hold_out_indices(card: ModelCard, data) -> np.ndarray | None:
    """The model's hold-out samples within ``data`` when the model was trained on it (alone or with
    other files), else None: then the whole file is unseen."""
    test, training = card.hold_out_indices, card.training
    if training.data_fingerprint == data.fingerprint:
        return test
    files = training.data_files
    offset = 0
    for part in files:
        if len(files) > 1 and part.fingerprint == data.fingerprint:
            inside = test[(test >= offset) & (test < offset + part.samples)]
            return inside - offset
        offset += part.samples
    return None


def evaluate(
    model_path: str | Path,
    data_path: str | Path,
    report_dir: str | Path,
    config: TrainingConfig | None = None,
    compare: list[str | Path] = (),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Score a model on a dataset and write the report (metrics.json, report.md, figures) into ``report_dir``;
    see the module docstring for what is in it. ``progress(message)`` hears what is being done."""
    report_dir = Path(report_dir)
    config = config or TrainingConfig()
    with claim_outputs(directories=[report_dir], inputs=[model_path, data_path, *compare]):
        with open_dataset(data_path) as file:
            labelled = file.labels is not None
        say = progress or (lambda message: None)
        if not labelled:
            return evaluate_unlabelled(model_path, data_path, report_dir, config.evaluation, workers, say)
        run = _labelled_run(Path(model_path), Path(data_path), compare, config.evaluation, workers, say)
        started = time.perf_counter()
        with atomic_directory(report_dir, "metrics.json") as temporary:
            report = _evaluate_into(temporary, run)
            report = dataclasses.replace(report, seconds=time.perf_counter() - started, report_dir=str(report_dir))
            _write_report(temporary, report)
    return report


def _write_report(folder: Path, report: EvaluationReport) -> None:
    (folder / "metrics.json").write_text(report.to_json(indent=1))
    (folder / "report.md").write_text(report.markdown())


@dataclass
class _LabelledRun:
    """What a labelled evaluation works on: the model and the samples to score it on, with the data's simulation."""

    model: Any
    card: ModelCard
    model_path: Path
    data: DataSummary
    simulation: SimulationConfig
    indices: np.ndarray
    scope: str
    others: list[tuple[Path, Any, ModelCard]]  # models compared in the decoded-image test
    evaluation: EvaluationConfig
    workers: int
    say: Callable[[str], None]

    @property
    def labels(self) -> list[str]:
        return vector_labels(cfs_vectors(self.data.cfs))


def _labelled_run(
    model_path: Path,
    data_path: Path,
    compare: list[str | Path],
    evaluation: EvaluationConfig,
    workers: int,
    say: Callable[[str], None],
) -> _LabelledRun:
    """Load and check the models and the data; choose the samples (the recorded hold-out, or the whole file)."""
    model, card = load_model(model_path)
    data = summarise_data(data_path)
    _check_grid(card, data.image_size, data.h_max, str(model_path))
    if card.cfs > data.cfs:
        raise DataError(
            f"{model_path} predicts CFS{card.cfs} encodings but {data_path} holds CFS{data.cfs}; score it "
            f"on CFS{card.cfs} (or larger) data, or pass it with --compare for the decoded-image test"
        )
    if card.cfs < data.cfs:  # a CFS4 dataset labels CFS2 and CFS3 models too
        data = summarise_data(data_path, card.cfs)
    others = []
    for path in compare:
        other_model, other_card = load_model(path)
        _check_grid(other_card, data.image_size, data.h_max, str(path))
        others.append((Path(path), other_model, other_card))
    simulation = config_from_yaml_text(data.config_text)
    simulation = dataclasses.replace(simulation, encoding=dataclasses.replace(simulation.encoding, cfs=data.cfs))
    indices = hold_out_indices(card, data)
    scope = HOLD_OUT if indices is not None else WHOLE_FILE
    if indices is None:
        indices = np.arange(data.samples)
    elif len(indices) == 0:
        raise DataError(f"{model_path} was trained on {data_path} and none of its hold-out samples are in it")
    elif indices.max() >= data.samples:
        raise DataError(f"the hold-out recorded in {model_path} does not fit {data_path}")
    return _LabelledRun(model, card, model_path, data, simulation, indices, scope, others, evaluation, workers, say)


def _evaluate_into(folder: Path, run: _LabelledRun) -> EvaluationReport:
    data, card, evaluation, labels = run.data, run.card, run.evaluation, run.labels
    inversion = WarrenCowleyInversion(
        cfs_vectors(data.cfs), data.image_size, data.h_max, data.lot_size, evaluation.inversion_range
    )
    indices = run.indices
    with open_dataset(data.path) as file:
        reader = SampleReader(file, memory_limit_mb=1024, columns=data.columns)
        run.say(f"predicting {len(indices)} samples")
        truth, predicted = predict_indices(run.model, reader, indices)
        classical = np.concatenate(
            [inversion(reader.read(indices[i : i + 256])[0]) for i in range(0, len(indices), 256)]
        )
        all_labels = np.asarray(file.labels[:], dtype=np.float64)
        histogram_rng = np.random.default_rng(0)
        sample = np.sort(histogram_rng.choice(data.samples, min(data.samples, HISTOGRAM_IMAGES), replace=False))
        histogram_images = reader.read(sample)[0]
        n_resimulated = min(evaluation.resimulated, len(indices))
        chosen = indices[:n_resimulated]
        originals, _ = reader.read(chosen)
        stored = file.array("lattices") if evaluation.corrupted_flux else None
        lattices = None if stored is None else stored[np.sort(chosen)]
    classical = np.nan_to_num(classical)
    plots.save(plots.parity(truth, predicted, labels), folder / "parity.png")
    plots.save(plots.residuals(truth, predicted, labels), folder / "residuals.png")
    plots.save(plots.parity(truth, classical, labels), folder / "parity-classical.png")
    plots.save(plots.loss_curves(card.training.history, title="training history"), folder / "training.png")
    labels_figure = plots.component_histograms(all_labels, labels, title="labels (achieved alpha)")
    plots.save(labels_figure, folder / "encodings.png")
    plots.save(plots.intensity_histograms({"images": histogram_images}), folder / "intensities.png")

    corrupted = None
    if evaluation.corrupted_flux:
        if lattices is None:
            raise DataError("--corrupt needs the structures: this dataset was written without /lattices")
        run.say(f"scoring on {len(lattices)} corrupted and corrected detector images")
        corrupted = _corrupted_scores(run, inversion, lattices, truth[:n_resimulated], folder)
    decoded: dict[str, ImageScores] = {}
    if n_resimulated:
        run.say(f"re-simulating {n_resimulated} encodings (intrinsic error and decoded images)")
        images = _decoded_images(run, originals, {"re-simulated truth": truth[:n_resimulated],
                                                  "decoded CNN": predicted[:n_resimulated],
                                                  "decoded classical": classical[:n_resimulated]})  # fmt: skip
        decoded = {name: image_scores(originals, values) for name, values in images.items()}
        plots.save(plots.score_histograms({name: image_r2(originals, v) for name, v in images.items()}),
                   folder / "image-r2.png")  # fmt: skip
        rows = [[originals[i], *(v[i] for v in images.values())] for i in range(min(4, n_resimulated))]
        plots.save(plots.image_rows(rows, ["input", *images]), folder / "images.png")
    return EvaluationReport(
        model=str(run.model_path),
        data=str(data.path),
        cfs=card.cfs,
        architecture=card.architecture,
        scope=run.scope,
        count=len(indices),
        decoded_count=n_resimulated,
        decoded=decoded,
        seconds=0.0,
        cfsx_version=__version__,
        cnn=EncodingScores.of(truth, predicted, labels),
        classical=EncodingScores.of(truth, classical, labels),
        classical_range=inversion.max_range,
        training=TrainingSummary(
            card.training.epochs_run,
            card.training.best_epoch,
            card.training.seconds,
            dataclasses.asdict(card.training.samples),
        ),  # fmt: skip
        corrupted=corrupted,
    )


def _decoded_images(run: _LabelledRun, originals: np.ndarray, encodings: dict[str, np.ndarray]) -> dict[str, Any]:
    """Each named set of encodings simulated again, and each compared model's estimates of ``originals``."""
    seed, workers = run.evaluation.seed, run.workers
    images = {name: decode(run.simulation, values, seed, workers).images for name, values in encodings.items()}
    for path, other_model, other_card in run.others:
        other_simulation = dataclasses.replace(run.simulation, encoding=EncodingConfig(cfs=other_card.cfs))
        name = f"decoded CFS{other_card.cfs} model ({path.name})"
        images[name] = decode(other_simulation, predict(other_model, originals), seed, workers).images
    return images


def evaluate_unlabelled(
    model_path: str | Path,
    data_path: str | Path,
    report_dir: str | Path,
    evaluation: EvaluationConfig,
    workers: int = 1,
    say: Callable[[str], None] = lambda message: None,
) -> EvaluationReport:
    """Images without known encodings (for example measured images from cfsx correct): how well do the
    CNN's and the classical encodings, decoded by the engine, explain them? (image R2 after the
    least-squares scale, since measured images are in arbitrary units)."""

    model, card = load_model(model_path)
    with open_dataset(data_path) as file:
        images = np.asarray(file.images[()], dtype=np.float64)
        h_max = float(file.attrs.get("h_max", card.h_max))
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"{data_path}: /images must be (samples, M, M), got {images.shape}")
    _check_grid(card, images.shape[1], h_max, str(model_path))
    if not np.isfinite(images).all() or (images.mean(axis=(1, 2)) <= 0).any():
        raise DataError(f"{data_path} holds images with NaN, inf or no positive mean intensity")
    simulation, vectors, labels = card.decoding(), card.vectors, card.labels
    inversion = WarrenCowleyInversion(vectors, images.shape[1], h_max, card.lot_size, evaluation.inversion_range)
    started = time.perf_counter()
    say(f"predicting {len(images)} images without known encodings")
    estimates = {"CNN": predict(model, images), "classical": np.nan_to_num(inversion(images))}
    count = min(len(images), max(evaluation.resimulated, 1))
    say(f"decoding {count} of them with each estimate")
    seeds = [int(evaluation.seed)]
    decoded = {name: decode_replicates(simulation, values[:count], images[:count], seeds, workers)
               for name, values in estimates.items()}  # fmt: skip
    with atomic_directory(Path(report_dir), "metrics.json") as temporary:
        plots.save(plots.component_histograms(estimates["CNN"], labels, title="CNN encodings"),
                   temporary / "encodings.png")  # fmt: skip
        plots.save(plots.intensity_histograms({"images": images}), temporary / "intensities.png")
        scores = {f"decoded {n}": d.image_r2[:, 0] for n, d in decoded.items()}
        plots.save(plots.score_histograms(scores), temporary / "image-r2.png")
        rows = [[images[i], *(d.images[i, 0] for d in decoded.values())] for i in range(min(4, count))]
        plots.save(plots.image_rows(rows, ["input", *(f"decoded {name}" for name in decoded)]),
                   temporary / "images.png")  # fmt: skip
        report = EvaluationReport(
            model=str(model_path),
            data=str(data_path),
            cfs=card.cfs,
            architecture=card.architecture,
            scope=UNLABELLED,
            count=len(images),
            decoded_count=count,
            decoded={
                f"decoded {name}": ImageScores(ScoreSummary.of(d.image_r2[:, 0]), ScoreSummary.of(d.image_mse[:, 0]))
                for name, d in decoded.items()
            },  # fmt: skip
            seconds=time.perf_counter() - started,
            cfsx_version=__version__,
            estimates={
                name: EstimateSpread(named(labels, v.mean(axis=0)), named(labels, v.std(axis=0)))
                for name, v in estimates.items()
            },  # fmt: skip
            report_dir=str(report_dir),
        )
        _write_report(temporary, report)
    return report


def _corrupted_scores(
    run: _LabelledRun, inversion: WarrenCowleyInversion, lattices: np.ndarray, truth: np.ndarray, folder: Path
) -> CorruptedScores:
    """CNN and classical scores on the structures rendered as corrupted detector images, then corrected."""
    from cfsx.config import CorrectionConfig, load_config
    from cfsx.correction import correct_image
    from cfsx.simulation.detector import CORRUPTIONS, Detector

    diffraction, evaluation = run.simulation.diffraction, run.evaluation
    detector = Detector()
    grid = [f"output.image_size={diffraction.image_size}", f"output.h_max={diffraction.h_max}"]
    correction = load_config("correct", detector.correction_overrides() + grid, root=CorrectionConfig)
    rng = np.random.default_rng(evaluation.seed)
    corrected = []
    for lattice in lattices:
        raw = detector.corrupt(detector.render(lattice, diffraction.lot_size), set(CORRUPTIONS), rng,
                               evaluation.corrupted_flux)  # fmt: skip
        result = correct_image(raw, correction)
        if not corrected:
            plots.save(plots.correction_figure(raw, result.image, result.mask), folder / "corrupted-example.png")
        corrected.append(result.image)
    corrected = np.stack(corrected)
    return CorruptedScores(
        flux=evaluation.corrupted_flux,
        corruptions=tuple(CORRUPTIONS),
        cnn=EncodingScores.of(truth, predict(run.model, corrected), run.labels),
        classical=EncodingScores.of(truth, np.nan_to_num(inversion(corrected)), run.labels),
    )
