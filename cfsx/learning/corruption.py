"""Seeded detector corruptions of training images, and the corrected copies the general models learn from.

A measured image reaches the CNN through ``cfsx correct``; a CNN that only ever saw clean simulated
images meets that route's residue (filled gaps, removed peaks, counting noise, a falloff) for the
first time in use. ``corrupted_copy`` writes, beside a dataset, a dataset of the same samples whose
images went through random corruptions and then ``correct_image`` with the built-in ``correct``
config, uncalibrated (the whole image is the window), as ``cfsx interpret`` treats a raw image.

Corruptions, on the image's own grid h_m = -h_max + 2 h_max m / M (axis 0 is h), in the order a
measurement adds them; each is applied to an image with probability ``PROBABILITY``, its severity
drawn log-uniformly (or uniformly) in the range of ``RANGES``:

- falloff: I exp(-B (h^2 + k^2)) (Debye-Waller-like), B in r.l.u.^-2;
- bragg: a peak at every integer h, k, height x the mean diffuse level, single pixels (on-grid
  points) or Gaussians of the drawn FWHM in pixels;
- poisson: counts ~ Poisson(I / mean x flux) at ``flux`` counts per pixel at the mean level,
  rescaled back to intensity;
- gaps: rows and columns of zeros (between detector modules), 1-3 of them, 1-6 pixels wide;
- beamstop: pixels flagged -1, a disk around h = k = 0 and an arm from it to the border.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cfsx.errors import DataError

PROBABILITY = 0.5  # each kind, independently, per image
RANGES = {
    "falloff_b": (0.05, 1.5),  # r.l.u.^-2, log-uniform
    "bragg_height": (3.0, 3000.0),  # x the mean level, log-uniform
    "bragg_fwhm": (0.5, 3.0),  # pixels, uniform; a third of the images get single-pixel peaks instead
    "flux": (0.5, 300.0),  # counts per pixel at the mean level, log-uniform
    "gap_count": (1, 3),
    "gap_width": (1, 6),  # pixels
    "beamstop_radius": (0.03, 0.2),  # r.l.u.
    "beamstop_arm": (0.02, 0.1),  # r.l.u., the arm's width
}
BEAMSTOP_FLAG = -1.0
MAX_DRAWS = 10  # corruptions drawn for an image until correct accepts one (then: the clean image)


@dataclass(frozen=True)
class Corruption:
    """What one image suffers; None (or empty): that kind is not applied."""

    falloff_b: float | None = None
    bragg_height: float | None = None
    bragg_fwhm: float = 0.0  # 0: single pixels at the on-grid integer h, k
    flux: float | None = None
    gaps: tuple[tuple[int, int, int], ...] = ()  # (axis, first pixel, width)
    beamstop_radius: float | None = None
    beamstop_arm: float = 0.0
    beamstop_angle: float = 0.0  # radians, direction of the arm in the (h, k) plane


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def draw(rng: np.random.Generator, size: int, probability: float = PROBABILITY) -> Corruption:
    """Random corruptions of one ``size`` x ``size`` image; every kind is drawn, applied or not (a fixed stream)."""
    applied = rng.random(5) < probability
    falloff = _log_uniform(rng, RANGES["falloff_b"])
    height = _log_uniform(rng, RANGES["bragg_height"])
    fwhm = 0.0 if rng.random() < 1 / 3 else float(rng.uniform(*RANGES["bragg_fwhm"]))
    flux = _log_uniform(rng, RANGES["flux"])
    (fewest, most), (narrowest, widest) = RANGES["gap_count"], RANGES["gap_width"]
    gaps = tuple(
        (int(rng.integers(2)), int(rng.integers(size)), int(rng.integers(narrowest, widest + 1)))
        for _ in range(int(rng.integers(fewest, most + 1)))
    )
    radius = float(rng.uniform(*RANGES["beamstop_radius"]))
    arm = float(rng.uniform(*RANGES["beamstop_arm"]))
    angle = float(rng.uniform(0, 2 * np.pi))
    return Corruption(
        falloff_b=falloff if applied[0] else None,
        bragg_height=height if applied[1] else None,
        bragg_fwhm=fwhm,
        flux=flux if applied[2] else None,
        gaps=gaps if applied[3] else (),
        beamstop_radius=radius if applied[4] else None,
        beamstop_arm=arm,
        beamstop_angle=angle,
    )


def grid(size: int, h_max: float) -> np.ndarray:
    """The h (or k) values of the pixels: -h_max + 2 h_max m / M."""
    return -h_max + 2.0 * h_max * np.arange(size) / size


def apply(image: np.ndarray, corruption: Corruption, h_max: float, rng: np.random.Generator) -> np.ndarray:
    """The corrupted copy of a square ``image`` on the grid of ``h_max`` (``rng``: the counting noise)."""
    image = np.asarray(image, dtype=np.float64)
    size = image.shape[0]
    h = grid(size, h_max)
    hh, kk = np.meshgrid(h, h, indexing="ij")
    mean = float(image.mean())
    out = image.copy()
    if corruption.falloff_b is not None:
        out *= np.exp(-corruption.falloff_b * (hh**2 + kk**2))
    if corruption.bragg_height is not None:
        out += corruption.bragg_height * mean * bragg_peaks(size, h_max, corruption.bragg_fwhm)
    if corruption.flux is not None:
        scale = corruption.flux / mean
        out = rng.poisson(np.maximum(out, 0.0) * scale) / scale
    for axis, first, width in corruption.gaps:
        index = np.arange(first, min(first + width, size))
        if axis == 0:
            out[index, :] = 0.0
        else:
            out[:, index] = 0.0
    if corruption.beamstop_radius is not None:
        out[beamstop(size, h_max, corruption.beamstop_radius, corruption.beamstop_arm, corruption.beamstop_angle)] = (
            BEAMSTOP_FLAG
        )
    return out


def bragg_peaks(size: int, h_max: float, fwhm: float) -> np.ndarray:
    """Unit-height peaks at every integer h, k: single pixels where the grid holds the integer (fwhm 0),
    else Gaussians of ``fwhm`` pixels centred at the integers' exact (fractional) pixel positions."""
    step = 2.0 * h_max / size
    integers = np.arange(np.ceil(-h_max - 1), np.floor(h_max + 1) + 1)
    positions = (integers + h_max) / step  # fractional pixel index of each integer
    peaks = np.zeros((size, size))
    if fwhm <= 0:
        on_grid = positions[(np.abs(positions - np.round(positions)) < 1e-9) & (positions >= 0) & (positions < size)]
        index = np.round(on_grid).astype(int)
        peaks[np.ix_(index, index)] = 1.0
        return peaks
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    pixels = np.arange(size)
    profile = np.exp(-0.5 * ((pixels[None, :] - positions[:, None]) / sigma) ** 2)  # (integers, pixels)
    return np.einsum("ip,jq->pq", profile, profile)


