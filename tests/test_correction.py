"""cfsx correct: each step against a known answer, and bad input."""

import dataclasses
import functools
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import CorrectionConfig, GeometryConfig, MaskConfig, load_config
from cfsx.correction import (
    FILLED_BY_SYMMETRY,
    area_average,
    bragg_peaks,
    correct_files,
    correct_image,
    invalid_pixels,
    pixel_coordinates,
    pixel_of,
)
from cfsx.correction.geometry import calibrate_from_file
from cfsx.correction.pixels import _pixel_axes
from cfsx.correction.symmetry import symmetry_average
from cfsx.errors import ConfigError, DataError
from cfsx.io.readers import expand_inputs, read_image
from cfsx.physics import engine
from cfsx.physics.engine import reciprocal_grid
from cfsx.physics.metrics import image_r2
from cfsx.simulation.detector import CORRUPTIONS, Detector


def plain_config(**sections) -> CorrectionConfig:
    overrides = ["bragg.enabled=false", "smoothing.method=none", "reconstruction.inpaint=false"]
    overrides += [f"{key}={value}" for key, value in sections.items()]
    return load_config("correct", overrides, root=CorrectionConfig)


@pytest.fixture(scope="module")
def clean_image():
    lattice, state = engine.random_lattice(32, 0.5, engine.seed_state(4))
    vectors = np.array([[0, 1], [1, 0], [1, 1]])
    lattice, _, _ = engine.metropolis_sweeps(lattice, vectors, np.array([0.3, -0.2, 0.1]), 30, state)
    return engine.all_lots_intensity(lattice, 16, 64, 1.0)


def test_area_average_of_a_block_upsampled_image_is_the_image(clean_image):
    # Each 64 x 64 cell becomes a 4 x 4 block of detector pixels spanning the same window.
    detector = np.kron(clean_image, np.ones((4, 4))) * 37.0
    corrected = correct_image(detector, plain_config())
    np.testing.assert_allclose(corrected.image, clean_image * 0.25 / clean_image.mean(), rtol=1e-5)
    assert (corrected.mask == 0).all()


def test_calibration_maps_pixels_to_h_k():
    config = plain_config(**{"geometry.origin": "[100, 50]", "geometry.pixels_per_rlu": "[40, 20]"})
    h, k = pixel_coordinates((200, 120), config.geometry, 1.0, 64)
    assert (h[100, 50], k[100, 50]) == (0.0, 0.0)
    assert h[140, 50] == pytest.approx(1.0) and k[100, 70] == pytest.approx(1.0)
    rotated = plain_config(**{"geometry.origin": "[0, 0]", "geometry.pixels_per_rlu": "[10, 10]",
                              "geometry.rotation": 90})  # fmt: skip
    h, k = pixel_coordinates((20, 20), rotated.geometry, 1.0, 64)
    assert (h[10, 0], k[10, 0]) == (pytest.approx(0.0, abs=1e-12), pytest.approx(1.0))


def test_area_average_ignores_invalid_pixels():
    image = np.arange(16.0).reshape(4, 4)
    invalid = np.zeros((4, 4), bool)
    invalid[0, 0] = True
    h, k = pixel_coordinates((4, 4), plain_config().geometry, 1.0, 2)
    mean, count = area_average(image, invalid, h, k, 2, 1.0)
    assert count.tolist() == [[3, 4], [4, 4]]
    assert mean[0, 0] == pytest.approx((1 + 4 + 5) / 3)


@pytest.mark.parametrize("method", ["local", "tophat"])
def test_bragg_peaks_are_found_and_only_they(clean_image, method):
    detector = np.kron(clean_image, np.ones((4, 4)))
    planted = [(40, 60), (128, 128), (200, 17)]
    for row, column in planted:
        detector[row - 1 : row + 2, column - 1 : column + 2] += 500 * detector.mean()
    config = load_config("correct", [f"bragg.method={method}"], root=CorrectionConfig).bragg
    peaks, found = bragg_peaks(detector, np.zeros(detector.shape, bool), config)
    assert found["peaks"] == 3
    assert all(peaks[row, column] for row, column in planted)
    assert peaks.mean() < 0.01


def test_local_finder_keeps_sharp_diffuse_maxima_at_high_counts_and_takes_the_peak_tails():
    # A diffuse maximum 3x its surroundings, 3 pixels wide, at 10^4 counts: hugely significant, but no peak.
    rows, columns = np.meshgrid(np.arange(256.0), np.arange(256.0), indexing="ij")
    diffuse = 1.0 + 2.0 * np.exp(-((rows - 80) ** 2 + (columns - 90) ** 2) / (2 * 3.0**2))
    bragg = 2000.0 * np.exp(-((rows - 170) ** 2 + (columns - 160) ** 2) / (2 * 1.5**2))
    counts = np.random.default_rng(1).poisson((diffuse + bragg) * 1e4).astype(float)
    config = load_config("correct", ["bragg.dilate=0"], root=CorrectionConfig).bragg
    peaks, found = bragg_peaks(counts, np.zeros(counts.shape, bool), config)
    assert found["peaks"] == 1 and peaks[170, 160] and not peaks[75:86, 85:96].any()
    # The tail: every pixel where the peak still adds more than the diffuse intensity is masked.
    assert peaks[bragg > 1.0].all()


