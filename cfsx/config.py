"""Every config of cfsx: simulate, train and evaluate, correct, interpret. Frozen dataclasses, one per
section of a YAML file, each validated on creation (``require``, ``is_int``, ``is_number``), loaded with
overrides by ``load_config(name_or_path, overrides, root=...)``.

Layering: dataclass defaults < YAML file < ``--set section.key=value`` < dedicated CLI flags.
The resolved configuration is written, as YAML text, into every output file.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

BUILTIN_CONFIGS = Path(__file__).parent / "configs"
ARCHITECTURES = ("small", "wide", "large", "hybrid")  # models.build_model builds each


def require(condition: bool, message: str) -> None:
    """Refuse a config value: ``message`` (naming the key and what it must be) when ``condition`` is false."""
    if not condition:
        raise ConfigError(message)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (YAML's true is not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


class Sections:
    """Base of a whole config, a dataclass of section dataclasses: serialises to the YAML it is read from."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class EncodingConfig:
    """The CFS-n encoding the images are labelled with (section ``encoding``)."""

    cfs: int = 4  # CFS-n: D = n*n - 1 correlation components

    def __post_init__(self) -> None:
        require(
            is_int(self.cfs) and 2 <= self.cfs <= 8,
            f"encoding.cfs must be an integer in 2..8, got {self.cfs!r}",
        )


@dataclass(frozen=True)
class LatticeConfig:
    """The periodic N x N lattice and its composition (section ``lattice``)."""

    size: int = 50  # N: the lattice is N x N, periodic
    concentration: float = 0.5
    # [low, high]: each drawn sample's concentration uniform in this range (from its own seed); null: the
    # fixed concentration above, which is also the one used to decode a given encoding.
    concentration_range: list[float] | None = None

    def __post_init__(self) -> None:
        require(
            is_int(self.size) and 2 <= self.size <= 4096,
            f"lattice.size must be an integer in 2..4096, got {self.size!r}",
        )
        require(
            is_number(self.concentration) and 0.0 < self.concentration < 1.0,
            f"lattice.concentration must be in (0, 1), got {self.concentration!r}",
        )
        span = self.concentration_range
        require(
            span is None or (isinstance(span, list) and len(span) == 2 and all(is_number(v) for v in span)
                             and 0.0 < span[0] <= span[1] < 1.0),
            f"lattice.concentration_range must be null or [low, high] with 0 < low <= high < 1, got {span!r}",
        )  # fmt: skip


TARGET_DISTRIBUTIONS = ("uniform", "couplings")


