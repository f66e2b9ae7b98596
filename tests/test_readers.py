"""Reading facility data: the NeXus default chain, frames of 3-D stacks, compressed HDF5 (hdf5plugin), and
planes of 3-D reciprocal-space volumes (NXRefine transforms, Mantid MDHisto)."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.config import CorrectionConfig
from cfsx.correction.corrected_file import read_corrections
from cfsx.correction.geometry import calibrate_from_file
from cfsx.errors import DataError
from cfsx.io.readers import Plane, read_image, select_frames, select_plane, split_selection


def nexus_plane(path, image, edges=False, chain=True):
    """A NeXus file whose default plottable data is ``image`` over h (rows) and k (columns) in r.l.u."""
    rows, columns = image.shape
    with h5py.File(path, "w") as file:
        entry = file.create_group("entry")
        data = entry.create_group("plane")
        data["counts"] = image
        count = (rows + 1, columns + 1) if edges else (rows, columns)
        data["h"] = np.linspace(-2.0, 2.0, count[0]) if edges else -2.0 + 4.0 * (np.arange(rows) + 0.5) / rows
        data["k"] = np.linspace(-3.0, 3.0, count[1]) if edges else -3.0 + 6.0 * (np.arange(columns) + 0.5) / columns
        for name in ("h", "k"):
            data[name].attrs["units"] = "r.l.u."
        data.attrs.update(NX_class="NXdata", signal="counts", axes=["h", "k"])
        entry.attrs.update(NX_class="NXentry", default="plane")
        if chain:
            file.attrs.update(NX_class="NXroot", default="entry")
        file["decoy"] = np.zeros((3, 3))  # not the default: must not be read


@pytest.mark.parametrize("edges", [False, True])
def test_the_nexus_default_chain_is_followed_and_its_rlu_axes_calibrate(tmp_path, edges):
    image = np.random.default_rng(0).gamma(2.0, 1.0, (80, 120))
    nexus_plane(tmp_path / "plane.nxs", image, edges)
    read, info = read_image(str(tmp_path / "plane.nxs"))
    np.testing.assert_array_equal(read, image)
    assert info["dataset"] == "/entry/plane/counts"
    assert info["axes"]["rows"] == pytest.approx([-2.0, 2.0]) and info["axes"]["columns"] == pytest.approx([-3.0, 3.0])
    geometry = calibrate_from_file(CorrectionConfig(), image.shape, info).geometry
    # h = 0 lies half way down the 80 rows (between pixels 39 and 40); 20 pixels per r.l.u. along both axes
    assert geometry.origin == pytest.approx([39.5, 59.5]) and geometry.pixels_per_rlu == pytest.approx([20.0, 20.0])


def test_without_a_default_chain_the_error_asks_for_the_path(tmp_path):
    nexus_plane(tmp_path / "plain.h5", np.ones((20, 20)), chain=False)
    with pytest.raises(DataError, match=r"no NeXus default data.*::/path/to/data"):
        read_image(str(tmp_path / "plain.h5"))
    assert read_image(f"{tmp_path / 'plain.h5'}::/entry/plane/counts")[0].shape == (20, 20)


def test_the_default_chain_does_not_follow_an_external_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    nexus_plane(tmp_path / "elsewhere" / "target.nxs", np.ones((20, 20)))
    with h5py.File(tmp_path / "master.nxs", "w") as file:
        file.attrs["default"] = "entry"
        file["entry"] = h5py.ExternalLink(str(tmp_path / "elsewhere" / "target.nxs"), "/entry")
    with pytest.raises(DataError, match="no NeXus default data"):
        read_image(str(tmp_path / "master.nxs"))


@pytest.fixture
def stack(tmp_path):
    frames = np.random.default_rng(1).gamma(2.0, 1.0, (5, 48, 48)).astype(np.float32)
    np.save(tmp_path / "stack.npy", frames)
    with h5py.File(tmp_path / "stack.h5", "w") as file:
        file["entry/data/data"] = frames
    return tmp_path, frames


def test_frames_of_a_stack_are_selected_or_summed(stack):
    folder, frames = stack
    with pytest.raises(DataError, match="a stack of 5 frames or a volume: choose FILE"):
        read_image(str(folder / "stack.npy"))
    np.testing.assert_array_equal(read_image(f"{folder / 'stack.npy'}[3]")[0], frames[3])
    np.testing.assert_array_equal(read_image(f"{folder / 'stack.h5'}::/entry/data/data[-1]")[0], frames[4])
    summed, info = read_image(f"{folder / 'stack.h5'}::/entry/data/data[1:4]")
    np.testing.assert_allclose(summed, frames[1:4].astype(np.float64).sum(axis=0))
    assert info["frames_summed"] == [1, 4, 1]
    np.testing.assert_allclose(read_image(f"{folder / 'stack.npy'}[:]")[0], frames.astype(np.float64).sum(axis=0))
    for bad, message in (("[7]", "no frame 7"), ("[4:2]", "selects none")):
        with pytest.raises(DataError, match=message):
            read_image(f"{folder / 'stack.npy'}{bad}")


def test_select_frames_expands_stacks_into_specs(stack):
    folder, _ = stack
    spec = str(folder / "stack.npy")
    assert select_frames([spec], "1:3", False) == [f"{spec}[1]", f"{spec}[2]"]
    assert select_frames([spec], "3:", False) == [f"{spec}[3]", f"{spec}[4]"]
    assert select_frames([spec], "1:3", True) == [f"{spec}[1:3]"] and select_frames([spec], None, True) == [
        f"{spec}[:]"
    ]
    assert select_frames([f"{spec}[0]"], "1:3", False) == [f"{spec}[0]"]  # its own selection wins
    assert split_selection(f"{spec}[2]") == (spec, 2) and split_selection("missing[2]") == ("missing[2]", None)
    np.save(folder / "flat.npy", np.ones((8, 8)))
    with pytest.raises(DataError, match="not a stack of frames"):
        select_frames([str(folder / "flat.npy")], "0:2", False)
    with pytest.raises(DataError, match="--frames must be"):
        select_frames([spec], "a:b", False)


def test_correct_takes_frames_and_sums_from_the_command_line(stack):
    folder, _ = stack
    runner = CliRunner()
    each = runner.invoke(app, ["correct", str(folder / "stack.npy"), "-o", str(folder / "each.h5"), "--frames", "0:2"])
    assert each.exit_code == 0, each.output
    assert [c.source for c in read_corrections(folder / "each.h5")] == [f"{folder / 'stack.npy'}[{i}]" for i in (0, 1)]
    summed = runner.invoke(app, ["correct", str(folder / "stack.h5") + "::/entry/data/data", "-o",
                                 str(folder / "sum.h5"), "--sum-frames"])  # fmt: skip
    assert summed.exit_code == 0, summed.output
    (correction,) = read_corrections(folder / "sum.h5")
    assert correction.step("read").details["frames_summed"] == [0, 5, 1]
    refused = runner.invoke(app, ["correct", str(folder / "stack.npy"), "-o", str(folder / "no.h5")])
    assert refused.exit_code == 3 and "--sum-frames" in refused.output and not (folder / "no.h5").exists()


def test_hdf5plugin_compressed_detector_data_are_read(tmp_path):
    import hdf5plugin

    image = np.random.default_rng(2).poisson(3.0, (64, 64)).astype(np.uint32)
    with h5py.File(tmp_path / "eiger.h5", "w") as file:
        file.create_dataset("entry/data/data", data=image[None], chunks=(1, 64, 64), **hdf5plugin.Bitshuffle())
        file.create_dataset("entry/data/lz4", data=image, **hdf5plugin.LZ4())
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'eiger.h5'}::/entry/data/data[0]")[0], image)
    np.testing.assert_array_equal(read_image(f"{tmp_path / 'eiger.h5'}::/entry/data/lz4")[0], image)


# --- planes of 3-D reciprocal-space volumes ---

L_CENTRES = np.linspace(-1.0, 1.0, 5)  # 0.5 apart: l = 0 is slice 2
K_CENTRES = np.linspace(-0.5, 2.0, 6)  # k = 0.5 is slice 2
H_CENTRES = np.linspace(-2.0, 1.0, 31)  # 0.1 apart: h = -1 +- 0.1 are slices 9, 10 and 11


def indexed_volume(shape) -> np.ndarray:
    """v[i, j, k] = 10000 i + 100 j + k: every slice along every axis recognisable (exact in float32)."""
    return np.fromfunction(lambda i, j, k: 10000 * i + 100 * j + k, shape, dtype=np.float32)


def nxrefine_files(folder, link="f1/transform.nxs", units="rlu", centres=(L_CENTRES, K_CENTRES, H_CENTRES)):
    """NXRefine's layout: sample/f1_transform.nxs, whose /entry/transform (the default NXdata, axes Ql, Qk, Qh as
    bin ``centres``) has as its signal an external link ``link`` to the volume in the scan subfolder."""
    sample = folder / "sample"
    (sample / "f1").mkdir(parents=True, exist_ok=True)
    volume = indexed_volume(tuple(len(values) for values in centres))
    with h5py.File(sample / "f1" / "transform.nxs", "w") as file:
        file["entry/data/v"] = volume
    with h5py.File(sample / "f1_transform.nxs", "w") as file:
        file.attrs.update(NX_class="NXroot", default="entry")
        entry = file.create_group("entry")
        entry.attrs.update(NX_class="NXentry", default="transform")
        transform = entry.create_group("transform")
        transform.attrs.update(NX_class="NXdata", signal="data", axes=["Ql", "Qk", "Qh"])
        transform["data"] = h5py.ExternalLink(link, "/entry/data/v")
        for name, values in zip(("Ql", "Qk", "Qh"), centres, strict=True):
            transform[name] = values
            transform[name].attrs["units"] = units
    return sample / "f1_transform.nxs", volume


def test_planes_of_an_nxrefine_transform_are_read_with_their_axes(tmp_path):
    master, volume = nxrefine_files(tmp_path)
    image, info = read_image(f"{master}[l=0]")  # the default chain, through the link into f1/
    np.testing.assert_array_equal(image, volume[2])
    assert info["dataset"] == "/entry/transform/data"
    axes = info["axes"]
    assert axes["names"] == ["Qk", "Qh"] and axes["rlu"] is True
    assert axes["rows"] == pytest.approx([-0.75, 2.25]) and axes["columns"] == pytest.approx([-2.05, 1.05])
    assert axes["plane"] == {"axis": "l", "value": 0.0, "requested": 0.0, "thickness": 0.0, "slices": [2, 3]}
    geometry = calibrate_from_file(CorrectionConfig(), image.shape, info).geometry
    assert geometry.origin == pytest.approx([1.0, 20.0]) and geometry.pixels_per_rlu == pytest.approx([2.0, 10.0])

    image, info = read_image(f"{master}::/entry/transform[K=0.5]")  # an NXdata group path: its signal
    np.testing.assert_array_equal(image, volume[:, 2, :])
    assert info["axes"]["names"] == ["Ql", "Qh"] and info["axes"]["plane"]["slices"] == [2, 3]

    image, info = read_image(f"{master}[h=-1+-0.1]")  # the sum of three slices (centres of a linspace)
    np.testing.assert_array_equal(image, volume[:, :, 9:12].astype(np.float64).sum(axis=2))
    assert info["axes"]["names"] == ["Ql", "Qk"]
    assert info["axes"]["plane"] == {"axis": "h", "value": -1.0, "requested": -1.0, "thickness": 0.1,
                                     "slices": [9, 12]}  # fmt: skip

    image, info = read_image(f"{master}[l=0.3]")  # the nearest slice, named by its own centre
    np.testing.assert_array_equal(image, volume[3])
    assert info["axes"]["plane"]["value"] == 0.5
    assert read_image(f"{master}[1]")[1]["dataset"] == "/entry/transform/data"  # frames of it as before


def test_a_plane_reads_only_its_slices(tmp_path, monkeypatch):
    """Every read of the volume selects one slice (an integer index): never the whole volume."""
    master, volume = nxrefine_files(tmp_path)
    keys = []
    original = h5py.Dataset.__getitem__

    def recorded(dataset, key, *rest, **options):
        if dataset.shape == volume.shape:
            keys.append(key)
        return original(dataset, key, *rest, **options)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recorded)
    for spec, count in ((f"{master}[l=0]", 1), (f"{master}[k=0]", 1), (f"{master}[h=-1+-0.1]", 3)):
        keys.clear()
        read_image(spec)
        assert len(keys) == count and all(sum(isinstance(part, int) for part in key) == 1 for key in keys), keys


def mantid_volume(path, shape=(4, 5, 6)):
    """A 3-D Mantid MDHisto file: signal stored (Q3, Q2, Q1) = (L, K, H), axes as bin edges in the HKL frame."""
    volume = indexed_volume(shape)
    with h5py.File(path, "w") as file:
        data = file.create_group("MDHistoWorkspace/data")
        data["signal"] = volume.astype(np.float64)
        edges = {"Q1": (-3.0, 3.0, "[H,0,0]"), "Q2": (-1.0, 4.0, "[0,K,0]"), "Q3": (-2.0, 2.0, "[0,0,L]")}
        for (name, (first, last, label)), pixels in zip(edges.items(), shape[::-1], strict=True):
            data[name] = np.linspace(first, last, pixels + 1)
            data[name].attrs.update(frame="HKL", long_name=label, units="in 1.22 A^-1")
    return volume


def test_planes_of_a_mantid_mdhisto_volume(tmp_path):
    volume = mantid_volume(tmp_path / "volume.nxs")
    image, info = read_image(f"{tmp_path / 'volume.nxs'}[l=0.4]")  # L edges -2, -1, 0, 1, 2: slice 2
    np.testing.assert_array_equal(image, volume[2])
    assert info["axes"]["names"] == ["[0,K,0]", "[H,0,0]"]
    assert info["axes"]["rows"] == [-1.0, 4.0] and info["axes"]["columns"] == [-3.0, 3.0]
    assert info["axes"]["plane"] == {"axis": "l", "value": 0.5, "requested": 0.4, "thickness": 0.0,
                                     "slices": [2, 3]}  # fmt: skip
    image, info = read_image(f"{tmp_path / 'volume.nxs'}::MDHistoWorkspace/data/signal[h=1.2]")  # H: 1 apart
    np.testing.assert_array_equal(image, volume[:, :, 4])
    assert info["axes"]["names"] == ["[0,0,L]", "[0,K,0]"] and info["axes"]["plane"]["value"] == 1.5


def test_links_into_subfolders_are_followed_but_not_above_the_folder(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["entry/data/v"] = np.full((5, 6, 31), 100.0)
    master, _ = nxrefine_files(tmp_path, link="../other.h5")
    with pytest.raises(DataError, match=r"outside the folder of f1_transform.nxs \(and its subfolders\)") as error:
        read_image(f"{master}[l=0]")
    assert "\n" not in str(error.value)
    (tmp_path / "sample" / "escape").symlink_to(tmp_path, target_is_directory=True)  # a subfolder that is not
    master, _ = nxrefine_files(tmp_path, link="escape/other.h5")
    with pytest.raises(DataError, match="outside the folder"):
        read_image(f"{master}::/entry/transform[l=0]")
    master, volume = nxrefine_files(tmp_path, link="f1/../f1/transform.nxs")  # '..' that stays inside
    np.testing.assert_array_equal(read_image(f"{master}[l=0]")[0], volume[2])


def test_bad_plane_selections_are_one_clear_error(tmp_path):
    master, _ = nxrefine_files(tmp_path)
    nexus_plane(tmp_path / "plane.nxs", np.ones((20, 20)))
    np.save(tmp_path / "stack.npy", np.ones((3, 8, 8)))
    cases = [
        (f"{tmp_path / 'plane.nxs'}[l=0]", r"needs a 3-D volume.*shape \(20, 20\)"),
        (f"{tmp_path / 'stack.npy'}[l=0]", "needs h, k, l axes"),
        (f"{master}[l=1.5]", "l = 1.5 is outside the volume, whose l runs from -1.25 to 1.25"),
        (f"{master}[k=-2]", "k runs from -0.75 to 2.25"),
        (f"{master}[l=0.2+-0.1]", "no l slice has its centre within 0.2 \\+- 0.1"),
        (f"{master}[q=0]", "a plane is AXIS=VALUE"),
        (f"{master}[l=zero]", "a plane is AXIS=VALUE"),
        (f"{master}[l=0+-]", "a plane is AXIS=VALUE"),
        (f"{master}[l=0+--1]", "must not be negative"),
    ]
    for spec, message in cases:
        with pytest.raises(DataError, match=message) as error:
            read_image(spec)
        assert "\n" not in str(error.value)
    no_units, _ = nxrefine_files(tmp_path / "plain", units="")
    with pytest.raises(DataError, match="axis Ql is not in r.l.u."):
        read_image(f"{no_units}[l=0]")


def test_select_plane_adds_the_plane_to_specs_without_a_selection(tmp_path):
    master, _ = nxrefine_files(tmp_path)
    spec = str(master)
    assert split_selection(f"{spec}[l=0+-0.05]") == (spec, Plane("l", 0.0, 0.05))
    assert split_selection(f"{spec}::/entry/transform[H = -1]") == (f"{spec}::/entry/transform", Plane("h", -1.0))
    assert split_selection("missing.nxs[l=0]") == ("missing.nxs[l=0]", None)
    assert select_plane([spec], "l=0") == [f"{spec}[l=0]"]
    assert select_plane([spec, f"{spec}[3]", f"{spec}[k=1]"], "L=0.25+-0.05") == [
        f"{spec}[l=0.25+-0.05]",
        f"{spec}[3]",
        f"{spec}[k=1]",
    ]
    assert select_plane([spec], None) == [spec]
    with pytest.raises(DataError, match="--plane: a plane is AXIS=VALUE"):
        select_plane([spec], "x=1")


def test_correct_and_interpret_take_a_plane_from_the_command_line(tmp_path):
    in_plane = np.linspace(-1.5, 1.5, 96)  # about 32 pixels per r.l.u.: the training window's resolution
    master, _ = nxrefine_files(tmp_path, centres=(L_CENTRES, in_plane, in_plane))
    runner = CliRunner()
    output = tmp_path / "plane.h5"
    result = runner.invoke(app, ["correct", str(master), "-o", str(output), "--plane", "l=0"])
    assert result.exit_code == 0, result.output
    (correction,) = read_corrections(output)
    assert correction.source == f"{master}[l=0]"
    plane = {"axis": "l", "value": 0.0, "requested": 0.0, "thickness": 0.0, "slices": [2, 3]}
    assert correction.step("read").details["axes"]["plane"] == plane
    refused = runner.invoke(app, ["interpret", str(master), "-o", str(tmp_path / "out"), "--plane", "l"])
    assert refused.exit_code == 3 and "--plane: a plane is AXIS=VALUE" in refused.output


def test_the_pixel_cap_is_read_from_the_header_before_any_pixel(tmp_path, monkeypatch):
    """Issue 30, item 6: an 8 KB HDF5 declaring 20000 x 20000, a small zlib TIFF and a PNG took the server's worker
    to 2.5 GB before the 413."""
    import imageio.v3 as imageio
    import tifffile

    from cfsx.errors import TooLargeError

    with h5py.File(tmp_path / "declared.h5", "w") as file:  # 80 GB declared, nothing written
        file.create_dataset("image", shape=(100_000, 100_000), dtype=np.float64, chunks=(256, 256))
    with pytest.raises(TooLargeError, match="10000000000 pixels"):
        read_image(f"{tmp_path / 'declared.h5'}::/image", max_pixels=10**6)
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((300, 400), np.uint16), compression="zlib")
    imageio.imwrite(tmp_path / "big.png", np.zeros((300, 400), np.uint8))
    np.save(tmp_path / "big.npy", np.zeros((300, 400), np.float32))

    def never(*args, **kwargs):
        raise AssertionError("pixels were read before the cap was checked")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", never)
    monkeypatch.setattr(imageio, "imread", never)
    for name in ("big.tif", "big.png", "big.npy"):
        with pytest.raises(TooLargeError, match="120000 pixels"):
            read_image(str(tmp_path / name), max_pixels=100_000)
    stack = tmp_path / "stack.h5"
    with h5py.File(stack, "w") as file:
        file["frames"] = np.ones((50, 40, 40))
    with pytest.raises(TooLargeError, match="80000 pixels"):
        read_image(f"{stack}::/frames", max_pixels=2000)  # the whole stack would be read
    assert read_image(f"{stack}::/frames[3]", max_pixels=2000)[0].shape == (40, 40)  # one frame is read


def test_readers_refuse_what_they_cannot_read_faithfully_in_one_clear_line(tmp_path):
    """Issue 30, item 15: an RGB TIFF read as a stack of frames, a truncated EDF accepted, NeXus axes of the wrong
    length ignored, frame selections that select nothing."""
    import fabio.edfimage
    import tifffile

    colour = np.random.default_rng(0).integers(0, 255, (40, 50, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    image = read_image(str(tmp_path / "rgb.tif"))[0]
    assert image.shape == (40, 50) and np.allclose(image, colour.mean(axis=-1))
    fabio.edfimage.EdfImage(data=np.ones((64, 64), np.float32)).write(str(tmp_path / "whole.edf"))
    whole = (tmp_path / "whole.edf").read_bytes()
    (tmp_path / "cut.edf").write_bytes(whole[: len(whole) - 4000])
    assert read_image(str(tmp_path / "whole.edf"))[0].shape == (64, 64)
    with pytest.raises(DataError, match="truncated"):
        read_image(str(tmp_path / "cut.edf"))
    nexus_plane(tmp_path / "axes.nxs", np.ones((16, 20)))
    with h5py.File(tmp_path / "axes.nxs", "a") as file:
        del file["entry/plane/k"]
        file["entry/plane/k"] = np.linspace(-3, 3, 7)
        file["entry/plane/k"].attrs["units"] = "r.l.u."
    with pytest.raises(DataError, match="7 values for 20 pixels"):
        read_image(str(tmp_path / "axes.nxs"))
    np.save(tmp_path / "stack.npy", np.ones((4, 8, 8)))
    for frames, words in (("", "must be a frame"), ("3:1", "selects none of its 4 frames"), ("99", "none of its 4")):
        with pytest.raises(DataError, match=words):
            select_frames([str(tmp_path / "stack.npy")], frames, False)
    named = tmp_path / "scan[1].npy"  # square brackets in a name are not terminal markup
    np.save(named, np.random.default_rng(1).random((64, 64)) + 1)
    result = CliRunner().invoke(app, ["correct", str(named), "-o", str(tmp_path / "out.h5")])
    assert result.exit_code == 0 and "scan[1].npy:" in result.output, result.output
