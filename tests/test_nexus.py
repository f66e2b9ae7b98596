"""Every HDF5 file cfsx writes is a NeXus file: nexusformat finds its plottable images with h and k axes
in r.l.u., the format-1 paths read the same array, and format-1 files (no entry) are still read."""

import h5py
import numpy as np
import pytest
from conftest import corrected_file
from nexusformat.nexus import nxload

from cfsx.config import CorrectionConfig, InterpretationConfig, TrainingConfig, load_config
from cfsx.interpretation import InterpretationOutput, interpret
from cfsx.io.dataset import merge_shards
from cfsx.io.dataset_info import describe
from cfsx.learning.training import train
from cfsx.physics.engine import reciprocal_grid
from cfsx.simulation import Shard, simulate


def assert_plottable(path, signal_path: str, h_max: float) -> None:
    root = nxload(str(path), "r")
    try:
        plottable = root.plottable_data
        assert plottable is not None, f"{path}: nexusformat finds no plottable data"
        assert plottable.nxsignal.nxname == "images"
        axes = [axis.nxname for axis in plottable.nxaxes]
        assert axes[-2:] == ["h", "k"]
        for axis in plottable.nxaxes[-2:]:
            assert axis.attrs["units"] == "r.l.u."
            np.testing.assert_allclose(axis.nxvalue, reciprocal_grid(plottable.nxsignal.shape[-1], h_max))
        assert "cfsx" in str(root["entry/process/program"].nxvalue)
    finally:
        root.nxfile.close()
    with h5py.File(path) as file:  # the format-1 path is the same dataset, not a copy
        assert file[signal_path] == file["entry/data/images"]
        assert file[signal_path].attrs["long_name"]


@pytest.fixture(scope="module")
def made(tmp_path_factory, small_run):
    folder = tmp_path_factory.mktemp("nexus")
    simulate(small_run(2, 60), folder / "data.h5", workers=1)
    for index in range(2):
        simulate(small_run(2, 8), folder / f"shard{index}.h5", workers=1, shard=Shard(index, 2))
    merge_shards([folder / "shard0.h5", folder / "shard1.h5"], folder / "merged.h5")
    with h5py.File(folder / "data.h5") as file:
        corrected_file(file["images"][:2], folder, 50.0)
    train(folder / "data.h5", folder / "model.keras", load_config("train-demo", root=TrainingConfig,
                                                                   **{"fit.epochs": 1}))  # fmt: skip
    config = load_config("interpret", root=InterpretationConfig, **{"decode.replicates": 2, "output.figures": False})
    interpret(folder / "model.keras", [str(folder / "corrected.h5")],
              InterpretationOutput(folder / "out", record=folder / "store.h5"), config, CorrectionConfig())  # fmt: skip
    return folder


@pytest.mark.parametrize(
    ("name", "signal"),
    [("data.h5", "images"), ("merged.h5", "images"), ("corrected.h5", "images"), ("out/results.h5", "observed"),
     ("store.h5", "images")],
)  # fmt: skip
def test_each_output_kind_has_plottable_images_on_h_and_k(made, name, signal):
    assert_plottable(made / name, signal, h_max=1.0)


def test_the_masks_and_labels_say_what_they_hold(made):
    with h5py.File(made / "corrected.h5") as file:
        assert file["masks"].attrs["long_name"] == "0 measured, 1 filled by symmetry, 2 inpainted"
    with h5py.File(made / "data.h5") as file:
        assert "training labels" in file["encodings/achieved"].attrs["long_name"]
        assert "lattice:" in file["entry/process/config/data"][()].decode()


def test_a_format_1_file_without_the_entry_is_still_read(made, tmp_path):
    old = tmp_path / "old.h5"
    with h5py.File(made / "data.h5") as source, h5py.File(old, "w") as file:
        for name in ("images", "encodings/achieved", "encodings/target", "interactions", "lattices", "seeds"):
            file[name] = source[name][()]
        file.attrs.update({key: value for key, value in source.attrs.items() if key not in ("NX_class", "default")})
        file.attrs["format_version"] = 1
    info = describe(old)
    assert info.samples == 60 and info.cfs == 2
