"""The generalisation benchmark's estimators and corrections (benchmarks/generalisation.py, multizone.py).

``Model``: a .keras model with its provenance, predicting as ``cfsx interpret`` does (the transposed-image average);
``Inversions``: the Warren-Cowley least squares per CFS and lot size; ``correct_all``: ``cfsx correct`` on batches
of images in worker processes; ``score``: MAE and mean R2 of estimates against the true alpha.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from harness import correction_config, file_sha256


class Model:
    """A loaded model with its provenance."""

    def __init__(self, path: Path, names: set[str]):
        from cfsx.learning.models import load_model
        from cfsx.physics.encoding import transpose_permutation

        self.path = Path(path)
        self.network, card = load_model(path)
        self.metadata = card.metadata
        self.cfs = int(self.metadata["cfs"])
        self.vectors = np.asarray(self.metadata["vectors"])
        self.permutation = transpose_permutation(self.vectors)
        name = f"CNN-CFS{self.cfs}"
        self.name = name if name not in names else f"{name} ({self.path.stem})"
        test = self.metadata.get("metrics", {}).get("test", {})
        training = self.metadata.get("training", {})
        self.provenance = {
            "path": str(path),
            "sha256": file_sha256(self.path),
            "cfs": self.cfs,
            "created": self.metadata.get("created"),
            "holdout_r2": test.get("r2"),
            "holdout_mae": test.get("mae"),
            "holdout_samples": test.get("samples"),
            "epochs_run": training.get("epochs_run"),
            "best_epoch": training.get("best_epoch"),
            "data": training.get("data"),
            "lot_size": self.metadata.get("lot_size"),
        }

    def predict(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        from cfsx.learning.models import predict_encodings

        return predict_encodings(self.network, images.astype(np.float32), self.permutation, batch_size)[0]


# --- corrections (in worker processes) -------------------------------------------------------------


def correct_chunk(job: tuple) -> tuple[np.ndarray, int, list]:
    """``cfsx correct`` on each image: (images, per-image overrides, masks or None) -> (images, failures,
    each image's ImageFacts (what the final answer knows of it; not corrected for a refused one)).

    An image the correction refuses (too little measured) becomes NaN and is counted.
    """
    from cfsx.correction import correct_image
    from cfsx.errors import CfsxError
    from cfsx.interpretation.estimates import ImageFacts

    images, overrides, masks = job
    out, failures, facts = np.full((len(images), 64, 64), np.nan), 0, [ImageFacts(False)] * len(images)
    for index, image in enumerate(images):
        extra = None if masks is None else masks[index] > 0
        try:
            corrected = correct_image(image, correction_config(tuple(overrides[index])), extra_mask=extra)
        except CfsxError:
            failures += 1
            continue
        out[index] = corrected.image
        facts[index] = ImageFacts.of(corrected.correction_record({}), corrected.mask, corrected.image,
                                     corrected.variance, 1.0)  # fmt: skip
    return out, failures, facts


def detector_overrides(pixels_per_rlu: float, origin) -> list[str]:
    """The calibration of a render (cfsx.simulation.detector.Detector.correction_overrides' recipe)."""
    return [
        f"geometry.origin=[{int(origin[0])}, {int(origin[1])}]",
        f"geometry.pixels_per_rlu=[{pixels_per_rlu}, {pixels_per_rlu}]",
        "bragg.method=lattice",
        "mask.zeros=values",
    ]


def correct_all(pool, jobs: dict[str, tuple]) -> dict[str, tuple[np.ndarray, int, int]]:
    """Run the named correction jobs in chunks of ``CHUNK`` images on the pool (or here)."""
    chunk = 25
    pieces = {}
    for name, (images, overrides, masks) in jobs.items():
        for start in range(0, len(images), chunk):
            part = slice(start, start + chunk)
            piece = (images[part], overrides[part], None if masks is None else masks[part])
            pieces[(name, start)] = pool.submit(correct_chunk, piece) if pool else piece
    results: dict[str, list] = {name: [] for name in jobs}
    for (name, _), future in pieces.items():
        results[name].append(future.result() if pool else correct_chunk(future))
    return {
        name: (
            np.concatenate([part[0] for part in parts]),
            sum(part[1] for part in parts),
            [fact for part in parts for fact in part[2]],
        )
        for name, parts in results.items()
    }


# --- scoring --------------------------------------------------------------------------------------


def score(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """MAE and mean R2 over components; non-finite predictions count as 0 (no correlation) and are counted."""
    from cfsx.physics.metrics import r2_per_component

    finite = np.isfinite(predicted).all(axis=1)
    predicted = np.where(np.isfinite(predicted), predicted, 0.0)
    return {
        "mae": float(np.abs(predicted - truth).mean()),
        "r2": float(r2_per_component(truth, predicted).mean()),
        "n": int(len(truth)),
        "nonfinite": int((~finite).sum()),
    }


class Inversions:
    """WarrenCowleyInversion per (CFS, lot size), built once."""

    def __init__(self):
        self.cache = {}

    def __call__(self, cfs: int, lot_size: int, images: np.ndarray) -> np.ndarray:
        from cfsx.physics.encoding import cfs_vectors
        from cfsx.physics.inversion import WarrenCowleyInversion

        key = (cfs, lot_size)
        if key not in self.cache:
            self.cache[key] = WarrenCowleyInversion(cfs_vectors(cfs), 64, 1.0, lot_size)
        with np.errstate(all="ignore"):
            return self.cache[key](images)
