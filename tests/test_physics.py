"""Physics oracles: Warren-Cowley, uncorrelated lattices, the sign of J, feedback, Onsager."""

import numpy as np
import pytest
from conftest import equilibrated
from scipy.special import ellipk

from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors


def alpha_window(lattice, radius):
    """alpha(v) for every |vx|, |vy| <= radius, measured by the engine's alpha kernel."""
    displacements = np.arange(-radius, radius + 1)
    vectors = np.array([(dx, dy) for dx in displacements for dy in displacements if (dx, dy) != (0, 0)])
    values = engine.measure_alpha(lattice, vectors)
    alpha = np.ones((2 * radius + 1, 2 * radius + 1))
    alpha[vectors[:, 0] + radius, vectors[:, 1] + radius] = values
    return alpha


def lot_chi2(image, expected, n_lots):
    """Mean squared deviation in units of the lot noise: a lot intensity is exponentially
    distributed (variance = mean^2), so the mean of K lots has variance expected^2 / K."""
    return float(np.mean((image - expected) ** 2 / (expected**2 / n_lots)))


def test_lot_image_agrees_with_warren_cowley_within_lot_noise():
    size, lot, n_lots = 64, 32, 200
    vectors = cfs_vectors(2)
    lattice, state = equilibrated(size, vectors, [0.35, -0.25, 0.15], 300, seed=4)
    alpha = alpha_window(lattice, size // 2)
    assert abs(alpha[size // 2, size // 2 + 1]) > 0.2  # strongly correlated
    c = lattice.mean()
    origins, _ = engine.random_origins(size, n_lots, state)
    image = engine.lot_intensity(lattice, lot, origins, 48, 1.0)
    expected = engine.warren_cowley_intensity(alpha, c, 48, 1.0, lot_size=lot)
    chi2 = lot_chi2(image, expected, n_lots)
    # 1 for complex-Gaussian F; pixels on the h, k in {0, 1/2} lines have real F (variance 2x)
    assert 0.6 < chi2 < 1.6
    # the same statistic rejects a wrong model: the flat image of an uncorrelated lattice
    assert lot_chi2(image, np.full_like(image, c * (1 - c)), n_lots) > 20
    # and the lattice's own exact all-origins image is the lot expectation
    np.testing.assert_allclose(engine.all_lots_intensity(lattice, lot, 48, 1.0), expected, atol=1e-10)


def test_uncorrelated_lattice_gives_flat_c_one_minus_c():
    lattice, state = engine.random_lattice(160, 0.3, engine.seed_state(8))
    c = lattice.mean()
    image = engine.all_lots_intensity(lattice, 32, 64, 1.0)
    assert np.isclose(image.mean(), c * (1 - c), rtol=1e-12)  # the d = 0 term: exact for L <= 32
    # The all-origins image is the lattice's periodogram smoothed over a width ~1/L, an
    # average of ~(N/L)^2 independent frequencies: relative scatter ~ L/N = 0.2.
    assert np.std(image) / image.mean() < 32 / 160
    origins, _ = engine.random_origins(160, 400, state)
    lots = engine.lot_intensity(lattice, 32, origins, 64, 1.0)
    assert abs(lots.mean() / (c * (1 - c)) - 1) < 0.02


@pytest.mark.parametrize("coupling, sign", [(0.4, -1), (-0.4, +1)])
def test_positive_coupling_lowers_alpha(coupling, sign):
    vectors = np.array([[0, 1]])
    lattice, _ = equilibrated(40, vectors, [coupling], 100, seed=1)
    alpha = engine.measure_alpha(lattice, vectors)[0]
    assert sign * alpha > 0.2


def test_feedback_reaches_targets_measured_on_a_reference_lattice():
    vectors = cfs_vectors(2)
    reference_lattice, _ = equilibrated(48, vectors, [0.2, -0.15, 0.1], 200, seed=21)
    target = engine.measure_alpha(reference_lattice, vectors)
    assert np.abs(target).max() > 0.1
    lattice, state = engine.random_lattice(48, 0.5, engine.seed_state(22))
    result = engine.feedback(
        lattice, vectors, target, state,
        engine.FeedbackSettings(gain=0.25, sweeps_per_cycle=4, tolerance=0.01, max_cycles=200, coupling_bound=2.0),
    )  # fmt: skip
    assert np.abs(result.achieved - target).max() <= 0.02
    np.testing.assert_allclose(engine.measure_alpha(result.lattice, vectors), result.achieved)
    # the couplings found have the sign pattern the targets ask for
    assert np.all(np.sign(result.couplings) == -np.sign(target))


def test_unreachable_targets_stop_at_the_cycle_limit_with_bounded_couplings():
    vectors = cfs_vectors(2)
    lattice, state = engine.random_lattice(24, 0.5, engine.seed_state(3))
    # alpha(0,1) = alpha(1,0) = -1 forces alpha(1,1) = +1: asking for -1 is impossible
    result = engine.feedback(
        lattice, vectors, np.array([-1.0, -1.0, -1.0]), state,
        engine.FeedbackSettings(gain=5.0, sweeps_per_cycle=1, tolerance=0.01, max_cycles=30, coupling_bound=1.5),
    )  # fmt: skip
    assert result.cycles == 30
    assert np.all(np.abs(result.couplings) <= 1.5)
    assert np.all(np.isfinite(result.achieved))


def test_stagnation_stops_early_on_unreachable_targets_and_not_on_reachable_ones():
    vectors = cfs_vectors(2)
    # The tolerance at 1.5 times the lattice's noise on alpha (1/N), as configs/cfs4.yaml sets it.
    options = dict(gain=0.25, sweeps_per_cycle=4, tolerance=1.5 / 48, max_cycles=200, coupling_bound=2.0,
                   stall_cycles=5, stall_noise=1 / 48)  # fmt: skip
    lattice, state = engine.random_lattice(48, 0.5, engine.seed_state(22))
    stuck = engine.feedback(lattice, vectors, np.array([-1.0, -1.0, -1.0]), state, engine.FeedbackSettings(**options))
    assert stuck.cycles < 60 and engine.STOP_REASONS[stuck.reason] == "stalled"
    reference_lattice, _ = equilibrated(48, vectors, [0.2, -0.15, 0.1], 200, seed=21)
    target = engine.measure_alpha(reference_lattice, vectors)
    reached = engine.feedback(lattice, vectors, target, state, engine.FeedbackSettings(**options))
    assert engine.STOP_REASONS[reached.reason] == "reached"
    assert np.abs(reached.achieved - target).max() <= 1.5 / 48


@pytest.mark.parametrize("seed", [21, 23])
def test_adaptive_update_recovers_known_couplings_within_noise(seed):
    """Targets measured on a lattice equilibrated at known couplings: the adaptive loop reaches them and the
    couplings it ends with are those couplings, within what 1/N noise on alpha allows (0.05 here)."""
    vectors = cfs_vectors(2)
    known = np.array([0.2, -0.15, 0.1])
    reference_lattice, _ = equilibrated(64, vectors, known, 200, seed=seed)
    target = engine.measure_alpha(reference_lattice, vectors)
    lattice, state = engine.random_lattice(64, 0.5, engine.seed_state(seed + 100))
    settings = engine.FeedbackSettings(
        gain=0.25,
        sweeps_per_cycle=4,
        tolerance=1.5 / 64,
        max_cycles=200,
        coupling_bound=2.0,
        stall_cycles=10,
        stall_noise=1 / 64,
        adaptive=True,
    )
    result = engine.feedback(lattice, vectors, target, state, settings)
    assert engine.STOP_REASONS[result.reason] == "reached"
    assert np.abs(result.couplings - known).max() < 0.05


def onsager_nearest_neighbour(coupling):
    """<sigma_0 sigma_1> of the infinite square-lattice Ising model (Onsager)."""
    k = 2 * np.sinh(2 * coupling) / np.cosh(2 * coupling) ** 2
    return (0.5 + (2 * np.tanh(2 * coupling) ** 2 - 1) / np.pi * ellipk(k**2)) / np.tanh(2 * coupling)


@pytest.mark.parametrize("coupling", [0.3, 0.4])
def test_ising_nearest_neighbour_correlation_matches_onsager(coupling):
    """At c = 1/2, alpha(0,1) = <sigma sigma'>. E = sum J sigma sigma' with J = -K is the
    ferromagnetic Ising model; swaps sample it at zero magnetisation, which on 128^2 sites
    shifts the nearest-neighbour correlation by O(chi / N^2) < 1e-3 above T_c."""
    size = 128
    vectors = np.array([[0, 1], [1, 0]])
    lattice, state = equilibrated(size, vectors, [-coupling, -coupling], 300, seed=31)
    measurements = []
    for _ in range(40):
        lattice, state, _ = engine.metropolis_sweeps(lattice, vectors, np.array([-coupling] * 2), 5, state)
        measurements.append(engine.measure_alpha(lattice, vectors).mean())
    measurements = np.array(measurements)
    blocks = measurements.reshape(8, 5).mean(axis=1)
    standard_error = blocks.std(ddof=1) / np.sqrt(len(blocks))
    exact = onsager_nearest_neighbour(coupling)
    # 5 standard errors of the run itself (block means), and never tighter than 0.004
    tolerance = max(5 * standard_error, 0.004)
    assert abs(measurements.mean() - exact) < tolerance, (measurements.mean(), exact, standard_error)
    assert tolerance < 0.02  # the check stays sharp enough to catch a wrong temperature scale