def test_friedel_fill_restores_a_centrosymmetric_image(clean_image):
    missing = np.zeros(clean_image.shape, bool)
    missing[5:15, 20:40] = True
    weights = (~missing).astype(float)
    filled, by_symmetry, record, _ = symmetry_average(np.where(missing, np.nan, clean_image), weights, "friedel", False)
    assert by_symmetry.sum() == missing.sum() and record["filled_cells"] == missing.sum()
    np.testing.assert_allclose(filled, clean_image, rtol=1e-12)
    block = np.ones((2, 2))
    corrected = correct_image(np.where(np.kron(missing, block), np.nan, np.kron(clean_image, block)), plain_config())
    assert (corrected.mask == FILLED_BY_SYMMETRY).sum() == missing.sum()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((8, 8), np.nan), "no valid pixel"),
        (np.zeros((8, 8)), "no valid pixel"),
        (np.ones((1, 1)), "2-D"),
        (np.ones((4, 4, 3)), "a stack of 4 frames or a volume: choose FILE"),
        (np.ones((2, 4, 4, 3)), "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_arrays_give_one_clear_error(array, message):
    with pytest.raises(DataError, match=message):
        correct_image(array, load_config("correct", root=CorrectionConfig))


def test_cli_corrects_files_and_writes_provenance_and_figures(clean_image, tmp_path):
    np.save(tmp_path / "a.npy", np.kron(clean_image, np.ones((3, 3))))
    with h5py.File(tmp_path / "b.h5", "w") as file:
        file["entry/data"] = np.kron(clean_image, np.ones((2, 2)))
    (tmp_path / "figures").mkdir()
    result = CliRunner().invoke(
        app,
        [
            "correct",
            str(tmp_path / "a.npy"),
            f"{tmp_path / 'b.h5'}::/entry/data",
            "-o",
            str(tmp_path / "c.h5"),
            "--figures",
            str(tmp_path / "figures"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "c.h5") as file:
        assert file["images"].shape == (2, 64, 64) and file["masks"].shape == (2, 64, 64)
        steps = [entry["step"] for entry in json.loads(file["provenance"].asstr()[0])]
    assert steps[:3] == ["read", "input", "mask"] and steps[-1] == "normalise"
    assert len(list((tmp_path / "figures").glob("*.png"))) == 2
    assert CliRunner().invoke(app, ["info", str(tmp_path / "c.h5")]).exit_code == 0


@pytest.mark.parametrize("name, content", [("x.npy", b"garbage"), ("x.tif", b"not a tiff"), ("x.h5", b"nope")])
def test_files_that_are_not_images_give_one_clear_line(name, content, tmp_path):
    (tmp_path / name).write_bytes(content)
    result = CliRunner().invoke(app, ["correct", str(tmp_path / name), "-o", str(tmp_path / "out.h5")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "cannot read" in result.output or "not" in result.output
    assert not (tmp_path / "out.h5").exists()
    with pytest.raises(DataError):
        read_image(str(tmp_path / name))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.int32, np.uint16, np.uint8, np.int8, np.bool_]),
        shape=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40),
    ),
    st.sampled_from(["default", "calibrated"]),
)
def test_any_array_gives_an_image_or_one_clear_error(array, geometry):
    overrides = [] if geometry == "default" else ["geometry.origin=[3, 2]", "geometry.pixels_per_rlu=[5, 7]"]
    config = load_config("correct", overrides, root=CorrectionConfig)
    try:
        corrected = correct_image(array, config)
    except DataError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert corrected.image.shape == (64, 64) and np.all(np.isfinite(corrected.image))
        assert corrected.image.mean() == pytest.approx(0.25, rel=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        dtype=np.float64,
        shape=st.tuples(st.integers(2, 30), st.integers(2, 30)),
        elements=st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=64),
            st.sampled_from([0.0, -1.0, 1e300, -1e300, 5e-324]),
        ),
    )
)
def test_nan_inf_negative_and_extreme_values_never_crash(array):
    try:
        corrected = correct_image(array, load_config("correct", root=CorrectionConfig))
    except DataError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert np.all(np.isfinite(corrected.image))


