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
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, plots
from .config import EncodingConfig, SimulationConfig, TrainingConfig, config_from_yaml_text
from .dataset import open_dataset
from .encoding import cfs_vectors, named, vector_labels
from .errors import DataError
from .inversion import WarrenCowleyInversion
from .metrics import image_mse, image_r2, regression_metrics, summary
from .model_card import ModelCard
from .models import load_model, predict
from .outputs import atomic_directory, claim_outputs
from .simulation import decode
from .training import SampleReader, predict_indices, summarise_data

HISTOGRAM_IMAGES = 2000  # pixel histograms use at most this many images


@dataclass(frozen=True)
class EvaluationResult:
    """Where ``evaluate`` wrote its report, and the metrics in it (metrics.json)."""

    report_dir: Path
    metrics: dict[str, Any]


def _check_grid(card: ModelCard, image_size: int, h_max: float, what: str) -> None:
    if card.image_size != image_size or not np.isclose(card.h_max, h_max):
        raise DataError(
            f"{what} was trained on {card.image_size}-point images with h_max {card.h_max}, "
            f"the data has {image_size}-point images with h_max {h_max}"
        )


def _image_scores(reference: np.ndarray, images: np.ndarray) -> dict[str, Any]:
    return {"image_r2": summary(image_r2(reference, images)), "image_mse": summary(image_mse(reference, images))}


def hold_out_indices(card: ModelCard, data) -> np.ndarray | None:
    """The model's hold-out samples within ``data`` when the model was trained on it (alone or with
    other files), else None: then the whole file is unseen."""
    test, training = card.hold_out_indices, card.training
    if training["data_fingerprint"] == data.fingerprint:
        return test
    files = training.get("data_files", [])
    offset = 0
    for part in files:
        if len(files) > 1 and part["fingerprint"] == data.fingerprint:
            inside = test[(test >= offset) & (test < offset + part["samples"])]
            return inside - offset
        offset += part["samples"]
    return None


