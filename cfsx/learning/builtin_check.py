"""The check every built-in model's card records: its MAE on a fixed sample simulated afresh (tests/test_builtin.py,
benchmarks/build_models.py). Apart from cfsx.learning.builtin, which the model loader needs without it."""

from __future__ import annotations

from pathlib import Path

# The fixed sample on which every built-in model's card records its MAE (``check_mae``): a model that
# does not reproduce it to CHECK_TOLERANCE is not the model the card describes.
CHECK_CONFIG = "general-n64-l32-k8"
CHECK_OVERRIDES = ("run.samples=16", "run.seed=2027")
CHECK_TOLERANCE = 1e-4


def check_mae(model_path: str | Path) -> float:
    """MAE of a model's encodings (as interpret makes them) on the fixed check sample, simulated afresh."""
    import tempfile

    from cfsx.config import load_config
    from cfsx.io.dataset import open_dataset
    from cfsx.learning.models import load_model, predict_encodings
    from cfsx.physics.encoding import sub_encoding, transpose_permutation
    from cfsx.simulation import simulate

    model, card = load_model(model_path)
    config = load_config(CHECK_CONFIG, list(CHECK_OVERRIDES))
    with tempfile.TemporaryDirectory() as folder:
        simulate(config, Path(folder) / "check.h5", workers=1)
        with open_dataset(Path(folder) / "check.h5") as file:
            images, labels = file.images[()], file.labels[()]
    labels = labels[:, sub_encoding(config.encoding.cfs, card.cfs)]
    permutation = transpose_permutation(card.vectors)
    predicted = predict_encodings(model, images, permutation, 256)[0]
    return float(abs(predicted - labels).mean())
