import numpy as np
import pytest

from cfsx.config import load_config
from cfsx.physics import engine


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


def corrected_file(images: np.ndarray, folder, scale: float):
    """A file of cfsx correct made from simulated 32-point images, blown up 4x as if measured, and times ``scale``."""
    from cfsx.config import CorrectionConfig
    from cfsx.correction import correct_files

    for index, image in enumerate(images):
        np.save(folder / f"measured-{index}.npy", np.kron(image, np.ones((4, 4))) * scale)
    config = load_config("correct", ["output.image_size=32", "bragg.enabled=false"], root=CorrectionConfig)
    correct_files([str(folder / "measured-*.npy")], folder / "corrected.h5", config)
    return folder / "corrected.h5"


@pytest.fixture(scope="session")
def served(tmp_path_factory, small_run):
    """A small CFS2 model and two raw detector-like images of unseen structures (2x upsampled, as .npy)."""
    import h5py

    from cfsx.config import TrainingConfig, load_config
    from cfsx.learning.training import train
    from cfsx.simulation import simulate

    folder = tmp_path_factory.mktemp("serve")
    simulate(small_run(2, 120), folder / "train.h5", workers=1)
    simulate(small_run(2, 2, seed=41), folder / "unseen.h5", workers=1)
    train(folder / "train.h5", folder / "small.keras", load_config("train-demo", root=TrainingConfig,
                                                                    **{"fit.epochs": 2}))  # fmt: skip
    with h5py.File(folder / "unseen.h5") as file:
        for index, image in enumerate(file["images"][()]):
            np.save(folder / f"raw{index}.npy", np.kron(image, np.ones((2, 2))))
    return folder