def evaluate(
    model_path: str | Path,
    data_path: str | Path,
    report_dir: str | Path,
    config: TrainingConfig,
    compare: list[str | Path] = (),
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Score a model on a dataset and write the report; see the module docstring for what is in it."""
    report_dir = Path(report_dir)
    with claim_outputs(directories=[report_dir], inputs=[model_path, data_path, *compare]):
        return _evaluate(model_path, data_path, report_dir, config, compare, workers, progress)


def _evaluate(
    model_path: str | Path,
    data_path: str | Path,
    report_dir: Path,
    config: TrainingConfig,
    compare: list[str | Path],
    workers: int,
    progress: Callable[[str], None] | None,
) -> EvaluationResult:
    say = progress or (lambda message: None)
    evaluation = config.evaluation
    with open_dataset(data_path) as file:
        labelled = "encodings/achieved" in file
    if not labelled:
        return evaluate_unlabelled(model_path, data_path, report_dir, config, workers, say)
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
    labels = vector_labels(cfs_vectors(data.cfs))
    indices = hold_out_indices(card, data)
    same_data = indices is not None
    if indices is None:
        indices = np.arange(data.samples)
    elif len(indices) == 0:
        raise DataError(f"{model_path} was trained on {data_path} and none of its hold-out samples are in it")
    elif indices.max() >= data.samples:
        raise DataError(f"the hold-out recorded in {model_path} does not fit {data_path}")
    started = time.perf_counter()
    with atomic_directory(report_dir, "metrics.json") as temporary:
        metrics = _evaluate_into(
            temporary, model, card, data, simulation, labels, indices, same_data, others, evaluation, workers, say
        )
        metrics["seconds"] = time.perf_counter() - started
        (temporary / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (temporary / "report.md").write_text(_report_markdown(metrics, Path(model_path), Path(data_path)))
    return EvaluationResult(report_dir, metrics)


def _evaluate_into(
    folder: Path,
    model,
    card: ModelCard,
    data,
    simulation: SimulationConfig,
    labels: list[str],
    indices: np.ndarray,
    same_data: bool,
    others: list,
    evaluation,
    workers: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    inversion = WarrenCowleyInversion(
        cfs_vectors(data.cfs), data.image_size, data.h_max, data.lot_size, evaluation.inversion_range
    )
    with open_dataset(data.path) as file:
        reader = SampleReader(file, memory_limit_mb=1024, columns=data.columns)
        say(f"predicting {len(indices)} samples")
        truth, predicted = predict_indices(model, reader, indices)
        classical = np.concatenate(
            [inversion(reader.read(indices[i : i + 256])[0]) for i in range(0, len(indices), 256)]
        )
        all_labels = np.asarray(file["encodings/achieved"][:], dtype=np.float64)
        histogram_rng = np.random.default_rng(0)
        sample = np.sort(histogram_rng.choice(data.samples, min(data.samples, HISTOGRAM_IMAGES), replace=False))
        histogram_images = reader.read(sample)[0]
        n_resimulated = min(evaluation.resimulated, len(indices))
        chosen = indices[:n_resimulated]
        originals, _ = reader.read(chosen)
        lattices = file["lattices"][np.sort(chosen)] if evaluation.corrupted_flux and "lattices" in file else None
    metrics: dict[str, Any] = {
        "cfsx_version": __version__,
        "model": {"cfs": card.cfs, "architecture": card.architecture},
        "samples": "recorded hold-out" if same_data else "whole file",
        "cnn": regression_metrics(truth, predicted, labels),
        "classical": regression_metrics(truth, np.nan_to_num(classical), labels),
        "classical_range": inversion.max_range,
        "training": {key: card.training[key] for key in ("epochs_run", "best_epoch", "seconds", "samples")},
    }
    plots.save(plots.parity(truth, predicted, labels), folder / "parity.png")
    plots.save(plots.residuals(truth, predicted, labels), folder / "residuals.png")
    plots.save(plots.parity(truth, np.nan_to_num(classical), labels), folder / "parity-classical.png")
    plots.save(plots.loss_curves(card.training["history"], title="training history"), folder / "training.png")
    labels_figure = plots.component_histograms(all_labels, labels, title="labels (achieved alpha)")
    plots.save(labels_figure, folder / "encodings.png")
    plots.save(plots.intensity_histograms({"images": histogram_images}), folder / "intensities.png")

    if evaluation.corrupted_flux:
        if lattices is None:
            raise DataError("--corrupt needs the structures: this dataset was written without /lattices")
        say(f"scoring on {len(lattices)} corrupted and corrected detector images")
        metrics["corrupted"] = _corrupted_scores(
            model, inversion, lattices, truth[:n_resimulated], labels, simulation, evaluation, folder
        )
    if n_resimulated:
        say(f"re-simulating {n_resimulated} encodings (intrinsic error and decoded images)")
        images: dict[str, np.ndarray] = {
            "re-simulated truth": decode(simulation, truth[:n_resimulated], evaluation.seed, workers)["images"],
            "decoded CNN": decode(simulation, predicted[:n_resimulated], evaluation.seed, workers)["images"],
            "decoded classical": decode(simulation, np.nan_to_num(classical[:n_resimulated]), evaluation.seed, workers)[
                "images"
            ],
        }
        for path, other_model, other_card in others:
            other_cfs = other_card.cfs
            other_simulation = dataclasses.replace(simulation, encoding=EncodingConfig(cfs=other_cfs))
            other_predicted = predict(other_model, originals)
            name = f"decoded CFS{other_cfs} model ({path.name})"
            images[name] = decode(other_simulation, other_predicted, evaluation.seed, workers)["images"]
        metrics["images"] = {
            "count": n_resimulated,
            **{name: _image_scores(originals, v) for name, v in images.items()},
        }
        scores = {name: image_r2(originals, v) for name, v in images.items()}
        plots.save(plots.score_histograms(scores), folder / "image-r2.png")
        examples = min(4, n_resimulated)
        rows = [[originals[i], *(v[i] for v in images.values())] for i in range(examples)]
        plots.save(plots.image_rows(rows, ["input", *images]), folder / "images.png")
    return metrics


def evaluate_unlabelled(
    model_path: str | Path,
    data_path: str | Path,
    report_dir: str | Path,
    config: TrainingConfig,
    workers: int = 1,
    say: Callable[[str], None] = lambda message: None,
) -> EvaluationResult:
    """Images without known encodings (for example measured images from cfsx correct): how well do the
    CNN's and the classical encodings, decoded by the engine, explain them? (image R2 after the
    least-squares scale, since measured images are in arbitrary units)."""
    from .interpretation import decode_replicates

    model, card = load_model(model_path)
    with open_dataset(data_path) as file:
        images = np.asarray(file["images"][()], dtype=np.float64)
        h_max = float(file.attrs.get("h_max", card.h_max))
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"{data_path}: /images must be (samples, M, M), got {images.shape}")
    _check_grid(card, images.shape[1], h_max, str(model_path))
    if not np.isfinite(images).all() or (images.mean(axis=(1, 2)) <= 0).any():
        raise DataError(f"{data_path} holds images with NaN, inf or no positive mean intensity")
    simulation, vectors, labels = card.decoding(), card.vectors, card.labels
    evaluation = config.evaluation
    inversion = WarrenCowleyInversion(vectors, images.shape[1], h_max, card.lot_size, evaluation.inversion_range)
    started = time.perf_counter()
    say(f"predicting {len(images)} images without known encodings")
    estimates = {"CNN": predict(model, images), "classical": np.nan_to_num(inversion(images))}
    count = min(len(images), max(evaluation.resimulated, 1))
    say(f"decoding {count} of them with each estimate")
    seeds = [int(evaluation.seed)]
    decoded = {name: decode_replicates(simulation, values[:count], images[:count], seeds, workers)
               for name, values in estimates.items()}  # fmt: skip
    metrics: dict[str, Any] = {
        "cfsx_version": __version__,
        "model": {"cfs": card.cfs, "architecture": card.architecture},
        "samples": "unlabelled file",
        "count": len(images),
        "encodings": {
            name: {"mean": named(labels, v.mean(axis=0)), "std": named(labels, v.std(axis=0))}
            for name, v in estimates.items()
        },  # fmt: skip
        "images": {
            "count": count,
            **{
                f"decoded {name}": {"image_r2": summary(d.image_r2[:, 0]), "image_mse": summary(d.image_mse[:, 0])}
                for name, d in decoded.items()
            },
        },  # fmt: skip
    }
    with atomic_directory(Path(report_dir), "metrics.json") as temporary:
        plots.save(plots.component_histograms(estimates["CNN"], labels, title="CNN encodings"),
                   temporary / "encodings.png")  # fmt: skip
        plots.save(plots.intensity_histograms({"images": images}), temporary / "intensities.png")
        scores = {f"decoded {n}": d.image_r2[:, 0] for n, d in decoded.items()}
        plots.save(plots.score_histograms(scores), temporary / "image-r2.png")
        rows = [[images[i], *(d.images[i, 0] for d in decoded.values())] for i in range(min(4, count))]
        plots.save(plots.image_rows(rows, ["input", *(f"decoded {name}" for name in decoded)]),
                   temporary / "images.png")  # fmt: skip
        metrics["seconds"] = time.perf_counter() - started
        (temporary / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (temporary / "report.md").write_text(_unlabelled_markdown(metrics, Path(model_path), Path(data_path)))
    return EvaluationResult(Path(report_dir), metrics)


def _unlabelled_markdown(metrics: dict[str, Any], model_path: Path, data_path: Path) -> str:
    lines = [
        f"# Evaluation of {model_path.name} on {data_path.name} (no known encodings)",
        "",
        f"{metrics['count']} images without known encodings; {metrics['images']['count']} of them decoded by the "
        f"engine from each estimate and compared with the image after the least-squares scale. Written by cfsx "
        f"{metrics['cfsx_version']} in {metrics['seconds']:.0f} s. For image-by-image answers use cfsx interpret.",
        "",
        "| encoding | image R2 median | image R2 mean | p10 | p90 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, scores in metrics["images"].items():
        if name != "count":
            r2 = scores["image_r2"]
            lines.append(f"| {name} | {r2['median']:.3f} | {r2['mean']:.3f} | {r2['p10']:.3f} | {r2['p90']:.3f} |")
    lines += ["", "![decoded images](images.png)", "", "![image R2](image-r2.png)", "",
              "![CNN encodings](encodings.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _corrupted_scores(model, inversion, lattices, truth, labels, simulation, evaluation, folder) -> dict[str, Any]:
    """CNN and classical scores on the structures rendered as corrupted detector images, then corrected."""
    from .config import CorrectionConfig, load_config
    from .correction import correct_image
    from .detector import CORRUPTIONS, Detector

    detector = Detector()
    grid = [f"output.image_size={simulation.diffraction.image_size}", f"output.h_max={simulation.diffraction.h_max}"]
    correction = load_config("correct", detector.correction_overrides() + grid, root=CorrectionConfig)
    rng = np.random.default_rng(evaluation.seed)
    corrected = []
    for lattice in lattices:
        raw = detector.corrupt(detector.render(lattice, simulation.diffraction.lot_size), set(CORRUPTIONS), rng,
                               evaluation.corrupted_flux)  # fmt: skip
        result = correct_image(raw, correction)
        if not corrected:
            plots.save(plots.correction_figure(raw, result.image, result.mask), folder / "corrupted-example.png")
        corrected.append(result.image)
    corrected = np.stack(corrected)
    return {
        "flux": evaluation.corrupted_flux,
        "corruptions": list(CORRUPTIONS),
        "cnn": regression_metrics(truth, predict(model, corrected), labels),
        "classical": regression_metrics(truth, np.nan_to_num(inversion(corrected)), labels),
    }


def _table_row(name: str, scores: dict[str, Any]) -> str:
    return (
        f"| {name} | {scores['r2']:.4f} | {scores['mse']:.3e} | {scores['mae']:.3e} | {scores['mean_residual']:+.1e} |"
    )


def _report_markdown(metrics: dict[str, Any], model_path: Path, data_path: Path) -> str:
    cnn, classical = metrics["cnn"], metrics["classical"]
    lines = [
        f"# Evaluation of {model_path.name} on {data_path.name}",
        "",
        f"Model: {metrics['model']['architecture']} CNN, CFS{metrics['model']['cfs']}; scored on the "
        f"{metrics['samples']} ({cnn['samples']} samples). Written by cfsx {metrics['cfsx_version']} in "
        f"{metrics['seconds']:.0f} s.",
        "",
        "## Encodings",
        "",
        "| method | R2 | MSE | MAE | mean residual |",
        "| --- | --- | --- | --- | --- |",
        _table_row("CNN", cnn),
        _table_row(f"Warren-Cowley least squares (vectors up to {metrics['classical_range']})", classical),
        "",
        "| component | CNN R2 | CNN MSE | CNN mean residual | classical R2 | classical MSE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, scores in cnn["per_component"].items():
        other = classical["per_component"][label]
        lines.append(
            f"| {label} | {scores['r2']:.4f} | {scores['mse']:.2e} | {scores['mean_residual']:+.1e} | "
            f"{other['r2']:.4f} | {other['mse']:.2e} |"
        )
    lines += [
        "",
        "![parity](parity.png)",
        "",
        "Residuals (predicted - true) with their binned mean (red): a biased model bends away from zero.",
        "",
        "![residuals](residuals.png)",
        "",
        "The classical estimate on the same samples:",
        "",
        "![parity of the classical estimate](parity-classical.png)",
        "",
    ]
    if "corrupted" in metrics:
        corrupted = metrics["corrupted"]
        lines += [
            "## On corrupted detector images",
            "",
            f"The first {corrupted['cnn']['samples']} of these structures rendered as 512 x 512 detector images "
            f"(all lot origins) with {', '.join(corrupted['corruptions'])} ({corrupted['flux']:g} counts per pixel), "
            "then corrected by cfsx correct with their calibration (cfsx/detector.py):",
            "",
            "| method | R2 | MSE | MAE | mean residual |",
            "| --- | --- | --- | --- | --- |",
            _table_row("CNN", corrupted["cnn"]),
            _table_row("Warren-Cowley least squares", corrupted["classical"]),
            "",
            "![a corrupted image and its correction](corrupted-example.png)",
            "",
        ]
    if "images" in metrics:
        images = metrics["images"]
        lines += [
            "## Images decoded again by the engine",
            "",
            f"{images['count']} hold-out images. Each row's encoding is simulated again (new seeds) and the image "
            "compared with the input image. 're-simulated truth' uses the true encoding: the intrinsic noise of "
            "the stochastic simulation, the floor for any interpretation.",
            "",
            "| encoding | image R2 median | image R2 mean | p10 | p90 | image MSE median |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, scores in images.items():
            if name == "count":
                continue
            r2, mse = scores["image_r2"], scores["image_mse"]
            lines.append(
                f"| {name} | {r2['median']:.3f} | {r2['mean']:.3f} | {r2['p10']:.3f} | {r2['p90']:.3f} | "
                f"{mse['median']:.3e} |"
            )
        lines += ["", "![image R2](image-r2.png)", "", "![examples (log10 intensity)](images.png)", ""]
    lines += [
        "## Training",
        "",
        f"{metrics['training']['epochs_run']} epochs, best {metrics['training']['best_epoch']}, "
        f"{metrics['training']['seconds']:.0f} s; samples {metrics['training']['samples']}.",
        "",
        "![training](training.png)",
        "",
        "## Data",
        "",
        "![encodings](encodings.png)",
        "",
        "![intensities](intensities.png)",
        "",
    ]
    return "\n".join(lines)
