"""The generalisation benchmark's independent data generator (benchmarks/generalisation_data.py) against oracles."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("generalisation_data", BENCHMARKS / "generalisation_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["generalisation_data"] = module  # worker processes and pickling find it by name
    spec.loader.exec_module(module)
    return module


gd = _load()

TINY = gd.GroupSpec("tiny", 99, size=16, lot_size=8, n_lots=4, image_size=16, h_max=1.0)
TINY_OPTIONS = gd.Options(sweeps=5, ordered_sweeps=10, detector_cases=1, detector_size=64, detector_origin=(30, 36))


def random_lattice(size: int, concentration: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((size, size)) < concentration).astype(np.uint8)


def brute_alpha(lattice: np.ndarray, dx: int, dy: int) -> float:
    size = lattice.shape[0]
    c = lattice.mean()
    total = 0.0
    for x in range(size):
        for y in range(size):
            total += lattice[x, y] * lattice[(x + dx) % size, (y + dy) % size]
    return (total / size**2 - c**2) / (c * (1 - c))


def brute_lot_intensity(lattice, lot_size, origin, h, k):
    size = lattice.shape[0]
    c = lattice.mean()
    image = np.zeros((len(h), len(k)))
    for i, hh in enumerate(h):
        for j, kk in enumerate(k):
            amplitude = 0j
            for x in range(lot_size):
                for y in range(lot_size):
                    s = lattice[(origin[0] + x) % size, (origin[1] + y) % size]
                    amplitude += (s - c) * np.exp(2j * np.pi * (hh * x + kk * y))
            image[i, j] = abs(amplitude) ** 2 / lot_size**2
    return image


# --- Monte Carlo ---------------------------------------------------------------------------------


def test_exchange_conserves_the_ones_and_its_energy_trace_is_the_energy():
    vectors = gd.coupling_vectors()  # range 3: 24 vectors
    couplings = np.random.default_rng(1).normal(size=len(vectors)) * 0.3
    start = random_lattice(16, 0.3, 2)
    final, trace, accepted = gd.exchange_monte_carlo(start, vectors, couplings, 20, seed=7, trace_every=5)
    assert final.dtype == np.uint8 and final.shape == start.shape
    assert final.sum() == start.sum()
    assert 0 < accepted < 20 * 256 and not np.array_equal(final, start)
    assert len(trace) == 5
    assert trace[0] == pytest.approx(gd.energy_per_site(start, vectors, couplings), abs=1e-12)
    assert trace[-1] == pytest.approx(gd.energy_per_site(final, vectors, couplings), abs=1e-9)


def test_exchange_is_reproducible_from_its_seed():
    vectors = gd.coupling_vectors(2)
    couplings = np.linspace(-0.4, 0.4, len(vectors))
    start = random_lattice(16, 0.5, 3)
    first = gd.exchange_monte_carlo(start, vectors, couplings, 10, seed=2**63 + 5)
    second = gd.exchange_monte_carlo(start, vectors, couplings, 10, seed=2**63 + 5)
    other = gd.exchange_monte_carlo(start, vectors, couplings, 10, seed=6)
    assert first[0].tobytes() == second[0].tobytes() and first[1].tobytes() == second[1].tobytes()
    assert not np.array_equal(first[0], other[0])


def test_exchange_samples_the_boltzmann_distribution_of_a_tiny_lattice():
    """4 x 4, 8 ones, range-1 couplings: MC means of E and alpha(0,1) against exact enumeration (12870 states)."""
    vectors = gd.coupling_vectors(1)  # (0,1) (1,-1) (1,0) (1,1)
    couplings = np.array([0.5, -0.2, -0.3, 0.15])
    states = np.zeros((12870, 16), dtype=np.uint8)
    for row, ones in enumerate(itertools.combinations(range(16), 8)):
        states[row, list(ones)] = 1
    lattices = states.reshape(-1, 4, 4)
    sigma = 2.0 * lattices - 1.0
    energy = sum(
        coupling * (sigma * np.roll(sigma, (-dx, -dy), axis=(1, 2))).sum(axis=(1, 2))
        for (dx, dy), coupling in zip(vectors.tolist(), couplings, strict=True)
    )
    weights = np.exp(-(energy - energy.min()))
    weights /= weights.sum()
    pair = (lattices * np.roll(lattices, -1, axis=2)).mean(axis=(1, 2))
    exact_energy = weights @ energy / 16
    exact_alpha = (weights @ pair - 0.25) / 0.25

    lattice = lattices[0]
    energies, alphas = [], []
    for step in range(3000):
        lattice, trace, _ = gd.exchange_monte_carlo(lattice, vectors, couplings, 2, seed=step, trace_every=1)
        energies.extend(trace[1:])
        alphas.append(gd.measure_alpha(lattice, [(0, 1)])[0])
    # Standard errors from blocks of 100 snapshots (the chain decorrelates within a few sweeps).
    for values, exact in ((np.array(energies), exact_energy), (np.array(alphas), exact_alpha)):
        blocks = values[: len(values) // 100 * 100].reshape(-1, 100).mean(axis=1)
        error = blocks.std() / np.sqrt(len(blocks))
        assert abs(values.mean() - exact) < 5 * error + 1e-3, (values.mean(), exact, error)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fixed_couplings_give_the_sign_of_order(sign):
    """J > 0 at (0,1) and (1,0) favours unlike neighbours (alpha < 0, checkerboard-like alpha(1,1) > 0)."""
    vectors = np.array([(0, 1), (1, 0)])
    start = random_lattice(16, 0.5, 4)
    final, _, _ = gd.exchange_monte_carlo(start, vectors, [0.5 * sign, 0.5 * sign], 100, seed=11)
    alpha = gd.measure_alpha(final, gd.cfs_vectors(2))  # (0,1) (1,0) (1,1)
    if sign > 0:
        assert alpha[0] < -0.3 and alpha[1] < -0.3 and alpha[2] > 0.2
    else:
        assert alpha[0] > 0.3 and alpha[1] > 0.3 and alpha[2] > 0.2


def test_instability_is_the_mean_field_ordering_parameter():
    # Nearest-neighbour Ising at c = 1/2: J(q) = -2 j (cos 2 pi qx + cos 2 pi qy), min -4 j: kappa = 4 j.
    assert gd.instability([(0, 1), (1, 0)], [-0.1, -0.1], 0.5) == pytest.approx(0.4)
    assert gd.instability([(0, 1), (1, 0)], [0.1, 0.1], 0.5) == pytest.approx(0.4)  # antiferro: q = (1/2, 1/2)
    structure = gd.draw_structure(gd.GROUPS[0], 3, 2026, gd.Options())
    vectors = gd.coupling_vectors()
    c = structure["start"].mean()
    assert gd.instability(vectors, structure["couplings"], c) == pytest.approx(structure["strength"])
    assert np.all(structure["couplings"][gd.vectors_in_range(structure["coupling_range"]) :] == 0)


# --- alpha ---------------------------------------------------------------------------------------


def test_fft_alpha_equals_brute_force():
    lattice = random_lattice(12, 0.35, 5)
    vectors = [*gd.cfs_vectors(4).tolist(), (1, -2), (-3, 1), (5, 7)]
    measured = gd.measure_alpha(lattice, vectors)
    assert np.allclose(measured, [brute_alpha(lattice, dx, dy) for dx, dy in vectors], atol=1e-12)
    wide = gd.alpha_window(lattice, 5)
    assert wide[5, 5] == pytest.approx(1.0)
    assert np.allclose(wide, wide[::-1, ::-1])  # alpha(-v) = alpha(v)
    assert wide[5 + 2, 5 - 3] == pytest.approx(brute_alpha(lattice, 2, -3))


def test_checkerboard_alpha():
    board = (np.add.outer(np.arange(8), np.arange(8)) % 2).astype(np.uint8)
    alpha = gd.measure_alpha(board, gd.cfs_vectors(2))
    assert np.allclose(alpha, [-1.0, -1.0, 1.0])
    assert gd.cfs_vectors(3).tolist() == [[0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0], [2, 1], [2, 2]]


# --- images --------------------------------------------------------------------------------------


def test_lot_image_equals_the_direct_dft_of_each_lot():
    lattice = random_lattice(10, 0.4, 6)
    axis = gd.reciprocal_axis(8, 1.0)
    origins = np.array([[7, 8], [0, 3]])  # the first wraps round both edges
    image = gd.lot_average_image(lattice, 6, origins[:1], axis, axis)
    assert np.allclose(image, brute_lot_intensity(lattice, 6, origins[0], axis, axis), atol=1e-12)
    mean = gd.lot_average_image(lattice, 6, origins, axis, axis)
    expected = [brute_lot_intensity(lattice, 6, origin, axis, axis) for origin in origins]
    assert np.allclose(mean, np.mean(expected, axis=0), atol=1e-12)
    flat = gd.lot_average_image(lattice, 6, origins, np.array([0.37]), np.array([-0.81, 2.2]))
    assert flat.shape == (1, 2)  # any h, k, not only the grid


def test_all_origins_image_is_the_windowed_warren_cowley_sum():
    lattice = random_lattice(12, 0.3, 7)
    axis = gd.reciprocal_axis(16, 1.0)
    every = np.array([(x, y) for x in range(12) for y in range(12)])
    image = gd.all_origins_image(lattice, 5, axis, axis)
    assert np.allclose(image, gd.lot_average_image(lattice, 5, every, axis, axis), atol=1e-12)
    c = lattice.mean()
    expected = gd.warren_cowley_image(gd.alpha_window(lattice, 4), c, axis, axis, lot_size=5)
    assert np.allclose(image, expected, atol=1e-12)
    # The whole periodic lattice as one lot at commensurate h, k: |FFT|^2 / N^2.
    spectrum = np.abs(np.fft.fft2(lattice - c)) ** 2 / 144
    steps = np.arange(12) / 12
    negative = -np.arange(12) % 12  # exp(+2 pi i h x) in F is the FFT at -h
    assert np.allclose(gd.all_origins_image(lattice, 12, steps, steps), spectrum[np.ix_(negative, negative)])


def test_an_uncorrelated_lattice_is_flat_at_c_times_one_minus_c():
    lattice = random_lattice(128, 0.3, 8)
    axis = gd.reciprocal_axis(64, 1.0)
    image = gd.all_origins_image(lattice, 16, axis, axis)
    c = lattice.mean()
    # On a grid of pitch 1/32 every displacement but 0 of a 16-site lot averages out: the mean is exact.
    assert image.mean() == pytest.approx(c * (1 - c), rel=1e-12)
    assert image.std() < 0.25 * image.mean()  # 64 independent lots' worth of speckle


def test_detector_render_on_the_grid_points_equals_the_reduced_image():
    lattice = random_lattice(16, 0.5, 9)
    reduced = gd.all_origins_image(lattice, 8, gd.reciprocal_axis(64, 1.0), gd.reciprocal_axis(64, 1.0))
    for ppr in (64, 96):
        detector = gd.render_detector(lattice, 8, ppr, origin=(280, 220), size=512)
        rows = 280 + np.round(ppr * gd.reciprocal_axis(64, 1.0)).astype(int)  # h_m = -1 + m / 32 on exact pixels
        columns = 220 + np.round(ppr * gd.reciprocal_axis(64, 1.0)).astype(int)
        assert np.allclose(detector[np.ix_(rows, columns)], reduced, atol=1e-12)
        h, k = gd.detector_axes(ppr)
        assert h[280] == 0 and k[220] == 0 and h[280 + ppr] == 1


def test_against_the_cfsx_engine_as_an_extra_oracle():
    engine = pytest.importorskip("cfsx.physics.engine")
    lattice = random_lattice(24, 0.6, 10)
    axis = gd.reciprocal_axis(64, 1.0)
    assert np.allclose(gd.all_origins_image(lattice, 12, axis, axis), engine.all_lots_intensity(lattice, 12, 64, 1.0))
    origins = np.random.default_rng(0).integers(0, 24, size=(5, 2))
    assert np.allclose(
        gd.lot_average_image(lattice, 12, origins, axis, axis), engine.lot_intensity(lattice, 12, origins)
    )
    vectors = gd.cfs_vectors(4)
    assert np.allclose(gd.measure_alpha(lattice, vectors), engine.measure_alpha(lattice, vectors))


# --- corruptions ---------------------------------------------------------------------------------


def test_corruptions_do_what_they_say():
    lattice = random_lattice(32, 0.5, 11)
    axis = gd.reciprocal_axis(64, 1.0)
    clean = gd.all_origins_image(lattice, 16, axis, axis)
    pixel = 2 / 64
    images, masks, drawn = gd.corrupted_set(
        clean, axis, axis, pixel, gd.REDUCED_CORRUPTION, lambda kind, level: np.random.SeedSequence([kind, level])
    )
    assert sorted(images) == sorted(f"{kind}/{level}" for kind in gd.KINDS for level in gd.LEVELS)
    mean = clean.mean()
    for level, counts in zip(gd.LEVELS, gd.REDUCED_CORRUPTION.counts, strict=True):
        noisy = images[f"poisson/{level}"]
        assert noisy.mean() == pytest.approx(mean, rel=3 / np.sqrt(counts * noisy.size))
        assert np.allclose(noisy * counts / mean, np.round(noisy * counts / mean))  # whole counts
    # Bragg: h = k = 0 is pixel (32, 32), h = k = -1 the corner (0, 0) on the border.
    for level, height in zip(gd.LEVELS, gd.REDUCED_CORRUPTION.bragg_heights, strict=True):
        peaks = images[f"bragg/{level}"] - clean
        assert peaks[32, 32] == pytest.approx(height * mean, rel=1e-6)
        assert peaks[0, 0] == pytest.approx(height * mean, rel=1e-6)
        if drawn[str(level)]["bragg"]["fwhm_px"] == 0:
            assert np.count_nonzero(peaks > 1e-9) == 4
    single = gd.bragg_peaks(axis, axis, 5.0, 0.0, pixel)
    assert single.sum() == 20.0 and single[0, 32] == 5.0 and single[32, 0] == 5.0
    assert np.allclose(images["falloff/3"], clean * np.exp(-1.0 * (axis[:, None] ** 2 + axis[None, :] ** 2)))
    for level in gd.LEVELS:
        gaps, stop = masks[f"gaps/{level}"] == 1, masks[f"beamstop/{level}"] == 2
        assert np.all(images[f"gaps/{level}"][gaps] == 0) and np.allclose(images[f"gaps/{level}"][~gaps], clean[~gaps])
        assert images[f"beamstop/{level}"][32, 32] == -1 and np.all(images[f"beamstop/{level}"][stop] == -1)
        rows, columns, width = gd.REDUCED_CORRUPTION.gaps[level - 1]
        assert np.all(gaps.all(axis=1).sum() >= rows) and gaps.all(axis=0).sum() >= columns
        combined = masks[f"combined/{level}"]
        assert np.array_equal(combined == 2, stop) and np.array_equal(combined == 1, gaps & ~stop)
        assert np.all(images[f"combined/{level}"][stop] == -1)
    assert masks["beamstop/1"].sum() < masks["beamstop/2"].sum() < masks["beamstop/3"].sum()


# --- cases, groups and files ---------------------------------------------------------------------


def test_same_seed_same_bytes_and_every_field_present():
    first = gd.make_case(TINY, 0, 5, TINY_OPTIONS)
    second = gd.make_case(TINY, 0, 5, TINY_OPTIONS)
    assert first.keys() == second.keys()
    for key in first:
        assert np.asarray(first[key]).tobytes() == np.asarray(second[key]).tobytes(), key
    other = gd.make_case(TINY, 1, 5, TINY_OPTIONS)
    assert not np.array_equal(first["lattices"], other["lattices"])
    assert "detector_clean" in first and "detector_clean" not in other  # detector_cases = 1
    assert first["detector_clean"].shape == (64, 64)
    assert first["images_clean"].shape == (16, 16) and first["images_clean"].dtype == np.float32
    alpha = gd.measure_alpha(first["lattices"], gd.cfs_vectors(4))
    assert np.allclose(first["alpha_cfs4"], alpha)
    assert np.allclose(first["alpha_cfs2"], alpha[[0, 3, 4]])  # (0,1) (1,0) (1,1) within CFS4's order
    assert first["concentration"] == first["lattices"].mean()
    axis = gd.reciprocal_axis(16, 1.0)
    lots = gd.lot_average_image(first["lattices"], 8, first["lot_origins"], axis, axis)
    assert np.allclose(first["images_clean"], lots, rtol=1e-5)


def test_group_file_round_trip_and_workers_do_not_change_the_data(tmp_path):
    serial = gd.make_group(TINY, 3, 4, TINY_OPTIONS, workers=1)
    parallel = gd.make_group(TINY, 3, 4, TINY_OPTIONS, workers=2)
    for key in serial:
        if key != "attrs":
            assert np.array_equal(serial[key], parallel[key], equal_nan=True), key
    assert serial["lattices"].shape == (3, 16, 16) and serial["detector_clean"].shape == (1, 64, 64)
    path = tmp_path / "tiny.h5"
    gd.write_group(path, serial)
    loaded = gd.load_group(path)
    assert "detector_clean" not in loaded
    assert gd.load_group(path, detector=True)["detector_corrupted/combined/3"].shape == (1, 64, 64)
    assert np.array_equal(loaded["images_corrupted/poisson/3"], serial["images_corrupted/poisson/3"])
    assert np.array_equal(loaded["alpha_wide"], serial["alpha_wide"])
    assert loaded["attrs"]["N"] == 16 and loaded["attrs"]["K"] == "4" and loaded["attrs"]["complete"]
    attrs = gd.group_attrs(TINY, 3, 4, TINY_OPTIONS)
    assert gd.group_complete(path, attrs)
    assert not gd.group_complete(path, gd.group_attrs(TINY, 4, 4, TINY_OPTIONS))


def test_command_line_writes_and_then_skips_a_complete_group(tmp_path, capsys):
    arguments = ["--output", str(tmp_path), "--cases", "2", "--groups", "n64-l16-k8", "--workers", "1",
                 "--sweeps", "2", "--ordered-sweeps", "2", "--detector-cases", "1"]  # fmt: skip
    assert gd.main(arguments) == 0
    assert "wrote" in capsys.readouterr().out
    data = gd.load_group(tmp_path / "n64-l16-k8.h5", detector=True)
    assert data["lattices"].shape == (2, 64, 64) and data["detector_clean"].shape == (1, 512, 512)
    assert data["attrs"]["K"] == "8" and data["attrs"]["L"] == 16
    assert gd.main(arguments) == 0
    assert "skipped" in capsys.readouterr().out
    assert gd.main([*arguments[:4], "--groups", "nonsense"]) == 2
