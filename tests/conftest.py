import numpy as np
import pytest

from cfsx import engine
from cfsx.config import load_config


@pytest.fixture
def tiny_config():
    """A CFS2 run small enough for determinism and resume tests (a second or two)."""
    return load_config(
        "demo",
        [
            "lattice.size=16",
            "diffraction.lot_size=8",
            "diffraction.n_lots=4",
            "diffraction.image_size=16",
            "feedback.max_cycles=10",
            "run.samples=24",
            "run.batch_size=4",
        ],
    )


def equilibrated(size, vectors, couplings, sweeps, seed, concentration=0.5):
    state = engine.seed_state(seed)
    lattice, state = engine.random_lattice(size, concentration, state)
    lattice, state, _ = engine.metropolis_sweeps(lattice, vectors, np.asarray(couplings, float), sweeps, state)
    return lattice, state


@pytest.fixture(scope="session")
def small_run():
    """Config factory: a CFS-n run of 32-point images from 20 x 20 lattices (all lots), quick to simulate."""

    def config(cfs: int, samples: int, seed: int = 2026):
        return load_config(
            "demo",
            [
                f"encoding.cfs={cfs}",
                "lattice.size=20",
                "diffraction.lot_size=10",
                "diffraction.image_size=32",
                "feedback.max_cycles=30",
                f"run.samples={samples}",
                f"run.seed={seed}",
            ],
        )

    return config
