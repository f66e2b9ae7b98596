"""Reading facility data: the NeXus default chain, frames of 3-D stacks, and compressed HDF5 (hdf5plugin)."""

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.cli import app
from cfsx.config import CorrectionConfig
from cfsx.correction import calibrate_from_file
from cfsx.dataset import read_corrections
from cfsx.errors import DataError
from cfsx.readers import read_image, select_frames, split_selection


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
    with pytest.raises(DataError, match="a stack of 5 frames: choose one"):
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
    assert correction.step("read")["frames_summed"] == [0, 5, 1]
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
