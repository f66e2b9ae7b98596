"""Structures decoded from encodings: the same feedback Monte Carlo run towards an encoding as its target, several
times with different seeds, and how well each decoded image explains an observed one."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from cfsx.config import SimulationConfig
from cfsx.errors import DataError
from cfsx.io.samples import Samples
from cfsx.physics.metrics import image_mse, scaled_image_r2
from cfsx.simulation.sample import sample_seeds, simulate_sample
from cfsx.simulation.workers import worker_init


def _decode_chunk(config: SimulationConfig, targets: np.ndarray, seeds: list[int]) -> list[dict[str, np.ndarray]]:
    return [simulate_sample(config, seed, target) for target, seed in zip(targets, seeds, strict=True)]


def decode(
    config: SimulationConfig,
    encodings: np.ndarray,
    master_seed: int,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    seeds: list[int] | None = None,
) -> Decoded:
    """Simulate a structure and its image for each encoding (K, D), sample i with sample_seed(master_seed, i)
    or with ``seeds[i]`` when given: a ``Decoded`` of K structures, unscored.

    Encodings are clipped to [-1, 1], the range of alpha.
    """
    encodings = np.clip(np.asarray(encodings, dtype=np.float64), -1.0, 1.0)
    if encodings.ndim != 2 or not np.all(np.isfinite(encodings)):
        raise DataError(f"encodings to decode must be a finite (K, D) array, got shape {encodings.shape}")
    if seeds is None:
        seeds = sample_seeds(master_seed, len(encodings))
    elif len(seeds) != len(encodings):
        raise DataError(f"{len(seeds)} seeds for {len(encodings)} encodings")
    chunks = [(start, min(start + 8, len(encodings))) for start in range(0, len(encodings), 8)]
    results: dict[int, list[dict[str, np.ndarray]]] = {}
    if workers <= 1 or len(chunks) <= 1:
        for start, stop in chunks:
            results[start] = _decode_chunk(config, encodings[start:stop], seeds[start:stop])
            if progress:
                progress(stop, len(encodings))
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=worker_init, initargs=(os.getpid(),)) as pool:
            futures = {
                pool.submit(_decode_chunk, config, encodings[start:stop], seeds[start:stop]): start
                for start, stop in chunks
            }
            done = 0
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done += len(results[futures[future]])
                if progress:
                    progress(done, len(encodings))
    samples = [sample for start, _ in chunks for sample in results[start]]
    stacked = Samples.stack(samples)
    return Decoded(images=stacked.images, lattices=stacked.lattices, achieved=stacked.achieved,
                   interactions=stacked.interactions, cycles=stacked.cycles,
                   seeds=np.asarray(seeds, dtype=np.uint64))  # fmt: skip


@dataclass
class Decoded:
    """Structures decoded from encodings, and (when scored) how well each image explains an observed one.

    From ``decode``: arrays over the K encodings, unscored. From ``decode_replicates``: arrays (S, R, ...), R
    replicates (one per seed) of each of S images' encodings, with their scores; ``image(index)`` is one image's
    (R, ...). Image R2 and MSE are taken after the least-squares ``scale`` (an observation is in arbitrary units);
    ``image_r2_floor`` holds the R2 of each pair of replicates against each other: the best any encoding can reach
    under these simulation settings.
    """

    images: np.ndarray  # (..., M, M)
    lattices: np.ndarray  # (..., N, N)
    achieved: np.ndarray  # (..., D) the correlations each decoded structure reached
    interactions: np.ndarray  # (..., D)
    cycles: np.ndarray  # (...,)
    seeds: np.ndarray  # (K,) from decode; (R,), shared by every image, from decode_replicates
    image_r2: np.ndarray | None = None  # (S, R) or (R,)
    image_mse: np.ndarray | None = None  # in the engine's units (the observation divided by the scale)
    scale: np.ndarray | None = None  # least-squares factor: observation ~ scale * decoded image
    image_r2_floor: np.ndarray | None = None  # (S, R (R - 1) / 2) or (R (R - 1) / 2,)

    def image(self, index: int) -> Decoded:
        """One image's replicates (arrays (R, ...); the seeds stay those of every image)."""
        return Decoded(**{name: value if name == "seeds" or value is None else value[index]
                          for name, value in self.arrays().items()})  # fmt: skip

    def arrays(self) -> dict[str, np.ndarray | None]:
        """The record's arrays by field name."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}


def decode_replicates(simulation, encodings: np.ndarray, observed: np.ndarray, seeds: list[int], workers: int,
                      progress: Callable[[str, int, int], None] | None = None) -> Decoded:  # fmt: skip
    """Decode every encoding once per seed (the same seeds for every image) and score each replicate."""
    count, replicates = len(encodings), len(seeds)
    report = (lambda done, total: progress("decode", done, total)) if progress else None  # (stage, done, total)
    out = decode(simulation, np.repeat(encodings, replicates, axis=0), 0, workers, report, seeds * count)
    images = out.images.astype(np.float64)
    repeated = np.repeat(observed, replicates, axis=0)
    r2, scale = scaled_image_r2(repeated, images)
    mse = image_mse(repeated / np.where(scale > 0, scale, np.nan)[:, None, None], images)

    def shaped(array: np.ndarray) -> np.ndarray:
        return array.reshape(count, replicates, *array.shape[1:])

    first, second = np.triu_indices(replicates, k=1)
    decoded = shaped(images)
    floor = scaled_image_r2(decoded[:, first].reshape(-1, *images.shape[1:]),
                            decoded[:, second].reshape(-1, *images.shape[1:]))[0]  # fmt: skip
    return Decoded(
        images=shaped(out.images),
        lattices=shaped(out.lattices),
        achieved=shaped(out.achieved),
        interactions=shaped(out.interactions),
        cycles=shaped(out.cycles),
        seeds=np.asarray(seeds, dtype=np.uint64),
        image_r2=shaped(r2),
        image_mse=shaped(mse),
        scale=shaped(scale),
        image_r2_floor=floor.reshape(count, len(first)),
    )
