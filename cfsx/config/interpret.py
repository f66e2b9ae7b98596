"""The config of ``cfsx interpret`` (configs/interpret.yaml): inference, decoding, refinement and output sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from cfsx.config.base import Sections, is_int, is_number, require


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
    """The refinement of an encoding against its image (``--refine``; cfsx.interpretation.refinement)."""

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
