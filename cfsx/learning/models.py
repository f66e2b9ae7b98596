"""The CNNs that map an image to its CFS encoding, and the one-file model format.

Both architectures take an (M, M) intensity image and return the D correlations. The
preprocessing lives inside the model (layer ``RelativeLogIntensity``): the image is divided
by its own mean, so any positive scale factor cancels, and then log-compressed. A saved
model is one ``.keras`` file; its cfsx metadata (encoding, image grid, simulation config,
training run, hold-out indices and metrics) is an extra JSON entry in the same zip archive,
which Keras ignores, so loading stays in Keras' safe mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cfsx.config import ARCHITECTURES
from cfsx.errors import DataError
from cfsx.io.outputs import atomic_path
from cfsx.learning._tensorflow import keras, layers, ops
from cfsx.learning.builtin import resolve_model
from cfsx.learning.model_card import (
    METADATA_ENTRY,
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    ModelCard,
    one_line,
    read_model_card,
)


@keras.saving.register_keras_serializable(package="cfsx")
class RelativeLogIntensity(keras.layers.Layer):
    """log(max(I / mean(I), 0) + floor): invariant to the image's scale, dynamic range compressed."""

    def __init__(self, floor: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, images):
        mean = ops.mean(images, axis=(1, 2), keepdims=True)
        relative = images / ops.maximum(mean, 1e-30)
        return ops.log(ops.maximum(relative, 0.0) + self.floor)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "floor": self.floor}


@keras.saving.register_keras_serializable(package="cfsx")
class WarrenCowleyEstimate(keras.layers.Layer):
    """The classical least squares (cfsx.physics.inversion, no lot window) as a fixed layer: alpha = g(v) / g(0), each g
    a fixed linear map of the image. Rebuilt from its config (vectors, grid) when loaded: no weights are stored."""

    def __init__(self, vectors: list, image_size: int, h_max: float, **kwargs: Any) -> None:
        from cfsx.physics.inversion import NO_WINDOW, WarrenCowleyInversion

        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.vectors, self.image_size, self.h_max = [list(map(int, v)) for v in vectors], int(image_size), float(h_max)
        solve = WarrenCowleyInversion(self.vectors, self.image_size, self.h_max, NO_WINDOW)._solve
        self.solve = ops.convert_to_tensor(solve.T.astype("float32"))  # (M*M, 1 + D)

    def call(self, images):
        flat = ops.reshape(images, (-1, self.image_size * self.image_size))
        flat = flat / ops.maximum(ops.mean(flat, axis=1, keepdims=True), 1e-30)  # scale-free, as the CNN's input
        fitted = ops.matmul(flat, self.solve)
        return ops.clip(fitted[:, 1:] / ops.maximum(fitted[:, :1], 1e-6), -1.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vectors": self.vectors, "image_size": self.image_size, "h_max": self.h_max}


def _small_body(features, n_outputs: int, width: int = 1):
    """Plain convolution/pooling stack with Keras default initialisation and a dense head (``width``: filter
    and unit multiplier; 2 is the wide model)."""
    for filters in (16, 32, 64, 64):
        features = layers.Conv2D(width * filters, 3, padding="same", activation="relu")(features)
        features = layers.MaxPooling2D(2)(features)
    features = layers.Flatten()(features)
    features = layers.Dense(width * 128, activation="relu")(features)
    return layers.Dense(n_outputs, name="encoding")(features)


def _residual_block(features, filters: int, stride: int):
    """conv-BN-ReLU-conv-BN plus a (projected when the shape changes) skip connection."""
    shortcut = features
    if stride != 1 or features.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, kernel_initializer="he_normal")(features)
        shortcut = layers.BatchNormalization()(shortcut)
    features = layers.Conv2D(
        filters, 3, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal"
    )(features)
    features = layers.BatchNormalization()(features)
    features = layers.Activation("relu")(features)
    features = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(features)
    features = layers.BatchNormalization()(features)
    return layers.Activation("relu")(layers.Add()([features, shortcut]))