def beamstop(size: int, h_max: float, radius: float, arm: float, angle: float) -> np.ndarray:
    """Pixels behind a beamstop: a disk of ``radius`` r.l.u. at h = k = 0 and an arm of width ``arm`` to the border."""
    h = grid(size, h_max)
    hh, kk = np.meshgrid(h, h, indexing="ij")
    along = hh * np.cos(angle) + kk * np.sin(angle)
    across = -hh * np.sin(angle) + kk * np.cos(angle)
    return (hh**2 + kk**2 <= radius**2) | ((along >= 0) & (np.abs(across) <= arm / 2))


def corrupted_images(images: np.ndarray, h_max: float, seed: int, first_index: int = 0) -> tuple[np.ndarray, list]:
    """Corrupt and correct images (S, M, M); image i's corruptions come from the seed (seed, first_index + i).

    An image whose corrupted copy correct refuses (as it would refuse such a measurement) gets new
    corruptions from the same stream. Returns the corrected images and each image's Corruption."""
    from cfsx.config import CorrectionConfig, load_config
    from cfsx.correction import correct_image

    config = load_config("correct", [f"output.image_size={images.shape[1]}", f"output.h_max={h_max}"],
                         root=CorrectionConfig)  # fmt: skip
    corrected, drawn = [], []
    for offset, image in enumerate(images):
        rng = np.random.default_rng([seed, first_index + offset])
        for _ in range(MAX_DRAWS):  # correct refuses an image it cannot use (too little measured): draw again
            corruption = draw(rng, image.shape[0])
            try:
                corrected.append(correct_image(apply(image, corruption, h_max, rng), config).image)
                break
            except DataError:
                continue
        else:
            corruption = Corruption()
            corrected.append(correct_image(image, config).image)
        drawn.append(corruption)
    return np.stack(corrected).astype(np.float32), drawn


def corrupted_copy(
    source: str | Path,
    output: str | Path,
    seed: int,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``output``: ``source``'s dataset with every image corrupted and corrected (module docstring).

    Labels, seeds and attributes are copied; the settings go to the root attribute ``corruption`` (each
    image's corruptions are drawn again from (seed, index) by ``draw``). Returns the number of samples."""
    from cfsx.config import config_from_yaml_text
    from cfsx.errors import ConfigError
    from cfsx.io.dataset import open_dataset, write_dataset

    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ConfigError(f"--seed must be a whole number in 0..2**63 - 1, got {seed!r}")

    chunk = 256

    with open_dataset(source) as file:
        if file.labels is None:
            raise DataError(f"{source} has no labels (/encodings/achieved): nothing to learn from its copies")
        attrs = {key: value for key, value in file.attrs.items() if key not in ("format", "format_version",
                                                                                "cfsx_version", "created")}  # fmt: skip
        h_max = config_from_yaml_text(str(attrs["config"])).diffraction.h_max
        count = len(file)
        shapes = file.shapes()

        def batches():
            done = 0
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                pending: deque = deque()
                for start in range(0, count, chunk):
                    batch = file.read(start, start + chunk, shapes)
                    pending.append((batch, pool.submit(corrupted_images, batch.images, h_max, seed, start)))
                    while len(pending) > 2 * workers or (pending and start + chunk >= count):
                        batch, future = pending.popleft()
                        batch.images = future.result()[0]
                        done += len(batch)
                        if progress:
                            progress(done, count)
                        yield batch

        attrs["corruption"] = json.dumps({"seed": seed, "probability": PROBABILITY, "ranges": RANGES,
                                          "source": str(source), "correction": "built-in correct config"})  # fmt: skip
        write_dataset(output, attrs=attrs, n_samples=count, shapes=shapes, batches=batches())
    return count
