"""The engine against its NumPy reference and against exactly known lattices."""

import numpy as np
import pytest

from cfsx import _engine
from cfsx.errors import EngineError
from cfsx.physics import _reference as reference
from cfsx.physics import engine
from cfsx.physics.encoding import cfs_vectors


def checkerboard(n):
    x, y = np.indices((n, n))
    return ((x + y) % 2).astype(np.uint8)


def stripes(n):
    x, _ = np.indices((n, n))
    return (x % 2).astype(np.uint8)


def test_cfs_vectors_follow_design_order():
    assert cfs_vectors(2).tolist() == [[0, 1], [1, 0], [1, 1]]
    assert cfs_vectors(3).tolist() == [[0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]]
    assert len(cfs_vectors(4)) == 15


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 7, 2**64 - 1])
def test_random_stream_equals_reference(seed):
    values, _ = engine.random_uint32(50, engine.seed_state(seed))
    rng = reference.Xoshiro128(seed)
    assert values.tolist() == [rng.next() for _ in range(50)]


def test_random_streams_differ_between_seeds_and_look_uniform():
    a, _ = engine.random_uniform(20000, engine.seed_state(1))
    b, _ = engine.random_uniform(20000, engine.seed_state(2))
    assert not np.array_equal(a, b)
    assert abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.005
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.03


def test_random_lattice_equals_reference_and_has_exact_concentration():
    lattice, _ = engine.random_lattice(12, 0.25, engine.seed_state(5))
    assert lattice.sum() == 36
    assert np.array_equal(lattice, reference.random_lattice(12, 0.25, reference.Xoshiro128(5)))


def test_metropolis_equals_reference_step_for_step():
    # Dyadic couplings make every energy sum exact, so the two must agree bit for bit.
    vectors = cfs_vectors(3)
    couplings = np.array([0.375, -0.25, 0.125, 0.5, -0.125, 0.25, 0.0, 0.0625])
    state = engine.seed_state(7)
    lattice, state = engine.random_lattice(8, 0.5, state)
    rng = reference.Xoshiro128(7)
    reference.random_lattice(8, 0.5, rng)
    result, _, accepted = engine.metropolis_sweeps(lattice, vectors, couplings, 15, state)
    expected, expected_accepted = reference.metropolis_sweeps(lattice, vectors, couplings, 15, rng)
    assert accepted == expected_accepted > 0
    assert np.array_equal(result, expected)
    assert result.sum() == lattice.sum()


def test_feedback_equals_reference_step_for_step():
    vectors = cfs_vectors(2)
    state = engine.seed_state(3)
    lattice, state = engine.random_lattice(8, 0.5, state)
    rng = reference.Xoshiro128(3)
    reference.random_lattice(8, 0.5, rng)
    options = dict(gain=0.5, sweeps_per_cycle=2, tolerance=0.0, max_cycles=4, coupling_bound=0.25)
    target = np.array([-0.25, 0.5, 0.0])
    result = engine.feedback(lattice, vectors, target, state, engine.FeedbackSettings(**options))
    lat, alpha, couplings, cycles, reason = reference.feedback(
        lattice, vectors, target, rng, engine.FeedbackSettings(**options)
    )
    assert result.cycles == cycles == 4 and result.reason == reason == engine.STOP_REASONS.index("max_cycles")
    assert np.array_equal(result.lattice, lat)
    np.testing.assert_allclose(result.achieved, alpha, atol=1e-12)
    np.testing.assert_allclose(result.couplings, couplings, atol=1e-12)


@pytest.mark.parametrize("bound, adaptive", [(0.25, False), (5.0, False), (5.0, True)])
def test_stagnation_stop_equals_reference_step_for_step(bound, adaptive):
    """The stall rule (no improvement beyond the noise for stall_cycles cycles, or every off-target coupling
    pushed against the bound; the best lattice seen returned) and the adaptive gains as the reference runs
    them: same cycle, same reason, same lattice."""
    vectors = cfs_vectors(2)
    state = engine.seed_state(5)
    lattice, state = engine.random_lattice(10, 0.5, state)
    rng = reference.Xoshiro128(5)
    reference.random_lattice(10, 0.5, rng)
    options = dict(gain=0.5, sweeps_per_cycle=1, tolerance=0.01, max_cycles=40, coupling_bound=bound,
                   stall_cycles=3, stall_noise=0.1, adaptive=adaptive)  # fmt: skip
    target = np.array([-0.9, 0.9, 0.9])  # not jointly realisable: unlike along y and alike along x make (1,1) unlike
    result = engine.feedback(lattice, vectors, target, state, engine.FeedbackSettings(**options))
    lat, alpha, couplings, cycles, reason = reference.feedback(
        lattice, vectors, target, rng, engine.FeedbackSettings(**options)
    )
    assert result.cycles == cycles < 40 and result.reason == reason == engine.STOP_REASONS.index("stalled")
    assert np.array_equal(result.lattice, lat)
    np.testing.assert_allclose(result.couplings, couplings, atol=1e-12)


