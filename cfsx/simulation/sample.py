"""One simulated sample: a lattice driven by Monte Carlo with feedback on its couplings until its correlations reach
the target, and its lot-averaged diffraction image (cfsx.physics.engine)."""

from __future__ import annotations

import numpy as np

from cfsx.config import SimulationConfig
from cfsx.errors import DataError
from cfsx.io.samples import Samples
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors

STOP_REACHED = engine.STOP_REASONS.index("reached")


def sample_seed(master_seed: int, index: int) -> int:
    """The 64-bit seed of sample ``index``: independent streams via NumPy's SeedSequence."""
    words = np.random.SeedSequence(master_seed, spawn_key=(index,)).generate_state(2, np.uint32)
    return int(words[0]) | (int(words[1]) << 32)


def sample_seeds(master_seed: int, count: int) -> list[int]:
    """The seeds of samples 0..count-1 of a run with ``master_seed``."""
    return [sample_seed(master_seed, i) for i in range(count)]


def simulate_sample(config: SimulationConfig, seed: int, target: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One sample: draw a target (or take the given one), reach it by feedback, and diffract the lattice; its
    arrays by ``Samples`` field, and the lots' origins (not stored in datasets).

    With ``targets.distribution: couplings`` the drawn target is the alpha of a lattice run at random
    fixed couplings, and that lattice is the sample (no feedback). With a given ``target`` this decodes
    an encoding into a structure and its image, always by the feedback; the random stream is then the
    same as for a uniform target, so the seed alone fixes the result.
    """
    vectors = cfs_vectors(config.encoding.cfs)
    targets, size = config.targets, config.lattice.size
    state = engine.seed_state(seed)
    concentration = config.lattice.concentration
    if config.lattice.concentration_range is not None and target is None:
        low, high = config.lattice.concentration_range
        uniform, state = engine.random_uniform(1, state)
        concentration = low + (high - low) * float(uniform[0])
    if targets.distribution == "couplings" and target is None:
        # Realisable by construction: the target is the alpha the lattice has after the fixed-coupling run,
        # so that lattice is the sample and the feedback has nothing to do (0 cycles, reached).
        uniform, state = engine.random_uniform(len(vectors) + 1, state)
        low, high = np.log(targets.coupling_range)
        couplings = np.exp(low + (high - low) * uniform[0]) * (2.0 * uniform[1:] - 1.0)
        lattice, state = engine.random_lattice(size, concentration, state)
        lattice, state, accepted = engine.metropolis_sweeps(lattice, vectors, couplings, targets.sweeps, state)
        target = engine.measure_alpha(lattice, vectors)
        result = engine.FeedbackResult(lattice, target, couplings, 0, accepted, state, STOP_REACHED)
    else:
        low, high = (np.array(bound) for bound in targets.bounds(len(vectors)))
        uniform, state = engine.random_uniform(len(vectors), state)
        if target is None:
            target = low + (high - low) * uniform
        else:
            target = np.asarray(target, dtype=np.float64)
            if target.shape != (len(vectors),):
                raise DataError(
                    f"an encoding for CFS{config.encoding.cfs} has {len(vectors)} components, got {target.shape}"
                )
        lattice, state = engine.random_lattice(size, concentration, state)
        result = run_feedback(config, lattice, target, state)
    image, origins = engine.diffract(result.lattice, config.diffraction, result.state)
    return {
        "seeds": np.uint64(seed),
        "images": image.astype(np.float32),
        "achieved": result.achieved.astype(np.float32),
        "target": target.astype(np.float32),
        "interactions": result.couplings.astype(np.float32),
        "cycles": np.int32(result.cycles),
        "stop_reasons": np.uint8(result.reason),
        "lattices": result.lattice,
        "lot_origins": origins,  # not stored in datasets; for analyses of lot sampling
    }


def run_feedback(config: SimulationConfig, lattice: np.ndarray, target: np.ndarray, state: np.ndarray
                 ) -> engine.FeedbackResult:  # fmt: skip
    """The config's feedback loop from ``lattice`` towards ``target`` (stall noise: the lattice's own, 1/N)."""
    settings = engine.FeedbackSettings.of(config.feedback, config.lattice.size)
    return engine.feedback(lattice, cfs_vectors(config.encoding.cfs), target, state, settings)


def simulate_batch(config: SimulationConfig, start: int, stop: int) -> Samples:
    """Samples start..stop-1 of a run, stacked."""
    return Samples.stack([simulate_sample(config, sample_seed(config.run.seed, i)) for i in range(start, stop)])
