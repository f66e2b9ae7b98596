"""Issue 27: correct leaves a clean image alone, tells a one-pixel Bragg peak from a sharp diffuse maximum (with
the resolution test on), and the facts the final answer reads of each image."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cfsx.config import CorrectionConfig
from cfsx.correction import INPAINTED, MEASURED, correct_image
from cfsx.interpretation.estimates import ImageFacts, choose_final, least_squares, long_range_order
from cfsx.interpretation.refinement import ExpectedIntensity
from cfsx.physics.inversion import NO_WINDOW

VECTORS = np.array([[0, 1], [1, 0], [1, 1]])
GRID = np.linspace(-1, 1, 64, endpoint=False)


def _exact(alpha=(0.1, -0.05, 0.03)) -> np.ndarray:
    return ExpectedIntensity(VECTORS, 64, 1.0, NO_WINDOW, 0.5)(np.array(alpha))


def _sharp_maxima(height: float, width: float) -> np.ndarray:
    """Lorentzian maxima of half-width ``width`` (pixels) at every integer h, k on a flat floor of 1."""
    distance = np.abs(GRID - np.round(GRID)) * 32  # pixels from the nearest integer
    profile = 1 / (1 + (distance / width) ** 2)
    return 1 + (height - 1) * np.outer(profile, profile)


def test_a_clean_gridded_image_passes_correct_unchanged_but_for_the_scale():
    image = _exact()
    corrected = correct_image(image, CorrectionConfig())
    factor = corrected.image.mean() / image.mean()
    np.testing.assert_allclose(corrected.image, image * factor, rtol=1e-5)
    assert (corrected.mask == MEASURED).all()
    assert corrected.step("bragg")["peak_pixels"] == 0
    np.testing.assert_allclose(least_squares(corrected.image[None].astype(np.float64), VECTORS, 1.0)[0],
                               [0.1, -0.05, 0.03], atol=1e-5)  # fmt: skip


RESOLVING = dataclasses.replace(CorrectionConfig(), bragg=dataclasses.replace(CorrectionConfig().bragg, tail=0.01))


def test_sharp_diffuse_maxima_are_kept_and_a_one_pixel_bragg_peak_of_the_same_height_is_removed():
    diffuse = _sharp_maxima(200.0, 1.0)
    kept = correct_image(diffuse, RESOLVING)
    assert kept.step("bragg")["peak_pixels"] == 0 and kept.step("bragg")["diffuse_maxima_kept"] > 0
    assert (kept.mask == MEASURED).all()
    factor = kept.image.mean() / diffuse.mean()
    np.testing.assert_allclose(kept.image, diffuse * factor, rtol=1e-5)
    # without the resolution test the same maxima are masked: the test is what keeps them
    assert correct_image(diffuse, CorrectionConfig()).step("bragg")["peak_pixels"] > 0

    bragg = _exact() + 0.0
    bragg[32, 32] = 200.0 * bragg.mean()  # one pixel at h = k = 0, as high as the maxima above (relative)
    removed = correct_image(bragg, RESOLVING)
    assert removed.step("bragg")["peak_pixels"] > 0
    assert removed.mask[32, 32] == INPAINTED
    clean = correct_image(_exact(), RESOLVING).image
    assert abs(removed.image[32, 32] - clean[32, 32]) < 0.05 * clean[32, 32]


def test_the_resolution_test_keeps_a_peak_only_when_its_tails_reach_beyond_the_resolution():
    # a Gaussian peak of FWHM 1 px is the resolution; the same peak is wider than a resolution of 0.3 px? no: the
    # ring is resolution + 1 px from the maximum, where a 1 px FWHM Gaussian has fallen to nothing
    distance = np.abs(GRID - np.round(GRID)) * 32
    gaussian = np.exp(-4 * np.log(2) * distance**2)
    image = _exact() + 100 * _exact().mean() * np.outer(gaussian, gaussian)
    assert correct_image(image, RESOLVING).step("bragg")["peak_pixels"] > 0
    wide = dataclasses.replace(RESOLVING, bragg=dataclasses.replace(RESOLVING.bragg, resolution=0.1))
    lorentz = _sharp_maxima(100.0, 1.5)
    assert correct_image(lorentz, wide).step("bragg")["peak_pixels"] == 0


def test_image_facts_read_what_correct_did():
    rng = np.random.default_rng(3)
    counts = rng.poisson(_exact() / _exact().mean() * 50).astype(np.float64)
    corrected = correct_image(counts, CorrectionConfig())
    facts = ImageFacts.of({"steps": corrected.provenance}, corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.corrected and facts.bragg_share == 0 and facts.filled_share == 0
    # Friedel's law averages two cells into each value: twice the counts behind it, whatever the scale
    assert facts.counts == pytest.approx(2 * np.median(counts), rel=0.1)
    alone = dataclasses.replace(
        CorrectionConfig(), reconstruction=dataclasses.replace(CorrectionConfig().reconstruction, symmetry="none")
    )
    corrected = correct_image(counts, alone)
    facts = ImageFacts.of({"steps": corrected.provenance}, corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.counts == pytest.approx(np.median(counts), rel=0.1)
    peaked = _exact()
    peaked[32, 32] += 500 * peaked.mean()
    corrected = correct_image(peaked, CorrectionConfig())
    facts = ImageFacts.of({"steps": corrected.provenance}, corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.bragg_share == corrected.step("bragg")["peak_pixels"] / 64**2 > 0
    assert facts.filled_share == np.mean(corrected.mask == INPAINTED) > 0
    assert facts.counts == np.inf  # not an image of counts
    assert not ImageFacts.of(None, None, peaked, None, 1.0).corrected


def test_long_range_order_finds_a_comb_of_bragg_peaks_and_not_noise():
    assert abs(long_range_order(_exact(), 1.0)[0]) < 1e-12  # correlations within range 1: nothing beyond 8 sites
    rng = np.random.default_rng(0)
    noisy = _exact() * (1 + 0.1 * rng.standard_normal((64, 64)))
    order, significance = long_range_order(noisy, 1.0)
    assert abs(significance) < 4 and abs(order) < 1e-3  # noise averages out
    comb = noisy.copy()
    comb[::32, ::32] += 10 * noisy.mean()  # one-pixel peaks at every integer h, k: 10 x the mean
    order, significance = long_range_order(comb, 1.0)
    # four peaks of 10 x the mean among 64^2 pixels add 40 / 4096 of the mean to every coefficient: in alpha units
    # over the mean, which rose by the same amount
    expected = (40 / 4096) / (1 + 40 / 4096)
    assert order == pytest.approx(expected, rel=0.1) and significance > 10
    assert np.isnan(long_range_order(np.ones((8, 8)), 1.0)[0])  # an 8 x 8 grid reaches 2 sites only


def test_the_rule_takes_the_cnn_where_bragg_peaks_were_left_in():
    cnn, fitted = np.full((2, 3), 0.3), np.full((2, 3), 0.1)
    facts = [ImageFacts(corrected=True, order_significance=1.0), ImageFacts(corrected=True, order_significance=9.0)]
    chosen = choose_final({"cnn": cnn, "least_squares": fitted}, facts, "hybrid")
    assert chosen.final_source == ["blend", "cnn"]
