"""Configuration of simulation and training: frozen dataclasses, loaded from YAML with overrides.

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


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
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
        _require(
            _is_int(self.cfs) and 2 <= self.cfs <= 8,
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
        _require(
            _is_int(self.size) and 2 <= self.size <= 4096,
            f"lattice.size must be an integer in 2..4096, got {self.size!r}",
        )
        _require(
            _is_number(self.concentration) and 0.0 < self.concentration < 1.0,
            f"lattice.concentration must be in (0, 1), got {self.concentration!r}",
        )
        span = self.concentration_range
        _require(
            span is None or (isinstance(span, list) and len(span) == 2 and all(_is_number(v) for v in span)
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
        _require(
            self.distribution in TARGET_DISTRIBUTIONS,
            f"targets.distribution must be one of {', '.join(TARGET_DISTRIBUTIONS)}, got {self.distribution!r}",
        )
        for name in ("low", "high"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            _require(
                len(values) > 0 and all(_is_number(v) and -1.0 <= v <= 1.0 for v in values),
                f"targets.{name} must be a number or a list of numbers in [-1, 1], got {value!r}",
            )
        scale = self.coupling_range
        _require(
            isinstance(scale, list) and len(scale) == 2 and all(_is_number(v) for v in scale)
            and 0 < scale[0] <= scale[1] <= 50,
            f"targets.coupling_range must be [low, high] with 0 < low <= high <= 50, got {scale!r}",
        )  # fmt: skip
        _require(
            _is_int(self.sweeps) and 1 <= self.sweeps <= 100_000,
            f"targets.sweeps must be an integer in 1..100000, got {self.sweeps!r}",
        )

    def bounds(self, n_components: int) -> tuple[list[float], list[float]]:
        """Per-component (low, high), checked against the encoding size."""
        result = []
        for name in ("low", "high"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value] * n_components
            _require(
                len(values) == n_components,
                f"targets.{name} has {len(values)} values but the encoding has {n_components} components",
            )
            result.append([float(v) for v in values])
        low, high = result
        _require(all(lo <= hi for lo, hi in zip(low, high, strict=True)), "targets.low must not exceed targets.high")
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
        _require(
            _is_number(self.gain) and 0 < self.gain <= 10,
            f"feedback.gain must be in (0, 10], got {self.gain!r}",
        )
        _require(
            _is_int(self.sweeps_per_cycle) and 1 <= self.sweeps_per_cycle <= 100_000,
            f"feedback.sweeps_per_cycle must be an integer in 1..100000, got {self.sweeps_per_cycle!r}",
        )
        _require(
            _is_number(self.tolerance) and 0 <= self.tolerance <= 2,
            f"feedback.tolerance must be in [0, 2], got {self.tolerance!r}",
        )
        _require(
            _is_int(self.max_cycles) and 1 <= self.max_cycles <= 100_000,
            f"feedback.max_cycles must be an integer in 1..100000, got {self.max_cycles!r}",
        )
        _require(
            _is_number(self.coupling_bound) and 0 < self.coupling_bound <= 50,
            f"feedback.coupling_bound must be in (0, 50], got {self.coupling_bound!r}",
        )
        _require(
            _is_int(self.stall_cycles) and 0 <= self.stall_cycles <= 100_000,
            f"feedback.stall_cycles must be an integer in 0..100000, got {self.stall_cycles!r}",
        )
        _require(self.update in ("gain", "adaptive"), f"feedback.update must be gain or adaptive, got {self.update!r}")
        _require(
            _is_number(self.noise_tolerance) and 0 <= self.noise_tolerance <= 100,
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
        _require(
            _is_int(self.image_size) and 2 <= self.image_size <= 2048,
            f"diffraction.image_size must be an integer in 2..2048, got {self.image_size!r}",
        )
        _require(_is_number(self.h_max) and self.h_max > 0, f"diffraction.h_max must be > 0, got {self.h_max!r}")
        _require(
            self.n_lots == "all" or (_is_int(self.n_lots) and 1 <= self.n_lots <= 100_000),
            f"diffraction.n_lots must be an integer >= 1 or 'all', got {self.n_lots!r}",
        )
        _require(
            _is_int(self.lot_size) and self.lot_size >= 1,
            f"diffraction.lot_size must be an integer >= 1, got {self.lot_size!r}",
        )


@dataclass(frozen=True)
class RunConfig:
    """How many samples, from which master seed, in batches of what size (section ``run``)."""

    samples: int = 5000
    seed: int = 0  # master seed: sample i gets its own seed derived from (seed, i)
    batch_size: int = 16  # samples per task and per checkpoint file

    def __post_init__(self) -> None:
        _require(
            _is_int(self.samples) and self.samples >= 1,
            f"run.samples must be an integer >= 1, got {self.samples!r}",
        )
        _require(
            _is_int(self.seed) and 0 <= self.seed < 2**63,
            f"run.seed must be an integer in [0, 2**63), got {self.seed!r}",
        )
        _require(
            _is_int(self.batch_size) and 1 <= self.batch_size <= 4096,
            f"run.batch_size must be an integer in 1..4096, got {self.batch_size!r}",
        )


@dataclass(frozen=True)
class OutputConfig:
    """What a dataset file keeps and how it is compressed (section ``output``)."""

    store_lattices: bool = True
    compression: int = 4  # gzip level, 0 for none

    def __post_init__(self) -> None:
        _require(
            isinstance(self.store_lattices, bool),
            f"output.store_lattices must be true or false, got {self.store_lattices!r}",
        )
        _require(
            _is_int(self.compression) and 0 <= self.compression <= 9,
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
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        n = self.lattice.size
        _require(
            self.diffraction.lot_size <= n,
            f"diffraction.lot_size ({self.diffraction.lot_size}) is larger than the lattice ({n} x {n})",
        )
        _require(
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
        _require(
            self.architecture in ARCHITECTURES,
            f"model.architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}",
        )
        _require(
            self.cfs is None or (_is_int(self.cfs) and self.cfs >= 2),
            f"model.cfs must be null or >= 2, got {self.cfs!r}",
        )
        _require(
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
        _require(_is_int(self.epochs) and self.epochs >= 1, f"fit.epochs must be an integer >= 1, got {self.epochs!r}")
        _require(
            _is_int(self.batch_size) and 1 <= self.batch_size <= 65536,
            f"fit.batch_size must be an integer in 1..65536, got {self.batch_size!r}",
        )
        _require(
            _is_number(self.learning_rate) and self.learning_rate > 0,
            f"fit.learning_rate must be a number > 0, got {self.learning_rate!r}",
        )
        _require(
            _is_number(self.fine_tune_learning_rate) and self.fine_tune_learning_rate > 0,
            f"fit.fine_tune_learning_rate must be a number > 0, got {self.fine_tune_learning_rate!r}",
        )
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            _require(_is_number(value) and 0 < value < 1, f"fit.{name} must be a number in (0, 1), got {value!r}")
        _require(
            self.validation_split + self.test_split < 0.9,
            "fit.validation_split + fit.test_split must leave at least 10 % of the data for training",
        )
        _require(_is_int(self.seed) and 0 <= self.seed < 2**32, f"fit.seed must be in [0, 2**32), got {self.seed!r}")
        _require(_is_int(self.patience) and self.patience >= 0, f"fit.patience must be >= 0, got {self.patience!r}")
        _require(
            _is_int(self.reduce_lr_patience) and self.reduce_lr_patience >= 0,
            f"fit.reduce_lr_patience must be >= 0, got {self.reduce_lr_patience!r}",
        )
        _require(
            self.strategy in ("none", "mirrored", "multiworker"),
            f"fit.strategy must be none, mirrored or multiworker, got {self.strategy!r}",
        )
        _require(isinstance(self.augment, bool), f"fit.augment must be true or false, got {self.augment!r}")
        _require(
            _is_int(self.memory_limit_mb) and self.memory_limit_mb >= 0,
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
        _require(
            _is_int(self.resimulated) and self.resimulated >= 0,
            f"evaluation.resimulated must be an integer >= 0, got {self.resimulated!r}",
        )
        _require(
            _is_int(self.seed) and 0 <= self.seed < 2**63,
            f"evaluation.seed must be an integer in [0, 2**63), got {self.seed!r}",
        )
        _require(
            _is_number(self.corrupted_flux) and self.corrupted_flux >= 0,
            f"evaluation.corrupted_flux must be a number >= 0, got {self.corrupted_flux!r}",
        )
        _require(
            _is_int(self.inversion_range) and self.inversion_range >= 0,
            f"evaluation.inversion_range must be an integer >= 0, got {self.inversion_range!r}",
        )


@dataclass(frozen=True)
class TrainingConfig(Sections):
    """Everything ``cfsx train`` and ``cfsx evaluate`` need (configs/train.yaml, ...)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


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
    """Build and validate a config (``root``: SimulationConfig or TrainingConfig); unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of sections")
    section_classes = _section_classes(root)
    sections = {}
    for section, values in data.items():
        if section not in section_classes:
            raise ConfigError(f"unknown config section {section!r} (known: {', '.join(section_classes)})")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        cls = section_classes[section]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown key {section}.{sorted(unknown)[0]} (known: {', '.join(sorted(known))})")
        sections[section] = cls(**values)
    return root(**sections)


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