def _large_body(features, n_outputs: int):
    """Residual network: He-normal initialisation, batch normalisation, skip connections."""
    features = layers.Conv2D(32, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(features)
    features = layers.BatchNormalization()(features)
    features = layers.Activation("relu")(features)
    for filters, stride in ((32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        features = _residual_block(features, filters, stride)
    features = layers.GlobalAveragePooling2D()(features)
    features = layers.Dense(128, activation="relu", kernel_initializer="he_normal")(features)
    return layers.Dense(n_outputs, name="encoding")(features)


def _hybrid(images, features, n_outputs: int, vectors: list | None, image_size: int, h_max: float):
    """The Warren-Cowley least squares plus the small CNN's correction of it (zero at the start)."""
    if vectors is None or len(vectors) != n_outputs:
        raise DataError("the hybrid architecture needs the encoding's vectors")
    vectors = [list(map(int, v)) for v in vectors]
    estimate = WarrenCowleyEstimate(vectors, image_size, h_max, name="least_squares")(images)
    for filters in (16, 32, 64, 64):
        features = layers.Conv2D(filters, 3, padding="same", activation="relu")(features)
        features = layers.MaxPooling2D(2)(features)
    features = layers.Concatenate()([layers.Flatten()(features), estimate])
    features = layers.Dense(128, activation="relu")(features)
    correction = layers.Dense(len(vectors), kernel_initializer="zeros", name="correction")(features)
    return layers.Add(name="encoding")([estimate, correction])


# The builder of each architecture named in config.ARCHITECTURES (the two must list the same names): the
# network after the input and its preprocessing, from (images, features, n_outputs, vectors, image_size, h_max).
BODIES = {
    "small": lambda images, features, n_outputs, *grid: _small_body(features, n_outputs),
    "wide": lambda images, features, n_outputs, *grid: _small_body(features, n_outputs, width=2),
    "large": lambda images, features, n_outputs, *grid: _large_body(features, n_outputs),
    "hybrid": _hybrid,
}
if set(BODIES) != set(ARCHITECTURES):
    raise ImportError(f"cfsx.learning.models builds {sorted(BODIES)}, ARCHITECTURES names {sorted(ARCHITECTURES)}")


def build_model(
    architecture: str, image_size: int, n_outputs: int, vectors: list | None = None, h_max: float = 1.0
) -> keras.Model:
    """An uncompiled model: (batch, M, M) intensities -> (batch, D) correlations (``hybrid`` needs the
    encoding's ``vectors`` and the grid's ``h_max``)."""
    if architecture not in BODIES:
        raise DataError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    images = keras.Input(shape=(image_size, image_size), name="image")
    features = RelativeLogIntensity(name="relative_log_intensity")(images)
    features = layers.Reshape((image_size, image_size, 1))(features)
    outputs = BODIES[architecture](images, features, n_outputs, vectors, image_size, h_max)
    return keras.Model(images, outputs, name=f"cfsx_{architecture}")


def save_model(model: keras.Model, card: ModelCard, path: str | Path) -> Path:
    """Write the model and its card's metadata document as one .keras file, atomically."""
    return write_model_file(model, card.metadata, path)


def write_model_file(model: keras.Model, document: dict[str, Any], path: str | Path) -> Path:
    """Write the model and a metadata document (``ModelCard.metadata``, or one made by hand to test the
    checks that read it) as one .keras file, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise DataError(f"a model file must end in .keras: {path}")
    document = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **document}
    with atomic_path(path) as temporary:
        keras_temporary = temporary.with_name(temporary.name + ".keras")  # Keras insists on the suffix
        try:
            model.save(keras_temporary)
            with zipfile.ZipFile(keras_temporary, "a") as archive:
                archive.writestr(METADATA_ENTRY, json.dumps(document, indent=1))
            keras_temporary.replace(temporary)
        finally:
            keras_temporary.unlink(missing_ok=True)
    return path


def load_model(path: str | Path) -> tuple[keras.Model, ModelCard]:
    """The model (a path or a built-in model's name; loaded in Keras' safe mode) and its card, checked
    against each other."""
    path = resolve_model(path)
    card = read_model_card(path)
    try:
        with _quiet():
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a damaged or tampered archive
        raise DataError(f"cannot load the model in {path}: {one_line(str(error))}") from None
    size, components = card.image_size, card.components
    if tuple(model.input_shape[1:]) != (size, size):
        raise DataError(f"{path}: the network takes {model.input_shape[1:]} images, its metadata says {size} x {size}")
    if tuple(model.output_shape[1:]) != (components,):
        raise DataError(
            f"{path}: the network has {model.output_shape[1:]} outputs, its metadata says CFS{card.cfs} "
            f"({components} components)"
        )
    return model, card


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs for (S, M, M) images, in batches."""
    images = np.asarray(images, dtype=np.float32)
    outputs = [model.predict_on_batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(o) for o in outputs]) if outputs else np.zeros((0, model.output_shape[-1]))


def predict_encodings(model, images: np.ndarray, permutation: np.ndarray | None, batch_size: int):
    """CNN encodings, and half the difference between the plain and the transposed-image predictions."""
    plain = predict(model, images, batch_size)
    if permutation is None:
        return plain, np.zeros_like(plain)
    transposed = predict(model, np.swapaxes(images, 1, 2), batch_size)[:, permutation]
    return (plain + transposed) / 2.0, np.abs(plain - transposed) / 2.0


@contextlib.contextmanager
def _quiet():
    """Keep Keras' and absl's warnings about a refused archive off the terminal: the error says it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