@dataclass(frozen=True)
class TargetConfig:
    """Where the feedback's targets come from.

    uniform: each component uniform in [low, high] (the seed study; few such targets are realisable
    jointly by a binary lattice). couplings: realisable by construction, the alpha measured after
    ``sweeps`` Monte Carlo sweeps at fixed couplings J = s u on the encoding's vectors, u uniform in
    [-1, 1] per component and the strength s log-uniform in ``coupling_range``: that lattice is the
    sample (achieved = target, 0 feedback cycles). Decoding a given encoding always uses the feedback.
    [low, high] also bounds the refinement in ``interpret``.
    """

    distribution: str = "uniform"
    low: float | list[float] = -0.5
    high: float | list[float] = 0.5
    coupling_range: list[float] = field(default_factory=lambda: [0.02, 0.5])
    sweeps: int = 20

    def __post_init__(self) -> None:
        require(
            self.distribution in TARGET_DISTRIBUTIONS,
            f"targets.distribution must be one of {', '.join(TARGET_DISTRIBUTIONS)}, got {self.distribution!r}",
        )
        for name in ("low", "high"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            require(
                len(values) > 0 and all(is_number(v) and -1.0 <= v <= 1.0 for v in values),
                f"targets.{name} must be a number or a list of numbers in [-1, 1], got {value!r}",
            )
        scale = self.coupling_range
        require(
            isinstance(scale, list) and len(scale) == 2 and all(is_number(v) for v in scale)
            and 0 < scale[0] <= scale[1] <= 50,
            f"targets.coupling_range must be [low, high] with 0 < low <= high <= 50, got {scale!r}",
        )  # fmt: skip
        require(
            is_int(self.sweeps) and 1 <= self.sweeps <= 100_000,
            f"targets.sweeps must be an integer in 1..100000, got {self.sweeps!r}",
        )

    def bounds(self, n_components: int) -> tuple[list[float], list[float]]:
        """Per-component (low, high), checked against the encoding size."""
        result = []
        for name in ("low", "high"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value] * n_components
            require(
                len(values) == n_components,
                f"targets.{name} has {len(values)} values but the encoding has {n_components} components",
            )
            result.append([float(v) for v in values])
        low, high = result
        require(all(lo <= hi for lo, hi in zip(low, high, strict=True)), "targets.low must not exceed targets.high")
        return low, high


@dataclass(frozen=True)
class FeedbackConfig:
    """Welberry's feedback: J += gain * (alpha - target) after each cycle of sweeps."""

    gain: float = 0.25
    sweeps_per_cycle: int = 4
    tolerance: float = 0.02
    max_cycles: int = 60
    coupling_bound: float = 2.0
    # Stop on stagnation: the misfit max |alpha - target| has not improved by more than the lattice's own
    # noise (1/N) for this many cycles, or every component off target has its coupling at the bound. 0: never.
    stall_cycles: int = 0
    # The tolerance is at least this many times the lattice's own noise 1/N (0: the absolute tolerance only).
    noise_tolerance: float = 0.0
    # gain: J += gain (alpha - target). adaptive: each component's gain grows while its error keeps its sign and
    # shrinks when it flips (cfsx.engine.ADAPTIVE_GAIN_*), starting from gain.
    update: str = "gain"

    def tolerance_for(self, lattice_size: int) -> float:
        """The tolerance the loop uses on an N x N lattice."""
        return max(float(self.tolerance), float(self.noise_tolerance) / lattice_size)

    def __post_init__(self) -> None:
        require(
            is_number(self.gain) and 0 < self.gain <= 10,
            f"feedback.gain must be in (0, 10], got {self.gain!r}",
        )
        require(
            is_int(self.sweeps_per_cycle) and 1 <= self.sweeps_per_cycle <= 100_000,
            f"feedback.sweeps_per_cycle must be an integer in 1..100000, got {self.sweeps_per_cycle!r}",
        )
        require(
            is_number(self.tolerance) and 0 <= self.tolerance <= 2,
            f"feedback.tolerance must be in [0, 2], got {self.tolerance!r}",
        )
        require(
            is_int(self.max_cycles) and 1 <= self.max_cycles <= 100_000,
            f"feedback.max_cycles must be an integer in 1..100000, got {self.max_cycles!r}",
        )
        require(
            is_number(self.coupling_bound) and 0 < self.coupling_bound <= 50,
            f"feedback.coupling_bound must be in (0, 50], got {self.coupling_bound!r}",
        )
        require(
            is_int(self.stall_cycles) and 0 <= self.stall_cycles <= 100_000,
            f"feedback.stall_cycles must be an integer in 0..100000, got {self.stall_cycles!r}",
        )
        require(self.update in ("gain", "adaptive"), f"feedback.update must be gain or adaptive, got {self.update!r}")
        require(
            is_number(self.noise_tolerance) and 0 <= self.noise_tolerance <= 100,
            f"feedback.noise_tolerance must be in [0, 100], got {self.noise_tolerance!r}",
        )


@dataclass(frozen=True)
class DiffractionConfig:
    """The simulated image: reciprocal grid and the lots averaged into it (section ``diffraction``)."""

    image_size: int = 64  # M: the image is M x M
    h_max: float = 1.0  # the grid spans h, k in [-h_max, h_max)
    n_lots: int | str = 8  # number of random lots, or "all" for the exact average over every origin
    lot_size: int = 25  # L: lots are L x L sites

    def __post_init__(self) -> None:
        require(
            is_int(self.image_size) and 2 <= self.image_size <= 2048,
            f"diffraction.image_size must be an integer in 2..2048, got {self.image_size!r}",
        )
        require(is_number(self.h_max) and self.h_max > 0, f"diffraction.h_max must be > 0, got {self.h_max!r}")
        require(
            self.n_lots == "all" or (is_int(self.n_lots) and 1 <= self.n_lots <= 100_000),
            f"diffraction.n_lots must be an integer >= 1 or 'all', got {self.n_lots!r}",
        )
        require(
            is_int(self.lot_size) and self.lot_size >= 1,
            f"diffraction.lot_size must be an integer >= 1, got {self.lot_size!r}",
        )


@dataclass(frozen=True)
class RunConfig:
    """How many samples, from which master seed, in batches of what size (section ``run``)."""

    samples: int = 5000
    seed: int = 0  # master seed: sample i gets its own seed derived from (seed, i)
    batch_size: int = 16  # samples per task and per checkpoint file

    def __post_init__(self) -> None:
        require(
            is_int(self.samples) and self.samples >= 1,
            f"run.samples must be an integer >= 1, got {self.samples!r}",
        )
        require(
            is_int(self.seed) and 0 <= self.seed < 2**63,
            f"run.seed must be an integer in [0, 2**63), got {self.seed!r}",
        )
        require(
            is_int(self.batch_size) and 1 <= self.batch_size <= 4096,
            f"run.batch_size must be an integer in 1..4096, got {self.batch_size!r}",
        )


@dataclass(frozen=True)
class SimulationOutputConfig:
    """What a dataset file keeps and how it is compressed (section ``output``)."""

    store_lattices: bool = True
    compression: int = 4  # gzip level, 0 for none

    def __post_init__(self) -> None:
        require(
            isinstance(self.store_lattices, bool),
            f"output.store_lattices must be true or false, got {self.store_lattices!r}",
        )
        require(
            is_int(self.compression) and 0 <= self.compression <= 9,
            f"output.compression must be an integer in 0..9, got {self.compression!r}",
        )


@dataclass(frozen=True)
class SimulationConfig(Sections):
    """Everything ``cfsx simulate`` needs: a YAML file of these sections (configs/cfs4.yaml, ...)."""

    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    diffraction: DiffractionConfig = field(default_factory=DiffractionConfig)
    run: RunConfig = field(default_factory=RunConfig)
    output: SimulationOutputConfig = field(default_factory=SimulationOutputConfig)

    def __post_init__(self) -> None:
        n = self.lattice.size
        require(
            self.diffraction.lot_size <= n,
            f"diffraction.lot_size ({self.diffraction.lot_size}) is larger than the lattice ({n} x {n})",
        )
        require(
            self.encoding.cfs <= n // 2 + 1,
            f"encoding.cfs ({self.encoding.cfs}) needs vectors up to {self.encoding.cfs - 1}, "
            f"which do not fit a {n} x {n} periodic lattice",
        )
        self.targets.bounds(self.encoding.cfs**2 - 1)


@dataclass(frozen=True)
class ModelConfig:
    """The network: architecture, the CFS it predicts, the settings it decodes with (section ``model``)."""

    # small: plain conv/pool stack; wide: the same, twice the filters; large: residual; hybrid: the least squares
    # (a fixed layer) plus the small CNN's learned correction of it
    architecture: str = "small"
    cfs: int | None = None  # predict this CFS's sub-encoding of the data's labels (null: the data's own CFS)
    # the simulation config (name or path) the model records for decoding its encodings in interpret;
    # null: the first data file's. For models trained on a family of settings.
    decode_config: str | None = None

    def __post_init__(self) -> None:
        require(
            self.architecture in ARCHITECTURES,
            f"model.architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}",
        )
        require(
            self.cfs is None or (is_int(self.cfs) and self.cfs >= 2),
            f"model.cfs must be null or >= 2, got {self.cfs!r}",
        )
        require(
            self.decode_config is None or isinstance(self.decode_config, str),
            f"model.decode_config must be null or a config name or path, got {self.decode_config!r}",
        )


@dataclass(frozen=True)
class FitConfig:
    """The optimisation: epochs, batches, learning rate, split, augmentation, stops (section ``fit``)."""

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 0.001  # Adam; the other Adam settings are Keras defaults
    fine_tune_learning_rate: float = 0.0002  # with --init: small steps keep what the model knows
    validation_split: float = 0.2  # picks the best epoch (and drives early stopping)
    test_split: float = 0.1  # the hold-out: never seen in training or in choosing the epoch
    seed: int = 0  # split, shuffling and weight initialisation
    patience: int = 0  # early stopping after this many epochs without a better val_loss; 0 = off
    reduce_lr_patience: int = 5  # halve the learning rate after this many epochs without progress; 0 = off
    memory_limit_mb: int = 2048  # datasets whose images fit are read once; larger ones are streamed
    strategy: str = "none"  # tf.distribute: none, mirrored (devices of one machine), multiworker (TF_CONFIG)
    augment: bool = True  # transpose half the training images at random, with alpha(dx, dy) <-> alpha(dy, dx)

    def __post_init__(self) -> None:
        require(is_int(self.epochs) and self.epochs >= 1, f"fit.epochs must be an integer >= 1, got {self.epochs!r}")
        require(
            is_int(self.batch_size) and 1 <= self.batch_size <= 65536,
            f"fit.batch_size must be an integer in 1..65536, got {self.batch_size!r}",
        )
        require(
            is_number(self.learning_rate) and self.learning_rate > 0,
            f"fit.learning_rate must be a number > 0, got {self.learning_rate!r}",
        )
        require(
            is_number(self.fine_tune_learning_rate) and self.fine_tune_learning_rate > 0,
            f"fit.fine_tune_learning_rate must be a number > 0, got {self.fine_tune_learning_rate!r}",
        )
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            require(is_number(value) and 0 < value < 1, f"fit.{name} must be a number in (0, 1), got {value!r}")
        require(
            self.validation_split + self.test_split < 0.9,
            "fit.validation_split + fit.test_split must leave at least 10 % of the data for training",
        )
        require(is_int(self.seed) and 0 <= self.seed < 2**32, f"fit.seed must be in [0, 2**32), got {self.seed!r}")
        require(is_int(self.patience) and self.patience >= 0, f"fit.patience must be >= 0, got {self.patience!r}")
        require(
            is_int(self.reduce_lr_patience) and self.reduce_lr_patience >= 0,
            f"fit.reduce_lr_patience must be >= 0, got {self.reduce_lr_patience!r}",
        )
        require(
            self.strategy in ("none", "mirrored", "multiworker"),
            f"fit.strategy must be none, mirrored or multiworker, got {self.strategy!r}",
        )
        require(isinstance(self.augment, bool), f"fit.augment must be true or false, got {self.augment!r}")
        require(
            is_int(self.memory_limit_mb) and self.memory_limit_mb >= 0,
            f"fit.memory_limit_mb must be an integer >= 0, got {self.memory_limit_mb!r}",
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """What ``cfsx evaluate`` scores beyond the hold-out metrics (section ``evaluation``)."""

    resimulated: int = 100  # hold-out samples re-simulated for the intrinsic error and the decoded-image test
    seed: int = 1  # master seed of the re-simulations (new seeds, never those of the dataset)
    inversion_range: int = 0  # largest |v| component of the Warren-Cowley inversion; 0 = as far as the grid allows
    corrupted_flux: float = 0.0  # > 0: also score on synthetic detector images with this many counts per pixel

    def __post_init__(self) -> None:
        require(
            is_int(self.resimulated) and self.resimulated >= 0,
            f"evaluation.resimulated must be an integer >= 0, got {self.resimulated!r}",
        )
        require(
            is_int(self.seed) and 0 <= self.seed < 2**63,
            f"evaluation.seed must be an integer in [0, 2**63), got {self.seed!r}",
        )
        require(
            is_number(self.corrupted_flux) and self.corrupted_flux >= 0,
            f"evaluation.corrupted_flux must be a number >= 0, got {self.corrupted_flux!r}",
        )
        require(
            is_int(self.inversion_range) and self.inversion_range >= 0,
            f"evaluation.inversion_range must be an integer >= 0, got {self.inversion_range!r}",
        )


@dataclass(frozen=True)
class TrainingConfig(Sections):
    """Everything ``cfsx train`` and ``cfsx evaluate`` need (configs/train.yaml, ...)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


# --- cfsx correct --------------------------------------------------------------------------------------


ZERO_RULES = ("auto", "unmeasured", "values")


@dataclass(frozen=True)
class MaskConfig:
    """Which pixels are not measurements (step 1, section ``mask``)."""

    # auto: in an image of counts (docs/correction.md) zero regions at least 2 px wide that counting cannot
    # explain are gaps and every other zero is a measured value; in any other image a zero is "not measured"
    # (the usual mark in reduced data). unmeasured: every zero is masked. values: no zero is masked.
    zeros: str = "auto"
    negative: bool = True  # values < 0: the usual flag of detector gaps and dead pixels
    saturated: float | None = None  # values >= this are masked
    values: list[float] = field(default_factory=list)  # exact values to mask (for example a gap marker)
    edge: int = 0  # also mask valid pixels within this many pixels of a masked one (partly covered edge bins)
    file: str | None = None  # a mask image of the detector (--mask): its nonzero pixels are masked

    def __post_init__(self) -> None:
        require(is_int(self.edge) and self.edge >= 0, "mask.edge must be an integer >= 0")
        require(self.file is None or (isinstance(self.file, str) and self.file != ""), "mask.file must be a path")
        require(self.zeros in ZERO_RULES, f"mask.zeros must be one of {', '.join(ZERO_RULES)}, got {self.zeros!r}")
        require(isinstance(self.negative, bool), "mask.negative must be true or false")
        require(self.saturated is None or is_number(self.saturated), "mask.saturated must be a number or null")
        require(isinstance(self.values, list) and all(is_number(v) for v in self.values), "mask.values must be numbers")


@dataclass(frozen=True)
class BraggConfig:
    """How Bragg peaks are found and masked (step 2, section ``bragg``)."""

    enabled: bool = True
    # local: sharp outliers above a local median (below); tophat: white top-hat with a disk;
    # lattice: disks at integer h, k (needs a calibration)
    method: str = "local"
    radius: int = 3  # top-hat disk radius in detector pixels
    threshold: float = 5.0  # top-hat: robust standard deviations of the top-hat image
    dilate: int = 2  # grow each masked peak by this many pixels
    lattice_radius: float = 0.08  # lattice method: mask radius around integer h, k, in reciprocal lattice units
    # local and tophat: where a peak may be. lattice: its seed within lattice_radius of an integer h, k (the
    # calibration's, or the training window's when uncalibrated), so that superstructure peaks of ordered
    # crystals are kept; anywhere: for images whose axes are not known
    positions: str = "lattice"
    # A Bragg peak is no wider than the resolution (FWHM, pixels of the image: one on the training grid, where a
    # lattice's Bragg peak is one pixel); a peak whose excess one resolution + 1 pixel from its maximum is above
    # tail x its maximum's is a diffuse maximum and is kept (null: every peak found is masked)
    resolution: float = 1.0
    tail: float | None = None
    local_size: int = 15  # local: median window (pixels), wider than a Bragg peak, narrower than diffuse features
    local_threshold: float = 20.0  # local: a peak's seed stands this many robust sigmas above the local median
    local_contrast: float = 3.0  # local: ... and sqrt(I) this many times the local median's (9x the intensity)
    local_grow: float = 5.0  # local: a peak extends over connected pixels this many sigmas above the median
    # local: images with more pixels take the median of local_size blocks, interpolated between their
    # centres, as the local median (linear time) instead of the sliding median (0.65 s per 512 x 512)
    local_coarse_above: int = 256 * 256

    def __post_init__(self) -> None:
        require(isinstance(self.enabled, bool), "bragg.enabled must be true or false")
        require(
            self.method in ("local", "tophat", "lattice"),
            f"bragg.method must be local, tophat or lattice, got {self.method!r}",
        )
        for name in ("radius", "dilate", "local_size", "local_coarse_above"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"bragg.{name} >= 0")
        for name in ("threshold", "local_threshold", "local_contrast", "local_grow"):
            require(is_number(getattr(self, name)) and getattr(self, name) > 0, f"bragg.{name} must be a number > 0")
        require(is_number(self.lattice_radius) and self.lattice_radius > 0, "bragg.lattice_radius must be > 0")
        require(is_number(self.resolution) and 0 < self.resolution <= 100, "bragg.resolution: (0, 100] pixels")
        require(self.tail is None or (is_number(self.tail) and 0 < self.tail < 1), "bragg.tail: in (0, 1) or null")
        require(self.positions in ("lattice", "anywhere"), f"bragg.positions must be lattice or anywhere, got "
                 f"{self.positions!r}")  # fmt: skip


ZONE_RULES = ("all", "centre")
CENTRINGS = ("P", "I", "F", "C", "A", "B")  # of the crystal's cell: primitive, body, face, one face (C, A, B)
MAX_INDEX = 1e4  # r.l.u.: a larger centre or plane index is a typo
SYMMETRIES = ("friedel", "none", "2", "mm", "4", "4mm")


@dataclass(frozen=True)
class GeometryConfig:
    """Reciprocal-space calibration and the crystal's reciprocal lattice in the plane; without origin the whole
    image is taken as the training window h, k in [-h_max, h_max)."""

    origin: list[float] | None = None  # [row, column] pixel of h = k = 0
    pixels_per_rlu: list[float] | None = None  # [along rows (h), along columns (k)]
    rotation: float = 0.0  # degrees, of the (h, k) axes against the pixel axes
    file_axes: bool = True  # without origin: calibrate from the file's own r.l.u. axes (NeXus, Mantid MDHisto)
    # the window's centre, a reciprocal lattice point of the plane: [row, column] in the file's axes (r.l.u.),
    # or by the axes' names ({H: -2, L: 4}); null: the lattice point nearest the origin
    centre: list[float] | dict[str, float] | None = None
    # the crystal's reciprocal lattice: a centring letter (P, I, F, C, A, B; with the plane's axes) or the 2-D
    # model's two basis vectors [[row, column], [row, column]] in the file's axes. F: (H, L) both even in h0l
    lattice: str | list[list[float]] = "P"
    axes: list[str] | None = None  # the crystal axes (h, k, l) of the rows and columns; null: the file's names
    plane: float = 0.0  # the third index of the plane (l of an hk-plane); a plane of a volume sets it
    # all: every measured zone folded onto the window (equivalent points averaged, calibrated images only);
    # centre: the window around the centre only
    zones: str = "all"
    falloff_degree: int = 2  # zones: log of the falloff in |Q| as a polynomial of this degree (0: none)

    def __post_init__(self) -> None:
        require(isinstance(self.file_axes, bool), "geometry.file_axes must be true or false")
        centre = self.centre
        require(
            centre is None
            or (isinstance(centre, list) and len(centre) == 2 and all(is_number(v) for v in centre))
            or (isinstance(centre, dict) and len(centre) == 2 and all(isinstance(k, str) for k in centre)
                and all(is_number(v) for v in centre.values())),
            f"geometry.centre must be a reciprocal lattice point [row, column] or {{H: -2, L: 4}}, got {centre!r}",
        )  # fmt: skip
        values = [] if centre is None else list(centre.values() if isinstance(centre, dict) else centre)
        require(all(abs(v) <= MAX_INDEX for v in values), f"geometry.centre must be within +-{MAX_INDEX:g} r.l.u.")
        lattice = self.lattice
        require(
            (isinstance(lattice, str) and lattice in CENTRINGS)
            or (isinstance(lattice, list) and len(lattice) == 2
                and all(isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v) for v in lattice)),
            f"geometry.lattice must be P, I, F, C, A, B or two vectors [[r1, c1], [r2, c2]], got {lattice!r}",
        )  # fmt: skip
        require(
            self.axes is None
            or (isinstance(self.axes, list) and len(self.axes) == 2 and all(isinstance(a, str) for a in self.axes)),
            f"geometry.axes must be two axis names such as [h, l], got {self.axes!r}",
        )
        require(is_number(self.plane) and abs(self.plane) <= MAX_INDEX, "geometry.plane must be a number")
        require(self.zones in ZONE_RULES, f"geometry.zones must be all or centre, got {self.zones!r}")
        require(is_int(self.falloff_degree) and 0 <= self.falloff_degree <= 4, "geometry.falloff_degree must be 0..4")
        for name in ("origin", "pixels_per_rlu"):
            value = getattr(self, name)
            require(
                value is None or (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)),
                f"geometry.{name} must be [row, column] numbers or null",
            )
        require((self.origin is None) == (self.pixels_per_rlu is None), "geometry needs origin and pixels_per_rlu")
        require(self.pixels_per_rlu is None or min(self.pixels_per_rlu) > 0, "geometry.pixels_per_rlu must be > 0")
        require(is_number(self.rotation), "geometry.rotation must be a number")

    @property
    def calibrated(self) -> bool:
        return self.origin is not None


@dataclass(frozen=True)
class ReconstructionConfig:
    """Symmetry and how cells without data are filled (step 4, section ``reconstruction``)."""

    # equivalent cells averaged (and missing ones filled from measured equivalents): friedel = (-h, -k), only
    # for a plane through the origin; 2, mm, 4, 4mm: the plane group's rotations and mirrors; none
    symmetry: str = "friedel"
    friedel: bool | None = None  # old key (one release): false means symmetry none
    mirrors: bool | None = None  # old key (one release): true means symmetry mm
    inpaint: bool = True  # biharmonic inpainting of what is still missing

    def __post_init__(self) -> None:
        if is_int(self.symmetry):  # YAML and --set read 2 and 4 as numbers
            object.__setattr__(self, "symmetry", str(self.symmetry))
        require(self.symmetry in SYMMETRIES, f"reconstruction.symmetry must be one of {', '.join(SYMMETRIES)}, "
                f"got {self.symmetry!r}")  # fmt: skip
        for name in ("friedel", "mirrors"):
            require(getattr(self, name) in (None, True, False), f"reconstruction.{name} must be true or false")
        require(isinstance(self.inpaint, bool), "reconstruction.inpaint must be true or false")

    @property
    def group(self) -> str:
        """The symmetry in force: the old keys friedel and mirrors, when given, decide it as they did (mirrors only
        with friedel)."""
        if self.friedel is False:
            return "none"
        if self.mirrors:
            return "mm"
        return self.symmetry


@dataclass(frozen=True)
class BackgroundConfig:
    """Optional background subtraction and falloff division (step 5, section ``background``)."""

    subtract_percentile: float | None = None  # subtract this percentile of the image (clipped at zero)
    radial_falloff: bool = False  # divide by a fitted exp(-B (h^2 + k^2))

    def __post_init__(self) -> None:
        require(
            self.subtract_percentile is None
            or (is_number(self.subtract_percentile) and 0 <= self.subtract_percentile < 100),
            "background.subtract_percentile must be in [0, 100) or null",
        )
        require(isinstance(self.radial_falloff, bool), "background.radial_falloff must be true or false")


@dataclass(frozen=True)
class SmoothingConfig:
    """Optional smoothing on the output grid (step 6, section ``smoothing``)."""

    method: str = "none"  # gaussian, median or none
    size: float = 0.7  # Gaussian sigma or median window, in output pixels

    def __post_init__(self) -> None:
        require(self.method in ("gaussian", "median", "none"), "smoothing.method must be gaussian, median or none")
        require(is_number(self.size) and self.size >= 0, "smoothing.size must be a number >= 0")


@dataclass(frozen=True)
class CorrectionOutputConfig:
    """The training-like grid and intensity scale the image is brought to (section ``output``)."""

    image_size: int = 64
    h_max: float = 1.0
    mean: float = 0.25  # normalised mean intensity: c (1 - c) of the training data at c = 0.5
    min_measured: float = 0.1  # refuse an image that measures less than this fraction of the window's cells

    def __post_init__(self) -> None:
        require(is_number(self.min_measured) and 0 <= self.min_measured <= 1, "output.min_measured must be in [0, 1]")
        require(isinstance(self.image_size, int) and self.image_size >= 4, "output.image_size must be >= 4")
        require(is_number(self.h_max) and self.h_max > 0, "output.h_max must be > 0")
        require(is_number(self.mean) and self.mean > 0, "output.mean must be > 0")


@dataclass(frozen=True)
class CorrectionConfig(Sections):
    """Everything ``cfsx correct`` needs (configs/correct.yaml); every step switchable."""

    mask: MaskConfig = field(default_factory=MaskConfig)
    bragg: BraggConfig = field(default_factory=BraggConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    output: CorrectionOutputConfig = field(default_factory=CorrectionOutputConfig)

    def __post_init__(self) -> None:
        require(
            not (self.bragg.enabled and self.bragg.method == "lattice" and not self.geometry.calibrated),
            "bragg.method lattice needs a calibration (geometry.origin and geometry.pixels_per_rlu)",
        )


# --- cfsx interpret ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceConfig:
    """How the CNN is run: batch size and the transposed-image average (section ``inference``)."""

    batch_size: int = 256
    transpose: bool = True  # average with the transposed image's prediction (test-time augmentation)

    def __post_init__(self) -> None:
        require(is_int(self.batch_size) and self.batch_size >= 1, "inference.batch_size must be >= 1")
        require(isinstance(self.transpose, bool), "inference.transpose must be true or false")


# Decodes per image (decode.replicates, refine.seeds): each is a whole Monte Carlo run, so more than this is a typo.
MAX_SEEDS = 1000


@dataclass(frozen=True)
class DecodeConfig:
    """How many structures are decoded from each estimate, from which seed, at what composition."""

    replicates: int = 4  # decoded structures per image, each with its own seed; 0: the CNN only
    seed: int = 0
    # the concentration of the decoded (and refined) structures; null: the model's decoding config's
    concentration: float | None = None
    # the decoded structures' lattice (N x N); null: the model's decoding config's. 128 with 4 replicates gives a
    # structure image with 5 % noise (docs/interpretation.md); the model's 64 gives 9 %
    lattice_size: int | None = 128
    # the structure image: the decoded structures' correlations summed flat to image_inner lattice units, tapered
    # by a half cosine to zero at image_outer (longer ranges are mostly the finite lattice's noise)
    image_inner: float = 4.0
    image_outer: float = 10.0

    def __post_init__(self) -> None:
        require(
            is_int(self.replicates) and 0 <= self.replicates <= MAX_SEEDS,
            f"decode.replicates must be an integer in 0..{MAX_SEEDS}, got {self.replicates!r}",
        )
        require(is_int(self.seed) and self.seed >= 0, "decode.seed must be an integer >= 0")
        require(
            self.concentration is None or (is_number(self.concentration) and 0 < self.concentration < 1),
            f"decode.concentration must be null or in (0, 1), got {self.concentration!r}",
        )
        require(
            self.lattice_size is None or (is_int(self.lattice_size) and 8 <= self.lattice_size <= 1024),
            f"decode.lattice_size must be null or an integer in 8..1024, got {self.lattice_size!r}",
        )
        require(
            is_number(self.image_inner) and is_number(self.image_outer) and 0 <= self.image_inner < self.image_outer
            and self.image_outer <= 64,
            "decode.image_inner and image_outer must be numbers with 0 <= image_inner < image_outer <= 64",
        )  # fmt: skip


@dataclass(frozen=True)
class RefineConfig:
    """The refinement of an encoding against its image (``--refine``; cfsx.refinement)."""

    enabled: bool = False
    expected_iterations: int = 200
    decoded_iterations: int = 10
    seeds: int = 4  # decoded images averaged per evaluation of the refinement objective
    seed: int = 1000
    from_zero: bool = True  # also refine from zero correlations, to measure what the CNN's start is worth

    def __post_init__(self) -> None:
        require(isinstance(self.enabled, bool), "refine.enabled must be true or false")
        require(isinstance(self.from_zero, bool), "refine.from_zero must be true or false")
        for name in ("expected_iterations", "decoded_iterations", "seed"):
            require(is_int(getattr(self, name)) and getattr(self, name) >= 0, f"refine.{name} must be >= 0")
        require(
            is_int(self.seeds) and 1 <= self.seeds <= MAX_SEEDS,
            f"refine.seeds must be an integer in 1..{MAX_SEEDS}, got {self.seeds!r}",
        )


@dataclass(frozen=True)
class InterpretationOutputConfig:
    """Whether ``interpret`` draws one figure per image (section ``output``)."""

    figures: bool = True

    def __post_init__(self) -> None:
        require(isinstance(self.figures, bool), "output.figures must be true or false")


@dataclass(frozen=True)
class InterpretationConfig(Sections):
    """Everything ``cfsx interpret`` needs (configs/interpret.yaml)."""

    inference: InferenceConfig = field(default_factory=InferenceConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    output: InterpretationOutputConfig = field(default_factory=InterpretationOutputConfig)

    def __post_init__(self) -> None:
        require(
            self.decode.replicates > 0 or not self.refine.enabled,
            "refinement needs decoding: decode.replicates must be >= 1 with refine.enabled",
        )


def _section_classes(root: type) -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(root)}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a built-in config (``demo``, ``cfs4``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = BUILTIN_CONFIGS / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.suffix and builtin.is_file():
        return builtin
    available = ", ".join(sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml")))
    raise ConfigError(f"config not found: {name_or_path} (built-in configs: {available})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'section.key=value' -> (['section', 'key'], parsed YAML value)."""
    if "=" not in text:
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"override key must be section.key, got {key!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({yaml_problem(exc)})") from None
    except RecursionError:
        raise ConfigError(f"override {key!r}: the value is nested too deeply") from None
    return parts, value


def config_from_dict(data: dict[str, Any], root: type = SimulationConfig) -> Any:
    """Build and validate a config (``root``: SimulationConfig or TrainingConfig); unknown keys are errors.

    Every problem is reported at once, in one ConfigError: each unknown section or key, and each bad value
    with its key; the checks between sections run when every section is valid by itself.
    """
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of sections")
    section_classes = _section_classes(root)
    sections, problems = {}, []
    for section, values in data.items():
        if section not in section_classes:
            problems.append(f"unknown config section {section!r} (known: {', '.join(section_classes)})")
            continue
        values = {} if values is None else values
        if not isinstance(values, dict):
            problems.append(f"config section {section!r} must be a mapping")
            continue
        cls = section_classes[section]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known, key=str)
        problems += [f"unknown key {section}.{key} (known: {', '.join(sorted(known))})" for key in unknown]
        values = {key: value for key, value in values.items() if key in known}
        try:
            sections[section] = cls(**values)
        except (ConfigError, TypeError):
            problems += _section_problems(cls, section, values)
    if not problems:
        try:
            return root(**sections)
        except ConfigError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    raise ConfigError(f"{len(problems)} problems in the config: " + "; ".join(problems))