def test_alpha_equals_reference_on_random_lattices():
    vectors = np.array([[0, 1], [1, 0], [2, -1], [3, 3], [-2, 0]])
    for seed in range(3):
        lattice, _ = engine.random_lattice(9, 0.4, engine.seed_state(seed))
        np.testing.assert_allclose(
            engine.measure_alpha(lattice, vectors), reference.measure_alpha(lattice, vectors), atol=1e-12
        )


def test_exact_lattices_give_exact_alpha():
    vectors = cfs_vectors(3)  # (0,1) (0,2) (1,0) (1,1) (1,2) (2,0) (2,1) (2,2)
    np.testing.assert_allclose(engine.measure_alpha(checkerboard(8), vectors), [-1, 1, -1, 1, -1, 1, -1, 1])
    # stripes s = x mod 2: alike along y, alternating along x
    np.testing.assert_allclose(engine.measure_alpha(stripes(8), vectors), [1, 1, -1, -1, -1, 1, 1, 1])
    single = np.zeros((10, 10), np.uint8)
    single[3, 7] = 1
    np.testing.assert_allclose(engine.measure_alpha(single, vectors), np.full(8, -1 / 99))


def dirichlet_squared(u, length):
    """|sum_{x<L} exp(2 pi i u x)|^2 = sin^2(pi L u) / sin^2(pi u), L^2 at integer u."""
    u = np.asarray(u, dtype=float)
    integer = np.isclose(u, np.round(u))
    safe = np.where(integer, 0.5, u)
    return np.where(integer, float(length**2), np.sin(np.pi * length * safe) ** 2 / np.sin(np.pi * safe) ** 2)


@pytest.mark.parametrize("lattice_maker, peak", [(checkerboard, (0.5, 0.5)), (stripes, (0.5, 0.0))])
def test_exact_lattices_give_exact_intensities(lattice_maker, peak):
    lattice = lattice_maker(16)
    lot = 8
    grid = engine.reciprocal_grid(64, 1.0)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    # s - c = +-1/2 (-1)^(p.r), one wavevector p: every lot gives the same product of Dirichlet kernels
    expected = dirichlet_squared(h - peak[0], lot) * dirichlet_squared(k - peak[1], lot) / (4 * lot**2)
    assert np.isclose(expected.max(), lot**2 / 4)
    origins = np.array([[0, 0], [4, 6], [14, 2]])
    np.testing.assert_allclose(engine.lot_intensity(lattice, lot, origins), expected, atol=1e-10)
    np.testing.assert_allclose(engine.all_lots_intensity(lattice, lot), expected, atol=1e-10)


@pytest.mark.parametrize("size, lot_size, image_size, h_max", [(8, 5, 64, 1.0), (9, 9, 20, 1.5), (7, 3, 13, 0.7)])
def test_all_lots_equals_explicit_average_over_every_origin(size, lot_size, image_size, h_max):
    lattice, _ = engine.random_lattice(size, 0.5, engine.seed_state(size))
    fast = engine.all_lots_intensity(lattice, lot_size, image_size, h_max)
    explicit = reference.all_lots_intensity(lattice, lot_size, image_size, h_max)
    np.testing.assert_allclose(fast, explicit, atol=1e-10)
    origins = np.array([(x, y) for x in range(size) for y in range(size)])
    np.testing.assert_allclose(
        engine.lot_intensity(lattice, lot_size, origins, image_size, h_max), explicit, atol=1e-10
    )


@pytest.mark.parametrize("image_size, h_max", [(64, 1.0), (30, 1.3), (17, 2.0)])
def test_lot_intensity_equals_reference(image_size, h_max):
    lattice, state = engine.random_lattice(20, 0.3, engine.seed_state(11))
    origins, _ = engine.random_origins(20, 5, state)
    np.testing.assert_allclose(
        engine.lot_intensity(lattice, 7, origins, image_size, h_max),
        reference.lot_intensity(lattice, 7, origins, image_size, h_max),
        rtol=1e-9,
        atol=1e-10,
    )


@pytest.mark.parametrize(
    "image_size, h_max, period", [(64, 1.0, 32), (16, 0.5, 16), (64, 2.0, 16), (30, 1.3, 0), (48, 1.0, 0)]
)
def test_fft_kernel_is_used_exactly_on_power_of_two_periodic_grids(image_size, h_max, period):
    assert engine._reduced_grid(image_size, h_max).period == period


