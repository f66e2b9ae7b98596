"""The crystal's reciprocal lattice in a plane, the fold of every measured zone, cross-zone consistency,
symmetry averaging and calibration by axis names (issue 25), against exact constructions."""

from __future__ import annotations

import functools
import itertools
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import CorrectionConfig, load_config
from cfsx.correction import MEASURED, Pixels, correct_file, correct_image, counting_quantum
from cfsx.correction.lattice import _allowed, plane_lattice
from cfsx.correction.pixels import row_strips
from cfsx.correction.symmetry import OPERATIONS, _terms, symmetry_average
from cfsx.correction.zone_fit import fold
from cfsx.correction.zones import Layout, zone_range
from cfsx.errors import AdvisedError, DataError
from cfsx.io.nexus import axis_letter
from cfsx.physics.engine import reciprocal_grid

SIZE, H_MAX = 64, 1.0
ALPHAS = {(0, 1): -0.3, (1, 0): 0.2, (1, 1): 0.15, (0, 2): -0.1, (2, 1): 0.05}


def warren_cowley(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """An exactly periodic, centrosymmetric occupancy image (period 1 in h and k)."""
    image = np.full(np.broadcast(h, k).shape, 1.0)
    for (dx, dy), alpha in ALPHAS.items():
        image += alpha * (np.cos(2 * np.pi * (h * dx + k * dy)) + np.cos(2 * np.pi * (h * dx - k * dy))) / 2
    return 0.25 * image


def detector(pixels_per_rlu: int = 32, zones: int = 3, function=warren_cowley, falloff: float = 0.0, shift=0.0):
    """A calibrated image over h, k in [-zones, zones) whose pixel centres sit on the window's cell centres
    (32 pixels per r.l.u.: one pixel per cell and zone; ``shift`` moves the origin by that many pixels), times
    exp(-falloff |Q|^2)."""
    pixels = 2 * zones * pixels_per_rlu
    origin = zones * pixels_per_rlu + shift
    axis = (np.arange(pixels) - origin) / pixels_per_rlu
    h, k = np.meshgrid(axis, axis, indexing="ij")
    image = function(h, k) * np.exp(-falloff * (h**2 + k**2))
    calibration = [f"geometry.origin=[{origin}, {origin}]",
                   f"geometry.pixels_per_rlu=[{pixels_per_rlu}, {pixels_per_rlu}]"]  # fmt: skip
    return image, calibration


def config(*overrides: str) -> CorrectionConfig:
    base = ["bragg.enabled=false", "smoothing.method=none", "mask.zeros=values", "mask.negative=true"]
    return load_config("correct", [*base, *overrides], root=CorrectionConfig)


def folded(image: np.ndarray, settings: CorrectionConfig, invalid: np.ndarray | None = None):
    """cfsx.correction.zones.fold of an image as the correction calls it (in float64, before any later step)."""
    invalid = np.zeros(image.shape, bool) if invalid is None else invalid
    pixels = Pixels(image.shape, settings.geometry, H_MAX, SIZE)
    corners = np.array([[-0.5, -0.5], [-0.5, image.shape[1] - 0.5], [image.shape[0] - 0.5, -0.5],
                        [image.shape[0] - 0.5, image.shape[1] - 0.5]])  # fmt: skip
    model = (corners - pixels.map.origin) @ pixels.map.matrix.T - pixels.map.shift
    layout = Layout(*zone_range(model[:, 0], model[:, 1]), SIZE, H_MAX)
    strips = functools.partial(row_strips, image.shape)
    return fold(image, invalid, pixels, strips, layout, settings.geometry.falloff_degree, counting_quantum(image))


def window_truth(function=warren_cowley) -> np.ndarray:
    grid = reciprocal_grid(SIZE, H_MAX)
    return function(grid[:, None], grid[None, :])


# --- the reciprocal lattice of a plane ------------------------------------------------------------------


@pytest.mark.parametrize("centring", ["P", "I", "F", "C", "A", "B"])
@pytest.mark.parametrize("letters", [("h", "k"), ("l", "h"), ("k", "l")])
@pytest.mark.parametrize("plane", [0, 1])
def test_plane_lattice_holds_exactly_the_allowed_points(centring, letters, plane):
    lattice = plane_lattice(centring, letters, plane)
    third = next(letter for letter in "hkl" if letter not in letters)
    for a, b in itertools.product(range(-4, 5), repeat=2):
        index = {letters[0]: a, letters[1]: b, third: plane}
        allowed = _allowed(centring, (index["h"], index["k"], index["l"]))
        assert lattice.is_point([a, b]) == allowed, (a, b)
    # the basis spans the translations: |det| is the area of the 2-D cell
    assert abs(np.linalg.det(lattice.matrix)) in (1.0, 2.0, 4.0)


def test_f_lattice_in_h0l_has_its_points_at_even_h_and_l():
    lattice = plane_lattice("F", ("l", "h"))
    np.testing.assert_array_equal(lattice.matrix, [[2, 0], [0, 2]])
    np.testing.assert_allclose(lattice.to_model([4.0, -2.0]), [2.0, -1.0])  # model h = L / 2, k = H / 2
    assert not lattice.is_point([1.0, 1.0]) and not lattice.is_point([2.0, 1.0]) and lattice.is_point([2.0, -4.0])


@pytest.mark.parametrize(
    "name, letter",
    [("[0,0,L]", "l"), ("[H,0,0]", "h"), ("Qk", "k"), ("K", "k"), ("h (r.l.u.)", "h"), ("[H,H,0]", None), ("x", None)],
)
def test_axis_letters_from_file_names(name, letter):
    assert axis_letter(name) == letter


def test_a_centred_lattice_needs_the_plane_axes():
    with pytest.raises(DataError, match="geometry.axes"):
        plane_lattice("F", None)


# --- the fold ----------------------------------------------------------------------------------------------


def test_folding_an_exactly_periodic_image_with_falloff_gives_the_window_back():
    image, calibration = detector(falloff=0.04)
    result = folded(image, config(*calibration))
    truth = window_truth()
    np.testing.assert_allclose(result.image / result.image.mean(), truth / truth.mean(), rtol=1e-10, atol=0)
    # the fitted falloff is the one applied (up to its normalisation): log f = c0 - 0.04 |Q|^2
    np.testing.assert_allclose(result.falloff.coefficients[1:], [0.0, -0.04], atol=1e-10)
    # every zone agrees with the others: no zone is flagged, and the consistency reaches its noise-free ceiling
    assert not any(entry["disagrees"] for entry in result.statistics.entries)
    assert all(entry["correlation"] == pytest.approx(1.0, abs=1e-9) for entry in result.statistics.consistency)


def test_without_the_falloff_fit_the_fold_is_not_the_window():
    image, calibration = detector(falloff=0.04)
    result = folded(image, config(*calibration, "geometry.falloff_degree=0"))
    truth = window_truth()
    assert np.abs(result.image / result.image.mean() - truth / truth.mean()).max() > 1e-3


def test_a_gap_of_one_zone_is_filled_from_the_others():
    image, calibration = detector()
    invalid = np.zeros(image.shape, bool)
    invalid[90:110, 80:100] = True  # around h = k = 0: the centre zone's middle
    settings = config(*calibration)
    result = folded(image, settings, invalid)
    truth = window_truth()
    np.testing.assert_allclose(result.image / result.image.mean(), truth / truth.mean(), rtol=1e-10)
    corrected = correct_image(np.where(invalid, -1.0, image), settings)
    assert (corrected.mask == MEASURED).all()  # measured in other zones: nothing filled or inpainted
    np.testing.assert_allclose(corrected.image / corrected.image.mean(), truth / truth.mean(), rtol=2e-6)
    # while the window around the centre alone has the gap
    alone = correct_image(np.where(invalid, -1.0, image), config(*calibration, "geometry.zones=centre",
                                                                 "reconstruction.symmetry=none"))  # fmt: skip
    assert (alone.mask != MEASURED).sum() > 100


def f_periodic(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Periodic with the F lattice of h0l ((H, L) both even), not with the primitive one: rows are L, columns H."""
    return 2.0 + np.cos(np.pi * h) + 0.5 * np.cos(np.pi * k) + 0.3 * np.cos(np.pi * (h + 2 * k))


def test_with_an_f_lattice_odd_points_are_not_averaged_with_even_ones():
    image, calibration = detector(pixels_per_rlu=16, zones=4, function=f_periodic)  # one pixel per cell and zone
    f_lattice = config(*calibration, "geometry.lattice=F", "geometry.axes=[l, h]")
    result = folded(image, f_lattice)
    grid = reciprocal_grid(SIZE, H_MAX) * 2  # model h = L / 2
    truth = f_periodic(grid[:, None], grid[None, :])
    np.testing.assert_allclose(result.image, truth, rtol=1e-10)
    # a primitive lattice folds L onto L + 1, where cos(pi L) changes sign: the modulation averages away
    primitive = folded(image, config(*calibration))
    assert np.nanmax(primitive.image) - np.nanmin(primitive.image) < 0.5 * np.ptp(truth)
    assert not any(entry["disagrees"] for entry in result.statistics.entries)
    judged = [entry["disagrees"] for entry in primitive.statistics.entries if entry["chi2"] is not None]
    assert sum(judged) > 0.8 * len(judged)


def test_a_non_periodic_image_has_low_consistency_and_its_zones_disagree():
    rng = np.random.default_rng(3)
    image, calibration = detector()
    blobs = np.zeros(image.shape)
    for row, column in rng.integers(0, image.shape[0], size=(40, 2)):  # blobs that do not repeat
        blobs[row, column] = 1.0
    from scipy import ndimage

    noisy = 1.0 + 50 * ndimage.gaussian_filter(blobs, 4.0) + rng.normal(0, 0.01, image.shape)
    result = folded(noisy, config(*calibration))
    assert max(entry["consistency"] for entry in result.statistics.consistency) < 0.5
    assert sum(entry["disagrees"] for entry in result.statistics.entries) >= len(result.statistics.entries) // 2
    # the periodic image with the same noise: consistent, no zone out of line
    periodic = folded(image + rng.normal(0, 0.01, image.shape), config(*calibration))
    assert min(entry["consistency"] for entry in periodic.statistics.consistency) > 0.9
    assert not any(entry["disagrees"] for entry in periodic.statistics.entries)


def test_a_disagreeing_zone_is_down_weighted_and_listed():
    image, calibration = detector()
    image = image.copy()
    image[112:144, 112:144] *= 3.0  # the zone of h, k in [0.5, 1.5) three times too bright
    result = folded(image, config(*calibration, "geometry.falloff_degree=0"))
    flagged = [entry for entry in result.statistics.entries if entry["disagrees"]]
    assert [entry["zone"] for entry in flagged] == [[1, 1]] and flagged[0]["weight"] < 0.05
    truth = window_truth()
    assert np.abs(result.image / result.image.mean() - truth / truth.mean()).max() < 0.05


def test_the_fold_does_not_depend_on_the_strips(monkeypatch):
    import cfsx.correction.pixels as correction

    image, calibration = detector(falloff=0.02)
    noisy = image + np.random.default_rng(0).normal(0, 0.02, image.shape)
    settings = config(*calibration)
    whole = correct_image(noisy, settings)
    monkeypatch.setattr(correction, "STRIP_PIXELS", 1000)
    in_strips = correct_image(noisy, settings)
    np.testing.assert_allclose(in_strips.image, whole.image, rtol=1e-6)
    assert in_strips.provenance == whole.provenance


# --- symmetry ------------------------------------------------------------------------------------------------


def symmetrised(image: np.ndarray) -> np.ndarray:
    terms = _terms(image.shape[0], True)
    return sum(image[terms[r][0], terms[c][0]] for r, c in OPERATIONS.values()) / len(OPERATIONS)


def test_symmetry_averaging_of_a_4mm_image_is_exact_and_an_asymmetric_one_is_reported():
    image = symmetrised(np.random.default_rng(0).random((SIZE, SIZE)))
    noise = np.full(image.shape, 1e-4)
    averaged, filled, record, _ = symmetry_average(image, np.ones(image.shape), "4mm", periodic=True, variance=noise)
    np.testing.assert_allclose(averaged, image, rtol=1e-12)
    assert record["relative_deviation"] < 1e-12 and not filled.any()
    asymmetric = np.random.default_rng(1).random((SIZE, SIZE))
    averaged, _, record, _ = symmetry_average(asymmetric, np.ones(image.shape), "4mm", periodic=True, variance=noise)
    assert record["relative_deviation"] > 0.5 and record["chi2"] > 100
    np.testing.assert_allclose(averaged, symmetrised(asymmetric), rtol=1e-12)


def test_mirrors_fill_only_from_their_own_equivalents():
    image = symmetrised(np.random.default_rng(0).random((SIZE, SIZE)))
    weights = np.ones(image.shape)
    weights[3:10, 5:12] = 0  # its mirror images (-h, k), (h, -k), (-h, -k) are measured
    averaged, filled, record, _ = symmetry_average(np.where(weights > 0, image, 0), weights, "mm", periodic=True)
    assert filled.sum() == 49 and record["filled_cells"] == 49
    np.testing.assert_allclose(averaged, image, rtol=1e-12)
    # the two-fold alone fills them too, but the window edge (-h_max) has no partner unless periodic
    edge = np.ones(image.shape)
    edge[0, 5:12] = 0
    _, filled, _, _ = symmetry_average(image, edge, "2", periodic=False)
    assert not filled.any()


def test_friedel_is_skipped_for_a_plane_off_the_origin_and_old_keys_still_work():
    image, calibration = detector()
    corrected = correct_image(image, config(*calibration, "geometry.plane=1"))
    skipped = corrected.step("symmetry")
    assert skipped is not None and "origin" in skipped.skipped
    old = config(*calibration, "reconstruction.mirrors=true").reconstruction
    assert old.group == "mm" and config("reconstruction.friedel=false").reconstruction.group == "none"
    with pytest.raises(DataError, match="of equal lengths"):
        correct_image(image, config(*calibration, "geometry.lattice=[[1, 0], [0, 2]]", "reconstruction.symmetry=4"))


# --- calibration by names, messages, provenance -----------------------------------------------------------------


def mdhisto(path, rows=(0.0, 10.0), columns=(-5.0, 0.0), pixels=(200, 200), function=None):
    """A Mantid MDHisto plane like the ZrO2 measurement: rows along [0,0,L], columns along [H,0,0]."""
    row_edges, column_edges = np.linspace(*rows, pixels[0] + 1), np.linspace(*columns, pixels[1] + 1)
    big_l, big_h = np.meshgrid((row_edges[:-1] + row_edges[1:]) / 2, (column_edges[:-1] + column_edges[1:]) / 2,
                               indexing="ij")  # fmt: skip
    signal = (function or (lambda el, h: 1.0 + 0.5 * np.cos(np.pi * el) * np.cos(np.pi * h)))(big_l, big_h)
    inside = (big_l - 5) ** 2 / 16 + (big_h + 2.5) ** 2 / 4 < 1  # measured inside an ellipse only
    signal = np.where(inside, signal, 0.0)
    with h5py.File(path, "w") as file:
        file["MDHistoWorkspace/data/signal"] = signal
        file["MDHistoWorkspace/data/Q2"] = row_edges
        file["MDHistoWorkspace/data/Q1"] = column_edges
        for name, long_name in (("Q1", "[H,0,0]"), ("Q2", "[0,0,L]")):
            file[f"MDHistoWorkspace/data/{name}"].attrs.update(frame=b"HKL", long_name=long_name.encode())
    return str(path)


def test_centre_by_axis_names_equals_row_column(tmp_path):
    plane = mdhisto(tmp_path / "plane.nxs")
    runner = CliRunner()
    outputs = []
    for centre in ("H=-2,L=4", "4,-2"):
        output = tmp_path / f"{centre.replace(',', '_')}.h5"
        result = runner.invoke(app, ["correct", plane, "-o", str(output), "--centre", centre, "--lattice", "F",
                                     "--zones", "centre"])  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs.append(output)
    with h5py.File(outputs[0]) as first, h5py.File(outputs[1]) as second:
        np.testing.assert_array_equal(first["images"][()], second["images"][()])
        # the window's own coordinates travel as NeXus axes: L from 2 to 6, H from -4 to 0
        assert first["entry/data/L"][0] == 2.0 and first["entry/data/H"][0] == -4.0
        assert first["entry/data"].attrs["L_indices"] == 1


def test_a_centre_off_the_lattice_is_refused_with_the_points_nearby(tmp_path):
    plane = mdhisto(tmp_path / "plane.nxs")
    settings = load_config("correct", ["geometry.lattice=F", "geometry.centre=[3, -2]"], root=CorrectionConfig)
    with pytest.raises(DataError, match="not a reciprocal lattice point.*L=2,H=-2"):
        correct_file(plane, settings)


def test_a_refused_window_names_the_best_regions_by_flag_on_the_command_line_and_by_key_in_the_library(tmp_path):
    plane = mdhisto(tmp_path / "plane.nxs")
    result = CliRunner().invoke(app, ["correct", plane, "-o", str(tmp_path / "out.h5"), "--zones", "centre",
                                      "--lattice", "F"])  # fmt: skip
    assert result.exit_code == 3
    message = " ".join(result.output.split())
    assert "--centre L=" in message and "--zones all" in message
    assert "geometry." not in message and "output." not in message
    assert not (tmp_path / "out.h5").exists()
    settings = load_config("correct", ["geometry.zones=centre", "geometry.lattice=F"], root=CorrectionConfig)
    with pytest.raises(AdvisedError) as refused:
        correct_file(plane, settings)
    text = str(refused.value)
    assert "geometry.centre = {L: " in text and "geometry.zones = all" in text and "--" not in text
    # the suggestion is right: the advised centre measures what it says
    advised = refused.value.advice[0]
    point = [float(part.split("=")[1]) for part in advised[2].split(",")]
    fraction = float(advised[3].split(" %")[0]) / 100
    better = load_config("correct", ["geometry.zones=centre", "geometry.lattice=F", f"geometry.centre={point}",
                                     "output.min_measured=0"], root=CorrectionConfig)  # fmt: skip
    corrected = correct_file(plane, better)[1]
    resample = corrected.step("resample")
    measured = 1 - (resample.empty_cells + resample.details["cells_from_the_pixel_under_their_centre"]) / SIZE**2
    assert measured == pytest.approx(fraction, abs=0.006)


def test_folding_fills_the_real_plane_layout_and_reports_each_zone(tmp_path):
    plane = mdhisto(tmp_path / "plane.nxs")
    settings = load_config("correct", ["geometry.lattice=F", "mask.edge=1"], root=CorrectionConfig)
    corrected = correct_file(plane, settings)[1]
    zones = corrected.step("zones")
    assert zones.details["cells_measured"] >= 0.95 and (corrected.mask != 2).mean() >= 0.95
    assert {tuple(entry["G"]) for entry in zones.per_zone} >= {(4.0, -2.0), (6.0, -2.0)}
    assert all(entry["G"][0] % 2 == 0 and entry["G"][1] % 2 == 0 for entry in zones.per_zone)
    assert corrected.counts is not None and corrected.counts.sum() > 0
    assert corrected.step("resample").window["axes"] == ["[0,0,L]", "[H,0,0]"]


def test_an_uncalibrated_image_gets_one_warning_line(tmp_path, caplog):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((64, 64)) + 1)
    np.save(tmp_path / "b.npy", np.random.default_rng(1).random((64, 64)) + 1)
    from cfsx.correction import correct_files

    with caplog.at_level("WARNING", logger="cfsx"):
        correct_files([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")], tmp_path / "out.h5", CorrectionConfig())
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "a.npy, b.npy" in warnings[0] and "no calibration" in warnings[0]


def test_the_correction_travels_into_interpret_results(tmp_path):
    plane = mdhisto(tmp_path / "plane.nxs")
    output = tmp_path / "out"
    result = CliRunner().invoke(app, ["interpret", plane, "-o", str(output), "--lattice", "F", "--replicates", "0",
                                      "--no-figures", "--model", "general-cfs2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((output / "results.json").read_text())["images"][0]["correction"]
    steps = [step["step"] for step in record["steps"]]
    assert {"read", "mask", "resample", "zones", "symmetry", "normalise"} <= set(steps)
    assert record["config"]["geometry"]["lattice"] == "F"
    from cfsx.interpretation.results import read_results_h5

    again = read_results_h5(output / "results.h5")[0].correction
    assert again.to_plain() == record and again.step("zones").per_zone == next(
        step["per_zone"] for step in record["steps"] if step["step"] == "zones"
    )
    with h5py.File(output / "results.h5") as results:  # the window's own axes: L over rows, H over columns
        data = results["entry/data"]
        assert data.attrs["L_indices"] == 1 and data.attrs["H_indices"] == 2
        np.testing.assert_allclose(data["L"][[0, -1]], [-2.0, 1.9375])  # F: the window spans 4 r.l.u. of L


def sharp_peaks(h: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Periodic, with diffuse peaks far brighter than the rest (the noise of counts differs across the image)."""
    wrapped_h, wrapped_k = h - np.round(h), k - np.round(k)
    return 1.0 + 30.0 * np.exp(-(wrapped_h**2 + wrapped_k**2) / (2 * 0.04**2))


@pytest.mark.parametrize("counts", [2.0, 20.0])
def test_counts_with_sharp_peaks_and_half_zones_leave_every_zone_in_line(counts):
    # 6 x 6 zones with half zones at the border (their cells partly covered), Poisson counts, a falloff: periodic
    # once the falloff is divided out, so each zone agrees with the others within its noise (chi2 about 1).
    image, calibration = detector(pixels_per_rlu=64, falloff=0.05, function=sharp_peaks, shift=-0.5)
    rng = np.random.default_rng(int(counts))
    counted = rng.poisson(image * counts / image.mean()).astype(float)
    result = folded(counted, config(*calibration))
    chi2 = [entry["chi2"] for entry in result.statistics.entries if entry["chi2"] is not None]
    assert not any(entry["disagrees"] for entry in result.statistics.entries)
    assert 0.85 < np.median(chi2) < 1.2
    # the falloff is read without the bias of logs of small counts: log f(4) - log f(0) = -0.05 x 16
    fitted = result.falloff
    assert np.log(fitted(np.array([4.0]))[0] / fitted(np.array([0.0]))[0]) == pytest.approx(-0.8, abs=0.06)
    # and a zone made three times brighter is still caught
    brighter = counted.copy()
    brighter[160:224, 160:224] *= 3  # the zone of h, k in [-0.5, 0.5)
    flagged = [
        entry["zone"] for entry in folded(brighter, config(*calibration)).statistics.entries if entry["disagrees"]
    ]
    assert flagged == [[0, 0]]


def test_a_window_not_a_whole_number_of_cells_per_zone_folds_like_the_centre_window():
    # h_max 0.75 on 48 cells: 32 cells per zone but the window is 1.5 zones wide: every zone adds to every copy
    image, calibration = detector(falloff=0.0)
    grid = ["output.image_size=48", "output.h_max=0.75", "reconstruction.symmetry=none"]
    folded_image = correct_image(image, config(*calibration, *grid)).image
    centre = correct_image(image, config(*calibration, *grid, "geometry.zones=centre")).image
    np.testing.assert_allclose(folded_image, centre, rtol=1e-5)


def test_the_fold_refuses_more_zone_cells_than_it_can_hold(monkeypatch):
    import cfsx.correction.zones as zones

    image, calibration = detector()
    monkeypatch.setattr(zones, "MAX_ZONE_CELLS", 1000)
    with pytest.raises(DataError, match="too large"):
        correct_image(image, config(*calibration))


def test_zones_too_small_to_judge_weigh_as_the_typical_zone():
    image, calibration = detector()
    image = image.copy()
    image[112:144, 112:144] *= 3.0  # one zone out of line: its weight drops, the typical weight stays 1
    entries = folded(image, config(*calibration, "geometry.falloff_degree=0")).statistics.entries
    judged = [entry["weight"] for entry in entries if entry["chi2"] is not None]
    unjudged = [entry["weight"] for entry in entries if entry["chi2"] is None]
    assert all(weight == pytest.approx(np.median(judged)) for weight in unjudged)


def test_old_symmetry_keys_keep_their_meaning_and_symmetry_follows_the_plane_axes():
    assert config("reconstruction.friedel=false", "reconstruction.mirrors=true").reconstruction.group == "none"
    image, calibration = detector()
    with pytest.raises(DataError, match="along the plane's axes"):  # an I lattice's basis runs along the diagonals
        correct_image(image, config(*calibration, "geometry.lattice=I", "geometry.axes=[h, k]",
                                    "reconstruction.symmetry=mm"))  # fmt: skip
    # a window centred off the origin without the fold: (-h, -k) about it is no Friedel mate
    off = correct_image(image, config(*calibration, "geometry.zones=centre", "geometry.centre=[1, 1]"))
    assert "centred off the origin" in off.step("symmetry").skipped


def test_a_centre_or_lattice_without_a_calibration_is_refused_by_flag_or_key():
    image = np.random.default_rng(0).random((64, 64)) + 1
    with pytest.raises(AdvisedError, match="no calibration") as refused:
        correct_image(image, config("geometry.lattice=F"))
    assert "geometry.origin" in str(refused.value) and "--origin" in refused.value.text({"geometry.origin": "--origin"})
    with pytest.raises(AdvisedError):
        correct_image(image, config("geometry.centre=[1, 0]"))


def test_cells_between_coarse_pixels_take_the_pixels_under_them_in_every_zone():
    # 16 pixels per r.l.u. for 32 cells per zone: every other row and column of cells has no pixel centre
    image, calibration = detector(pixels_per_rlu=16, falloff=0.03, shift=0.25)
    corrected = correct_image(image, config(*calibration))
    resample = corrected.step("resample")
    # the pixels under half the rows and columns
    assert resample.details["cells_from_the_pixels_under_their_centre"] == 3 * SIZE * SIZE // 4
    assert (corrected.mask == 0).all()
    truth = window_truth()
    relative = corrected.image / corrected.image.mean() - truth / truth.mean()
    assert np.abs(relative).max() < 0.1  # the pixel under a cell is up to half a pixel (1/32 r.l.u.) away
    without = correct_image(image, config(*calibration, "reconstruction.inpaint=false", "reconstruction.symmetry=none"))
    assert without.step("resample").details["cells_from_the_pixels_under_their_centre"] > 0


@pytest.mark.parametrize(
    "centring, letters, plane, points, not_points",
    [  # by hand, from the reflection conditions: F h, k, l all even or all odd; I h + k + l even; C h + k even
        ("F", ("l", "h"), 0, [(0, 0), (2, 0), (2, -2), (4, 6)], [(1, 0), (1, 1), (2, 1), (3, 3)]),
        ("F", ("h", "k"), 1, [(1, 1), (-1, 3), (3, 5)], [(0, 0), (2, 0), (1, 2)]),
        ("I", ("h", "k"), 0, [(0, 0), (1, 1), (2, 0), (1, -1)], [(1, 0), (0, 1), (2, 1)]),
        ("I", ("h", "l"), 1, [(1, 0), (0, 1), (2, 1)], [(0, 0), (1, 1), (2, 0)]),
        ("C", ("h", "k"), 0, [(0, 0), (1, 1), (2, 0)], [(1, 0), (0, 1)]),
        ("C", ("h", "l"), 0, [(0, 0), (2, 1), (0, 1)], [(1, 0), (1, 1)]),
        ("C", ("k", "l"), 0, [(2, 0), (0, 1), (2, 5)], [(1, 0), (1, 1)]),
    ],
)
def test_plane_lattices_against_the_reflection_conditions_by_hand(centring, letters, plane, points, not_points):
    lattice = plane_lattice(centring, letters, plane)
    assert all(lattice.is_point(point) for point in points)
    assert not any(lattice.is_point(point) for point in not_points)


def test_mirrors_fill_a_cell_from_its_mirror_image_not_from_the_diagonal():
    # mm-symmetric, not 4mm: I(h, k) = f(|h|) g(|k|) with f != g; a missing cell must take I(-h, k) = I(h, -k)
    grid = reciprocal_grid(SIZE, H_MAX)
    image = (1 + np.cos(2 * np.pi * grid) ** 2)[:, None] * (2 + np.cos(6 * np.pi * grid))[None, :]
    weights = np.ones(image.shape)
    weights[10, 20] = 0
    averaged, filled, _, _ = symmetry_average(np.where(weights > 0, image, 0), weights, "mm", periodic=True)
    assert filled[10, 20] and averaged[10, 20] == pytest.approx(image[SIZE - 10, 20])
    assert averaged[10, 20] == pytest.approx(image[10, SIZE - 20]) and averaged[10, 20] != pytest.approx(image[20, 10])


def test_a_falloff_fit_that_fails_numerically_keeps_its_last_finite_step(monkeypatch):
    # a corrupted benchmark render (strong falloff, Bragg residue) made LAPACK's SVD fail inside the Poisson
    # regression ("SVD did not converge"): the fit keeps its last finite step instead of raising
    import cfsx.correction.zones as zones

    image, calibration = detector(falloff=0.04)
    calls = {"n": 0}
    solve = np.linalg.lstsq

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise np.linalg.LinAlgError("SVD did not converge in Linear Least Squares")
        return solve(*args, **kwargs)

    monkeypatch.setattr(zones.np.linalg, "lstsq", failing)
    result = folded(image, config(*calibration))
    assert calls["n"] >= 3 and np.isfinite(result.image).all()
    assert np.isfinite(result.falloff(np.linspace(0, 4, 9))).all()
