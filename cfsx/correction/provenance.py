"""What each correction step did, as one small record per step kind (``Step`` and its kinds), and the correction
record an interpretation carries (``CorrectionRecord``: the config and the steps).

In files and results.json a step is a flat JSON object named by its ``step`` (docs/format.md "Corrected images"):
``to_plain`` writes it, ``step_of`` reads it back into its kind's record. Each record names the entries cfsx reads
again; the step's settings and whatever else it reported stay in ``details``. An entry read from a file is written
back as it was: the same keys in the same order, a null kept null, nothing added (an entry of an unknown kind too).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cfsx.io import records

STEP_KINDS: dict[str, type[Step]] = {}  # each kind of step by its name (filled as the kinds are defined)


@dataclass(kw_only=True)
class Step:
    """One entry of a correction's provenance."""

    KIND: ClassVar[str] = ""
    details: dict[str, Any] = field(default_factory=dict)  # the step's settings and what else it reported
    read_keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # an entry read back: its keys, in order

    def __init_subclass__(cls, **options: Any) -> None:
        """A kind is known by its KIND as soon as it is defined (a new step's record is read back from files); a
        subclass without a KIND of its own, or one that another class has, is refused."""
        super().__init_subclass__(**options)
        known = STEP_KINDS.get(cls.KIND)
        if "KIND" not in cls.__dict__ or not cls.KIND:
            raise TypeError(f"{cls.__name__} needs a KIND of its own: the step's name in files")
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"the step kind {cls.KIND!r} is {known.__qualname__} already")
        STEP_KINDS[cls.KIND] = cls

    @property
    def kind(self) -> str:
        """The step's name (an entry of a kind this cfsx does not know keeps its own)."""
        return self.KIND or str(self.details.get("step", ""))

    def to_plain(self) -> dict[str, Any]:
        """The entry as files keep it: ``step``, the named entries that are set, then the details; an entry read
        back keeps its keys and their order (a null stays null) and gains only entries set since."""
        named = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)
                 if item.name not in ("details", "read_keys")}  # fmt: skip
        values = {**named, **{key: value for key, value in self.details.items() if key != "step"}}
        defaults = {item.name: _default(item) for item in dataclasses.fields(self)}
        kept = [key for key in self.read_keys if key in values]
        added = [key for key in values if key not in self.read_keys and (key in self.details or (
            values[key] is not None and not (self.read_keys and values[key] == defaults[key])))]  # fmt: skip
        plain = {"step": self.kind} if (not self.read_keys or "step" in self.read_keys) else {}
        return {**plain, **{key: records.to_plain(values[key]) for key in [*kept, *added]}}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> Step:
        """The record of an entry ``to_plain`` (or an earlier cfsx) wrote; of its kind when the kind is known."""
        kind = STEP_KINDS.get(str(plain.get("step")), Step)
        names = {item.name for item in dataclasses.fields(kind)} - {"details", "read_keys"}
        details = {key: value for key, value in plain.items() if key not in names and (key != "step" or kind is Step)}
        return kind(**{key: value for key, value in plain.items() if key in names}, details=details,
                    read_keys=tuple(plain))  # fmt: skip


@dataclass(kw_only=True)
class InputStep(Step):
    """The image as given."""

    KIND: ClassVar[str] = "input"
    shape: list[int] | None = None


@dataclass(kw_only=True)
class ReadStep(Step):
    """The file it was read from; the reader's findings (format, axes, frames) in ``details``."""

    KIND: ClassVar[str] = "read"
    source: str | None = None


@dataclass(kw_only=True)
class MaskStep(Step):
    """Invalid pixels masked; the mask settings in ``details``."""

    KIND: ClassVar[str] = "mask"
    masked_pixels: int = 0


@dataclass(kw_only=True)
class BraggStep(Step):
    """Bragg peaks found and masked; the settings in ``details``."""

    KIND: ClassVar[str] = "bragg"
    peaks: int = 0
    peak_pixels: int = 0
    diffuse_maxima_kept: int | None = None


