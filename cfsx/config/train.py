"""The config of ``cfsx train`` and ``cfsx evaluate``: model, fit and evaluation sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from cfsx.config.base import Sections, is_int, is_number, require

ARCHITECTURES = ("small", "wide", "large", "hybrid")  # models.build_model builds each


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
