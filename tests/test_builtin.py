"""The built-in general models: shipped with the package, loaded by name in safe mode, true to their card."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cfsx.app.cli import app
from cfsx.learning.builtin import (
    DEFAULT_MODEL,
    builtin_models,
    file_sha256,
    resolve_model,
)
from cfsx.learning.builtin_check import CHECK_TOLERANCE, check_mae
from cfsx.learning.model_card import read_model_card
from cfsx.learning.models import load_model
from cfsx.simulation import simulate

runner = CliRunner()
MODELS = builtin_models()


def test_the_default_model_ships_with_the_package():
    assert DEFAULT_MODEL in {model.name for model in MODELS}
    assert all(model.path.is_file() for model in MODELS)
    assert sum(model.path.stat().st_size for model in MODELS) < 20e6  # a few MB in all


@pytest.mark.parametrize("model", MODELS, ids=[model.name for model in MODELS])
def test_a_builtin_model_loads_by_name_and_reproduces_its_card(model):
    assert resolve_model(model.name) == model.path and file_sha256(model.path) == model.sha256
    network, card = load_model(model.name)  # safe mode, metadata checked against the network
    assert card.cfs == model.cfs and network.output_shape[-1] == model.cfs**2 - 1
    assert card.architecture == model.architecture
    assert model.check_mae is not None and abs(check_mae(model.name) - model.check_mae) < CHECK_TOLERANCE
    assert read_model_card(model.name).decoding_config == card.decoding_config


def test_interpret_without_a_model_uses_the_default_and_records_it(tmp_path, small_run):
    config = small_run(2, 3)
    images = tmp_path / "images.npy"
    simulate(config, tmp_path / "d.h5", workers=1)
    import h5py

    with h5py.File(tmp_path / "d.h5") as file:
        np.save(images, np.kron(file["images"][0], np.ones((2, 2))))  # a 64 x 64 raw image
    result = runner.invoke(app, ["interpret", str(images), "-o", str(tmp_path / "out"), "--replicates", "0",
                                 "--no-figures"])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    default = next(model for model in MODELS if model.name == DEFAULT_MODEL)
    assert document["model"]["builtin"] == DEFAULT_MODEL and document["model"]["sha256"] == default.sha256
    named = runner.invoke(app, ["interpret", str(images), "-o", str(tmp_path / "named"), "--model", DEFAULT_MODEL,
                                "--replicates", "0", "--no-figures"])  # fmt: skip
    assert named.exit_code == 0
    again = json.loads((tmp_path / "named" / "results.json").read_text())
    assert again["images"][0]["encoding"] == document["images"][0]["encoding"]


def test_cfsx_models_lists_them_and_info_describes_one_by_name():
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0
    names = {entry["name"] for entry in json.loads(listed.stdout)}
    assert names == {model.name for model in MODELS}
    described = runner.invoke(app, ["info", DEFAULT_MODEL])
    assert described.exit_code == 0 and "cfsx model, CFS4" in " ".join(described.output.split())


def test_a_builtin_model_whose_file_is_not_its_registrys_is_refused(tmp_path):
    """Issue 30, item 17: a CFS2 file put in place of general-cfs4 ran with exit 0 under general-cfs4's name."""
    import dataclasses
    import shutil

    from cfsx.errors import DataError
    from cfsx.learning.builtin import builtin_model, verify

    real = builtin_model(DEFAULT_MODEL)
    swapped = tmp_path / real.file
    shutil.copy(builtin_model("general-cfs2").path, swapped)
    with pytest.raises(DataError, match="not the file its registry names"):
        verify(dataclasses.replace(real, file=str(swapped)))
    verify(dataclasses.replace(real, file=str(swapped), sha256=file_sha256(swapped)))  # the right sha: fine
    verify(real)  # the shipped file is its registry's


def test_info_checks_a_models_weights_without_tensorflow(tmp_path):
    """Issue 30, item 17: cfsx info called a model with truncated weights or a damaged config fine (exit 0)."""
    import zipfile

    source = resolve_model("general-cfs2")
    cases = {"truncated weights": ("model.weights.h5", lambda data: data[: len(data) // 2]),
             "a damaged config": ("config.json", lambda data: b"{not json"),
             "no weights": ("model.weights.h5", None)}  # fmt: skip
    for name, (entry, change) in cases.items():
        damaged = tmp_path / f"{name.replace(' ', '-')}.keras"
        with zipfile.ZipFile(source) as original, zipfile.ZipFile(damaged, "w") as target:
            for item in original.infolist():
                data = original.read(item)
                if item.filename != entry:
                    target.writestr(item, data)
                elif change is not None:
                    target.writestr(item, change(data))
        result = runner.invoke(app, ["info", str(damaged)])
        assert result.exit_code == 3 and str(damaged) in result.output, (name, result.output)
        assert len(result.output.strip().splitlines()) == 1, (name, result.output)
    assert runner.invoke(app, ["info", str(source)]).exit_code == 0