def test_constant_and_large_images():
    config = load_config("correct", root=CorrectionConfig)
    constant = correct_image(np.full((50, 70), 3.0), config)
    np.testing.assert_allclose(constant.image, 0.25, rtol=1e-5)
    large = correct_image(np.random.default_rng(0).gamma(2.0, 1.0, size=(2048, 2048)), config)
    assert large.image.shape == (64, 64)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_tiff_png_npy_and_hdf5_readers_give_the_same_pixels(dtype, tmp_path):
    import imageio.v3 as imageio
    import tifffile

    pixels = (np.arange(24 * 30).reshape(24, 30) % 200 + 1).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    np.save(tmp_path / "a.npy", pixels)
    with h5py.File(tmp_path / "a.h5", "w") as file:
        file["entry/data"] = pixels
    specs = [str(tmp_path / "a.tif"), str(tmp_path / "a.npy"), f"{tmp_path / 'a.h5'}::/entry/data"]
    if dtype in (np.uint8, np.uint16):
        imageio.imwrite(tmp_path / "a.png", pixels)
        specs.append(str(tmp_path / "a.png"))
    if dtype in (np.uint16, np.int32, np.float32):
        import fabio.cbfimage
        import fabio.edfimage

        fabio.edfimage.EdfImage(data=pixels).write(str(tmp_path / "a.edf"))
        specs.append(str(tmp_path / "a.edf"))
        if dtype == np.int32:
            fabio.cbfimage.CbfImage(data=pixels).write(str(tmp_path / "a.cbf"))
            specs.append(str(tmp_path / "a.cbf"))
    for spec in specs:
        image, _ = read_image(spec)
        np.testing.assert_array_equal(image, pixels.astype(np.float64), err_msg=spec)


def test_mantid_mdhisto_file_is_read_with_its_axes(tmp_path):
    # The layout of ../shared/realdata/javelin-zro2-h0l/ZrO2.nxs (SaveMD): signal (Q2, Q1) with bin edges.
    signal = np.arange(12.0 * 10).reshape(12, 10)
    with h5py.File(tmp_path / "plane.nxs", "w") as file:
        file["MDHistoWorkspace/data/signal"] = signal
        file["MDHistoWorkspace/data/Q1"] = np.linspace(-5.0, 0.0, 11)
        file["MDHistoWorkspace/data/Q2"] = np.linspace(0.0, 10.0, 13)
        file["MDHistoWorkspace/data/Q1"].attrs["long_name"] = b"[H,0,0]"
        file["MDHistoWorkspace/data/Q2"].attrs["long_name"] = b"[0,0,L]"
    image, info = read_image(str(tmp_path / "plane.nxs"))
    np.testing.assert_array_equal(image, signal)
    assert info["axes"]["columns"] == [-5.0, 0.0] and info["axes"]["rows"] == [0.0, 10.0]
    assert info["axes"]["names"] == ["[0,0,L]", "[H,0,0]"]


