"""Model images, fit quality, ceilings and the verdict (issue 26), against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from cfsx.correction.provenance import CorrectionRecord
from cfsx.interpretation.fit_quality import (
    EXPLAINED,
    NOT_EXPLAINED,
    PARTLY,
    Ceilings,
    FitQuality,
    ceilings,
    fit_quality,
    fold_of_cells,
    judge,
)
from cfsx.interpretation.model_images import analytic_image, structure_image, structure_images, taper
from cfsx.interpretation.quality import ImageEvidence, assess, correction_evidence
from cfsx.physics.engine import autocorrelation, reciprocal_grid, warren_cowley_intensity
from cfsx.physics.inversion import NO_WINDOW, cosine_design, half_window

SIZE, H_MAX = 64, 1.0
VECTORS = np.array([(dx, dy) for dx in range(4) for dy in range(4) if (dx, dy) != (0, 0)])


def wc_image(alpha: dict[tuple[int, int], float], size: int = SIZE) -> np.ndarray:
    """1 + sum over the given vectors (and -v) of 2 alpha cos 2 pi (h v_x + k v_y): by hand."""
    grid = reciprocal_grid(size, H_MAX)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    image = np.ones((size, size))
    for (dx, dy), value in alpha.items():
        image += 2 * value * np.cos(2 * np.pi * (h * dx + k * dy))
    return image


def test_analytic_image_is_the_warren_cowley_sum_of_the_encoding():
    encoding = np.linspace(-0.2, 0.2, len(VECTORS))
    expected = wc_image({tuple(v): a for v, a in zip(VECTORS, encoding, strict=True)})
    np.testing.assert_allclose(analytic_image(encoding, VECTORS, SIZE, H_MAX), expected, atol=1e-8)


def test_structure_image_untapered_is_the_warren_cowley_sum_of_the_lattice_correlations():
    lattice = (np.random.default_rng(0).random((16, 16)) < 0.4).astype(np.uint8)
    concentration = lattice.mean()
    gamma = autocorrelation(lattice)
    radius = 7
    d = np.arange(-radius, radius + 1)
    alpha = gamma[np.ix_(d % 16, d % 16)] / gamma[0, 0]
    oracle = warren_cowley_intensity(alpha, concentration, SIZE, H_MAX) / (concentration * (1 - concentration))
    mine = structure_image(lattice[None], SIZE, H_MAX, inner=20.0, outer=21.0)  # every displacement, flat
    np.testing.assert_allclose(mine, oracle, atol=1e-9)
    # the taper: 1 inside, a half cosine, 0 outside
    weights = taper(np.arange(-10, 11), 4.0, 10.0)
    assert weights[10, 10] == 1 and weights[10, 14] == 1 and weights[10, 20] == 0 and weights[10, 0] == 0
    assert weights[10, 17] == pytest.approx(0.5 * (1 + np.cos(np.pi * 3 / 6)))


def test_structure_image_noise_is_zero_for_identical_halves_and_measures_the_difference_otherwise():
    rng = np.random.default_rng(1)
    lattice = (rng.random((32, 32)) < 0.5).astype(np.uint8)
    _, noise = structure_images(np.stack([lattice, lattice]), SIZE, H_MAX, 4, 10)
    assert noise == 0
    lattices = (rng.random((4, 32, 32)) < 0.5).astype(np.uint8)
    whole, noise = structure_images(lattices, SIZE, H_MAX, 4, 10)
    first, second = (structure_image(part, SIZE, H_MAX, 4, 10) for part in (lattices[:2], lattices[2:]))
    assert noise == pytest.approx(np.sqrt(np.mean((first - second) ** 2)) / 2 / whole.mean())


def test_fit_quality_against_a_direct_least_squares():
    rng = np.random.default_rng(2)
    model = wc_image({(1, 0): 0.2, (0, 1): -0.1})
    observed = 3.0 * model + 2.0
    exact = fit_quality(observed, model)
    assert (exact.scale, exact.background) == pytest.approx((3.0, 2.0)) and exact.r1 == pytest.approx(0, abs=1e-12)
    assert exact.r2 == pytest.approx(1.0)
    noisy = observed + rng.normal(0, 0.3, observed.shape)
    measured = rng.random(observed.shape) > 0.3
    found = fit_quality(noisy, model, measured)
    x, y = model[measured], noisy[measured]
    (a, b), *_ = np.linalg.lstsq(np.column_stack([x, np.ones_like(x)]), y, rcond=None)
    residual = y - a * x - b
    assert found.cells == measured.sum() and (found.scale, found.background) == pytest.approx((a, b))
    assert found.r1 == pytest.approx(np.abs(residual).sum() / np.abs(y).sum())
    assert found.r2 == pytest.approx(1 - residual @ residual / ((y - y.mean()) ** 2).sum())
    assert found.chi2 is None


def test_reduced_chi2_of_poisson_counts_against_their_expectation_is_one():
    expectation = 20 * wc_image({(1, 1): 0.3, (2, 0): -0.2})
    counts = np.random.default_rng(3).poisson(expectation).astype(float)
    chi2 = fit_quality(counts, expectation, variance=expectation).chi2
    assert chi2 == pytest.approx(1.0, abs=0.08)  # 4094 degrees of freedom: sd 0.022
    assert fit_quality(counts, expectation, variance=expectation / 4).chi2 == pytest.approx(4 * chi2)


def direct_cross_validation(image: np.ndarray, measured: np.ndarray, max_range: int) -> float:
    """The block cross-validated R2 by a least-squares fit per fold (the oracle of ``ceilings``)."""
    design = cosine_design(half_window(max_range), SIZE, H_MAX, NO_WINDOW)
    folds, y, use = fold_of_cells(SIZE).ravel(), image.ravel(), measured.ravel()
    predicted, held = [], []
    for fold in range(5):
        train, test = use & (folds != fold), use & (folds == fold)
        beta = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
        predicted.append(design[test] @ beta)
        held.append(y[test])
    predicted, held = np.concatenate(predicted), np.concatenate(held)
    return 1 - np.sum((held - predicted) ** 2) / np.sum((held - held.mean()) ** 2)


def test_ceilings_equal_a_direct_block_cross_validated_fit():
    rng = np.random.default_rng(4)
    image = wc_image({(1, 0): 0.2, (5, 3): 0.15, (9, 1): -0.1}) + rng.normal(0, 0.05, (SIZE, SIZE))
    measured = np.ones((SIZE, SIZE), bool)
    measured[5:20, 30:50] = False
    found = ceilings(image, measured, 4, H_MAX)
    assert found.range_r2 == pytest.approx(direct_cross_validation(image, measured, 3), abs=1e-9)
    assert found.periodic_r2 == pytest.approx(direct_cross_validation(image, measured, 15), abs=1e-9)
    assert (found.range_vectors, found.periodic_vectors) == (24, 480)
    assert found.periodic_r2 > 0.9 > found.range_r2 + 0.3  # the (5, 3) and (9, 1) terms lie beyond range 3
    # blocks of 8 x 8 cells, each in one of 5 folds
    folds = fold_of_cells(SIZE)
    assert set(np.unique(folds)) == set(range(5)) and (folds[:8, :8] == folds[0, 0]).all()


def test_odd_share_is_zero_for_a_centrosymmetric_image_and_measures_an_odd_part():
    image = wc_image({(1, 2): 0.2, (3, 1): -0.1})
    assert ceilings(image, None, 4, H_MAX).odd_share == pytest.approx(0, abs=1e-20)
    grid = reciprocal_grid(SIZE, H_MAX)
    odd = image + np.sin(2 * np.pi * grid)[:, None] * np.ones(SIZE)[None, :]
    assert ceilings(odd, None, 4, H_MAX).odd_share > 0.3


def limits(range_r2=0.9, periodic_r2=0.95, odd=0.0, noise_r2=None) -> Ceilings:
    return Ceilings(range_r2, periodic_r2, 24, 480, odd, noise_r2)


def fit(r2: float) -> FitQuality:
    return FitQuality(0.1, r2, None, 1.0, 0.0, 4096)


def test_each_verdict_is_reached_and_gives_its_reasons():
    assert judge(fit(0.88), limits()).label == EXPLAINED
    partly = judge(fit(0.88), limits(range_r2=0.5))
    assert partly.label == PARTLY and "beyond the encoding's range" in partly.reasons[0]
    assert judge(fit(0.6), limits()).label == PARTLY  # 0.67 of the range ceiling
    weak = judge(fit(0.2), limits())
    assert weak.label == NOT_EXPLAINED and "0.22 of the range ceiling" in weak.reasons[0]
    periodic = judge(fit(0.1), limits(0.1, 0.2))
    assert periodic.label == NOT_EXPLAINED and "periodic ceiling 0.20" in periodic.reasons[0]
    # noise lowers what can be explained: a periodic ceiling of 0.4 where noise leaves 0.5 is no refusal
    assert judge(fit(0.38), limits(0.4, 0.4, noise_r2=0.5)).label == EXPLAINED
    zones = judge(fit(0.88), limits(), consistency=-0.1)
    assert zones.label == NOT_EXPLAINED and "not periodic in reciprocal space" in zones.reasons[0]
    assert judge(fit(0.88), limits(), symmetry_chi2=30).label == NOT_EXPLAINED
    assert judge(fit(0.88), limits(odd=0.3)).label == NOT_EXPLAINED
    assert judge(fit(0.88), limits(range_r2=0.1, periodic_r2=0.9)).label == PARTLY  # nothing in range to judge


def test_assess_explains_an_exact_image_and_refuses_a_texture():
    from scipy import ndimage

    alpha = {tuple(v): a for v, a in zip(VECTORS, np.linspace(-0.15, 0.15, len(VECTORS)), strict=True)}
    image = 0.25 * wc_image(alpha)
    encoding = np.array([alpha[tuple(v)] for v in VECTORS])
    good = assess(image, {"cnn": encoding, "least_squares": encoding}, "cnn", VECTORS, (SIZE, H_MAX, 4),
                  ImageEvidence())  # fmt: skip
    assert good.verdict.label == EXPLAINED and good.fits["cnn"].analytic.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(good.model_image, image, rtol=1e-5)
    texture = ndimage.gaussian_filter(np.random.default_rng(5).normal(size=(SIZE, SIZE)), 2.0, mode="wrap") + 1
    bad = assess(texture, {"cnn": encoding}, "cnn", VECTORS, (SIZE, H_MAX, 4), ImageEvidence())
    assert bad.verdict.label == NOT_EXPLAINED


def test_correction_evidence_reads_the_zones_and_symmetry_steps():
    steps = [{"step": "zones", "consistency": [{"consistency": 0.9, "pairs": 500}, {"consistency": -0.2, "pairs": 600},
                                               {"consistency": -0.9, "pairs": 10}]},
             {"step": "symmetry", "chi2": 3.5}]  # fmt: skip
    # 10 pairs are too few to judge
    assert correction_evidence(CorrectionRecord.from_plain({"steps": steps})) == (-0.2, 3.5)
    assert correction_evidence(None) == (None, None)


def test_strict_exits_7_for_a_texture_keeps_the_results_and_the_store_leaves_it_out(tmp_path):
    import h5py
    from scipy import ndimage
    from typer.testing import CliRunner

    from cfsx.app.cli import app
    from cfsx.config import load_config
    from cfsx.simulation import decode

    texture = ndimage.gaussian_filter(np.random.default_rng(6).normal(size=(SIZE, SIZE)), 2.0, mode="wrap")
    np.save(tmp_path / "texture.npy", texture - texture.min() + 0.1)
    demo = load_config("demo", ["lattice.size=32", "diffraction.image_size=64", "diffraction.lot_size=16",
                                "diffraction.n_lots=4"])  # fmt: skip
    np.save(tmp_path / "plane.npy", decode(demo, np.array([[-0.2, 0.1, 0.15]]), 3).images[0])
    runner = CliRunner()
    arguments = ["interpret", str(tmp_path / "texture.npy"), str(tmp_path / "plane.npy"), "--model", "general-cfs2",
                 "--replicates", "1", "--no-figures", "--set", "decode.lattice_size=32",
                 "--record", str(tmp_path / "store.h5")]  # fmt: skip
    lenient = runner.invoke(app, [*arguments, "-o", str(tmp_path / "lenient")])
    assert lenient.exit_code == 0, lenient.output
    assert "texture.npy is not explained" in " ".join(lenient.output.split())
    import json

    images = json.loads((tmp_path / "lenient" / "results.json").read_text())["images"]
    labels = [image["verdict"]["label"] for image in images]
    assert labels[0] == "not explained" and labels[1] != "not explained"
    with h5py.File(tmp_path / "store.h5") as store:  # the texture is no fine-tuning data
        assert [source.decode() for source in store["sources"][()]] == [str(tmp_path / "plane.npy")]
    strict = runner.invoke(app, [*arguments, "-o", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 7 and (tmp_path / "strict" / "results.json").exists()
