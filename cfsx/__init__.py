"""cfsx: interpret X-ray diffuse scattering with CNNs trained on Monte Carlo simulations.

The functions below are the Python face of the command line, on arrays where that makes sense::

    import cfsx

    config = cfsx.load_config("demo")                          # a built-in config or a YAML file
    cfsx.simulate(config, "demo.h5")                            # images and their encodings
    cfsx.train("demo.h5", "demo.keras", cfsx.load_config("train-demo", root=cfsx.TrainingConfig))
    # or on arrays: cfsx.train(cfsx.TrainingArrays(images, labels, vectors, h_max, lot_size), "mine.keras", ...)
    report = cfsx.evaluate("demo.keras", "demo.h5", "report/")  # an EvaluationReport record
    corrected = cfsx.correct_images(raw_images)                 # measured -> training-like 64 x 64
    results = cfsx.interpret_images("general-cfs4", images)     # one Interpretation record per image
    cfsx.io.plots.interpretation(results[0])                       # a matplotlib Figure

They are imported on first use, so ``import cfsx`` is quick and loads neither TensorFlow nor a
matplotlib backend.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cfsx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> the module that defines it
_EXPORTS = {
    "load_config": "cfsx.config",
    "SimulationConfig": "cfsx.config",
    "TrainingConfig": "cfsx.config",
    "simulate": "cfsx.simulation",
    "train": "cfsx.learning.training",
    "TrainingArrays": "cfsx.learning.training_records",
    "TrainingResult": "cfsx.learning.training_records",
    "load_model": "cfsx.learning.models",
    "ModelCard": "cfsx.learning.model_card",
    "CorrectionConfig": "cfsx.config",
    "correct_image": "cfsx.correction",
    "correct_images": "cfsx.correction",
    "Correction": "cfsx.correction",
    "InterpretationConfig": "cfsx.config",
    "interpret_images": "cfsx.interpretation",
    "Interpretation": "cfsx.interpretation.results",
    "evaluate": "cfsx.learning.evaluation",
    "EvaluationReport": "cfsx.learning.evaluation_report",
    "ProgressBars": "cfsx.io.progress",
}
_SUBMODULES = {"plots": "cfsx.io.plots"}

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'cfsx' has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
