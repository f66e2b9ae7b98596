"""Every config of cfsx: simulate, train and evaluate, correct, interpret. Frozen dataclasses, one per
section of a YAML file, each validated on creation (``require``, ``is_int``, ``is_number``), loaded with
overrides by ``load_config(name_or_path, overrides, root=...)``.

Layering: dataclass defaults < YAML file < ``--set section.key=value`` < dedicated CLI flags.
The resolved configuration is written, as YAML text, into every output file."""

from cfsx.config.base import Sections, is_int, is_number, require  # noqa: F401
from cfsx.config.correct import (  # noqa: F401
    CENTRINGS,
    MAX_INDEX,
    SYMMETRIES,
    ZERO_RULES,
    ZONE_RULES,
    BackgroundConfig,
    BraggConfig,
    CorrectionConfig,
    CorrectionOutputConfig,
    GeometryConfig,
    MaskConfig,
    ReconstructionConfig,
    SmoothingConfig,
)
from cfsx.config.interpret import (  # noqa: F401
    MAX_SEEDS,
    DecodeConfig,
    InferenceConfig,
    InterpretationConfig,
    InterpretationOutputConfig,
    RefineConfig,
)
from cfsx.config.loader import (  # noqa: F401
    BUILTIN_CONFIGS,
    annotated_yaml,
    config_from_dict,
    config_from_yaml_text,
    load_config,
    parse_override,
    resolve_config_path,
    yaml_problem,
)
from cfsx.config.simulate import (  # noqa: F401
    TARGET_DISTRIBUTIONS,
    DiffractionConfig,
    EncodingConfig,
    FeedbackConfig,
    LatticeConfig,
    RunConfig,
    SimulationConfig,
    SimulationOutputConfig,
    TargetConfig,
)
from cfsx.config.train import ARCHITECTURES, EvaluationConfig, FitConfig, ModelConfig, TrainingConfig  # noqa: F401
