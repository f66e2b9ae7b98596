"""The record ``evaluate`` returns: how a model scored, beside the classical inversion and the simulation's floor.

``EvaluationReport`` is written as metrics.json (``to_json``) and report.md (``markdown``) into the report
directory; ``write_report_h5``/``read_report_h5`` keep it in HDF5; the CLI prints its ``summary``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cfsx.errors import DataError
from cfsx.io import records
from cfsx.physics.metrics import regression_metrics, summary

EVALUATION_FORMAT = "cfsx-evaluation"
EVALUATION_FORMAT_VERSION = 1

# What an evaluation scored: the model's recorded hold-out in its own training file, all of another file,
# or images without known encodings (only the decoded-image test).
HOLD_OUT, WHOLE_FILE, UNLABELLED = "recorded hold-out", "whole file", "unlabelled file"


@dataclass(frozen=True)
class ComponentScores:
    """R2, MSE, MAE and mean residual (predicted - true) of one encoding component."""

    r2: float
    mse: float
    mae: float
    mean_residual: float


@dataclass(frozen=True)
class EncodingScores:
    """How close estimated encodings came to the true ones: overall and per component."""

    samples: int
    r2: float
    mse: float
    mae: float
    mean_residual: float
    per_component: dict[str, ComponentScores]

    @classmethod
    def of(cls, truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> EncodingScores:
        """The scores of ``predicted`` (S, D) against ``truth`` (S, D)."""
        return records.from_plain(cls, regression_metrics(truth, predicted, labels))


@dataclass(frozen=True)
class ScoreSummary:
    """Count, mean, median and 10th/90th percentiles of per-image scores (None without finite scores)."""

    count: int
    mean: float | None = None
    median: float | None = None
    p10: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: np.ndarray) -> ScoreSummary:
        return cls(**summary(values))


@dataclass(frozen=True)
class ImageScores:
    """Decoded images against the input images: image R2 and MSE over the images."""

    image_r2: ScoreSummary
    image_mse: ScoreSummary


@dataclass(frozen=True)
class CorruptedScores:
    """Encodings estimated from corrupted, then corrected detector images of the same structures."""

    flux: float
    corruptions: tuple[str, ...]
    cnn: EncodingScores
    classical: EncodingScores


@dataclass(frozen=True)
class TrainingSummary:
    """How the model was trained (from its card)."""

    epochs_run: int
    best_epoch: int
    seconds: float
    samples: dict[str, int]


@dataclass(frozen=True)
class EstimateSpread:
    """Per component: mean and standard deviation of one method's estimates over the images."""

    mean: dict[str, float]
    std: dict[str, float]