def _section_problems(cls: type, section: str, values: dict[str, Any]) -> list[str]:
    """Why a section is invalid, key by key: each value tried alone over the defaults; when every one is
    fine alone, the problem of their combination."""
    found = []
    for key, value in values.items():
        try:
            cls(**{key: value})
        except ConfigError as error:
            found.append(str(error))
        except TypeError:
            found.append(f"{section}.{key}: {value!r} is not a value it can take")
    if not found:
        try:
            cls(**values)
        except (ConfigError, TypeError) as error:
            found.append(str(error))
    return found


def load_config(
    source: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    root: type = SimulationConfig,
    **flags: Any,
) -> Any:
    """Load a YAML config (path or built-in name), apply ``--set`` overrides, then flags.

    ``flags`` are dotted keys with values, for example ``{"run.samples": 100}``; None is ignored.
    ``root`` is the config class: SimulationConfig (simulate) or TrainingConfig (train, evaluate).
    """
    data: dict[str, Any] = {}
    if source is not None:
        path = resolve_config_path(source)
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {yaml_problem(exc)}") from None
        except RecursionError:
            raise ConfigError(f"config {path} is nested too deeply to be a cfsx config") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of sections")
        data = {k: dict(v) if isinstance(v, dict) else v for k, v in (loaded or {}).items()}
    updates = [parse_override(text) for text in overrides]
    updates += [(key.split("."), value) for key, value in flags.items() if value is not None]
    for (section, key), value in updates:
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        target[key] = value
    try:
        return config_from_dict(data, root)
    except TypeError as exc:  # a value of a type the dataclass cannot take
        raise ConfigError(f"invalid config: {exc}") from None


