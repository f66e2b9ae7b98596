"""The config of ``cfsx correct`` (configs/correct.yaml): mask, Bragg peaks, geometry, reconstruction, background,
smoothing and output sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from cfsx.config.base import MAX_INDEX, Sections, is_int, is_number, require

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
        require(self.pixels_per_rlu is None or min(self.pixels_per_rlu) > 0,
                f"geometry.pixels_per_rlu must be > 0, got {self.pixels_per_rlu!r}")  # fmt: skip
        require((self.origin is None) == (self.pixels_per_rlu is None), "geometry needs origin and pixels_per_rlu")
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
        require(is_number(self.h_max) and 0 < self.h_max <= MAX_INDEX,
                f"output.h_max must be in (0, {MAX_INDEX:g}] r.l.u., got {self.h_max!r}")  # fmt: skip
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
