"""Scores of predicted encodings and of images: R2, MSE, MAE.

R2 of an encoding follows the usual convention (scikit-learn's default): the R2 of each
component over the samples, then their plain mean. Image R2 compares two images pixel by
pixel, 1 - sum (a - b)^2 / sum (a - mean a)^2 with ``a`` the reference image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cfsx.errors import DataError


def _pair(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if truth.shape != predicted.shape or truth.ndim != 2 or truth.shape[0] < 1:
        raise DataError(f"truth and prediction must both be (samples, D); got {truth.shape} and {predicted.shape}")
    return truth, predicted


def r2_per_component(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R2 of each column; a constant column scores 1 if predicted exactly, else 0 (as scikit-learn)."""
    truth, predicted = _pair(truth, predicted)
    residual = ((truth - predicted) ** 2).sum(axis=0)
    total = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    safe_total = np.where(total > 0, total, 1.0)
    return np.where(total > 0, 1.0 - residual / safe_total, np.where(residual == 0, 1.0, 0.0))


def regression_metrics(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Overall and per-component R2, MSE and MAE, as plain floats (JSON-ready)."""
    truth, predicted = _pair(truth, predicted)
    if len(labels) != truth.shape[1]:
        raise DataError(f"{len(labels)} labels for {truth.shape[1]} components")
    error = predicted - truth
    r2 = r2_per_component(truth, predicted)
    return {
        "samples": int(truth.shape[0]),
        "r2": float(r2.mean()),
        "mse": float((error**2).mean()),
        "mae": float(np.abs(error).mean()),
        "mean_residual": float(error.mean()),
        "per_component": {
            label: {
                "r2": float(r2[i]),
                "mse": float((error[:, i] ** 2).mean()),
                "mae": float(np.abs(error[:, i]).mean()),
                "mean_residual": float(error[:, i].mean()),
            }
            for i, label in enumerate(labels)
        },
    }


def image_r2(reference: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per-image R2 of ``images`` against ``reference`` (both (S, M, M) or (M, M))."""
    reference = np.asarray(reference, dtype=np.float64)
    images = np.asarray(images, dtype=np.float64)
    if reference.shape != images.shape or reference.ndim not in (2, 3):
        raise DataError(f"image shapes differ: {reference.shape} and {images.shape}")
    axes = (-2, -1)
    residual = ((reference - images) ** 2).sum(axis=axes)
    total = ((reference - reference.mean(axis=axes, keepdims=True)) ** 2).sum(axis=axes)
    return 1.0 - residual / np.where(total > 0, total, np.nan)


def scaled_image_r2(reference: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image R2 of ``reference`` against ``scale * images``, with the least-squares scale of each
    image, and that scale: for observations in arbitrary units (both (S, M, M) or (M, M))."""
    reference = np.asarray(reference, dtype=np.float64)
    images = np.asarray(images, dtype=np.float64)
    if reference.shape != images.shape or reference.ndim not in (2, 3):
        raise DataError(f"image shapes differ: {reference.shape} and {images.shape}")
    power = (images * images).sum(axis=(-2, -1))
    scale = (reference * images).sum(axis=(-2, -1)) / np.where(power > 0, power, 1.0)
    return image_r2(reference, images * scale[..., None, None]), scale


def image_mse(reference: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per-image mean squared difference."""
    reference = np.asarray(reference, dtype=np.float64)
    images = np.asarray(images, dtype=np.float64)
    if reference.shape != images.shape:
        raise DataError(f"image shapes differ: {reference.shape} and {images.shape}")
    return ((reference - images) ** 2).mean(axis=(-2, -1))


def summary(values: np.ndarray) -> dict[str, float]:
    """Mean, median and the 10th/90th percentiles of a set of scores (NaN ignored)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"count": 0}
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
    }