@dataclass(frozen=True)
class EvaluationReport:
    """How a model scored on a dataset; see cfsx.learning.evaluation for what each part measures."""

    model: str
    data: str
    cfs: int
    architecture: str
    scope: str  # HOLD_OUT, WHOLE_FILE or UNLABELLED
    count: int  # images scored
    decoded_count: int  # images decoded again by the engine for the image tests
    decoded: dict[str, ImageScores]  # per encoding source ("re-simulated truth", "decoded CNN", ...)
    seconds: float
    cfsx_version: str
    cnn: EncodingScores | None = None  # None on unlabelled images
    classical: EncodingScores | None = None
    classical_range: float | None = None
    training: TrainingSummary | None = None
    corrupted: CorruptedScores | None = None
    estimates: dict[str, EstimateSpread] | None = None  # unlabelled images: the spread of each method's estimates
    report_dir: str | None = None
    format: str = field(default=EVALUATION_FORMAT)
    format_version: int = field(default=EVALUATION_FORMAT_VERSION)

    @property
    def labelled(self) -> bool:
        """True when the encodings were scored against known ones."""
        return self.cnn is not None

    def to_json(self, indent: int | None = None) -> str:
        """metrics.json: the whole record; ``from_json`` gives it back."""
        return json.dumps(records.to_plain(self), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        """The report ``to_json`` wrote (metrics.json), refused when it is not one."""
        data = json.loads(text)
        if data.get("format") != EVALUATION_FORMAT:
            raise DataError(f"not an evaluation report of this cfsx (format {EVALUATION_FORMAT})")
        return records.from_plain(cls, data)

    def summary(self) -> str:
        """A few lines: the encoding scores of the CNN and the classical inversion, the decoded-image medians."""
        lines = []
        if self.labelled:
            lines.append(
                f"{self.scope}, {self.cnn.samples} samples: CNN R2 {self.cnn.r2:.4f} MSE {self.cnn.mse:.2e}; "
                f"Warren-Cowley inversion R2 {self.classical.r2:.4f} MSE {self.classical.mse:.2e}"
            )
        else:
            lines.append(f"{self.count} images without known encodings: image tests only")
        if self.corrupted is not None:
            lines.append(
                f"corrupted and corrected images ({self.corrupted.flux:g} counts/pixel): CNN R2 "
                f"{self.corrupted.cnn.r2:.4f}, Warren-Cowley inversion R2 {self.corrupted.classical.r2:.4f}"
            )
        lines += [f"image R2 (median) of {name}: {_number(scores.image_r2.median, '.3f')}"
                  for name, scores in self.decoded.items()]  # fmt: skip
        if self.report_dir is not None:
            lines.append(f"report: {Path(self.report_dir) / 'report.md'}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """report.md: the tables of this report with the figures beside it."""
        return _labelled_markdown(self) if self.labelled else _unlabelled_markdown(self)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_report_h5(path: str | Path, report: EvaluationReport) -> None:
    """The report as an HDF5 file (groups and attributes); ``read_report_h5`` gives it back."""
    from cfsx.io.outputs import hdf5_writer

    with hdf5_writer(Path(path)) as file:
        records.write_h5(file, report)


def read_report_h5(path: str | Path) -> EvaluationReport:
    """The report ``write_report_h5`` wrote."""
    import h5py

    with h5py.File(path, "r") as file:
        if file.attrs.get("format") != EVALUATION_FORMAT:
            raise DataError(f"{path} is not an evaluation report of this cfsx (format {EVALUATION_FORMAT})")
        return records.read_h5(file, EvaluationReport)


def _decoded_rows(report: EvaluationReport) -> list[str]:
    rows = []
    for name, scores in report.decoded.items():
        r2, mse = scores.image_r2, scores.image_mse
        cells = [_number(value, ".3f") for value in (r2.median, r2.mean, r2.p10, r2.p90)]
        rows.append(f"| {name} | {' | '.join(cells)} | {_number(mse.median, '.3e')} |")
    return rows


def _table_row(name: str, scores: EncodingScores) -> str:
    return f"| {name} | {scores.r2:.4f} | {scores.mse:.3e} | {scores.mae:.3e} | {scores.mean_residual:+.1e} |"


def _unlabelled_markdown(report: EvaluationReport) -> str:
    lines = [
        f"# Evaluation of {Path(report.model).name} on {Path(report.data).name} (no known encodings)",
        "",
        f"{report.count} images without known encodings; {report.decoded_count} of them decoded by the "
        f"engine from each estimate and compared with the image after the least-squares scale. Written by cfsx "
        f"{report.cfsx_version} in {report.seconds:.0f} s. For image-by-image answers use cfsx interpret.",
        "",
        "| encoding | image R2 median | image R2 mean | p10 | p90 | image MSE median |",
        "| --- | --- | --- | --- | --- | --- |",
        *_decoded_rows(report),
        "",
        "![decoded images](images.png)",
        "",
        "![image R2](image-r2.png)",
        "",
        "![CNN encodings](encodings.png)",
        "",
    ]
    return "\n".join(lines)


def _labelled_markdown(report: EvaluationReport) -> str:
    cnn, classical = report.cnn, report.classical
    lines = [
        f"# Evaluation of {Path(report.model).name} on {Path(report.data).name}",
        "",
        f"Model: {report.architecture} CNN, CFS{report.cfs}; scored on the {report.scope} ({cnn.samples} samples). "
        f"Written by cfsx {report.cfsx_version} in {report.seconds:.0f} s.",
        "",
        "## Encodings",
        "",
        "| method | R2 | MSE | MAE | mean residual |",
        "| --- | --- | --- | --- | --- |",
        _table_row("CNN", cnn),
        _table_row(f"Warren-Cowley least squares (vectors up to {report.classical_range})", classical),
        "",
        "| component | CNN R2 | CNN MSE | CNN mean residual | classical R2 | classical MSE |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, scores in cnn.per_component.items():
        other = classical.per_component[label]
        lines.append(
            f"| {label} | {scores.r2:.4f} | {scores.mse:.2e} | {scores.mean_residual:+.1e} | "
            f"{other.r2:.4f} | {other.mse:.2e} |"
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
    lines += _corrupted_section(report)
    if report.decoded_count:
        lines += [
            "## Images decoded again by the engine",
            "",
            f"{report.decoded_count} hold-out images. Each row's encoding is simulated again (new seeds) and the "
            "image compared with the input image. 're-simulated truth' uses the true encoding: the intrinsic noise "
            "of the stochastic simulation, the floor for any interpretation.",
            "",
            "| encoding | image R2 median | image R2 mean | p10 | p90 | image MSE median |",
            "| --- | --- | --- | --- | --- | --- |",
            *_decoded_rows(report),
            "",
            "![image R2](image-r2.png)",
            "",
            "![examples (log10 intensity)](images.png)",
            "",
        ]
    training = report.training
    lines += [
        "## Training",
        "",
        f"{training.epochs_run} epochs, best {training.best_epoch}, {training.seconds:.0f} s; "
        f"samples {training.samples}.",
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


def _corrupted_section(report: EvaluationReport) -> list[str]:
    """The evaluation on corrupted detector images, where it ran."""
    if report.corrupted is None:
        return []
    corrupted = report.corrupted
    return [
        "## On corrupted detector images",
        "",
        f"The first {corrupted.cnn.samples} of these structures rendered as 512 x 512 detector images "
        f"(all lot origins) with {', '.join(corrupted.corruptions)} ({corrupted.flux:g} counts per pixel), "
        "then corrected by cfsx correct with their calibration (cfsx/simulation/detector.py):",
        "",
        "| method | R2 | MSE | MAE | mean residual |",
        "| --- | --- | --- | --- | --- |",
        _table_row("CNN", corrupted.cnn),
        _table_row("Warren-Cowley least squares", corrupted.classical),
        "",
        "![a corrupted image and its correction](corrupted-example.png)",
        "",
    ]


def image_scores(reference: np.ndarray, images: np.ndarray) -> ImageScores:
    """Image R2 and MSE of ``images`` against ``reference`` (both (S, M, M)), summarised."""
    from cfsx.physics.metrics import image_mse, image_r2

    return ImageScores(ScoreSummary.of(image_r2(reference, images)), ScoreSummary.of(image_mse(reference, images)))
