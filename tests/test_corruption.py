"""Detector corruptions of training images: each kind against its oracle, and the corrected copies."""

import h5py
import numpy as np
import pytest

from cfsx.learning import corruption
from cfsx.learning.corruption import Corruption, apply, bragg_peaks, corrupted_copy, corrupted_images, grid
from cfsx.simulation import simulate

SIZE, H_MAX = 64, 1.0


def test_poisson_noise_has_the_counting_mean_and_variance():
    """I -> Poisson(I F / mean) mean / F: mean I and variance I mean / F (here I = mean = 2, F = 10)."""
    rng = np.random.default_rng(0)
    image = np.full((SIZE, SIZE), 2.0)
    draws = np.stack([apply(image, Corruption(flux=10.0), H_MAX, rng) for _ in range(20)])
    assert draws.mean() == pytest.approx(2.0, rel=0.01)
    assert draws.var() == pytest.approx(2.0 * 2.0 / 10.0, rel=0.03)
    assert np.allclose(draws * 10.0 / 2.0, np.round(draws * 10.0 / 2.0))  # whole counts


def test_falloff_is_exp_minus_b_q_squared_on_the_grid():
    image = np.random.default_rng(1).uniform(1, 2, (SIZE, SIZE))
    out = apply(image, Corruption(falloff_b=0.7), H_MAX, np.random.default_rng(0))
    h = -1.0 + 2.0 * np.arange(SIZE) / SIZE
    assert out[32, 32] == image[32, 32]  # h = k = 0
    assert out[0, 48] == pytest.approx(image[0, 48] * np.exp(-0.7 * (1.0 + 0.5**2)))
    np.testing.assert_allclose(out, image * np.exp(-0.7 * (h[:, None] ** 2 + h[None, :] ** 2)))


def test_bragg_peaks_sit_exactly_at_integer_h_and_k():
    single = bragg_peaks(SIZE, H_MAX, 0.0)  # h = -1 at pixel 0, h = 0 at pixel 32; h = +1 is off the grid
    assert set(zip(*np.nonzero(single), strict=True)) == {(0, 0), (0, 32), (32, 0), (32, 32)}
    wide = bragg_peaks(SIZE, H_MAX, 2.0)
    sigma = 2.0 / (2 * np.sqrt(2 * np.log(2)))
    assert np.unravel_index(wide[8:56, 8:56].argmax(), (48, 48)) == (24, 24)  # the peak at h = k = 0
    assert wide[24:41, 24:41].sum() == pytest.approx(2 * np.pi * sigma**2, rel=1e-3)
    odd = bragg_peaks(50, 1.3, 1.5)  # integers between pixels: the peak's centroid is the integer's position
    positions = (np.arange(-1, 2) + 1.3) / (2.6 / 50)
    profile = odd.sum(axis=1)
    around = np.arange(int(positions[1]) - 6, int(positions[1]) + 8)
    assert (profile[around] * around).sum() / profile[around].sum() == pytest.approx(positions[1], abs=0.02)
    image = np.ones((SIZE, SIZE))
    out = apply(image, Corruption(bragg_height=100.0, bragg_fwhm=0.0), H_MAX, np.random.default_rng(0))
    assert out[32, 32] == 101.0 and out[10, 10] == 1.0


def test_gaps_are_zeros_and_the_beamstop_is_flagged():
    image = np.ones((SIZE, SIZE))
    spec = Corruption(gaps=((0, 10, 3), (1, 62, 5)), beamstop_radius=0.1, beamstop_arm=0.05, beamstop_angle=0.0)
    out = apply(image, spec, H_MAX, np.random.default_rng(0))
    assert np.all(out[10:13, :][:, :62] == 0) and np.all(out[:, 62:] == 0) and np.all(out[13:28, 20:40] == 1)
    assert out[32, 32] == corruption.BEAMSTOP_FLAG  # h = k = 0 is behind the disk
    h = grid(SIZE, H_MAX)
    assert out[np.searchsorted(h, 0.6), 32] == corruption.BEAMSTOP_FLAG  # the arm along +h
    assert out[np.searchsorted(h, -0.6), 32] == 1.0 and out[32, np.searchsorted(h, 0.6)] == 1.0


def test_corrupted_images_are_seeded_per_image_and_corrected_to_finite_training_images():
    images = np.random.default_rng(2).uniform(0.5, 1.5, (4, 32, 32)).astype(np.float32)
    first, drawn = corrupted_images(images, H_MAX, seed=3)
    again, _ = corrupted_images(images[2:], H_MAX, seed=3, first_index=2)
    np.testing.assert_array_equal(first[2:], again)
    assert np.isfinite(first).all() and first.shape == images.shape and len(drawn) == 4
    assert np.allclose(first.mean(axis=(1, 2)), first.mean(axis=(1, 2))[0], rtol=0.2)  # normalised by correct


def test_corrupted_copy_keeps_labels_and_changes_only_images(tmp_path, small_run):
    simulate(small_run(2, 12), tmp_path / "clean.h5", workers=1)
    assert corrupted_copy(tmp_path / "clean.h5", tmp_path / "copy.h5", seed=5, workers=2) == 12
    with h5py.File(tmp_path / "clean.h5") as clean, h5py.File(tmp_path / "copy.h5") as copy:
        np.testing.assert_array_equal(clean["encodings/achieved"][()], copy["encodings/achieved"][()])
        np.testing.assert_array_equal(clean["seeds"][()], copy["seeds"][()])
        assert copy.attrs["config"] == clean.attrs["config"] and '"seed": 5' in copy.attrs["corruption"]
        assert not np.allclose(clean["images"][()], copy["images"][()])
        assert np.isfinite(copy["images"][()]).all()


def test_an_image_correct_refuses_is_corrupted_again(monkeypatch):
    """Gaps over the whole image leave nothing measured: correct refuses it, and the next draw is used."""
    drawn = iter([Corruption(gaps=((0, 0, SIZE),)), Corruption(falloff_b=0.5)])
    monkeypatch.setattr(corruption, "draw", lambda rng, size: next(drawn))
    image = np.random.default_rng(4).uniform(0.5, 1.5, (1, SIZE, SIZE))
    corrected, used = corrupted_images(image, H_MAX, seed=1)
    assert used == [Corruption(falloff_b=0.5)] and np.isfinite(corrected).all()