@pytest.mark.parametrize("size, lot_size, image_size", [(20, 7, 64), (20, 19, 16), (12, 12, 8), (9, 5, 2)])
def test_fft_kernel_equals_matrix_product_kernel(size, lot_size, image_size):
    # Lots wider than the period P = image_size / 2 are folded modulo P before the FFT.
    lattice, state = engine.random_lattice(size, 0.4, engine.seed_state(size + lot_size))
    origins, _ = engine.random_origins(size, 6, state)
    grid = engine._reduced_grid(image_size, 1.0)
    assert grid.period == image_size // 2
    arguments = (np.asfortranarray(lattice), lattice.mean(), lot_size, np.asfortranarray(origins.T, dtype=np.int32))
    periodic, status = _engine.lot_intensity_periodic(*arguments, grid.period, grid.k_values)
    assert status == 0
    products, status = _engine.lot_intensity(*arguments, grid.h_values, grid.k_values)
    assert status == 0
    np.testing.assert_allclose(periodic, products, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(
        engine.lot_intensity(lattice, lot_size, origins, image_size, 1.0),
        reference.lot_intensity(lattice, lot_size, origins, image_size, 1.0),
        rtol=1e-9,
        atol=1e-11,
    )


def test_lot_intensity_equals_direct_sum_of_design():
    lattice, _ = engine.random_lattice(6, 0.5, engine.seed_state(2))
    direct = reference.lot_intensity_direct(lattice, 4, (2, 5), image_size=8, h_max=1.0)
    np.testing.assert_allclose(engine.lot_intensity(lattice, 4, np.array([[2, 5]]), 8, 1.0), direct, atol=1e-10)


def test_warren_cowley_kernel_equals_plain_sum():
    alpha = {(0, 0): 1.0, (0, 1): -0.3, (0, -1): -0.3, (1, 0): 0.2, (-1, 0): 0.2, (1, -1): 0.1, (-1, 1): 0.1}
    grid = np.zeros((3, 3))
    for (dx, dy), value in alpha.items():
        grid[dx + 1, dy + 1] = value
    np.testing.assert_allclose(
        engine.warren_cowley_intensity(grid, 0.4, 32, 1.0),
        reference.warren_cowley_intensity(alpha, 0.4, 32, 1.0),
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: engine.lot_intensity(checkerboard(8), 9, np.array([[0, 0]])), "larger than the lattice"),
        (lambda: engine.measure_alpha(checkerboard(8), np.array([[0, 5]])), "do not fit"),
        (lambda: engine.measure_alpha(checkerboard(8), np.array([[0, 0]])), "zero"),
        (lambda: engine.measure_alpha(checkerboard(8).astype(float), cfs_vectors(2)), "dtype"),
        (lambda: engine.measure_alpha(np.zeros((4, 5), np.uint8), cfs_vectors(2)), "square"),
        (lambda: engine.measure_alpha(np.full((4, 4), 2, np.uint8), cfs_vectors(2)), "0 or 1"),
        (lambda: engine.measure_alpha(np.ones((4, 4), np.uint8), cfs_vectors(2)), "undefined"),
        (lambda: _feedback([np.nan, 0, 0]), "NaN"),
        (lambda: _feedback([1.5, 0, 0]), r"\[-1, 1\]"),
        (lambda: _feedback([0, 0]), "shape"),
        (lambda: engine.lot_intensity(checkerboard(8), 4, np.array([[0, 8]])), "origins"),
        (lambda: engine.seed_state(-1), "seed"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(EngineError, match=message):
        call()


def _feedback(target):
    return engine.feedback(
        checkerboard(8), cfs_vectors(2), np.array(target, float), engine.seed_state(0),
        engine.FeedbackSettings(gain=0.1, sweeps_per_cycle=1, tolerance=0.01, max_cycles=2, coupling_bound=1.0),
    )  # fmt: skip


@pytest.mark.parametrize("lot_size", [5, 9])
def test_lot_alpha_over_every_origin_is_the_periodic_alpha(lot_size):
    # Every periodic pair (r, r + v) lies inside the same number of lots, (L - |dx|)(L - |dy|).
    lattice, state = engine.random_lattice(9, 0.4, engine.seed_state(lot_size))
    vectors = cfs_vectors(3)
    lattice, _, _ = engine.metropolis_sweeps(lattice, vectors, np.linspace(-0.3, 0.3, 8), 5, state)
    origins = np.array([(x, y) for x in range(9) for y in range(9)])
    np.testing.assert_allclose(
        engine.lot_alpha(lattice, vectors, lot_size, origins), engine.measure_alpha(lattice, vectors), atol=1e-12
    )
    checker = engine.lot_alpha(checkerboard(8), cfs_vectors(2), 4, np.array([[1, 3]]))
    np.testing.assert_allclose(checker, [-1.0, -1.0, 1.0])