@dataclass(kw_only=True)
class ResampleStep(Step):
    """The image put on the training grid: by area average, or by the fold of every measured zone."""

    KIND: ClassVar[str] = "resample"
    method: str | None = None
    calibrated: bool = True
    geometry: dict[str, Any] | None = None  # the geometry config
    window: dict[str, Any] | None = None  # the calibrated window: centre, axes, basis, lattice, through_origin
    noise_model: str | None = None
    empty_cells: int | None = None


@dataclass(kw_only=True)
class ZonesStep(Step):
    """What the fold found per zone and across zones (cfsx.correction.zone_fit)."""

    KIND: ClassVar[str] = "zones"
    noise_model: str | None = None
    consistency: list[dict[str, Any]] = field(default_factory=list)  # per G: its cross-zone consistency
    per_zone: list[dict[str, Any]] = field(default_factory=list)  # per zone: its agreement and weight


@dataclass(kw_only=True)
class SymmetryStep(Step):
    """Symmetry-equivalent cells averaged and missing ones filled, or why it was skipped."""

    KIND: ClassVar[str] = "symmetry"
    symmetry: str = "none"
    skipped: str | None = None
    filled_cells: int | None = None
    chi2: float | None = None  # of symmetry-equivalent cells against their mean


@dataclass(kw_only=True)
class InpaintStep(Step):
    """Cells with no measurement and no symmetry mate filled (biharmonic inpainting)."""

    KIND: ClassVar[str] = "inpaint"
    method: str = "biharmonic"
    cells: int = 0


@dataclass(kw_only=True)
class FillStep(Step):
    """Cells with no measurement and no symmetry mate set to the mean (inpainting off)."""

    KIND: ClassVar[str] = "fill"
    method: str = "mean"
    cells: int = 0


@dataclass(kw_only=True)
class BackgroundStep(Step):
    """A percentile of the image subtracted."""

    KIND: ClassVar[str] = "background"
    percentile: float | None = None
    subtracted: float | None = None


@dataclass(kw_only=True)
class FalloffStep(Step):
    """A radial exp(-B q^2) falloff divided out."""

    KIND: ClassVar[str] = "falloff"
    model: str = "exp(-B q^2)"
    B: float | None = None  # noqa: N815 (the Debye-Waller factor's usual name)


@dataclass(kw_only=True)
class SmoothingStep(Step):
    """The smoothing settings (method none: nothing done)."""

    KIND: ClassVar[str] = "smoothing"
    method: str = "none"
    size: float | None = None


@dataclass(kw_only=True)
class NormaliseStep(Step):
    """The image scaled to the training mean, or histogram-matched to reference images."""

    KIND: ClassVar[str] = "normalise"
    method: str = "mean"
    mean: float | None = None
    factor: float | None = None


def _default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    return item.default_factory() if item.default_factory is not dataclasses.MISSING else None


def step_of(plain: dict[str, Any]) -> Step:
    """The record of one provenance entry as files keep it."""
    return Step.from_plain(plain)


def find_step(steps: list[Step], kind: type[Step] | str) -> Any:
    """The first step of ``kind`` (a Step kind, or its name: "zones") in ``steps``, None when it did not run."""
    name = kind if isinstance(kind, str) else kind.KIND
    return next((step for step in steps if step.kind == name), None)


@dataclass
class CorrectionRecord:
    """How ``cfsx correct`` made an image: the correction config and what each step did."""

    config: dict[str, Any]
    steps: list[Step]

    def step(self, kind: type[Step] | str) -> Any:
        """The first step of ``kind`` (or of that name), None when it did not run."""
        return find_step(self.steps, kind)

    def to_plain(self) -> dict[str, Any]:
        """As results.json and results.h5 keep it: {"config": ..., "steps": [entries]}."""
        return {"config": records.to_plain(self.config), "steps": [step.to_plain() for step in self.steps]}

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> CorrectionRecord:
        return cls(dict(plain.get("config") or {}), [step_of(entry) for entry in plain.get("steps", [])])
