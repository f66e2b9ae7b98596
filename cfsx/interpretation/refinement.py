"""Refine an encoding against an observed image, in two stages.

1. Expected intensity: the Warren-Cowley image of the encoding (with the Fejer window of the
   lots, the encoding's vectors only) is fitted to the observed image with a free scale, by
   bounded L-BFGS-B; fast and smooth, but blind to the correlations that the Monte Carlo
   structure develops at vectors outside the encoding.
2. Decoded image: the encoding is decoded by the engine (fixed seeds, so the objective is
   deterministic) and moved by damped Gauss-Newton steps, using the Warren-Cowley Jacobian,
   towards the encoding whose decoded image matches the observation best.

The misfit is 1 - R2 of the observed image against the model image times its least-squares
scale. The best encoding seen (the start included) is returned, so refinement never makes the
decoded misfit worse than the start's on the refinement's own seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from cfsx.physics.inversion import cosine_design
from cfsx.physics.metrics import scaled_image_r2

DecodeImages = Callable[[np.ndarray], np.ndarray]  # encoding (D,) -> decoded images (seeds, M, M)


def scaled_r2(observed: np.ndarray, model: np.ndarray) -> tuple[float, float]:
    """R2 of ``observed`` against ``scale * model`` with the least-squares scale, and that scale."""
    r2, scale = scaled_image_r2(observed, model)
    return float(r2), float(scale)


class ExpectedIntensity:
    """The expected image c (1 - c) (1 + sum_v w(v) 2 alpha(v) cos 2 pi (h v_x + k v_y)) of an encoding."""

    def __init__(self, vectors: np.ndarray, image_size: int, h_max: float, lot_size: int, concentration: float):
        self.design = cosine_design(vectors, image_size, h_max, lot_size)  # (M*M, D)
        self.variance = concentration * (1.0 - concentration)
        self.shape = (image_size, image_size)

    def __call__(self, encoding: np.ndarray) -> np.ndarray:
        return (self.variance * (1.0 + self.design @ np.asarray(encoding, dtype=np.float64))).reshape(self.shape)

    def fit(self, observed: np.ndarray, start: np.ndarray, low: np.ndarray, high: np.ndarray, iterations: int):
        """The bounded encoding whose expected image (free scale) fits ``observed`` best, from ``start``."""
        from scipy.optimize import minimize

        target = np.asarray(observed, dtype=np.float64).ravel()
        target = target / (np.sqrt(np.mean(target**2)) or 1.0)  # the misfit is scale-free; condition it

        def misfit(encoding: np.ndarray) -> tuple[float, np.ndarray]:
            # Variable projection: the scale s = <o, b> / <b, b> is optimal for every b = 1 + A alpha.
            basis = 1.0 + self.design @ encoding
            overlap, power = float(target @ basis), float(basis @ basis)
            value = float(target @ target) - overlap**2 / power
            gradient_basis = -2.0 * overlap / power * target + 2.0 * overlap**2 / power**2 * basis
            return value / target.size, self.design.T @ gradient_basis / target.size

        result = minimize(
            misfit,
            np.clip(start, low, high),
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(low, high, strict=True)),
            options={"maxiter": iterations},
        )
        return result.x


@dataclass
class Stage:
    """One point of a refinement: its encoding and how well it explains the image."""

    name: str  # "start", "expected" or "decoded"
    encoding: np.ndarray  # (D,)
    expected_r2: float
    decoded_r2: float
    decoded_image: np.ndarray | None = field(default=None, repr=False)  # (M, M) mean over the seeds; not kept


@dataclass
class Refinement:
    """One refinement's stages (start, expected-intensity fit, best decoded) and its cost."""

    start: Stage
    expected: Stage
    refined: Stage
    decoded_evaluations: int
    seconds: float
    history: list[float] = field(default_factory=list)  # best decoded R2 after each Gauss-Newton trial

    def without_images(self) -> Refinement:
        """The record as results keep it: the stages without their decoded images."""
        bare = [replace(stage, decoded_image=None) for stage in (self.start, self.expected, self.refined)]
        return replace(self, start=bare[0], expected=bare[1], refined=bare[2])


def refine(
    observed: np.ndarray,
    start: np.ndarray,
    expected: ExpectedIntensity,
    decode_images: DecodeImages,
    bounds: tuple[np.ndarray, np.ndarray],
    iterations: tuple[int, int] = (200, 10),
) -> Refinement:
    """Refine ``start`` within ``bounds`` (low, high) (module docstring); ``decode_images`` decodes one encoding
    with fixed seeds; ``iterations``: at most this many of the expected-intensity fit, then of the decoded one."""
    low, high = bounds
    expected_iterations, decoded_iterations = iterations
    began = time.perf_counter()
    observed = np.asarray(observed, dtype=np.float64)
    evaluations = 0

    def stage(name: str, encoding: np.ndarray) -> Stage:
        nonlocal evaluations
        evaluations += 1
        decoded = decode_images(encoding).mean(axis=0)
        expected_r2 = scaled_r2(observed, expected(encoding))[0]
        return Stage(name, np.asarray(encoding, np.float64), expected_r2, scaled_r2(observed, decoded)[0], decoded)

    first = stage("start", start)
    after_expected = stage("expected", expected.fit(observed, start, low, high, expected_iterations))
    best = max((first, after_expected), key=lambda s: s.decoded_r2)
    history = [best.decoded_r2]
    damping = 1.0
    jacobian = expected.variance * expected.design
    for _ in range(decoded_iterations):
        _, scale = scaled_r2(observed, best.decoded_image)
        if scale <= 0:
            break
        residual = (observed / scale - best.decoded_image).ravel()
        step = np.linalg.lstsq(jacobian, residual, rcond=None)[0]
        trial = stage("decoded", np.clip(best.encoding + damping * step, low, high))
        if trial.decoded_r2 > best.decoded_r2:
            best = trial
            damping = min(1.0, 2.0 * damping)
        else:
            damping /= 2.0
        history.append(best.decoded_r2)
    return Refinement(first, after_expected, best, evaluations, time.perf_counter() - began, history).without_images()