def test_directories_globs_and_mask_rules(clean_image, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b", "a"):
        np.save(folder / f"{name}.npy", np.kron(clean_image, np.ones((2, 2))))
    (folder / "notes.txt").write_text("not an image")
    assert [Path(s).name for s in expand_inputs([str(folder)])] == ["a.npy", "b.npy"]
    assert len(expand_inputs([str(folder / "*.npy")])) == 2
    with pytest.raises(DataError, match="no image files"):
        expand_inputs([str(tmp_path / "nothing-*.npy")])
    image = np.array([[1.0, 2.0, 99.0], [7.0, 65535.0, 3.0], [0.0, -1.0, np.nan]])
    rules = load_config("correct", ["mask.saturated=65535", "mask.values=[99]"], root=CorrectionConfig).mask
    extra = np.zeros((3, 3))
    extra[0, 0] = 1
    assert invalid_pixels(image, rules, extra).tolist() == [
        [True, False, True],
        [False, True, False],
        [False, True, True],
    ]  # fmt: skip  (integer counts: the isolated zero is a value)
    unmeasured = dataclasses.replace(rules, zeros="unmeasured")
    assert invalid_pixels(image, unmeasured, extra)[2].tolist() == [True, True, True]
    assert invalid_pixels(image + 0.5, rules)[2].tolist() == [False, True, True]  # no zero left: nothing to mask


def test_zero_rule_counts_keep_isolated_zeros_and_mask_gaps():
    """In a counting image zeros are values except gap-like regions; in a float image every zero is unmeasured."""
    from cfsx.correction import counting_quantum

    rng = np.random.default_rng(7)
    counts = rng.poisson(1.0, size=(64, 64)).astype(float)  # about 37 % zeros, many 2 x 2 zero blocks
    counts[:, 20:22] = 0.0  # a 2-px gap column
    counts[40:46, 50:56] = 0.0  # a 6 x 6 dead rectangle
    scaled = counts * 0.37  # counts rescaled to intensity are still counts
    assert counting_quantum(scaled) == pytest.approx(0.37)
    rules = MaskConfig()
    for image in (counts, scaled):
        invalid = invalid_pixels(image, rules)
        assert invalid[:, 20:22].all() and invalid[40:46, 50:56].all()
        scattered = (image == 0) & ~invalid
        assert scattered.sum() > 1000  # the chance zeros of counting stay as measured values
        assert not (invalid & (image != 0)).any()
        assert invalid.sum() - 128 - 36 < 0.03 * (image == 0).sum()  # beyond the gaps: a few zeros touching them
    faint = rng.poisson(0.05, size=(64, 64)).astype(float)  # where ~nothing is expected a zero patch is normal
    faint[0, 0] = 3.0
    faint[10:12, 10:12] = 0.0
    assert not invalid_pixels(faint, rules)[10:12, 10:12].any()
    smooth = rng.gamma(3.0, 0.1, size=(64, 64))
    smooth[5, 5] = 0.0
    assert counting_quantum(smooth) is None and invalid_pixels(smooth, rules)[5, 5]  # reduced data: 0 = unmeasured
    assert not invalid_pixels(smooth, dataclasses.replace(rules, zeros="values"))[5, 5]


def test_histogram_matching_to_a_reference(clean_image):
    config = plain_config()
    reference = np.random.default_rng(1).gamma(3.0, 0.1, size=(5, 64, 64))
    matched = correct_image(np.kron(clean_image, np.ones((2, 2))), config, reference=reference)
    # The reference's distribution, at every quantile short of the last few pixels: equal pixels (the
    # symmetric copies made by symmetry filling) stay equal, so a tie at the top takes the top level.
    quantiles = np.linspace(0, 0.99, 100)
    np.testing.assert_allclose(np.quantile(matched.image, quantiles), np.quantile(reference, quantiles),
                               rtol=0.05, atol=0.02)  # fmt: skip


def test_corrupted_detector_image_is_corrected_back_to_its_truth():
    # Known truth: a simulated structure's training image, against its corrupted detector rendering corrected.
    detector = Detector(size=256, pixels_per_rlu=80, beam_centre=(140, 110))
    lattice, state = engine.random_lattice(24, 0.5, engine.seed_state(9))
    vectors = np.array([[0, 1], [1, 0], [1, 1]])
    lattice, _, _ = engine.metropolis_sweeps(lattice, vectors, np.array([0.35, -0.25, 0.1]), 30, state)
    truth = engine.all_lots_intensity(lattice, 12, 64, 1.0)
    raw = detector.corrupt(detector.render(lattice, 12), set(CORRUPTIONS), np.random.default_rng(0), flux=3.0)
    config = load_config("correct", detector.correction_overrides(), root=CorrectionConfig)
    corrected = correct_image(raw, config)
    before = correct_image(raw, plain_config(**{"mask.zeros": "values", "mask.negative": "false"}))
    r2_after = image_r2(truth / truth.mean(), corrected.image / corrected.image.mean())
    r2_before = image_r2(truth / truth.mean(), before.image / before.image.mean())
    assert r2_after >= 0.9 > r2_before


def test_file_axes_in_rlu_calibrate_the_image(tmp_path):
    # A blob at (h, k) = (0.5, -0.25) on bin edges in r.l.u. must land in the output cell of that (h, k).
    rows, columns = np.linspace(-1.5, 1.5, 121), np.linspace(-2.0, 1.0, 151)  # 40 and 50 pixels per r.l.u.
    h, k = np.meshgrid((rows[:-1] + rows[1:]) / 2, (columns[:-1] + columns[1:]) / 2, indexing="ij")
    signal = 1.0 + 50.0 * np.exp(-((h - 0.5) ** 2 + (k + 0.25) ** 2) / (2 * 0.05**2))
    with h5py.File(tmp_path / "plane.nxs", "w") as file:
        file["MDHistoWorkspace/data/signal"] = signal
        file["MDHistoWorkspace/data/Q2"] = rows
        file["MDHistoWorkspace/data/Q1"] = columns
        for name in ("Q1", "Q2"):
            file[f"MDHistoWorkspace/data/{name}"].attrs["frame"] = b"HKL"
    config = load_config("correct", ["bragg.enabled=false", "geometry.zones=centre", "reconstruction.symmetry=none"],
                         root=CorrectionConfig)  # fmt: skip
    raw, info = read_image(str(tmp_path / "plane.nxs"))
    calibrated = calibrate_from_file(config, raw.shape, info)
    np.testing.assert_allclose(calibrated.geometry.pixels_per_rlu, [40.0, 50.0])
    image = correct_image(raw, calibrated).image
    grid = reciprocal_grid(64, 1.0)
    peak = np.unravel_index(np.argmax(image), image.shape)
    assert grid[peak[0]] == pytest.approx(0.5) and grid[peak[1]] == pytest.approx(-0.25)
    # Without the HKL frame the axes are not trusted: the whole image is the window.
    assert not calibrate_from_file(
        config, raw.shape, {**info, "axes": {**info["axes"], "rlu": False}}
    ).geometry.calibrated


def test_window_centred_on_another_reciprocal_lattice_point_sees_the_same_diffuse_scattering():
    # Occupational diffuse scattering repeats with the reciprocal lattice: I(h + 1, k) = I(h, k).
    lattice = np.random.default_rng(3).integers(0, 2, (20, 20)).astype(np.uint8)
    detector = Detector(size=512, pixels_per_rlu=100, beam_centre=(150, 256))
    raw = detector.render(lattice, 10)
    overrides = [*detector.correction_overrides(), "bragg.enabled=false"]
    at_origin = correct_image(raw, load_config("correct", overrides, root=CorrectionConfig)).image
    shifted = correct_image(raw, load_config("correct", [*overrides, "geometry.centre=[1, 0]"], root=CorrectionConfig))
    assert image_r2(at_origin, shifted.image) > 0.999


def test_an_image_that_barely_covers_the_window_is_refused():
    raw = np.ones((200, 200))
    config = load_config(
        "correct", ["geometry.origin=[0, 0]", "geometry.pixels_per_rlu=[200, 200]"], root=CorrectionConfig
    )  # the image covers h, k in [0, 1): a quarter of the window, without its partner cells
    assert correct_image(raw, config).image.shape == (64, 64)
    far = load_config("correct", ["geometry.origin=[-150, -150]", "geometry.pixels_per_rlu=[200, 200]",
                                  "geometry.zones=centre"], root=CorrectionConfig)  # fmt: skip
    with pytest.raises(DataError, match="% of the window"):
        correct_image(raw, far)


@pytest.mark.parametrize(
    "overrides",
    [[], ["geometry.origin=[10.5, -3]", "geometry.pixels_per_rlu=[17, 23]", "geometry.rotation=30",
          "geometry.centre=[2, -1]"]],
)  # fmt: skip
def test_pixel_of_inverts_pixel_coordinates(overrides):
    geometry = load_config("correct", overrides, root=CorrectionConfig).geometry
    h, k = pixel_coordinates((40, 50), geometry, 1.0, 64)
    rows, columns = pixel_of(h, k, (40, 50), geometry, 1.0, 64)
    expected_rows, expected_columns = np.meshgrid(np.arange(40.0), np.arange(50.0), indexing="ij")
    np.testing.assert_allclose(rows, expected_rows, atol=1e-9)
    np.testing.assert_allclose(columns, expected_columns, atol=1e-9)


def test_an_image_coarser_than_the_grid_is_resampled_without_inpainting():
    # 32 x 32 distinct pixels over the 64 x 64 window: each pixel covers 2 x 2 cells, none of them empty.
    image = np.arange(1.0, 32 * 32 + 1).reshape(32, 32)
    corrected = correct_image(image, plain_config(**{"reconstruction.symmetry": "none"}))  # not centrosymmetric
    assert (corrected.mask == 0).all()
    relative = corrected.image / corrected.image.mean()
    np.testing.assert_allclose(relative, np.kron(image, np.ones((2, 2))) / image.mean(), rtol=1e-6)


def test_edge_masks_the_pixels_next_to_masked_ones():
    image = np.ones((7, 7))
    image[3, 3] = 0.0
    rules = load_config("correct", ["mask.edge=1", "mask.zeros=unmeasured"], root=CorrectionConfig).mask
    assert invalid_pixels(image, rules).sum() == 5  # the pixel and its four neighbours
    assert invalid_pixels(image, dataclasses.replace(rules, edge=0)).sum() == 1


# --- Large images: the block-median Bragg finder, strips, float32 (issue: cfsx correct on 8192 x 8192) ---


def diffuse_with_peaks(size: int = 512, seed: int = 2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Poisson counts of a diffuse pattern (features of various widths) with Bragg peaks of various heights."""
    rng = np.random.default_rng(seed)
    rows, columns = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float), indexing="ij")
    diffuse = 2.0 + np.cos(rows / 23.0) * np.sin(columns / 17.0) + 0.5 * np.cos((rows + 2 * columns) / 9.0)
    planted = [(int(r), int(c)) for r, c in rng.integers(20, size - 20, size=(12, 2))]
    intensity = diffuse.copy()
    for number, (row, column) in enumerate(planted):
        height = 200.0 * 2.0 ** (number % 4)  # 100 to 800 times the diffuse level, as strong peaks are
        intensity += height * np.exp(-((rows - row) ** 2 + (columns - column) ** 2) / (2 * 1.5**2))
    return rng.poisson(intensity * 20.0).astype(np.float32), planted


def test_block_median_finder_finds_the_same_bragg_peaks_as_the_sliding_median():
    image, planted = diffuse_with_peaks()
    invalid = np.zeros(image.shape, bool)
    invalid[:, 200:206] = True  # a module gap, between the peaks
    exact_config = load_config("correct", ["bragg.local_coarse_above=100000000"], root=CorrectionConfig).bragg
    coarse_config = load_config("correct", ["bragg.local_coarse_above=0"], root=CorrectionConfig).bragg
    assert image.size <= exact_config.local_coarse_above  # the sliding median
    exact, exact_found = bragg_peaks(image, invalid, exact_config)
    coarse, coarse_found = bragg_peaks(image, invalid, coarse_config)
    assert all(exact[row, column] and coarse[row, column] for row, column in planted)
    assert coarse_found["peaks"] == exact_found["peaks"] == len(set(planted))
    assert np.count_nonzero(exact ^ coarse) <= 0.05 * np.count_nonzero(exact | coarse)


def test_block_median_of_a_plane_is_the_plane_between_the_outer_block_centres():
    from cfsx.correction.bragg import _block_median

    rows, columns = np.meshgrid(np.arange(100.0), np.arange(97.0), indexing="ij")  # 97: a last, overlapping block
    plane = 2.0 * rows - 3.0 * columns
    local = _block_median(plane, 15)(slice(None))
    np.testing.assert_allclose(local[7:93, 7:90], plane[7:93, 7:90], atol=1e-9)
    np.testing.assert_allclose(local[:7, :7], plane[7, 7])  # held constant beyond the outer centres
    np.testing.assert_allclose(_block_median(plane, 15)(slice(40, 50)), local[40:50])


@pytest.mark.parametrize("value", ["-1", "1.5", "true", "null"])
def test_local_coarse_above_must_be_a_pixel_count(value):
    with pytest.raises(ConfigError, match="local_coarse_above"):
        load_config("correct", [f"bragg.local_coarse_above={value}"], root=CorrectionConfig)


def test_large_image_path_corrects_like_the_exact_one():
    # A corrupted detector image (49 Bragg peaks, gaps, noise) corrected with the local finder both ways.
    detector = Detector(size=512, pixels_per_rlu=80, beam_centre=(260, 250))
    lattice = np.random.default_rng(5).integers(0, 2, (24, 24)).astype(np.uint8)
    raw = detector.corrupt(detector.render(lattice, 12), set(CORRUPTIONS), np.random.default_rng(1), flux=30.0)
    overrides = [*detector.correction_overrides()[:2], "mask.zeros=values"]  # calibrated, local finder
    exact = correct_image(raw, load_config("correct", overrides, root=CorrectionConfig))
    coarse = correct_image(raw, load_config("correct", [*overrides, "bragg.local_coarse_above=0"],
                                            root=CorrectionConfig))  # fmt: skip
    assert exact.provenance[2].peaks == coarse.provenance[2].peaks > 0
    assert image_r2(exact.image, coarse.image) > 0.999


@pytest.mark.parametrize("method", ["local", "lattice"])
def test_strips_give_the_same_result_as_one_pass(method, monkeypatch):
    import cfsx.correction.pixels as correction

    raw, _ = diffuse_with_peaks(size=200)
    overrides = ["geometry.origin=[90.5, 110]", "geometry.pixels_per_rlu=[70, 60]", "geometry.rotation=20",
                 f"bragg.method={method}", "bragg.local_coarse_above=0"]  # fmt: skip
    config = load_config("correct", overrides, root=CorrectionConfig)
    whole = correct_image(raw, config)
    monkeypatch.setattr(correction, "STRIP_PIXELS", 1000)  # 5 rows a strip
    in_strips = correct_image(raw, config)
    np.testing.assert_allclose(in_strips.image, whole.image, rtol=1e-5)
    assert in_strips.provenance == whole.provenance


@pytest.mark.parametrize("geometry", [[], ["geometry.origin=[500, 900]", "geometry.pixels_per_rlu=[400, 300]",
                                        "geometry.rotation=10"]])  # fmt: skip
def test_float32_images_are_neither_copied_to_float64_nor_changed(geometry, monkeypatch):
    import tracemalloc

    import cfsx.correction.pixels as correction
    from cfsx.io.readers import as_image

    image = np.random.default_rng(0).gamma(2.0, 1.0, size=(1024, 2048)).astype(np.float32)
    image[:, 1000:1010] = -1.0
    before = image.copy()
    assert as_image(image) is image and as_image(image.astype(np.uint16)).dtype == np.float32
    assert as_image(image.astype(np.int32)).dtype == np.float64  # float32 would round large integers
    # Strips of 1/32 of the image, as for 8192 x 8192 images with the default STRIP_PIXELS.
    monkeypatch.setattr(correction, "STRIP_PIXELS", image.size // 32)
    monkeypatch.setattr(correction, "SAMPLE_PIXELS", image.size // 32)
    warm_up = load_config("correct", ["bragg.local_coarse_above=0"], root=CorrectionConfig)
    correct_image(image[:64, :64], warm_up)  # imports first: they allocate too
    config = load_config("correct", [*geometry, "bragg.local_coarse_above=0"], root=CorrectionConfig)
    tracemalloc.start()
    try:
        correct_image(image, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(image, before)
    assert peak < 3 * image.nbytes  # a float64 copy would be 2x, and full h, k grids 8x more


def test_progress_is_reported_within_an_image(clean_image, tmp_path):
    np.save(tmp_path / "a.npy", np.kron(clean_image, np.ones((4, 4))))
    np.save(tmp_path / "b.npy", np.kron(clean_image, np.ones((2, 2))))
    reports = []
    correct_files([str(tmp_path)], tmp_path / "out.h5", load_config("correct", root=CorrectionConfig),
                  progress=lambda done, total: reports.append((done, total)))  # fmt: skip
    done = [d for d, _ in reports]
    assert done == sorted(done) and {t for _, t in reports} == {2} and done[-1] == 2
    assert any(0 < d < 1 for d in done) and any(1 < d < 2 for d in done)


# --- Odd dtypes: one clear line naming the file ---


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((8, 8), np.complex128) * (1 + 2j), "complex-valued"),
        (np.ones((8, 8), np.complex64), "complex-valued"),
        (np.zeros((8, 8), dtype=[("a", "f4"), ("b", "i4")]), "not a numeric image"),
        (np.full((8, 8), "1.5"), "not a numeric image"),
        (np.full((8, 8), b"2"), "not a numeric image"),
        (np.full((8, 8), np.datetime64("2026-01-01")), "not a numeric image"),
        (np.full((8, 8), 1.0, dtype=object), "cannot read"),  # .npy cannot hold objects without pickle
    ],
)
def test_odd_dtypes_give_one_clear_line_naming_the_file(array, message, tmp_path):
    import warnings

    path = tmp_path / "odd.npy"
    np.save(path, array, allow_pickle=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning would be one
        with pytest.raises(DataError, match=message) as error:
            read_image(str(path))
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    if array.dtype != object:
        with pytest.raises(DataError, match=message.replace("cannot read", "numeric")):
            correct_image(array, load_config("correct", root=CorrectionConfig))
    result = CliRunner().invoke(app, ["correct", str(path), "-o", str(tmp_path / "out.h5")])
    assert result.exit_code != 0 and "Traceback" not in result.output and "Warning" not in result.output
    assert str(path) in result.output.replace("\n", "")


def test_a_boolean_image_is_read_as_zeros_and_ones(tmp_path):
    mask = np.zeros((6, 6), bool)
    mask[2, 3] = True
    np.save(tmp_path / "mask.npy", mask)
    np.testing.assert_array_equal(read_image(str(tmp_path / "mask.npy"))[0], mask.astype(float))


# --- HDF5 links: external links, virtual datasets and external raw data only within the folder ---


@pytest.fixture
def linked_files(tmp_path):
    """A detector-like folder ``run`` (master.h5 and data.h5) and a file elsewhere (``other/secret.h5``)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "other").mkdir()
    pixels = np.arange(1.0, 17.0).reshape(4, 4)
    with h5py.File(tmp_path / "other" / "secret.h5", "w") as file:
        file["data"] = pixels * 100
    with h5py.File(tmp_path / "run" / "data.h5", "w") as file:
        file["entry/data"] = pixels
        file["onward"] = h5py.ExternalLink("../other/secret.h5", "/data")  # nested: beside, then out
    (tmp_path / "other" / "raw.bin").write_bytes(np.ones(16).tobytes())
    with h5py.File(tmp_path / "run" / "master.h5", "w") as file:
        file["beside"] = h5py.ExternalLink("data.h5", "/entry/data")
        file["beside_group"] = h5py.ExternalLink("data.h5", "/entry")
        file["soft_beside"] = h5py.SoftLink("/beside")
        file["entry/relative"] = h5py.SoftLink("../beside")  # HDF5 has no '..': a dangling link
        file["outside"] = h5py.ExternalLink("../other/secret.h5", "/data")
        file["absolute_outside"] = h5py.ExternalLink(str(tmp_path / "other" / "secret.h5"), "/data")
        file["soft_outside"] = h5py.SoftLink("/outside")
        file["nested_outside"] = h5py.ExternalLink("data.h5", "/onward")
        file["missing"] = h5py.ExternalLink("gone.h5", "/data")
        file["cycle"] = h5py.SoftLink("/cycle2")
        file["cycle2"] = h5py.SoftLink("/cycle")
        virtual = [
            ("vds_beside", "data.h5", "entry/data"),
            ("vds_outside", "../other/secret.h5", "data"),
            ("vds_via_link", ".", "outside"),  # a source in this file that is an external link out
        ]
        for name, source, path in virtual:
            layout = h5py.VirtualLayout(shape=(4, 4), dtype="f8")
            layout[:] = h5py.VirtualSource(source, path, shape=(4, 4))
            file.create_virtual_dataset(name, layout)
        file.create_dataset("raw_outside", shape=(4, 4), dtype="f8", external=[("../other/raw.bin", 0, 128)])
    return tmp_path / "run" / "master.h5", pixels


@pytest.mark.parametrize("name", ["beside", "beside_group/data", "soft_beside", "vds_beside"])
def test_links_to_files_in_the_same_folder_are_followed(linked_files, name):
    master, pixels = linked_files
    image, info = read_image(f"{master}::/{name}")
    np.testing.assert_array_equal(image, pixels)
    assert info["dataset"] == f"/{name}"


@pytest.mark.parametrize(
    "name, message",
    [
        ("outside", "outside the folder"),
        ("absolute_outside", "outside the folder"),
        ("soft_outside", "outside the folder"),
        ("nested_outside", "outside the folder"),
        ("vds_outside", "outside the folder"),
        ("vds_via_link", "outside the folder"),
        ("raw_outside", "outside the folder"),
        ("missing", "does not exist"),
        ("cycle", "links to follow"),
        ("entry/relative", "has no dataset"),
    ],
)
def test_links_out_of_the_folder_are_refused_with_one_line(linked_files, name, message, monkeypatch):
    master, _ = linked_files
    monkeypatch.chdir(master.parent.parent / "other")  # HDF5 would also look in the working directory
    with pytest.raises(DataError, match=message) as error:
        read_image(f"{master}::/{name}")
    assert str(master) in str(error.value) and "\n" not in str(error.value)
    assert "100" not in str(error.value).replace(str(master), "")  # no data from outside (the path may hold 100)
    result = CliRunner().invoke(app, ["correct", f"{master}::/{name}", "-o", str(master.parent / "out.h5")])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_uncalibrated_bragg_peaks_one_pixel_and_at_the_border_but_not_superstructure(clean_image):
    """On a 64 x 64 training-window image the Bragg finder masks one-pixel peaks at integer h, k, also on the
    border (h = -1) and the tail of the peak just outside it (h = +1), and keeps superstructure peaks at h + 1/2."""
    config = plain_config(**{"bragg.enabled": "true", "bragg.dilate": "0"})
    grid = reciprocal_grid(64, 1.0)  # index 0: h = -1, index 32: h = 0, index 63: h = 31/32
    image = clean_image.astype(np.float64) * 1.0
    level = image.mean()
    superstructure = [(16, 48), (48, 16), (48, 48), (16, 16)]  # (+-1/2, +-1/2): ordering peaks to keep
    for row, column in superstructure:
        image[row, column] += 200 * level
    bragg = [(32, 32), (0, 32), (32, 0), (0, 0)]  # h, k in {-1, 0}: one pixel each, two of them on the border
    for row, column in bragg:
        image[row, column] += 500 * level
    image[63, 32] += 60 * level  # the tail of the peak at h = +1, just outside the window
    corrected = correct_image(image, config)
    masked = corrected.mask != 0
    assert all(masked[row, column] for row, column in bragg) and masked[63, 32]
    assert not any(masked[row, column] for row, column in superstructure)
    assert corrected.image[16, 48] > 50 * corrected.image.mean()  # the ordering peak survives the correction
    assert grid[0] == -1 and grid[32] == 0
    anywhere = correct_image(image, plain_config(**{"bragg.enabled": "true", "bragg.positions": "anywhere"}))
    assert all(anywhere.mask[row, column] != 0 for row, column in superstructure)  # what the rule prevents


def test_faint_counts_find_bragg_peaks_and_their_tails_beyond_the_border():
    """At 0.2 counts per pixel most pixels are 0 (the median absolute deviation is 0): the noise level must still
    come out right. Peaks of FWHM 2 px at every integer h, k: the one at h = +1, just outside the window, leaves only
    its tail in the last rows, which the footprint of the peaks found elsewhere covers."""
    rng = np.random.default_rng(3)
    grid = reciprocal_grid(64, 1.0)
    h, k = np.meshgrid(grid, grid, indexing="ij")
    sigma = 2.0 / 2.355 * (grid[1] - grid[0])
    peaks = sum(np.exp(-((h - a) ** 2 + (k - b) ** 2) / (2 * sigma**2)) for a in (-1, 0, 1) for b in (-1, 0, 1))
    counts = rng.poisson(0.2 + 300.0 * peaks).astype(float)
    found, record = bragg_peaks(counts, np.zeros(counts.shape, bool), plain_config(**{"bragg.dilate": "0"}).bragg,
                                functools.partial(_pixel_axes, counts.shape, GeometryConfig(), 1.0, 64))  # fmt: skip
    assert record["peaks"] >= 4
    assert found[300.0 * peaks > 3].all()  # every pixel where a peak adds > 3 counts, rows 62-63 (h = +1) too
    assert found[62:, 30:35].any() and not found[10:22, 10:22].any()  # nothing away from the lattice points


def test_old_option_spellings_work_for_one_release_with_a_notice(clean_image, tmp_path):
    np.save(tmp_path / "a.npy", np.kron(clean_image, np.ones((2, 2))))
    old = CliRunner().invoke(app, ["correct", str(tmp_path / "a.npy"), "-o", str(tmp_path / "old.h5"),
                                   "--figure", str(tmp_path)])  # fmt: skip
    assert old.exit_code == 0 and "--figure is deprecated" in old.output and "use --figures" in old.output
    both = CliRunner().invoke(app, ["correct", str(tmp_path / "a.npy"), "-o", str(tmp_path / "both.h5"),
                                    "--figure", str(tmp_path), "--figures", str(tmp_path)])  # fmt: skip
    assert both.exit_code == 2 and not (tmp_path / "both.h5").exists()


def test_histogram_matching_keeps_equal_pixels_equal_and_follows_the_reference():
    from cfsx.correction import match_histogram

    rng = np.random.default_rng(4)
    quantised = rng.poisson(2.0, (64, 64)).astype(np.float64)  # a handful of levels, each on many pixels
    reference = rng.gamma(2.0, 0.5, (20, 64, 64))
    matched = match_histogram(quantised, reference)
    for level in np.unique(quantised):  # one output value per input level, in the same order
        assert np.unique(matched[quantised == level]).size == 1
    order = np.argsort(np.unique(quantised))
    assert np.all(np.diff(np.array([matched[quantised == v][0] for v in np.unique(quantised)])[order]) > 0)
    smooth = rng.normal(size=(64, 64))  # without ties the result has the reference's distribution
    np.testing.assert_allclose(np.percentile(match_histogram(smooth, reference), [10, 50, 90]),
                               np.percentile(reference, [10, 50, 90]), rtol=0.03)  # fmt: skip
