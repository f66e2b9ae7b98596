"""Issue 27: correct leaves a clean image alone, tells a one-pixel Bragg peak from a sharp diffuse maximum (with
the resolution test on), and the facts the final answer reads of each image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
    assert corrected.step("bragg").peak_pixels == 0
    np.testing.assert_allclose(least_squares(corrected.image[None].astype(np.float64), VECTORS, 1.0)[0],
                               [0.1, -0.05, 0.03], atol=1e-5)  # fmt: skip


RESOLVING = dataclasses.replace(CorrectionConfig(), bragg=dataclasses.replace(CorrectionConfig().bragg, tail=0.01))


def test_sharp_diffuse_maxima_are_kept_and_a_one_pixel_bragg_peak_of_the_same_height_is_removed():
    diffuse = _sharp_maxima(200.0, 1.0)
    kept = correct_image(diffuse, RESOLVING)
    assert kept.step("bragg").peak_pixels == 0 and kept.step("bragg").diffuse_maxima_kept > 0
    assert (kept.mask == MEASURED).all()
    factor = kept.image.mean() / diffuse.mean()
    np.testing.assert_allclose(kept.image, diffuse * factor, rtol=1e-5)
    # without the resolution test the same maxima are masked: the test is what keeps them
    assert correct_image(diffuse, CorrectionConfig()).step("bragg").peak_pixels > 0

    bragg = _exact() + 0.0
    bragg[32, 32] = 200.0 * bragg.mean()  # one pixel at h = k = 0, as high as the maxima above (relative)
    removed = correct_image(bragg, RESOLVING)
    assert removed.step("bragg").peak_pixels > 0
    assert removed.mask[32, 32] == INPAINTED
    clean = correct_image(_exact(), RESOLVING).image
    assert abs(removed.image[32, 32] - clean[32, 32]) < 0.05 * clean[32, 32]


def test_the_resolution_decides_which_peaks_are_wider_than_a_bragg_peak():
    # a Gaussian peak of FWHM 2 pixels at every integer h, k: 1.5 pixels from its maximum it stands at 21 % of its
    # height, 3 pixels away at 0.2 %; so with a resolution of 0.5 pixels it is wider (a diffuse maximum, kept) and
    # with 2 pixels it is a Bragg peak (masked)
    distance = np.abs(GRID - np.round(GRID)) * 32
    gaussian = np.exp(-4 * np.log(2) * (distance / 2.0) ** 2)
    image = _exact() + 100 * _exact().mean() * np.outer(gaussian, gaussian)

    def with_resolution(resolution: float):
        bragg = dataclasses.replace(RESOLVING.bragg, resolution=resolution)
        return correct_image(image, dataclasses.replace(RESOLVING, bragg=bragg)).step("bragg")

    assert with_resolution(0.5).peak_pixels == 0 and with_resolution(0.5).diffuse_maxima_kept > 0
    assert with_resolution(2.0).peak_pixels > 0


def test_image_facts_read_what_correct_did():
    rng = np.random.default_rng(3)
    counts = rng.poisson(_exact() / _exact().mean() * 50).astype(np.float64)
    corrected = correct_image(counts, CorrectionConfig())
    facts = ImageFacts.of(corrected.correction_record({}), corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.corrected and facts.bragg_share == 0 and facts.filled_share == 0
    # Friedel's law averages two cells into each value: twice the counts behind it, whatever the scale
    assert facts.counts == pytest.approx(2 * np.median(counts), rel=0.1)
    alone = dataclasses.replace(
        CorrectionConfig(), reconstruction=dataclasses.replace(CorrectionConfig().reconstruction, symmetry="none")
    )
    corrected = correct_image(counts, alone)
    facts = ImageFacts.of(corrected.correction_record({}), corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.counts == pytest.approx(np.median(counts), rel=0.1)
    peaked = _exact()
    peaked[32, 32] += 500 * peaked.mean()
    corrected = correct_image(peaked, CorrectionConfig())
    facts = ImageFacts.of(corrected.correction_record({}), corrected.mask, corrected.image, corrected.variance, 1.0)
    assert facts.bragg_share == corrected.step("bragg").peak_pixels / 64**2 > 0
    assert facts.filled_share == np.mean(corrected.mask == INPAINTED) > 0
    assert facts.counts == np.inf  # not an image of counts
    assert not ImageFacts.of(None, None, peaked, None, 1.0).corrected


def test_long_range_order_finds_a_comb_of_bragg_peaks_and_not_noise():
    assert abs(long_range_order(_exact(), 1.0)[0]) < 1e-12  # correlations within range 1: nothing beyond 8 sites
    rng = np.random.default_rng(0)
    noisy = [_exact() * (1 + 0.1 * rng.standard_normal((64, 64))) for _ in range(200)]
    significance = np.array([long_range_order(image, 1.0)[1] for image in noisy])
    # white noise: the significance is about a standard normal variable (1.03-1.11 over three seeds); each pair
    # d, -d counted twice would make it 1.4 times wider
    assert abs(significance.mean()) < 0.25 and 0.85 < significance.std() < 1.25
    comb = noisy[0].copy()
    comb[::32, ::32] += 10 * noisy[0].mean()  # one-pixel peaks at every integer h, k: 10 x the mean
    order, significance = long_range_order(comb, 1.0)
    # four peaks of 10 x the mean among 64^2 pixels add 40 / 4096 of the mean to every coefficient: in alpha units
    # over the mean, which rose by the same amount
    expected = (40 / 4096) / (1 + 40 / 4096)
    assert order == pytest.approx(expected, rel=0.1) and significance > 10
    assert np.isnan(long_range_order(np.ones((8, 8)), 1.0)[0])  # an 8 x 8 grid reaches 2 sites only


def test_long_range_order_is_positive_for_a_comb_whatever_the_window():
    for h_max, size in ((1.5, 96), (0.75, 48), (2.0, 128)):
        grid = np.linspace(-h_max, h_max, size, endpoint=False)
        image = np.ones((size, size))
        on_lattice = np.isclose(grid, np.round(grid))
        image[np.ix_(on_lattice, on_lattice)] += 20.0
        order, significance = long_range_order(image, h_max)
        assert order > 0 and significance > 5, h_max


def test_the_rule_takes_the_cnn_where_bragg_peaks_were_left_in():
    cnn, fitted = np.full((2, 3), 0.3), np.full((2, 3), 0.1)
    ordered = ImageFacts(corrected=True, long_range_order=0.01, order_significance=9.0)
    facts = [ImageFacts(corrected=True, order_significance=1.0), ordered]
    chosen = choose_final({"cnn": cnn, "least_squares": fitted}, facts, "hybrid")
    assert chosen.final_source == ["blend", "cnn"]


def test_the_rule_weighs_the_blend_needs_both_order_tests_and_one_fact_per_image():
    from cfsx.interpretation.estimates import FinalRule

    cnn, fitted = np.full((3, 3), 0.3), np.full((3, 3), 0.1)
    tiny = ImageFacts(corrected=True, long_range_order=1e-9, order_significance=50.0)  # rounding, not order
    plain = ImageFacts(corrected=True)
    chosen = choose_final({"cnn": cnn, "least_squares": fitted}, [tiny, plain, plain], "hybrid", FinalRule(0.3))
    assert chosen.final_source == ["blend", "blend", "blend"]
    np.testing.assert_allclose(chosen.final, 0.3 * cnn + 0.7 * fitted)
    with pytest.raises(ValueError, match="2 image facts for 3 images"):
        choose_final({"cnn": cnn, "least_squares": fitted}, [plain, plain], "hybrid")


DATA = Path(__file__).parent / "data"


def test_a_hybrid_answers_raw_images_by_the_rule_on_the_command_line_and_on_the_page_alike(tmp_path):
    """The tiny hybrid of tests/data (16 x 16, CFS2): a clean raw image gets the blend, the same image with a Bragg
    peak that correct masks the CNN; results.json follows its schema, results.h5 holds the blend, and the page's
    worker gives the answers of the command line."""
    import json

    import h5py
    import jsonschema
    from typer.testing import CliRunner

    from cfsx.app import serve_work
    from cfsx.app.cli import app
    from cfsx.interpretation.results import SCHEMA_PATH

    clean = np.kron(ExpectedIntensity(VECTORS, 16, 1.0, NO_WINDOW, 0.5)(np.array([0.1, -0.05, 0.03])), np.ones((4, 4)))
    peaked = clean.copy()
    peaked[32, 32] += 500 * clean.mean()  # at h = k = 0
    np.save(tmp_path / "clean.npy", clean)
    np.save(tmp_path / "peaked.npy", peaked)
    model = DATA / "layout-v1-hybrid.keras"
    result = CliRunner().invoke(app, ["interpret", str(tmp_path / "clean.npy"), str(tmp_path / "peaked.npy"), "-o",
                                      str(tmp_path / "out"), "--model", str(model), "--replicates", "0",
                                      "--no-figures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    first, second = document["images"]
    assert (first["final_source"], second["final_source"]) == ("blend", "cnn")
    # the fields results.json lays out by the generic rule are in the terminal too: the final rule's input
    assert "more of each image's record" in " ".join(result.output.split()), result.output
    assert first["facts"]["corrected"] and second["facts"]["corrected"]
    with h5py.File(tmp_path / "out" / "results.h5") as file:
        cnn, fitted, blend = (file[f"encodings/{name}"][()] for name in ("cnn", "least_squares", "blend"))
        np.testing.assert_allclose(blend, (cnn + fitted) / 2, rtol=1e-12)
        np.testing.assert_allclose(file["encodings/final"][0], blend[0], rtol=1e-12)
    serve_work.load_models({"tiny": str(model)})
    (tmp_path / "job").mkdir()
    np.save(tmp_path / "job" / "upload.npy", peaked)
    served = serve_work.interpret_upload(serve_work.Job(tmp_path / "job", "upload.npy", "peaked.npy",
                                                        serve_work.Options("tiny", replicates=0), 10**6))  # fmt: skip
    assert served.interpretation.final_source == "cnn"
    np.testing.assert_allclose(served.interpretation.encoding, list(second["encoding"].values()), rtol=1e-6)


def test_interpret_refuses_a_foreign_output_folder_in_one_line_before_reading(tmp_path):
    """make fuzz found two lines: the warning about an uncalibrated image, then the refusal of the output folder."""
    import subprocess
    import sys

    np.save(tmp_path / "raw.npy", np.kron(_exact(), np.ones((2, 2))))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("someone's notes\n")
    result = subprocess.run([sys.executable, "-m", "cfsx", "interpret", "raw.npy", "-o", "out", "--model",
                             str(DATA / "layout-v1-hybrid.keras"), "--replicates", "0", "--no-figures"],
                            cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 4
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not a cfsx output" in result.stderr
    assert (tmp_path / "out" / "notes.txt").read_text() == "someone's notes\n"
