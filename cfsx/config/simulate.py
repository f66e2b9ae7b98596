"""The config of ``cfsx simulate``: encoding, lattice, targets, feedback, diffraction, run and output sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from cfsx.config.base import MAX_INDEX, Sections, is_int, is_number, require


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
    # shrinks when it flips (cfsx.physics.engine.ADAPTIVE_GAIN_*), starting from gain.
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
        require(is_number(self.h_max) and 0 < self.h_max <= MAX_INDEX,
                f"diffraction.h_max must be in (0, {MAX_INDEX:g}] r.l.u., got {self.h_max!r}")  # fmt: skip
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