def config_from_yaml_text(text: str) -> SimulationConfig:
    """The config stored inside a dataset or model."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"the stored simulation config is not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError("the stored simulation config is nested too deeply") from None
    return config_from_dict(data)


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong in a YAML text and where: 'line L, column C: problem'."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or error.__class__.__name__
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem + (f" ({context})" if context else "")


def annotated_yaml(config: Sections, source_text: str = "", changed: Iterable[str] = ()) -> str:
    """The resolved ``config`` as YAML with the comments of the file it came from (``source_text``).

    Keys the file does not set show their defaults; ``changed`` ("section.key") are marked as set on
    the command line."""
    comments = _yaml_comments(source_text)
    changed = set(changed)
    lines = list(comments.get(("", ""), ([], ""))[0])
    for section, values in config.to_dict().items():
        above, inline = comments.get((section, ""), ([], ""))
        lines += [*above, f"{section}:" + (f"  {inline}" if inline else "")]
        for key, value in values.items():
            above, inline = comments.get((section, key), ([], ""))
            if f"{section}.{key}" in changed:
                inline = "# set on the command line" + (f" (file: {inline.lstrip('# ')})" if inline else "")
            text = yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]  # flow style, one line
            lines += [f"  {line}" for line in above]
            lines.append(f"  {key}: {text}" + (f"  {inline}" if inline else ""))
    return "\n".join(lines) + "\n"


def _yaml_comments(text: str) -> dict[tuple[str, str], tuple[list[str], str]]:
    """(section, key) -> (the comment lines above it, its end-of-line comment); ("", "") is the file's header."""
    comments: dict[tuple[str, str], tuple[list[str], str]] = {}
    pending: list[str] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped)
            continue
        match = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*?)(?:\s+(#.*))?$", line)
        if not match:
            continue
        indent, name, _, inline = match.groups()
        if not indent:
            if not section and pending and ("", "") not in comments:
                comments[("", "")] = (pending, "")
                pending = []
            section = name
            comments[(section, "")] = (pending, inline or "")
        else:
            comments[(section, name)] = (pending, inline or "")
        pending = []
    return comments
